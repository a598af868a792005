package kafka

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/hms-platform/bus-operator/test/harness/brokers"
)

// The tests share one broker under test (HMSBUS_TEST_BROKER: the embedded
// kfake cluster of 3 nodes, or a single Apache Kafka node; SASL/SCRAM and
// ACLs on either way) and one admin client; each test names its own topics,
// users and principals.
var (
	broker *brokers.Broker
	admin  *Client
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	var err error
	broker, err = brokers.Start(brokers.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = broker.Close() }()
	admin, err = New(context.Background(), adminConfig(broker))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer admin.Close()
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "--- last lines of the %s log ---\n%s\n", broker.Name(), broker.LogTail(60))
	}
	return code
}

// adminConfig is the adapter's configuration for b's admin, with the SCRAM
// iterations b verifies (kfake only 4096; Kafka 8192 here, to prove a
// count above the minimum reaches the broker and logs in).
func adminConfig(b *brokers.Broker) Config {
	return Config{
		Bootstrap:       b.Bootstrap(),
		Mechanism:       b.Mechanism(),
		Username:        b.AdminUser,
		Password:        b.AdminPassword,
		TLS:             b.BootstrapTLS(),
		RequestTimeout:  10 * time.Second,
		SCRAMIterations: b.SCRAMIterations(),
	}
}

// testCtx is a context bounded well below the test timeout.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var nameSeq atomic.Int64

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9-]+`)

// uniqueName is a topic, user or principal name no other test uses.
func uniqueName(t testing.TB, prefix string) string {
	return fmt.Sprintf("%s-%s-%d", prefix, unsafeName.ReplaceAllString(t.Name(), "-"), nameSeq.Add(1))
}

// newClient is a client of the shared broker with cfg's changes applied.
func newClient(t testing.TB, change func(*Config)) *Client {
	t.Helper()
	return newClientOf(t, broker, change)
}

// newClientOf is a client of b with cfg's changes applied.
func newClientOf(t testing.TB, b *brokers.Broker, change func(*Config)) *Client {
	t.Helper()
	cfg := adminConfig(b)
	if change != nil {
		change(&cfg)
	}
	c, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// observation counts the requests of one kind the shared broker receives
// from the moment observe is called.
type observation struct {
	key    kmsg.Key
	before brokers.Counts
}

// observe starts counting requests of one kind: on both brokers, through
// the harness's request counts (kfake's own counter, a proxy for Kafka).
func observe(_ testing.TB, key kmsg.Key) *observation {
	return &observation{key: key, before: broker.Requests()}
}

// Hits is the number of requests of the key since observe.
func (o *observation) Hits() int {
	return broker.Requests().Minus(o.before).Of(o.key)
}

// faultBroker is a broker that can be told to answer as a healthy broker
// never does on demand (kfake's fault hooks): the shared one when it is
// kfake, else a private one-node kfake for this test. What it proves is
// the client's handling of such an answer, not a broker's behaviour; the
// Kafka tier proves the real answers elsewhere (for example
// TestInvalidConfigRejectedByTheBroker).
func faultBroker(t testing.TB) *brokers.Broker {
	t.Helper()
	if broker.Kfake() != nil {
		return broker
	}
	return brokers.StartT(t, brokers.Options{Kind: brokers.Embedded, Nodes: 1})
}
