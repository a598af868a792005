package kafka

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hms-platform/bus-operator/test/harness/brokers"
)

func TestAppendThenReadBack(t *testing.T) {
	ctx := testCtx(t)
	topic := uniqueName(t, "audit")
	mustCreate(t, admin, NewTopic{Name: topic, Partitions: 1, ReplicationFactor: broker.ReplicationFactor()})
	records := []struct{ key, value string }{{"CHG-1", `{"event":"approved"}`}, {"CHG-2", `{"event":"applied"}`}}
	for _, r := range records {
		if err := admin.Append(ctx, topic, []byte(r.key), []byte(r.value)); err != nil {
			t.Fatal(err)
		}
	}

	consumer, err := kgo.NewClient(append(broker.AdminOpts(),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)...)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	var got []*kgo.Record
	for len(got) < len(records) {
		fetches := consumer.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of %d records before the deadline", len(got), len(records))
		}
		if errs := fetches.Errors(); len(errs) > 0 {
			t.Fatalf("fetch: %v", errs[0].Err)
		}
		got = append(got, fetches.Records()...)
	}
	if len(got) != len(records) {
		t.Fatalf("read %d records, want %d", len(got), len(records))
	}
	for i, r := range records {
		if string(got[i].Key) != r.key || string(got[i].Value) != r.value {
			t.Fatalf("record %d = %s/%s, want %s/%s", i, got[i].Key, got[i].Value, r.key, r.value)
		}
	}

	err = admin.Append(ctx, uniqueName(t, "absent"), nil, []byte("x"))
	if !errors.Is(err, ErrTopicNotFound) {
		t.Fatalf("appending to a missing topic: %v, want ErrTopicNotFound", err)
	}
}

// unavailableWithin runs op and checks it fails as ErrUnavailable before
// limit.
func unavailableWithin(t *testing.T, what string, limit time.Duration, op func(context.Context) error) {
	t.Helper()
	start := time.Now()
	err := op(testCtx(t))
	took := time.Since(start)
	t.Logf("%s failed after %s: %v", what, took.Round(time.Millisecond), err)
	if took > limit {
		t.Errorf("%s took %s, want under %s", what, took.Round(time.Millisecond), limit)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("%s: %v, want ErrUnavailable", what, err)
	}
}

// TestBrokerDownIsUnavailable stops a broker of the kind under test (its
// own, so the shared one serves the other tests meanwhile).
func TestBrokerDownIsUnavailable(t *testing.T) {
	b := brokers.StartT(t, brokers.Options{Nodes: 1})
	cfg := adminConfig(b)
	cfg.RequestTimeout = time.Second
	c, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testCtx(t)
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping while up: %v", err)
	}
	topic := uniqueName(t, "down")
	if _, err := c.CreateTopic(ctx, NewTopic{Name: topic, Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	if err := c.Append(ctx, topic, nil, []byte("before")); err != nil {
		t.Fatal(err)
	}

	// Killed as a crash ends it: nothing answers any more (Kafka's proxy
	// still accepts, and closes each connection at once).
	b.Kill()
	const limit = 5 * time.Second
	unavailableWithin(t, "ping", limit, c.Ping)
	unavailableWithin(t, "describe", limit, func(ctx context.Context) error {
		_, err := c.DescribeTopics(ctx, topic)
		return err
	})
	unavailableWithin(t, "create", limit, func(ctx context.Context) error {
		_, err := c.CreateTopic(ctx, NewTopic{Name: topic + "-2", Partitions: 1, ReplicationFactor: 1})
		return err
	})
	unavailableWithin(t, "alter", limit, func(ctx context.Context) error {
		return c.AlterTopicConfig(ctx, topic, ConfigAlter{Set: map[string]string{"retention.ms": "1"}})
	})
	unavailableWithin(t, "acls", limit, func(ctx context.Context) error {
		_, err := c.DescribeACLs(ctx, "User:x")
		return err
	})
	unavailableWithin(t, "append", limit, func(ctx context.Context) error {
		return c.Append(ctx, topic, nil, []byte("after"))
	})
}

func TestNewDoesNotNeedTheBroker(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // nothing listens there now

	c, err := New(context.Background(), Config{Bootstrap: []string{addr}, Mechanism: MechanismSCRAMSHA512, Username: "u", Password: "p", RequestTimeout: time.Second})
	if err != nil {
		t.Fatalf("New with the broker down: %v", err)
	}
	defer c.Close()
	unavailableWithin(t, "ping", 10*time.Second, c.Ping)
}

func TestNewRejectsBadConfig(t *testing.T) {
	ctx := context.Background()
	for name, cfg := range map[string]Config{
		"no bootstrap":      {Mechanism: MechanismPlain, Username: "u"},
		"unknown mechanism": {Bootstrap: []string{"localhost:9092"}, Mechanism: "GSSAPI", Username: "u"},
		"no username":       {Bootstrap: []string{"localhost:9092"}, Mechanism: MechanismSCRAMSHA256},
	} {
		if c, err := New(ctx, cfg); err == nil {
			c.Close()
			t.Errorf("%s: accepted", name)
		}
	}
	cfg := Config{Bootstrap: []string{"localhost:9092"}, Mechanism: MechanismPlain, Username: "u", Password: "secret-value"}
	cfg.Mechanism = "plain-typo"
	if _, err := New(ctx, cfg); err == nil || strings.Contains(err.Error(), "secret-value") {
		t.Errorf("bad mechanism: %v (must fail and never show the password)", err)
	}
	for _, shown := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg)} {
		if strings.Contains(shown, "secret-value") || !strings.Contains(shown, "localhost:9092") {
			t.Errorf("config printed as %q: must show the bootstrap and hide the password", shown)
		}
	}
}

func TestTLSConfigFromCAFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(good, selfSignedPEM(t), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := TLSConfigFromCAFile(good)
	if err != nil || cfg.RootCAs == nil || cfg.MinVersion < 0x0303 {
		t.Fatalf("good CA: %+v, %v", cfg, err)
	}
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := TLSConfigFromCAFile(junk); err == nil {
		t.Error("junk CA file accepted")
	}
	if _, err := TLSConfigFromCAFile(filepath.Join(dir, "missing.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing CA file: %v", err)
	}
}

func selfSignedPEM(t *testing.T) []byte {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
