package localstack

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hms-platform/bus-operator/test/harness/kafkabroker"
)

// startBroker runs `hmsbus-broker` on three free ports with its data in the
// state dir, and waits until it has announced its bootstrap address and
// every port accepts connections.
func (s *Stack) startBroker(ctx context.Context, timeout time.Duration) error {
	s.BrokerName = "embedded kfake"
	begin := s.begin("starting embedded broker (hmsbus-broker, 3 brokers, SASL/SCRAM and ACLs on)")
	ports, err := FreePorts(3)
	if err != nil {
		return err
	}
	list := make([]string, len(ports))
	for i, p := range ports {
		list[i] = strconv.Itoa(p)
	}
	s.AdminPasswordFile = s.Path(adminPasswordFile)
	s.broker, err = startProcess("broker", s.Path(BrokerLog), Environ(), filepath.Join(s.BinDir, "hmsbus-broker"),
		"--ports", strings.Join(list, ","), "--data-dir", s.Path(brokerDataDir),
		"--admin-password-file", s.AdminPasswordFile)
	if err != nil {
		return err
	}
	err = s.broker.waitFor(ctx, "the broker announces its bootstrap address", timeout, func() (bool, error) {
		s.Bootstrap = announcedBootstrap(s.Path(BrokerLog))
		return s.Bootstrap != "", nil
	})
	if err != nil {
		return err
	}
	err = s.broker.waitFor(ctx, "every broker port accepts connections", timeout, func() (bool, error) {
		return dialAll(strings.Split(s.Bootstrap, ","))
	})
	if err != nil {
		return err
	}
	s.ready(begin)
	s.say("  bootstrap %s, admin password in %s, log %s", s.Bootstrap, s.AdminPasswordFile, s.Path(BrokerLog))
	return nil
}

// kafkaSCRAMIterations is what the operator issues credentials with on
// Kafka: twice the minimum, which Kafka honours (kfake only verifies 4096).
const kafkaSCRAMIterations = 8192

// startKafka runs Apache Kafka from bin/kafka (one KRaft node: SASL/SCRAM
// on its client listener, ACLs enforced, the admin the only super user)
// with its data and log in the state dir.
func (s *Stack) startKafka(ctx context.Context, timeout time.Duration) error {
	version := "?"
	if home, err := kafkabroker.ResolveHome(""); err == nil {
		if v, err := kafkabroker.HomeVersion(home); err == nil {
			version = v
		}
	}
	s.BrokerName = "Apache Kafka " + version
	kopts, err := s.identityOptions(ctx)
	if err != nil {
		return err
	}
	kopts.Dir, kopts.AdminUser, kopts.StartTimeout = s.Path(brokerDataDir), BrokerAdmin, timeout
	begin := s.begin("starting " + s.BrokerName + " (one KRaft node, SASL/SCRAM and ACLs on, TLS, client-certificate and OAUTHBEARER listeners)")
	kb, err := kafkabroker.Start(kopts)
	if err != nil {
		return err
	}
	s.kafka = kb
	// The launcher keeps the password in its own directory; the operator
	// and the demo read it from the state dir, as with the embedded broker.
	s.AdminPasswordFile = s.Path(adminPasswordFile)
	if err := os.WriteFile(s.AdminPasswordFile, []byte(kb.AdminPassword+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing the broker admin password: %w", err)
	}
	// The Kafka log stays where the launcher writes it; BrokerLog points
	// there so people find it where the embedded broker's log would be.
	_ = os.Remove(s.Path(BrokerLog))
	if err := os.Symlink(kb.LogPath(), s.Path(BrokerLog)); err != nil {
		return fmt.Errorf("linking the Kafka log: %w", err)
	}
	s.Bootstrap = kb.Bootstrap()
	s.ready(begin)
	s.say("  bootstrap %s (TLS %s, client certificates %s, ServiceAccount tokens %s), admin password in %s, log %s",
		s.Bootstrap, kb.TLSBootstrap(), kb.MTLSBootstrap(), kb.OAuthBootstrap(), s.AdminPasswordFile, s.Path(BrokerLog))
	return nil
}

// brokerArgs are the operator flags the broker needs besides its address.
func (s *Stack) brokerArgs() ([]string, error) {
	if s.kafka == nil {
		return nil, nil
	}
	ids, err := s.identityArgs()
	if err != nil {
		return nil, err
	}
	return append([]string{"--scram-iterations", strconv.Itoa(kafkaSCRAMIterations)}, ids...), nil
}

// announcedBootstrap reads the "bootstrap:" line `hmsbus-broker` prints
// once it listens ("" until then).
func announcedBootstrap(logPath string) string {
	f, err := os.Open(logPath)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "bootstrap:"); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}

func dialAll(addrs []string) (bool, error) {
	for _, a := range addrs {
		c, err := net.DialTimeout("tcp", a, time.Second)
		if err != nil {
			return false, err
		}
		_ = c.Close()
	}
	return true, nil
}

// startOperator runs bin/manager as the operator user and waits until its
// readiness endpoint, which pings the broker, answers 200.
func (s *Stack) startOperator(ctx context.Context, opts Options) error {
	begin := s.begin("starting operator (bin/manager as user " + OperatorUser + ", ClusterRole " + OperatorRole + " only)")
	ports, err := FreePorts(1)
	if err != nil {
		return err
	}
	s.ProbeAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	brokerArgs, err := s.brokerArgs()
	if err != nil {
		return err
	}
	args := append([]string{
		"--kafka-bootstrap", s.Bootstrap,
		"--kafka-username", BrokerAdmin,
		"--kafka-password-file", s.AdminPasswordFile,
		"--metrics-bind-address", "0",
		"--health-probe-bind-address", s.ProbeAddr,
	}, append(brokerArgs, opts.ManagerArgs...)...)
	s.operator, err = startProcess("operator", s.Path(OperatorLog), Environ("KUBECONFIG="+s.Path(operatorKubeconfig)),
		filepath.Join(s.BinDir, "manager"), args...)
	if err != nil {
		return err
	}
	readyz := "http://" + s.ProbeAddr + "/readyz"
	hc := &http.Client{Timeout: 5 * time.Second}
	err = s.operator.waitFor(ctx, "the operator's "+readyz+" answers 200", opts.ReadyTimeout, func() (bool, error) {
		resp, err := hc.Get(readyz)
		if err != nil {
			return false, err
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("%s answered %s", readyz, resp.Status)
	})
	if err != nil {
		return err
	}
	s.ready(begin)
	s.say("  readiness %s, log %s", readyz, s.Path(OperatorLog))
	return nil
}

// OperatorRunning reports an operator that has exited, with the end of
// its log; nil while it runs.
func (s *Stack) OperatorRunning() error {
	if s.operator == nil {
		return fmt.Errorf("operator not started")
	}
	if gone, err := s.operator.exited(); gone {
		return err
	}
	return nil
}
