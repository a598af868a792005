// Package brokers starts "the broker under test" for every broker-facing
// test tier: the embedded kfake broker (test/harness/embedded: fast, the
// default) or Apache Kafka itself (test/harness/kafkabroker: single-node
// KRaft with SCRAM, ACLs and TLS, what users run). One switch chooses, the
// environment variable HMSBUS_TEST_BROKER=embedded|kafka, and both come
// back in one shape: bootstrap addresses, admin credentials, the SCRAM
// iterations credentials must use, the replication factor the cluster can
// hold, request counts by API key, stop/start with data, kill, TLS details
// and the log tail for a failing test.
//
// The package does not import internal/kafka (whose own tests use it), so
// each suite turns AdminUser, AdminPassword, Mechanism and SCRAMIterations
// into its kafka.Config itself.
package brokers

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/hms-platform/bus-operator/test/harness/brokerproxy"
	"github.com/hms-platform/bus-operator/test/harness/embedded"
	"github.com/hms-platform/bus-operator/test/harness/kafkabroker"
)

// Env is the environment variable that chooses the broker under test.
const Env = "HMSBUS_TEST_BROKER"

// ReportEnv, if set, names a file each broker start appends one line to
// (package directory and broker): `make test` prints it, since go test shows
// a passing package's output only with -v.
const ReportEnv = "HMSBUS_TEST_BROKER_REPORT"

// Kind is a broker implementation.
type Kind string

// The brokers a test tier can run against.
const (
	// Embedded is franz-go's kfake with SASL/SCRAM and ACLs on (3 nodes).
	Embedded Kind = "embedded"
	// Kafka is Apache Kafka from bin/kafka (make kafka), one KRaft node.
	Kafka Kind = "kafka"
)

// ErrUnknownKind means HMSBUS_TEST_BROKER names no broker this package runs.
var ErrUnknownKind = errors.New("unknown broker kind")

// Selected is the broker HMSBUS_TEST_BROKER chooses: embedded when unset.
// A value it does not know is an error rather than the default, so a typo
// cannot quietly run the wrong tier.
func Selected() (Kind, error) {
	switch v := strings.TrimSpace(os.Getenv(Env)); v {
	case "", string(Embedded):
		return Embedded, nil
	case string(Kafka):
		return Kafka, nil
	default:
		return "", fmt.Errorf("%w: %s=%q (want %s or %s)", ErrUnknownKind, Env, v, Embedded, Kafka)
	}
}

// Mechanism is the admin's SASL mechanism on both brokers.
const Mechanism = "SCRAM-SHA-512"

// SCRAM iterations of the credentials a suite issues. kfake always tells
// clients 4096, whatever a credential was stored with, so only 4096
// authenticates there; Kafka honours 4096..16384, and the Kafka tier uses
// twice the minimum to prove the operator's iteration setting reaches the
// broker.
const (
	EmbeddedSCRAMIterations = 4096
	KafkaSCRAMIterations    = 8192
)

// Counts are requests per Kafka API key (see brokerproxy.Counts).
type Counts = brokerproxy.Counts

// Options configures Start. The zero value is the selected broker with a
// random admin password.
type Options struct {
	// Kind overrides HMSBUS_TEST_BROKER (empty: Selected()).
	Kind Kind
	// AdminPassword of the super user "admin"; empty is random.
	AdminPassword string
	// Dir keeps the broker's data (and, for Kafka, its configuration and
	// log); empty is a temporary directory removed by Close.
	Dir string
	// Nodes is the embedded cluster's size (default 3). Kafka always runs
	// one node; asking it for more is an error.
	Nodes int
	// Restartable makes an embedded broker restartable with its data
	// (Stop, Start, Restart, Kill): fixed ports and a data directory. Kafka
	// always is.
	Restartable bool
	// TLS makes every embedded listener speak TLS with a private CA. Kafka
	// always has a TLS listener (TLSBootstrap) beside the SASL_PLAINTEXT
	// one, so it ignores this.
	TLS bool
	// ClientCAPEM are the CAs whose client certificates Kafka's mTLS
	// listener accepts (default: the launcher's own CA).
	ClientCAPEM []byte
	// KafkaProperties are extra server.properties for Kafka.
	KafkaProperties map[string]string
	// Quiet leaves out the "broker under test" line (for brokers a test
	// starts besides the package's shared one).
	Quiet bool
}

// Broker is a running broker under test.
type Broker struct {
	// AdminUser and AdminPassword are the super user's SCRAM credentials
	// (mechanism Mechanism).
	AdminUser     string
	AdminPassword string

	kind Kind

	mu sync.Mutex
	// embedded
	emb     *embedded.Broker
	embOpts embedded.Options
	caPEM   []byte
	counter *embedded.RequestCounter
	log     *ringLog
	tmpDir  string // removed by Close
	// kafka
	kb    *kafkabroker.Broker
	proxy *brokerproxy.Proxy
}

// Start starts the broker o (or HMSBUS_TEST_BROKER) chooses and returns
// once it serves authenticated requests.
func Start(o Options) (*Broker, error) {
	kind := o.Kind
	if kind == "" {
		var err error
		if kind, err = Selected(); err != nil {
			return nil, err
		}
	}
	began := time.Now()
	var (
		b   *Broker
		err error
	)
	switch kind {
	case Embedded:
		b, err = startEmbedded(o)
	case Kafka:
		b, err = startKafka(o)
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnknownKind, kind)
	}
	if err != nil {
		return nil, err
	}
	if !o.Quiet {
		Announce(fmt.Sprintf("%s (ready in %s)", b.Name(), time.Since(began).Round(time.Millisecond)))
	}
	return b, nil
}

// StartT starts a broker for one test and closes it when the test ends,
// printing its log tail if the test failed. Prefer one broker per package
// (Start in TestMain): Kafka takes seconds to start.
func StartT(t testing.TB, o Options) *Broker {
	t.Helper()
	o.Quiet = true
	b, err := Start(o)
	if err != nil {
		t.Fatalf("starting the broker under test: %v", err)
	}
	b.LogOnFailure(t)
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Logf("closing broker: %v", err)
		}
	})
	return b
}

// WithTLS returns a broker with a TLS listener whose certificate comes from
// a private CA: b itself when it has one (Kafka always does), else a new
// one-node embedded broker speaking only TLS, closed when t ends.
func (b *Broker) WithTLS(t testing.TB) *Broker {
	t.Helper()
	if len(b.TLSBootstrap()) > 0 {
		return b
	}
	return StartT(t, Options{Kind: Embedded, Nodes: 1, TLS: true})
}

var announceOnce sync.Once

// Announce prints which broker the package runs against ("broker under
// test: <what>"), once per test binary, and appends it to the report file
// if there is one. Start calls it; a package whose broker another program
// starts (the e2e stacks) calls it itself.
func Announce(what string) {
	announceOnce.Do(func() {
		line := "broker under test: " + what
		fmt.Println(line)
		path := os.Getenv(ReportEnv)
		if path == "" {
			return
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintf(os.Stderr, "brokers: writing %s: %v\n", path, err)
			return
		}
		defer func() { _ = f.Close() }()
		_, _ = fmt.Fprintf(f, "%s: %s\n", packageDir(), line)
	})
}

// packageDir is the test's package directory relative to the repository
// root (go test runs a test binary in its package directory).
func packageDir() string {
	wd, err := os.Getwd()
	if err != nil {
		return "?"
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			if rel, err := filepath.Rel(d, wd); err == nil {
				return rel
			}
			return wd
		}
		if filepath.Dir(d) == d {
			return wd
		}
	}
}

// Kind is the broker's implementation.
func (b *Broker) Kind() Kind { return b.kind }

// Name says which broker this is, for people: "Apache Kafka 4.4.0" or
// "embedded kfake".
func (b *Broker) Name() string {
	if b.kind == Kafka {
		return "Apache Kafka " + b.kb.Version()
	}
	return "embedded kfake"
}

// Version is the Apache Kafka version running, "" for the embedded broker.
func (b *Broker) Version() string {
	if b.kind == Kafka {
		return b.kb.Version()
	}
	return ""
}

// Bootstrap are the addresses SCRAM clients connect to (SASL_PLAINTEXT;
// for an embedded broker started with TLS, its TLS listeners).
func (b *Broker) Bootstrap() []string {
	if b.kind == Kafka {
		return []string{b.kb.Bootstrap()}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.embeddedAddrs()
}

// TLSBootstrap are the SASL_SSL listener's addresses; nil for an embedded
// broker started without TLS.
func (b *Broker) TLSBootstrap() []string {
	if b.kind == Kafka {
		return []string{b.kb.TLSBootstrap()}
	}
	if b.caPEM == nil {
		return nil
	}
	return b.Bootstrap()
}

// MTLSBootstrap is Kafka's listener that takes client certificates as the
// identity; nil for the embedded broker, which has none.
func (b *Broker) MTLSBootstrap() []string {
	if b.kind == Kafka {
		return []string{b.kb.MTLSBootstrap()}
	}
	return nil
}

// CAPEM is the CA certificate TLS clients trust; nil without TLS.
func (b *Broker) CAPEM() []byte {
	if b.kind == Kafka {
		return b.kb.CAPEM()
	}
	return b.caPEM
}

// TLSConfig trusts CAPEM, for clients of TLSBootstrap; nil without TLS.
func (b *Broker) TLSConfig() *tls.Config {
	if b.kind == Kafka {
		return b.kb.TLSConfig()
	}
	if b.caPEM == nil {
		return nil
	}
	return tlsConfigFor(b.caPEM)
}

// BootstrapTLS is the TLS configuration a client of Bootstrap needs: nil
// unless the broker is an embedded one started with TLS (Kafka's Bootstrap
// is its SASL_PLAINTEXT listener; TLSConfig goes with TLSBootstrap).
func (b *Broker) BootstrapTLS() *tls.Config {
	if b.kind == Kafka {
		return nil
	}
	return b.TLSConfig()
}

// Mechanism is the admin's SASL mechanism.
func (b *Broker) Mechanism() string { return Mechanism }

// SCRAMIterations is what credentials issued for this broker must use
// (see the constants).
func (b *Broker) SCRAMIterations() int {
	if b.kind == Kafka {
		return KafkaSCRAMIterations
	}
	return EmbeddedSCRAMIterations
}

// Nodes is the number of broker nodes.
func (b *Broker) Nodes() int {
	if b.kind == Kafka {
		return 1
	}
	return b.embOpts.Brokers
}

// ReplicationFactor is the largest replication factor a topic can have
// here: one replica per node.
func (b *Broker) ReplicationFactor() int32 { return int32(b.Nodes()) }

// AdminSASL is the admin's SASL mechanism with its credentials.
func (b *Broker) AdminSASL() sasl.Mechanism {
	return scram.Auth{User: b.AdminUser, Pass: b.AdminPassword}.AsSha512Mechanism()
}

// AdminOpts are kgo options for a client acting as the admin.
func (b *Broker) AdminOpts() []kgo.Opt {
	opts := []kgo.Opt{kgo.SeedBrokers(b.Bootstrap()...), kgo.SASL(b.AdminSASL())}
	if cfg := b.BootstrapTLS(); cfg != nil {
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	return opts
}

// Requests are the requests the broker received so far, by API key, from
// clients that use Bootstrap (Kafka counts through a proxy it advertises;
// its own internal traffic is not counted). Subtract two snapshots for a
// window.
func (b *Broker) Requests() Counts {
	if b.kind == Kafka {
		return b.proxy.Counts()
	}
	return b.counter.Snapshot()
}

// Kfake is the embedded cluster, for tests that inject answers a healthy
// broker never gives on demand; nil for Kafka.
func (b *Broker) Kfake() *kfake.Cluster {
	if b.kind == Kafka {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.emb == nil {
		return nil
	}
	return b.emb.Cluster()
}

// Proxy is the proxy in front of Kafka's client listener (Pause, SetDelay,
// DropConnections); nil for the embedded broker.
func (b *Broker) Proxy() *brokerproxy.Proxy { return b.proxy }

// Kafka is the Apache Kafka launcher's broker; nil for the embedded broker.
func (b *Broker) Kafka() *kafkabroker.Broker { return b.kb }

// Stop shuts the broker down, keeping its data and ports for Start.
func (b *Broker) Stop() error {
	if b.kind == Kafka {
		return b.kb.Stop()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.emb != nil {
		b.emb.Close() // writes the data directory
		b.emb = nil
	}
	return nil
}

// Start starts a stopped broker again with its data, on the same ports.
func (b *Broker) Start() error {
	if b.kind == Kafka {
		return b.kb.Restart()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.emb != nil {
		return nil
	}
	if b.embOpts.DataDir == "" {
		return errors.New("restarting the embedded broker: it was not started Restartable")
	}
	return b.startEmbeddedLocked()
}

// Restart stops the broker and starts it again with its data.
func (b *Broker) Restart() error {
	if err := b.Stop(); err != nil {
		return err
	}
	return b.Start()
}

// RestartEmpty restarts the broker with its data lost, as after a disk
// loss: topics, records, ACLs and SCRAM users other than the admin are
// gone, and it answers on the same addresses with the same admin
// credentials. Kafka is formatted again (see kafkabroker.RestartEmpty); an
// embedded broker, which must have been started Restartable, starts again
// from an emptied data directory.
func (b *Broker) RestartEmpty() error {
	if b.kind == Kafka {
		return b.kb.RestartEmpty()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	dir := b.embOpts.DataDir
	if dir == "" {
		return errors.New("restarting the embedded broker empty: it was not started Restartable")
	}
	if b.emb != nil {
		b.emb.Close()
		b.emb = nil
	}
	// Empty the directory rather than remove it: it may be the caller's
	// (Options.Dir).
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("restarting the embedded broker empty: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("restarting the embedded broker empty: %w", err)
		}
	}
	return b.startEmbeddedLocked()
}

// Kill ends the broker at once, as a crash would; Start brings it back.
// Kafka is SIGKILLed (unflushed data may be lost, and it recovers its log
// on start); kfake has no crash to simulate and is closed.
func (b *Broker) Kill() {
	if b.kind == Kafka {
		b.kb.Kill()
		return
	}
	_ = b.Stop()
}

// Close stops the broker and removes what Start made.
func (b *Broker) Close() error {
	var err error
	if b.kind == Kafka {
		err = b.kb.Close()
		if perr := b.proxy.Close(); perr != nil {
			err = errors.Join(err, perr)
		}
	} else {
		err = b.Stop()
	}
	if b.tmpDir != "" {
		if rerr := os.RemoveAll(b.tmpDir); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	return err
}

// LogTail is the end of the broker's log: Kafka's own log, or the
// embedded broker's warnings and errors.
func (b *Broker) LogTail(lines int) string {
	if b.kind == Kafka {
		return b.kb.LogTail(lines)
	}
	return b.log.tail(lines)
}

// LogPath is Kafka's log file ("" for the embedded broker, which logs to
// memory).
func (b *Broker) LogPath() string {
	if b.kind == Kafka {
		return b.kb.LogPath()
	}
	return ""
}

// TB is the part of testing.TB LogOnFailure uses.
type TB interface {
	Helper()
	Cleanup(func())
	Failed() bool
	Logf(format string, args ...any)
}

// LogOnFailure prints the broker's log tail at the end of t if t failed.
func (b *Broker) LogOnFailure(t TB) {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- last 80 lines of the %s log ---\n%s", b.Name(), b.LogTail(80))
		}
	})
}
