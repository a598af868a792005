package kafka

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hms-platform/bus-operator/test/harness/embedded"
)

// The tests share one embedded broker (3 nodes, SASL/SCRAM and ACLs on) and
// one admin client; each test names its own topics, users and principals.
var (
	broker *embedded.Broker
	admin  *Client
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	var err error
	broker, err = embedded.Start(embedded.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer broker.Close()
	admin, err = New(context.Background(), adminConfig(broker))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer admin.Close()
	return m.Run()
}

func adminConfig(b *embedded.Broker) Config {
	return Config{
		Bootstrap:      b.Addrs(),
		Mechanism:      embedded.AdminMechanism,
		Username:       b.AdminUser,
		Password:       b.AdminPassword,
		RequestTimeout: 10 * time.Second,
		// kfake verifies only 4096-iteration SCRAM credentials.
		SCRAMIterations: MinSCRAMIterations,
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
	cfg := adminConfig(broker)
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
