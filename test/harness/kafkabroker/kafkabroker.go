// Package kafkabroker runs Apache Kafka itself (4.x, single node, KRaft)
// for tests: the jars `make kafka` fetched into bin/kafka/libs, started on
// the machine's Java with the security production uses: SCRAM users
// bootstrapped at storage format, the StandardAuthorizer with nothing
// allowed without an ACL, a SASL_SSL listener and an mTLS listener whose
// certificates come from a CA made here. It complements test/harness/embedded
// (franz-go's kfake: fast, but lenient where Kafka is strict).
//
// Start returns once the broker answers an authenticated Metadata request
// and lists itself; Stop, Kill, Restart and RestartEmpty drive the faults
// tests need. The log (Kafka's own, at INFO) is in LogPath; LogOnFailure
// prints its tail when a test fails.
package kafkabroker

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// loopback is the only address the broker listens on.
const loopback = "127.0.0.1"

// AdminMechanism is the mechanism AdminOpts log in with; the admin has
// SCRAM-SHA-256 credentials too.
const AdminMechanism = "SCRAM-SHA-512"

// defaultJVMArgs favour start-up time and a small footprint over
// throughput: a test broker lives for seconds to minutes and moves little
// data. C1 only (TieredStopAtLevel=1) compiles fast enough for that, and
// the serial collector needs no GC threads on a 2-core machine.
var defaultJVMArgs = []string{
	"-Xms64m", "-Xmx512m",
	"-XX:+UseSerialGC",
	"-XX:TieredStopAtLevel=1",
	"-XX:+ExitOnOutOfMemoryError",
	"-XX:-UsePerfData", // no hsperfdata files left in /tmp
	"-Djava.awt.headless=true",
}

// Options configures a broker. The zero value is a complete broker on free
// loopback ports in a temporary directory.
type Options struct {
	// Dir holds the broker's configuration, certificates, data and log. If
	// empty, a temporary directory is made and Close removes it. A Dir that
	// already holds formatted data is started as it is (the admin password
	// is read back from Dir/admin-password unless AdminPassword is set).
	Dir string
	// Home is the directory holding libs/ with Kafka's jars; default
	// $HMSBUS_KAFKA_HOME, else <repo>/bin/kafka (written by make kafka).
	Home string
	// Java is the java binary; default $JAVA_HOME/bin/java, else PATH.
	Java string

	// AdminUser (default "admin") is a super user with SCRAM-SHA-512 and
	// SCRAM-SHA-256 credentials made at storage format time; an empty
	// AdminPassword gets a random one.
	AdminUser     string
	AdminPassword string
	// ExtraSuperUsers are more super.users principals ("User:x").
	ExtraSuperUsers []string

	// ListenerPorts fixes a listener's port by name (ListenerClient, ...,
	// or an extra listener's); the others get free ports. Ports are kept
	// across restarts either way.
	ListenerPorts map[string]int
	// AdvertisedHost is the host every listener advertises (default
	// 127.0.0.1); it is added to the server certificate.
	AdvertisedHost string
	// Advertised overrides one listener's advertised host:port, for a proxy
	// in front of it (see brokerproxy.StartKafka): clients bootstrap
	// anywhere and then connect where the broker says it is.
	Advertised map[string]string

	// ClientCAPEM is the PEM bundle of CAs whose client certificates the
	// MTLS listener accepts; empty means the launcher's own CA (Broker.CA).
	ClientCAPEM []byte
	// ExtraListeners are added after the built-in ones.
	ExtraListeners []Listener
	// ExtraProperties are written to server.properties last, so they
	// override anything the launcher sets.
	ExtraProperties map[string]string
	// ExtraJVMArgs come after the launcher's JVM options (so -Xmx here
	// wins) and before the main class.
	ExtraJVMArgs []string
	// OAuth, when set, adds ListenerOAuth: SASL_SSL with OAUTHBEARER
	// tokens checked by Kafka's built-in validator (see oauth.go).
	OAuth *OAuth

	// StartTimeout bounds each start, from launching java until ready
	// (default 2 minutes: a cold JVM on a busy 2-core machine).
	StartTimeout time.Duration
	// StopTimeout is how long Stop waits after SIGTERM before it kills
	// (default 60s: a controlled shutdown writes to the metadata log and
	// fsyncs, which a busy machine can stretch to tens of seconds).
	StopTimeout time.Duration
}

// Listener is an extra listener, e.g. SASL_SSL with OAUTHBEARER validating
// Kubernetes ServiceAccount tokens.
type Listener struct {
	// Name is upper case, like Kafka's listener names ("OAUTH").
	Name string
	// SecurityProtocol is PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL. SSL
	// ones serve the broker certificate unless Properties set a keystore.
	SecurityProtocol string
	// Properties are scoped to the listener: each key k is written as
	// listener.name.<name lower case>.k, for example
	// "sasl.enabled.mechanisms" or "oauthbearer.sasl.jaas.config".
	Properties map[string]string
}

// Broker is a running (or stopped, restartable) Kafka broker.
type Broker struct {
	// AdminUser and AdminPassword are the super user's SCRAM credentials.
	AdminUser     string
	AdminPassword string

	opts      Options
	home      string
	java      string
	version   string
	dir       string
	ownsDir   bool
	clusterID string
	ca        *CA
	ports     map[string]int
	// The internal user authenticates the broker to its own controller and
	// inter-broker listeners. Its name is random so no SCRAM user an admin
	// creates can share the super user principal.
	internalUser     string
	internalPassword string

	mu          sync.Mutex
	proc        *process
	lastStartup time.Duration
}

var (
	listenerName = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)
	userName     = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
)

// Start formats storage (unless Dir holds formatted data) and starts the
// broker, returning once it serves authenticated requests.
func Start(o Options) (*Broker, error) {
	b, err := prepare(o)
	if err != nil {
		return nil, fmt.Errorf("starting kafka: %w", err)
	}
	if err := b.start(false); err != nil {
		b.cleanup()
		return nil, fmt.Errorf("starting kafka: %w", err)
	}
	return b, nil
}

// prepare resolves the jars, makes the directory, certificates, ports and
// secrets; nothing runs yet.
func prepare(o Options) (*Broker, error) {
	if o.AdminUser == "" {
		o.AdminUser = "admin"
	}
	if !userName.MatchString(o.AdminUser) {
		return nil, fmt.Errorf("admin user %q: use letters, digits, '.', '_' and '-'", o.AdminUser)
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 2 * time.Minute
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = time.Minute
	}
	o, err := withOAuth(o)
	if err != nil {
		return nil, err
	}
	for _, l := range o.ExtraListeners {
		if !listenerName.MatchString(l.Name) {
			return nil, fmt.Errorf("extra listener name %q: use upper-case letters, digits and '_'", l.Name)
		}
		if slices.Contains([]string{ListenerClient, ListenerTLS, ListenerMTLS, ListenerInternal, ListenerController}, l.Name) {
			return nil, fmt.Errorf("extra listener %s: the name is a built-in listener's", l.Name)
		}
		if !slices.Contains([]string{"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}, l.SecurityProtocol) {
			return nil, fmt.Errorf("extra listener %s: security protocol %q is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL", l.Name, l.SecurityProtocol)
		}
	}
	home, err := ResolveHome(o.Home)
	if err != nil {
		return nil, err
	}
	java, err := javaBinary(o.Java)
	if err != nil {
		return nil, err
	}
	version, err := HomeVersion(home)
	if err != nil {
		return nil, err
	}
	b := &Broker{opts: o, home: home, java: java, version: version, AdminUser: o.AdminUser}
	if o.Dir == "" {
		// A short path: Kafka's segment and index file names are long.
		d, err := os.MkdirTemp("", "kafka-")
		if err != nil {
			return nil, fmt.Errorf("making broker directory: %w", err)
		}
		b.dir, b.ownsDir = d, true
	} else {
		d, err := filepath.Abs(o.Dir)
		if err != nil {
			return nil, fmt.Errorf("resolving broker directory: %w", err)
		}
		b.dir = d
	}
	if err := b.prepareDir(); err != nil {
		b.cleanup()
		return nil, err
	}
	return b, nil
}

func (b *Broker) prepareDir() error {
	if err := os.MkdirAll(filepath.Join(b.dir, "tls"), 0o700); err != nil {
		return fmt.Errorf("making broker directory: %w", err)
	}
	if err := b.loadOrCreateSecrets(); err != nil {
		return err
	}
	ca, err := NewCA("hms-bus kafka test CA")
	if err != nil {
		return err
	}
	b.ca = ca
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h := b.opts.AdvertisedHost; h != "" && !slices.Contains(hosts, h) {
		hosts = append(hosts, h)
	}
	server, err := ca.serverPEM(hosts)
	if err != nil {
		return err
	}
	clientCAs := b.opts.ClientCAPEM
	if len(clientCAs) == 0 {
		clientCAs = ca.CertPEM()
	}
	for name, data := range map[string][]byte{"server.pem": server, "ca.pem": ca.CertPEM(), "client-ca.pem": clientCAs} {
		if err := os.WriteFile(filepath.Join(b.dir, "tls", name), data, 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
	}
	if err := os.WriteFile(filepath.Join(b.dir, "log4j2.properties"), []byte(log4jConfig), 0o600); err != nil {
		return fmt.Errorf("writing log4j2.properties: %w", err)
	}
	return b.assignPorts()
}

// loadOrCreateSecrets sets the admin password (kept in a 0600 file, so a
// Dir can be started again) and the internal user, and reads the cluster
// ID of formatted data or makes a new one.
func (b *Broker) loadOrCreateSecrets() error {
	pwPath := filepath.Join(b.dir, "admin-password")
	switch {
	case b.opts.AdminPassword != "":
		b.AdminPassword = b.opts.AdminPassword
	default:
		if data, err := os.ReadFile(pwPath); err == nil && b.formatted() {
			b.AdminPassword = strings.TrimSpace(string(data))
		} else {
			pw, err := randomToken(32)
			if err != nil {
				return err
			}
			b.AdminPassword = pw
		}
	}
	if err := os.WriteFile(pwPath, []byte(b.AdminPassword+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing admin password file: %w", err)
	}
	suffix := make([]byte, 6)
	if _, err := rand.Read(suffix); err != nil {
		return fmt.Errorf("generating internal user name: %w", err)
	}
	b.internalUser = "internal_" + hex.EncodeToString(suffix)
	pw, err := randomToken(32)
	if err != nil {
		return err
	}
	b.internalPassword = pw
	if b.formatted() {
		f, err := os.Open(filepath.Join(b.dataDir(), "meta.properties"))
		if err != nil {
			return fmt.Errorf("reading meta.properties: %w", err)
		}
		defer func() { _ = f.Close() }()
		id, err := propertyValue(f, "cluster.id")
		if err != nil {
			return fmt.Errorf("reading the cluster ID of %s: %w", b.dataDir(), err)
		}
		b.clusterID = id
		return nil
	}
	id, err := newClusterID()
	if err != nil {
		return err
	}
	b.clusterID = id
	return nil
}

// assignPorts keeps the given ports and picks free loopback ports for the
// rest, holding all the listeners open together so no two coincide.
func (b *Broker) assignPorts() error {
	names := []string{ListenerClient, ListenerTLS, ListenerMTLS, ListenerInternal, ListenerController}
	for _, l := range b.opts.ExtraListeners {
		names = append(names, l.Name)
	}
	b.ports = map[string]int{}
	var held []net.Listener
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	for _, n := range names {
		if p := b.opts.ListenerPorts[n]; p > 0 {
			b.ports[n] = p
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
		if err != nil {
			return fmt.Errorf("finding a free port for listener %s: %w", n, err)
		}
		held = append(held, l)
		b.ports[n] = l.Addr().(*net.TCPAddr).Port
	}
	return nil
}

func (b *Broker) dataDir() string { return filepath.Join(b.dir, "data") }

func (b *Broker) formatted() bool {
	_, err := os.Stat(filepath.Join(b.dataDir(), "meta.properties"))
	return err == nil
}

// start formats storage if needed (wiping it first if empty is set) and
// launches java, waiting until the broker is ready. Callers hold b.mu or
// own b exclusively.
func (b *Broker) start(empty bool) error {
	began := time.Now()
	if empty {
		if err := os.RemoveAll(b.dataDir()); err != nil {
			return fmt.Errorf("wiping %s: %w", b.dataDir(), err)
		}
	}
	cfg, err := b.renderConfig()
	if err != nil {
		return err
	}
	if !b.formatted() {
		if err := b.format(cfg); err != nil {
			return err
		}
	}
	b.logMarker("starting kafka.Kafka")
	args := append(b.jvmArgs(), "kafka.Kafka", cfg)
	p, err := startProcess(b.LogPath(), b.java, args...)
	if err != nil {
		return err
	}
	b.proc = p
	if err := b.waitReady(p); err != nil {
		p.kill()
		return err
	}
	b.lastStartup = time.Since(began)
	b.logMarker(fmt.Sprintf("ready after %s", b.lastStartup.Round(time.Millisecond)))
	return nil
}

func (b *Broker) jvmArgs() []string {
	args := slices.Clone(defaultJVMArgs)
	args = append(args,
		"-Dlog4j2.configurationFile="+filepath.Join(b.dir, "log4j2.properties"),
	)
	args = append(args, b.opts.ExtraJVMArgs...)
	return append(args, "-cp", filepath.Join(b.home, "libs", "*"))
}

// format runs `kafka-storage format` with the admin's SCRAM credentials,
// which is how KRaft gets its first user: there is no ZooKeeper to write
// them to before the broker starts.
func (b *Broker) format(cfg string) error {
	args := append(b.jvmArgs(), "kafka.tools.StorageTool", "format",
		"--config", cfg, "--cluster-id", b.clusterID)
	for _, mech := range ScramMechanisms {
		arg, err := scramArg(mech, b.AdminUser, b.AdminPassword)
		if err != nil {
			return err
		}
		args = append(args, "--add-scram", arg)
	}
	b.logMarker("formatting storage")
	p, err := startProcess(b.LogPath(), b.java, args...)
	if err != nil {
		return fmt.Errorf("formatting storage: %w", err)
	}
	if !p.waitTimeout(b.opts.StartTimeout) {
		p.kill()
		return fmt.Errorf("formatting storage: not done within %s (log: %s)%s", b.opts.StartTimeout, b.LogPath(), b.logTailSuffix())
	}
	if p.waitErr != nil {
		return fmt.Errorf("formatting storage: %w (log: %s)%s", p.waitErr, b.LogPath(), b.logTailSuffix())
	}
	return nil
}

// waitReady polls the CLIENT listener directly (not its advertised
// address, which may be a proxy) until the admin's Metadata request lists
// this broker: by then SCRAM credentials and ACLs are loaded from the
// metadata log and the broker is unfenced.
func (b *Broker) waitReady(p *process) error {
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.StartTimeout)
	defer cancel()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(b.Addr(ListenerClient)),
		kgo.SASL(scram.Auth{User: b.AdminUser, Pass: b.AdminPassword}.AsSha512Mechanism()),
		kgo.DialTimeout(2*time.Second),
	)
	if err != nil {
		return fmt.Errorf("making readiness client: %w", err)
	}
	defer cl.Close()
	seed := cl.SeedBrokers()[0]
	var last error
	for {
		if p.exited() {
			return fmt.Errorf("kafka %s before it was ready (log: %s)%s", p.exitDescription(), b.LogPath(), b.logTailSuffix())
		}
		rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
		resp, err := seed.Request(rctx, kmsg.NewPtrMetadataRequest())
		rcancel()
		switch {
		case err != nil:
			last = err
		case len(resp.(*kmsg.MetadataResponse).Brokers) > 0:
			return nil
		default:
			last = errors.New("metadata lists no broker yet")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafka not ready within %s: %w (log: %s)%s", b.opts.StartTimeout, last, b.LogPath(), b.logTailSuffix())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop shuts the broker down gracefully (SIGTERM, then waits; it kills the
// broker if it has not stopped within Options.StopTimeout). Its directory
// stays, so Restart can start it again.
func (b *Broker) Stop() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stopLocked()
}

func (b *Broker) stopLocked() error {
	if b.proc == nil {
		return nil
	}
	b.logMarker("stopping (SIGTERM)")
	err := b.proc.terminate(b.opts.StopTimeout)
	b.proc = nil
	if err != nil {
		return fmt.Errorf("stopping kafka: %w (log: %s)", err, b.LogPath())
	}
	return nil
}

// Kill SIGKILLs the broker, as a crash or a lost machine would end it, and
// waits until it is gone. Restart brings it back with its data.
func (b *Broker) Kill() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.proc == nil {
		return
	}
	b.logMarker("killing (SIGKILL)")
	b.proc.kill()
	b.proc = nil
}

// Restart stops the broker gracefully if it runs (killing it if it does
// not stop within StopTimeout) and starts it again on the same ports with
// its data, returning once it is ready.
func (b *Broker) Restart() error {
	return b.restart(false)
}

// RestartEmpty restarts the broker with its data lost, as after a disk
// loss: topics, records, ACLs and users other than the admin are gone. The
// storage is formatted again with the same cluster ID and the same admin
// SCRAM credentials, so the admin still logs in.
func (b *Broker) RestartEmpty() error {
	return b.restart(true)
}

func (b *Broker) restart(empty bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.stopLocked(); err != nil {
		// The broker was killed after StopTimeout: what a restart needs
		// (the process gone, its data on disk) holds, as after Kill.
		b.logMarker(fmt.Sprintf("restarting after a forced stop: %v", err))
	}
	if err := b.start(empty); err != nil {
		b.proc = nil
		return fmt.Errorf("restarting kafka: %w", err)
	}
	return nil
}

// Close stops the broker and removes its directory if Start made it.
func (b *Broker) Close() error {
	err := b.Stop()
	b.cleanup()
	return err
}

func (b *Broker) cleanup() {
	if b.ownsDir {
		_ = os.RemoveAll(b.dir)
	}
}

// Running reports whether the broker process is up (it may still be
// starting or stopping).
func (b *Broker) Running() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.proc != nil && !b.proc.exited()
}

// Addr is the address listener listens on (127.0.0.1:port).
func (b *Broker) Addr(listener string) string {
	return net.JoinHostPort(loopback, strconv.Itoa(b.ports[listener]))
}

// AdvertisedAddr is the address listener advertises to clients: its
// Options.Advertised override, else AdvertisedHost (or 127.0.0.1) and its
// port.
func (b *Broker) AdvertisedAddr(listener string) string {
	if a := b.opts.Advertised[listener]; a != "" {
		return a
	}
	host := b.opts.AdvertisedHost
	if host == "" {
		host = loopback
	}
	return net.JoinHostPort(host, strconv.Itoa(b.ports[listener]))
}

// Bootstrap is the address SCRAM clients use (the CLIENT listener's
// advertised address).
func (b *Broker) Bootstrap() string { return b.AdvertisedAddr(ListenerClient) }

// Addrs are the SCRAM clients' bootstrap addresses, as embedded.Broker has.
func (b *Broker) Addrs() []string { return []string{b.Bootstrap()} }

// TLSBootstrap is the SASL_SSL listener's address.
func (b *Broker) TLSBootstrap() string { return b.AdvertisedAddr(ListenerTLS) }

// MTLSBootstrap is the mTLS listener's address.
func (b *Broker) MTLSBootstrap() string { return b.AdvertisedAddr(ListenerMTLS) }

// CA is the launcher's CA: it signed the server certificate, and, when
// Options.ClientCAPEM is empty, client certificates the MTLS listener takes.
func (b *Broker) CA() *CA { return b.ca }

// CAPEM is the PEM certificate clients trust for the TLS listeners.
func (b *Broker) CAPEM() []byte { return b.ca.CertPEM() }

// TLSConfig trusts the broker's CA; add Certificates for the MTLS listener.
func (b *Broker) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: b.ca.Pool()}
}

// AdminOpts are kgo options for the admin on the CLIENT listener.
func (b *Broker) AdminOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(b.Bootstrap()),
		kgo.SASL(scram.Auth{User: b.AdminUser, Pass: b.AdminPassword}.AsSha512Mechanism()),
	}
}

// ClusterID is the KRaft cluster ID storage was formatted with.
func (b *Broker) ClusterID() string { return b.clusterID }

// Version is the Kafka version the broker runs (from its jars).
func (b *Broker) Version() string { return b.version }

// Dir is the broker's directory.
func (b *Broker) Dir() string { return b.dir }

// LogPath is the broker's log file: Kafka's log plus the launcher's
// markers for each format, start and stop.
func (b *Broker) LogPath() string { return filepath.Join(b.dir, "kafka.log") }

// LogTail returns the last n lines of the log.
func (b *Broker) LogTail(n int) string { return tailFile(b.LogPath(), n) }

// LastStartup is how long the last (re)start took, storage format included,
// until the broker was ready.
func (b *Broker) LastStartup() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastStartup
}

// TB is the part of testing.TB that LogOnFailure uses.
type TB interface {
	Helper()
	Cleanup(func())
	Failed() bool
	Logf(format string, args ...any)
}

// LogOnFailure prints the last lines of the broker log when t has failed,
// at the end of t.
func (b *Broker) LogOnFailure(t TB) {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- last 80 lines of %s ---\n%s", b.LogPath(), b.LogTail(80))
		}
	})
}

func (b *Broker) logTailSuffix() string {
	tail := b.LogTail(30)
	if tail == "" {
		return ""
	}
	return "\n--- last lines of " + b.LogPath() + " ---\n" + tail
}

// logMarker writes a launcher line into the log, so a reader sees where a
// restart or a kill happened.
func (b *Broker) logMarker(msg string) {
	f, err := os.OpenFile(b.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	defer func() { _ = f.Close() }()
	_, _ = fmt.Fprintf(f, "[%s] ===== kafkabroker: %s =====\n", time.Now().Format("15:04:05.000"), msg)
}

func randomToken(n int) (string, error) {
	buf := make([]byte, n)
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("generating secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(buf), nil
}

// newClusterID makes a random KRaft cluster ID: a UUID in Kafka's form
// (22 characters of unpadded URL-safe base64). Kafka avoids IDs starting
// with '-' because command-line tools would read them as flags.
func newClusterID() (string, error) {
	for {
		id, err := randomToken(16)
		if err != nil {
			return "", err
		}
		if !strings.HasPrefix(id, "-") {
			return id, nil
		}
	}
}
