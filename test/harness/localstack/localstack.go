// Package localstack runs hms-bus on one machine the way a user would: a
// control plane (etcd and kube-apiserver via test/harness/testenv, with the CRDs,
// admission policies and persona roles installed), a broker (the embedded one
// as a `hmsbus-broker` process, or Apache Kafka from bin/kafka through
// test/harness/kafkabroker) and the operator as a `manager` process, from
// built binaries. The operator authenticates as its own user bound only to
// the generated ClusterRole config/rbac/role.yaml, so a run also proves that
// role is enough. `make demo` and the e2e tests use it.
package localstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hms-platform/bus-operator/test/harness/kafkabroker"
	"github.com/hms-platform/bus-operator/test/harness/testenv"
)

// Users the stack writes kubeconfigs for, each authenticated by a client
// certificate (no impersonation): what kubectl sends is a real identity.
const (
	// Requester files ChangeTickets and declares Topics and Subscriptions.
	Requester = "alice"
	// Reviewer approves or denies ChangeTickets.
	Reviewer = "rita"
	// OperatorUser is the operator's identity, bound only to OperatorRole.
	OperatorUser = "hmsbus-operator"
	// OperatorRole is the ClusterRole controller-gen writes to
	// config/rbac/role.yaml.
	OperatorRole = "hmsbus-operator"
	// BrokerAdmin is the embedded broker's superuser (`hmsbus-broker`'s
	// default), which the operator administers the broker as.
	BrokerAdmin = "admin"
)

// Options configures Start.
type Options struct {
	// BinDir holds manager, hmsbus, kube-apiserver and etcd.
	BinDir string
	// StateDir receives kubeconfigs, logs, credentials and broker data. It
	// is wiped at start: the control plane is not persisted, so a run
	// cannot resume an earlier one.
	StateDir string
	// RootDir is the repository root (for config/); found by walking up to
	// go.mod from the working directory if empty.
	RootDir string
	// Progress receives one line per step; discarded if nil.
	Progress io.Writer
	// ManagerArgs are extra operator flags, e.g. --resync-period=10s.
	ManagerArgs []string
	// ReadyTimeout bounds each component's start (default 2 minutes: a
	// first start on a busy 2-core machine is slow).
	ReadyTimeout time.Duration
	// Broker is the broker to run: BrokerEmbedded (default) or
	// BrokerKafka.
	Broker string
}

// The brokers a stack can run.
const (
	// BrokerEmbedded is `hmsbus-broker`: franz-go's kfake, 3 nodes, SASL/SCRAM
	// and ACLs on. Fast to start; lenient where Kafka is strict.
	BrokerEmbedded = "embedded"
	// BrokerKafka is Apache Kafka itself (make kafka), one KRaft node with
	// SASL/SCRAM, ACLs and TLS listeners: what users run.
	BrokerKafka = "kafka"
)

// Stack is a running local hms-bus.
type Stack struct {
	// Env is the control plane, with an admin client.
	Env *testenv.Env
	// RootDir is the repository root the manifests came from.
	RootDir string
	// BinDir holds the binaries the stack runs.
	BinDir string
	// StateDir holds everything the run writes.
	StateDir string
	// Broker is the broker that runs (BrokerEmbedded or BrokerKafka), and
	// BrokerName says which for people ("Apache Kafka 4.4.0").
	Broker, BrokerName string
	// Bootstrap is the broker's comma-separated bootstrap address.
	Bootstrap string
	// AdminPasswordFile holds the broker superuser's password.
	AdminPasswordFile string
	// ProbeAddr serves the operator's /healthz and /readyz.
	ProbeAddr string
	// MTLSBootstrap and OAuthBootstrap are the broker's listeners for
	// client certificates and ServiceAccount tokens: Apache Kafka only,
	// empty on the embedded broker (which has neither).
	MTLSBootstrap, OAuthBootstrap string

	progress io.Writer
	cpLog    *os.File
	broker   *process
	kafka    *kafkabroker.Broker
	operator *process

	stopOnce sync.Once
	stopErr  error
}

// Names of the files the stack writes into its state dir.
const (
	AdminKubeconfig    = "admin.kubeconfig"
	operatorKubeconfig = "operator.kubeconfig"
	adminPasswordFile  = "broker-admin-password"
	brokerDataDir      = "broker"
	etcdDataDir        = "etcd"
	// ControlPlaneLog, BrokerLog and OperatorLog are the components' output.
	ControlPlaneLog = "controlplane.log"
	BrokerLog       = "broker.log"
	OperatorLog     = "operator.log"
)

// Binaries the stack needs in BinDir.
var requiredBinaries = []string{"manager", "hmsbus", "hmsbus-broker", "kube-apiserver", "etcd"}

// Start wipes the state dir and starts the control plane, the broker and the
// operator, in that order, waiting until each is ready. On error everything
// started so far is stopped again.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	if err := checkOptions(&opts); err != nil {
		return nil, err
	}
	s := &Stack{BinDir: opts.BinDir, StateDir: opts.StateDir, progress: opts.Progress, Broker: opts.Broker}
	if s.progress == nil {
		s.progress = io.Discard
	}
	wiped, err := prepareStateDir(s.StateDir)
	if err != nil {
		return nil, err
	}
	if wiped {
		s.say("wiped state dir %s: the control plane is not persisted, so every run starts fresh", s.StateDir)
	} else {
		s.say("created state dir %s", s.StateDir)
	}
	if err := s.start(ctx, opts); err != nil {
		if stopErr := s.Stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return nil, err
	}
	return s, nil
}

func checkOptions(opts *Options) error {
	if opts.BinDir == "" || opts.StateDir == "" {
		return errors.New("localstack: BinDir and StateDir are required")
	}
	var err error
	if opts.BinDir, err = filepath.Abs(opts.BinDir); err != nil {
		return fmt.Errorf("resolving bin dir: %w", err)
	}
	if opts.StateDir, err = filepath.Abs(opts.StateDir); err != nil {
		return fmt.Errorf("resolving state dir: %w", err)
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 2 * time.Minute
	}
	switch opts.Broker {
	case "":
		opts.Broker = BrokerEmbedded
	case BrokerEmbedded, BrokerKafka:
	default:
		return fmt.Errorf("localstack: unknown broker %q (want %s or %s)", opts.Broker, BrokerEmbedded, BrokerKafka)
	}
	if opts.Broker == BrokerKafka {
		if _, err := kafkabroker.ResolveHome(""); err != nil {
			return fmt.Errorf("localstack: %w", err)
		}
	}
	return CheckBinaries(opts.BinDir)
}

// CheckBinaries reports the first binary the stack needs that binDir lacks,
// with the make target that builds it.
func CheckBinaries(binDir string) error {
	for _, name := range requiredBinaries {
		path := filepath.Join(binDir, name)
		info, err := os.Stat(path)
		if err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			return fmt.Errorf("%s is missing or not executable: run `make build controlplane` first", path)
		}
	}
	return nil
}

func (s *Stack) start(ctx context.Context, opts Options) error {
	if err := s.startControlPlane(opts); err != nil {
		return err
	}
	if err := s.writeKubeconfigs(); err != nil {
		return err
	}
	if err := s.bindOperatorRole(ctx, opts.ReadyTimeout); err != nil {
		return err
	}
	startBroker := s.startBroker
	if opts.Broker == BrokerKafka {
		startBroker = s.startKafka
	}
	if err := startBroker(ctx, opts.ReadyTimeout); err != nil {
		return err
	}
	return s.startOperator(ctx, opts)
}

func (s *Stack) startControlPlane(opts Options) error {
	begin := s.begin("starting control plane (etcd, kube-apiserver; CRDs, admission policies, persona roles)")
	f, err := os.OpenFile(s.Path(ControlPlaneLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("creating control plane log: %w", err)
	}
	s.cpLog = f
	env, err := testenv.StartWithOptions(testenv.Options{
		RootDir:      opts.RootDir,
		AssetsDir:    s.BinDir,
		EtcdDataDir:  s.Path(etcdDataDir),
		Output:       f,
		StartTimeout: opts.ReadyTimeout,
		// Kafka validates ServiceAccount tokens against the API server's
		// JWKS, without Kubernetes credentials.
		PublicIssuerDiscovery: opts.Broker == BrokerKafka,
	})
	if err != nil {
		return fmt.Errorf("starting control plane (log: %s): %w", s.Path(ControlPlaneLog), err)
	}
	s.Env, s.RootDir = env, env.RootDir
	s.ready(begin)
	return nil
}

// writeKubeconfigs writes one kubeconfig per identity: the admin, the
// personas and the operator.
func (s *Stack) writeKubeconfigs() error {
	if err := s.Env.WriteKubeconfig(s.Path(AdminKubeconfig)); err != nil {
		return err
	}
	users := []struct {
		file, name string
		groups     []string
	}{
		{Kubeconfig(Requester), Requester, []string{testenv.RequestersGroup}},
		{Kubeconfig(Reviewer), Reviewer, []string{testenv.ReviewersGroup}},
		{operatorKubeconfig, OperatorUser, nil},
	}
	for _, u := range users {
		if err := s.Env.WriteUserKubeconfig(s.Path(u.file), u.name, u.groups...); err != nil {
			return err
		}
	}
	s.say("wrote kubeconfigs: %s (admin), %s (%s), %s (%s), %s",
		AdminKubeconfig, Kubeconfig(Requester), testenv.RequestersGroup, Kubeconfig(Reviewer), testenv.ReviewersGroup, operatorKubeconfig)
	return nil
}

// Kubeconfig is the file name of user's kubeconfig in the state dir.
func Kubeconfig(user string) string { return user + ".kubeconfig" }

// Path is name inside the state dir.
func (s *Stack) Path(name ...string) string {
	return filepath.Join(append([]string{s.StateDir}, name...)...)
}

// KubeconfigPath is the path of user's kubeconfig ("admin" for the admin's).
func (s *Stack) KubeconfigPath(user string) string {
	if user == testenv.AdminUser {
		return s.Path(AdminKubeconfig)
	}
	return s.Path(Kubeconfig(user))
}

// Stop ends the operator, then the broker (with SIGINT, so it writes its
// data dir), then the control plane. It is safe to call more than once.
func (s *Stack) Stop() error {
	s.stopOnce.Do(func() {
		var errs []error
		if s.operator != nil {
			errs = append(errs, s.stopProcess(s.operator, 45*time.Second))
		}
		if s.broker != nil {
			errs = append(errs, s.stopProcess(s.broker, 30*time.Second))
		}
		if s.kafka != nil {
			begin := s.begin("stopping broker (" + s.BrokerName + ")")
			err := s.kafka.Stop()
			errs = append(errs, err)
			if err == nil {
				s.done(begin, "stopped")
			} else {
				_, _ = fmt.Fprintln(s.progress, "failed")
			}
		}
		if s.Env != nil {
			begin := s.begin("stopping control plane")
			err := s.Env.Stop()
			errs = append(errs, err)
			if err == nil {
				s.done(begin, "stopped")
			}
		}
		if s.cpLog != nil {
			errs = append(errs, s.cpLog.Close())
		}
		s.stopErr = errors.Join(errs...)
	})
	return s.stopErr
}

func (s *Stack) stopProcess(p *process, timeout time.Duration) error {
	begin := s.begin("stopping " + p.name)
	if err := p.stop(timeout); err != nil {
		_, _ = fmt.Fprintln(s.progress, "failed")
		return err
	}
	s.done(begin, "stopped")
	return nil
}

// say prints a progress line. Progress is informational: a failing
// writer must not fail the stack.
func (s *Stack) say(format string, args ...any) {
	_, _ = fmt.Fprintf(s.progress, format+"\n", args...)
}

// begin prints the start of a timed progress line; ready or done ends it.
func (s *Stack) begin(what string) time.Time {
	_, _ = fmt.Fprintf(s.progress, "%s ... ", what)
	return time.Now()
}

func (s *Stack) ready(begin time.Time) { s.done(begin, "ready") }

func (s *Stack) done(begin time.Time, word string) {
	_, _ = fmt.Fprintf(s.progress, "%s in %s\n", word, Elapsed(begin))
}

// Elapsed is the time since begin, rounded for a person to read: 40ms,
// 1.3s, 2m5s.
func Elapsed(begin time.Time) time.Duration {
	d := time.Since(begin)
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}

// Environ is the environment for processes the stack or its users start:
// the caller's, minus KUBECONFIG and HMSBUS_* (so nothing from the user's
// shell picks another cluster or other credentials), plus extra.
func Environ(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "KUBECONFIG=") || strings.HasPrefix(kv, "HMSBUS_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}
