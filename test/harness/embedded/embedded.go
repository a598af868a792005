// Package embedded runs the embedded event-bus broker: franz-go's kfake
// cluster, which speaks the real Kafka wire protocol, with SASL/SCRAM and ACL
// enforcement switched on. It backs `hmsbus-broker`, `make demo` and the
// integration tests; production points the operator at a real cluster.
package embedded

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/twmb/franz-go/pkg/kfake"
)

// AdminMechanism is the SASL mechanism of the broker's superuser.
const AdminMechanism = "SCRAM-SHA-512"

// Options configures an embedded broker.
type Options struct {
	// Brokers is the number of brokers in the cluster (default 3, so
	// replication factor 3 topics can be created).
	Brokers int
	// Ports to listen on, one per broker; empty picks free ports.
	Ports []int
	// AdminUser and AdminPassword are the superuser's SCRAM credentials.
	// An empty password gets a random one.
	AdminUser     string
	AdminPassword string
	// DataDir, if set, persists topics, records, users and ACLs there and
	// reloads them on the next start.
	DataDir string
	// TLS, if set, makes every listener speak TLS (see SelfSignedTLS).
	TLS *tls.Config
	// Logger receives the broker's own log lines (nil discards them).
	Logger kfake.Logger
	// LogLevel of those lines.
	LogLevel kfake.LogLevel
}

// Broker is a running embedded cluster.
type Broker struct {
	cluster       *kfake.Cluster
	AdminUser     string
	AdminPassword string
}

// Start starts a broker. Close it to persist state and free its ports.
func Start(o Options) (*Broker, error) {
	if o.AdminUser == "" {
		o.AdminUser = "admin"
	}
	if o.AdminPassword == "" {
		pw, err := RandomPassword()
		if err != nil {
			return nil, err
		}
		o.AdminPassword = pw
	}
	brokers := o.Brokers
	if brokers <= 0 {
		brokers = 3
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(brokers),
		kfake.ClusterID("hms-bus-embedded"),
		kfake.EnableSASL(),
		kfake.EnableACLs(),
		kfake.Superuser(AdminMechanism, o.AdminUser, o.AdminPassword),
	}
	if len(o.Ports) > 0 {
		opts = append(opts, kfake.Ports(o.Ports...))
	}
	if o.DataDir != "" {
		if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("creating broker data dir %s: %w", o.DataDir, err)
		}
		opts = append(opts, kfake.DataDir(o.DataDir))
	}
	if o.TLS != nil {
		opts = append(opts, kfake.TLS(o.TLS))
	}
	if o.Logger != nil {
		opts = append(opts, kfake.WithLogger(levelLogger{o.Logger, o.LogLevel}))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("starting embedded broker: %w", err)
	}
	return &Broker{cluster: c, AdminUser: o.AdminUser, AdminPassword: o.AdminPassword}, nil
}

// Addrs are the brokers' host:port addresses.
func (b *Broker) Addrs() []string { return b.cluster.ListenAddrs() }

// Bootstrap is the comma-separated bootstrap address clients use.
func (b *Broker) Bootstrap() string { return strings.Join(b.Addrs(), ",") }

// Cluster exposes the kfake cluster, for tests that inject faults.
func (b *Broker) Cluster() *kfake.Cluster { return b.cluster }

// Close stops the broker, writing its state to the data dir if it has one.
func (b *Broker) Close() { b.cluster.Close() }

// RandomPassword returns a 32-byte random password, URL-safe base64 encoded.
func RandomPassword() (string, error) {
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("generating password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(buf), nil
}

// LoadOrCreatePassword reads a password from path, or creates the file with a
// random password (mode 0600) when it does not exist yet. It lets the broker
// and the operator share the admin secret through a file, never a flag.
func LoadOrCreatePassword(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		pw := strings.TrimSpace(string(b))
		if pw == "" {
			return "", fmt.Errorf("password file %s is empty", path)
		}
		return pw, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("reading password file %s: %w", path, err)
	}
	pw, err := RandomPassword()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("creating directory for %s: %w", path, err)
	}
	if err := os.WriteFile(path, []byte(pw+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("writing password file %s: %w", path, err)
	}
	return pw, nil
}

// levelLogger filters kfake's log lines by level.
type levelLogger struct {
	next  kfake.Logger
	level kfake.LogLevel
}

func (l levelLogger) Logf(level kfake.LogLevel, msg string, args ...any) {
	if level <= l.level {
		l.next.Logf(level, msg, args...)
	}
}
