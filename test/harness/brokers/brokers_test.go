package brokers_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/hms-platform/bus-operator/test/harness/brokers"
)

// broker is the package's broker under test (HMSBUS_TEST_BROKER), so the
// harness is itself checked on both brokers.
var broker *brokers.Broker

func TestMain(m *testing.M) {
	var err error
	broker, err = brokers.Start(brokers.Options{Restartable: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := broker.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "closing the broker:", err)
	}
	os.Exit(code)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func adminClient(t *testing.T, b *brokers.Broker) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(append(b.AdminOpts(), kgo.RequestRetries(3))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

func TestSelected(t *testing.T) {
	for value, want := range map[string]brokers.Kind{"": brokers.Embedded, "embedded": brokers.Embedded, "kafka": brokers.Kafka} {
		t.Setenv(brokers.Env, value)
		if got, err := brokers.Selected(); err != nil || got != want {
			t.Errorf("%s=%q: %q, %v; want %q", brokers.Env, value, got, err, want)
		}
	}
	t.Setenv(brokers.Env, "kfake")
	if _, err := brokers.Selected(); !errors.Is(err, brokers.ErrUnknownKind) {
		t.Errorf("an unknown broker: %v, want ErrUnknownKind", err)
	}
}

// TestShape: what every suite relies on holds for the broker under test.
func TestShape(t *testing.T) {
	b := broker
	b.LogOnFailure(t)
	ctx := testCtx(t)
	switch b.Kind() {
	case brokers.Kafka:
		if b.Version() == "" || b.Name() != "Apache Kafka "+b.Version() || b.SCRAMIterations() != brokers.KafkaSCRAMIterations || b.Nodes() != 1 {
			t.Fatalf("kafka: name %q version %q iterations %d nodes %d", b.Name(), b.Version(), b.SCRAMIterations(), b.Nodes())
		}
		if b.Kfake() != nil || b.Proxy() == nil || len(b.MTLSBootstrap()) != 1 || len(b.TLSBootstrap()) != 1 {
			t.Fatal("kafka: no fault hooks, a counting proxy, TLS and mTLS listeners expected")
		}
	case brokers.Embedded:
		if b.Version() != "" || b.Name() != "embedded kfake" || b.SCRAMIterations() != brokers.EmbeddedSCRAMIterations || b.Nodes() != 3 {
			t.Fatalf("embedded: name %q iterations %d nodes %d", b.Name(), b.SCRAMIterations(), b.Nodes())
		}
		if b.Kfake() == nil || b.Proxy() != nil {
			t.Fatal("embedded: fault hooks and no proxy expected")
		}
	}
	adm := adminClient(t, b)
	before := b.Requests()
	topic := fmt.Sprintf("shape-%d", time.Now().UnixNano())
	// The usable replication factor is usable, one more is refused.
	if _, err := adm.CreateTopic(ctx, 1, int16(b.ReplicationFactor()), nil, topic); err != nil {
		t.Fatalf("a topic with the harness's replication factor %d: %v", b.ReplicationFactor(), err)
	}
	resp, err := adm.CreateTopic(ctx, 1, int16(b.ReplicationFactor()+1), nil, topic+"-wide")
	if err == nil {
		err = resp.Err
	}
	if !errors.Is(err, kerr.InvalidReplicationFactor) {
		t.Fatalf("replication factor %d: %v, want INVALID_REPLICATION_FACTOR", b.ReplicationFactor()+1, err)
	}
	// Both requests were counted, by API key, in the same Counts type.
	if got := b.Requests().Minus(before).Of(kmsg.CreateTopics); got != 2 {
		t.Fatalf("counted %d CreateTopics requests, want 2 (%s)", got, b.Requests().Minus(before))
	}
}

// TestStopStartKeepsData: a stopped broker comes back on the same
// addresses with its topics and records.
func TestStopStartKeepsData(t *testing.T) {
	b := broker
	b.LogOnFailure(t)
	ctx := testCtx(t)
	adm := adminClient(t, b)
	topic := fmt.Sprintf("kept-%d", time.Now().UnixNano())
	if _, err := adm.CreateTopic(ctx, 1, -1, nil, topic); err != nil {
		t.Fatal(err)
	}
	addrs := b.Bootstrap()
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(b.Bootstrap()) != fmt.Sprint(addrs) {
		t.Fatalf("bootstrap moved from %v to %v", addrs, b.Bootstrap())
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		topics, err := adminClient(t, b).ListTopics(ctx, topic)
		if err == nil && topics.Has(topic) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s gone after a restart: %v", topic, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestWithTLS: a TLS listener whose certificate the harness's CA signed.
func TestWithTLS(t *testing.T) {
	tb := broker.WithTLS(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(tb.TLSBootstrap()...), kgo.SASL(tb.AdminSASL()), kgo.DialTLSConfig(tb.TLSConfig()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Ping(testCtx(t)); err != nil {
		t.Fatalf("admin over TLS: %v", err)
	}
}
