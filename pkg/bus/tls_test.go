package bus

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

// TestCredentialsWithCAOverTLS uses credentials as the operator issues them
// for a TLS cluster (security.protocol SASL_SSL and ca.crt in the Secret):
// against Kafka's SASL_SSL listener, or an embedded broker speaking TLS.
func TestCredentialsWithCAOverTLS(t *testing.T) {
	b := broker.WithTLS(t)
	topic := newTopicName(t)
	issued := SecretData(Credentials{Bootstrap: b.TLSBootstrap(), Username: b.AdminUser, Password: b.AdminPassword, TLS: true, CACert: b.CAPEM()})
	if string(issued[SecretKeySecurityProtocol]) != SecurityProtocolSASLSSL || len(issued[SecretKeyCACert]) == 0 {
		t.Fatalf("a TLS Secret needs SASL_SSL and ca.crt, got %q", issued[SecretKeySecurityProtocol])
	}
	creds, err := CredentialsFromSecretData(issued)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := newClient(creds, "tls-test-admin")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := createTopicWith(ctx, cl.Client, 1, topic); err != nil {
		t.Fatalf("creating a topic over TLS: %v", err)
	}
	p, err := NewPublisher(creds, PublisherOptions{Source: "/tls-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Publish(ctx, topic, Event{Type: "hms.test", Data: json.RawMessage(`{"over":"tls"}`)}); err != nil {
		t.Fatalf("publishing over TLS: %v", err)
	}
	st, err := NewStreamer(creds, StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan Event, 1)
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	go func() {
		_ = st.Stream(sctx, topic, Earliest, func(_ context.Context, e Event) error { got <- e; scancel(); return nil })
	}()
	select {
	case e := <-got:
		if string(e.Data) != `{"over":"tls"}` {
			t.Fatalf("read %s", e.Data)
		}
	case <-sctx.Done():
		t.Fatal("no event read over TLS")
	}
}
