package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"testing"
	"time"
)

// TestTLSWithPrivateCA runs the adapter against a TLS listener with a
// certificate from a private CA, as a production cluster has: Kafka's
// SASL_SSL listener, or an embedded broker that speaks only TLS.
func TestTLSWithPrivateCA(t *testing.T) {
	b := broker.WithTLS(t)
	trust, err := TLSConfigFromPEM(b.CAPEM())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg := Config{Bootstrap: b.TLSBootstrap(), Mechanism: MechanismSCRAMSHA512, Username: b.AdminUser, Password: b.AdminPassword, TLS: trust, RequestTimeout: 5 * time.Second}
	c, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping over TLS: %v", err)
	}
	if _, err := c.CreateTopic(ctx, NewTopic{Name: uniqueName(t, "over-tls"), Partitions: 1, ReplicationFactor: 1}); err != nil {
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
