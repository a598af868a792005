package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"testing"
	"time"

	"github.com/hms-platform/bus-operator/test/harness/embedded"
)

// TestTLSWithPrivateCA runs the adapter against a broker that speaks only
// TLS, with a certificate from a private CA, as a production cluster does.
func TestTLSWithPrivateCA(t *testing.T) {
	b, caPEM, err := embedded.StartWithTLS(embedded.Options{Brokers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	trust, err := TLSConfigFromPEM(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg := Config{Bootstrap: b.Addrs(), Mechanism: MechanismSCRAMSHA512, Username: b.AdminUser, Password: b.AdminPassword, TLS: trust, RequestTimeout: 5 * time.Second}
	c, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping over TLS: %v", err)
	}
	if _, err := c.CreateTopic(ctx, NewTopic{Name: "over-tls", Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatalf("creating a topic over TLS: %v", err)
	}

	// Without the private CA the broker's certificate is not trusted: the
	// broker is unreachable for this client, never silently insecure.
	cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	cfg.RequestTimeout = time.Second
	untrusting, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer untrusting.Close()
	if err := untrusting.Ping(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a client without the CA must not connect: %v", err)
	}
}

func TestTLSConfigFromPEMRefusesGarbage(t *testing.T) {
	if _, err := TLSConfigFromPEM([]byte("not a certificate")); err == nil {
		t.Fatal("garbage accepted as a CA bundle")
	}
}
