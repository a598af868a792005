package identity

import (
	"testing"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/pkg/bus"
)

// An operator that serves the TLS identities knows the brokers' CA, while
// password Subscriptions keep connecting where the operator does (here the
// plain SASL listener): their Secret must not carry the CA, which clients
// read as "speak TLS" and a plaintext listener refuses.
func TestPasswordIdentityBesideTheOthers(t *testing.T) {
	broker.LogOnFailure(t)
	ns := env.NamespaceT(t, "scram")
	events := newTopic(ns, "events")
	createApproved(t, ns, "chg-topics", events)
	waitReady(t, events)
	writer := newSub(ns, "writer", "chg-1", busv1.RoleProduce, nil, "events")
	reader := newSub(ns, "reader", "chg-1", busv1.RoleConsume, &busv1.AuthenticationSpec{Type: busv1.AuthSCRAMSHA256}, "events")
	createApproved(t, ns, "chg-1", writer, reader)
	waitReady(t, writer)
	waitReady(t, reader)

	for _, sub := range []*busv1.Subscription{writer, reader} {
		sec := issuedSecret(t, sub)
		if got := string(sec.Data[bus.SecretKeySecurityProtocol]); got != bus.SecurityProtocolSASLPlaintext {
			t.Fatalf("%s: security protocol %q, want %s", sub.Name, got, bus.SecurityProtocolSASLPlaintext)
		}
		if ca, has := sec.Data[bus.SecretKeyCACert]; has {
			t.Fatalf("%s: a Secret for a plaintext listener carries %s (%d bytes)", sub.Name, bus.SecretKeyCACert, len(ca))
		}
	}
	writerCreds, readerCreds := mountedCredentials(t, writer), mountedCredentials(t, reader)
	if err := publish(writerCreds, events.Spec.TopicName, `{"n":1}`); err != nil {
		t.Fatalf("the writer's password cannot produce: %v", err)
	}
	if e, err := consumeOne(readerCreds, events.Spec.TopicName); err != nil || string(e.Data) != `{"n":1}` {
		t.Fatalf("the reader's password cannot consume: %v (%s)", err, e.Data)
	}
}
