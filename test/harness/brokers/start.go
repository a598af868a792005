package brokers

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"maps"
	"net"
	"os"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/hms-platform/bus-operator/test/harness/embedded"
	"github.com/hms-platform/bus-operator/test/harness/kafkabroker"
)

func startEmbedded(o Options) (*Broker, error) {
	nodes := o.Nodes
	if nodes <= 0 {
		nodes = 3
	}
	password := o.AdminPassword
	if password == "" {
		pw, err := embedded.RandomPassword()
		if err != nil {
			return nil, err
		}
		password = pw
	}
	b := &Broker{
		kind: Embedded, AdminUser: "admin", AdminPassword: password,
		counter: &embedded.RequestCounter{}, log: &ringLog{max: 400},
	}
	b.embOpts = embedded.Options{
		Brokers: nodes, AdminUser: b.AdminUser, AdminPassword: password,
		Logger: b.log, LogLevel: kfake.LogLevelWarn,
	}
	if o.TLS {
		server, caPEM, err := embedded.SelfSignedTLS()
		if err != nil {
			return nil, err
		}
		b.embOpts.TLS, b.caPEM = server, caPEM
	}
	if o.Restartable || o.Dir != "" {
		// A restart must find the cluster where clients left it: the same
		// ports (clients keep their bootstrap list) and the data on disk.
		ports, err := freePorts(nodes)
		if err != nil {
			return nil, err
		}
		b.embOpts.Ports = ports
		dir := o.Dir
		if dir == "" {
			if dir, err = os.MkdirTemp("", "hmsbus-kfake-"); err != nil {
				return nil, fmt.Errorf("making the embedded broker's data directory: %w", err)
			}
			b.tmpDir = dir
		}
		b.embOpts.DataDir = dir
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.startEmbeddedLocked(); err != nil {
		if b.tmpDir != "" {
			_ = os.RemoveAll(b.tmpDir)
		}
		return nil, err
	}
	return b, nil
}

// startEmbeddedLocked starts kfake with b's options and counts its
// requests (the counter adds up across restarts). Callers hold b.mu.
func (b *Broker) startEmbeddedLocked() error {
	e, err := embedded.Start(b.embOpts)
	if err != nil {
		return err
	}
	b.emb = e
	b.counter.Attach(e)
	return nil
}

// embeddedAddrs are the listen addresses: the fixed ports of a restartable
// broker (valid while it is stopped too), else the running cluster's.
func (b *Broker) embeddedAddrs() []string {
	if len(b.embOpts.Ports) > 0 {
		out := make([]string, len(b.embOpts.Ports))
		for i, p := range b.embOpts.Ports {
			out[i] = net.JoinHostPort("127.0.0.1", fmt.Sprint(p))
		}
		return out
	}
	if b.emb == nil {
		return nil
	}
	return b.emb.Addrs()
}

func startKafka(o Options) (*Broker, error) {
	if o.Nodes > 1 {
		return nil, fmt.Errorf("starting kafka: the launcher runs one node, not %d", o.Nodes)
	}
	props := map[string]string{
		// Quotas measure rates over quota.window.num windows (11 by
		// default) and never over less than all but one of them, so a
		// client must exceed its quota for ten seconds before Kafka
		// throttles it. Two windows let a test see throttling within
		// seconds; the enforcement itself is Kafka's own.
		"quota.window.num": "2",
	}
	maps.Copy(props, o.KafkaProperties)
	// Behind a proxy, so the tests can count Kafka's requests by API key
	// as they count kfake's.
	kb, proxy, err := kafkabroker.StartBehindProxy(kafkabroker.Options{
		Dir:             o.Dir,
		AdminPassword:   o.AdminPassword,
		ClientCAPEM:     o.ClientCAPEM,
		ExtraProperties: props,
	})
	if err != nil {
		return nil, err
	}
	return &Broker{kind: Kafka, AdminUser: kb.AdminUser, AdminPassword: kb.AdminPassword, kb: kb, proxy: proxy}, nil
}

// freePorts finds n free loopback ports, holding them all open at once so
// no two coincide.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

func tlsConfigFor(caPEM []byte) *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
}

// ringLog keeps the embedded broker's last log lines in memory.
type ringLog struct {
	mu    sync.Mutex
	max   int
	lines []string
}

func (r *ringLog) Logf(level kfake.LogLevel, msg string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, fmt.Sprintf("[%s] ", level)+fmt.Sprintf(msg, args...))
	if len(r.lines) > r.max {
		r.lines = r.lines[len(r.lines)-r.max:]
	}
}

func (r *ringLog) tail(n int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	from := max(len(r.lines)-n, 0)
	return strings.Join(r.lines[from:], "\n")
}
