package kafkabroker_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/hms-platform/bus-operator/test/harness/kafkabroker"
)

// One broker serves every test of the package: starting Kafka costs a few
// seconds. Each test makes its own topics and users, so the tests do not
// depend on each other's order, and the restart tests leave the broker
// running with the admin able to log in.
var (
	broker *kafkabroker.Broker
	// clientsCA stands for the operator's clients CA: the only CA the MTLS
	// listener trusts.
	clientsCA *kafkabroker.CA
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	clientsCA, err = kafkabroker.NewCA("hms-bus test clients CA")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	began := time.Now()
	broker, err = kafkabroker.Start(kafkabroker.Options{ClientCAPEM: clientsCA.CertPEM()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("kafkabroker: Apache Kafka %s ready in %s (storage format included), log %s\n",
		broker.Version(), time.Since(began).Round(time.Millisecond), broker.LogPath())
	code := m.Run()
	stopped := time.Now()
	if err := broker.Close(); err != nil {
		// Killed after StopTimeout: gone all the same. A busy machine can
		// slow a controlled shutdown that much; it is not the tests' fault.
		fmt.Fprintln(os.Stderr, "kafkabroker: warning:", err)
	}
	fmt.Printf("kafkabroker: stopped in %s\n", time.Since(stopped).Round(time.Millisecond))
	return code
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newClient makes a client closed at the end of t. Clients fail fast here:
// a refused login must surface as an error, not as endless retries.
func newClient(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	opts = append([]kgo.Opt{kgo.RequestRetries(1), kgo.RetryTimeout(5 * time.Second), kgo.DialTimeout(3 * time.Second)}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatalf("making client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func admin(t *testing.T) *kadm.Client {
	t.Helper()
	return kadm.NewClient(newClient(t, broker.AdminOpts()...))
}

func scramSHA512(user, pass string) sasl.Mechanism {
	return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()
}

// uniqueName keeps tests independent when they share the broker.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
}

func createTopic(t *testing.T, adm *kadm.Client, topic string) {
	t.Helper()
	resp, err := adm.CreateTopic(testContext(t), 1, 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("creating topic %s: %v", topic, err)
	}
}

func produce(t *testing.T, cl *kgo.Client, topic string, values ...string) {
	t.Helper()
	for _, v := range values {
		if err := cl.ProduceSync(testContext(t), &kgo.Record{Topic: topic, Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatalf("producing to %s: %v", topic, err)
		}
	}
}

// consumeAll reads topic from the start (no consumer group) until it has
// want records or the context ends.
func consumeAll(ctx context.Context, opts []kgo.Opt, topic string, want int) ([]string, error) {
	opts = append(opts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var got []string
	for len(got) < want {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return got, fmt.Errorf("read %d of %d records: %w", len(got), want, err)
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) { ferr = errors.Join(ferr, err) })
		if ferr != nil {
			return got, ferr
		}
		fetches.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	return got, nil
}

// eventually retries f until it succeeds or 15 seconds pass: metadata
// changes (new SCRAM users, ACLs) reach the broker's caches asynchronously.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func tlsConfigWith(certs ...tls.Certificate) *tls.Config {
	cfg := broker.TLSConfig()
	cfg.Certificates = certs
	return cfg
}
