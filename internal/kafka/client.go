package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// SASL mechanisms Config accepts.
const (
	MechanismSCRAMSHA512 = "SCRAM-SHA-512"
	MechanismSCRAMSHA256 = "SCRAM-SHA-256"
	MechanismPlain       = "PLAIN"
)

// Defaults for the zero values of Config.
const (
	DefaultClientID       = "hms-bus-operator"
	DefaultRequestTimeout = 15 * time.Second
	DefaultBatchWindow    = 3 * time.Millisecond
	DefaultBatchMax       = 256
)

// Config says how to reach and authenticate to the broker.
type Config struct {
	// Bootstrap are host:port addresses of some brokers.
	Bootstrap []string
	// Mechanism is the SASL mechanism (MechanismSCRAMSHA512, ...), or
	// empty for no SASL.
	Mechanism string
	Username  string
	Password  string
	// TLS, if set, is used for every broker connection.
	TLS *tls.Config
	// ClientID names the operator in broker logs and quotas.
	ClientID string
	// RequestTimeout bounds each admin request and Append, retries
	// included, so an unreachable broker turns into ErrUnavailable
	// rather than a reconciler stuck forever.
	RequestTimeout time.Duration
	// BatchWindow is how long a call waits for concurrent calls of the
	// same kind to share its request; BatchMax sends a batch early.
	BatchWindow time.Duration
	BatchMax    int
	// SCRAMIterations is the PBKDF2 iteration count of credentials
	// UpsertSCRAM creates (default DefaultSCRAMIterations, clamped to
	// Kafka's 4096..16384). The embedded kfake broker only verifies
	// 4096-iteration credentials (it always announces 4096 to clients),
	// so set MinSCRAMIterations when the operator targets it.
	SCRAMIterations int
}

// String renders the config for logs, without the password.
func (c Config) String() string {
	return fmt.Sprintf("bootstrap=%v mechanism=%q user=%q tls=%t clientID=%q requestTimeout=%s",
		c.Bootstrap, c.Mechanism, c.Username, c.TLS != nil, c.ClientID, c.RequestTimeout)
}

// GoString keeps %#v from printing the password too.
func (c Config) GoString() string { return "kafka.Config{" + c.String() + "}" }

func (c Config) withDefaults() Config {
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.BatchWindow <= 0 {
		c.BatchWindow = DefaultBatchWindow
	}
	if c.BatchMax <= 0 {
		c.BatchMax = DefaultBatchMax
	}
	if c.SCRAMIterations == 0 {
		c.SCRAMIterations = DefaultSCRAMIterations
	}
	c.SCRAMIterations = min(max(c.SCRAMIterations, MinSCRAMIterations), MaxSCRAMIterations)
	return c
}

func (c Config) saslMechanism() (sasl.Mechanism, error) {
	if c.Mechanism == "" {
		return nil, nil
	}
	if c.Username == "" {
		return nil, fmt.Errorf("SASL mechanism %s needs a username", c.Mechanism)
	}
	switch c.Mechanism {
	case MechanismSCRAMSHA512:
		return scram.Auth{User: c.Username, Pass: c.Password}.AsSha512Mechanism(), nil
	case MechanismSCRAMSHA256:
		return scram.Auth{User: c.Username, Pass: c.Password}.AsSha256Mechanism(), nil
	case MechanismPlain:
		return plain.Auth{User: c.Username, Pass: c.Password}.AsMechanism(), nil
	default:
		return nil, fmt.Errorf("unknown SASL mechanism %q (want %s, %s or %s)", c.Mechanism, MechanismSCRAMSHA512, MechanismSCRAMSHA256, MechanismPlain)
	}
}

// Client is the broker adapter: one franz-go client shared by every
// reconciler, with concurrent topic calls batched into shared requests.
type Client struct {
	cfg Config
	cl  *kgo.Client
	adm *kadm.Client

	describes  *batcher[[]string, map[string]Topic]
	creates    *batcher[NewTopic, Topic]
	alters     *batcher[topicAlter, struct{}]
	partitions *batcher[partitionCount, struct{}]
	sec        *securityBatchers
	// recent overlays this client's own writes on what describes answer
	// for a few seconds (see recent.go).
	recent *recentWrites
}

var _ Admin = (*Client)(nil)

// New builds a client. It does not contact the broker: connections are
// made on first use, so the operator starts (and reports the broker
// unreachable) even while the broker is down. Use Ping to check.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(cfg.Bootstrap) == 0 {
		return nil, errors.New("kafka config: no bootstrap brokers")
	}
	cfg = cfg.withDefaults()
	mech, err := cfg.saslMechanism()
	if err != nil {
		return nil, fmt.Errorf("kafka config: %w", err)
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Bootstrap...),
		kgo.ClientID(cfg.ClientID),
		kgo.DialTimeout(min(cfg.RequestTimeout, 10*time.Second)),
		kgo.RetryTimeout(cfg.RequestTimeout),
		// Appends go through the idempotent producer (kgo's default with
		// acks=all): the client's own retries never duplicate an audit
		// record. See Append for what that means on timeouts.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(cfg.RequestTimeout),
		kgo.ProducerLinger(0),
		// An append to a missing topic is retried over a few metadata
		// refreshes before it fails as unknown; with kgo's default 5s
		// between refreshes that verdict could arrive after the delivery
		// timeout, so a missing topic looked like an unreachable broker.
		kgo.MetadataMinAge(250 * time.Millisecond),
	}
	if mech != nil {
		opts = append(opts, kgo.SASL(mech))
	}
	if cfg.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(cfg.TLS.Clone()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("creating kafka client: %w", err)
	}
	c := &Client{cfg: cfg, cl: cl, adm: kadm.NewClient(cl)}
	c.describes = newBatcher(cfg.BatchWindow, cfg.BatchMax, c.describeBatch)
	c.creates = newBatcher(cfg.BatchWindow, cfg.BatchMax, c.createBatch)
	c.alters = newBatcher(cfg.BatchWindow, cfg.BatchMax, c.alterBatch)
	c.partitions = newBatcher(cfg.BatchWindow, cfg.BatchMax, c.partitionsBatch)
	c.sec = newSecurityBatchers(c, cfg)
	c.recent = newRecentWrites(recentWritesTTL)
	return c, nil
}

// Close closes the broker connections.
func (c *Client) Close() { c.cl.Close() }

// timeout bounds one request by the configured request timeout.
func (c *Client) timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cfg.RequestTimeout)
}

// Ping checks the broker answers and our credentials work: a metadata
// request for no topics needs an authenticated connection and no ACL.
func (c *Client) Ping(ctx context.Context) error {
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	req := kmsg.NewPtrMetadataRequest()
	req.Topics = []kmsg.MetadataRequestTopic{}
	if _, err := req.RequestWith(ctx, c.cl); err != nil {
		return opErr("pinging broker", classify(err, ""))
	}
	return nil
}

// Append produces one record and waits until all in-sync replicas have it,
// or until ctx or the request timeout ends.
//
// The producer is idempotent: its own retries never write a record twice.
// For the same reason it never abandons a record that may already be on the
// wire, so when Append returns ErrUnavailable such a record is still written
// once the broker is back (a record not yet sent is dropped). A caller that
// retries may then write the event twice; records should carry an event ID
// so readers can drop the copy.
func (c *Client) Append(ctx context.Context, topic string, key, value []byte) error {
	op := "appending to topic " + topic
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	done := make(chan error, 1) // the callback must never block kgo
	c.cl.Produce(ctx, &kgo.Record{Topic: topic, Key: key, Value: value}, func(_ *kgo.Record, err error) {
		done <- err
	})
	select {
	case err := <-done:
		return opErr(op, classify(err, ""))
	case <-ctx.Done():
		return opErr(op, classify(ctx.Err(), ""))
	}
}

// TLSConfigFromCAFile returns a TLS config trusting the PEM certificates in
// path (and nothing else), for brokers with a private CA.
func TLSConfigFromCAFile(path string) (*tls.Config, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading CA file %s: %w", path, err)
	}
	cfg, err := TLSConfigFromPEM(pem)
	if err != nil {
		return nil, fmt.Errorf("CA file %s: %w", path, err)
	}
	return cfg, nil
}

// TLSConfigFromPEM returns a TLS config that trusts the PEM CA bundle.
func TLSConfigFromPEM(pem []byte) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("holds no PEM certificate")
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}
