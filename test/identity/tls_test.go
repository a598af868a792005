package identity

import (
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/pkg/bus"
)

func tlsAuth() *busv1.AuthenticationSpec { return &busv1.AuthenticationSpec{Type: busv1.AuthTLS} }

// TestCertificateIdentity: a Subscription with authentication tls gets a
// client certificate from the operator's clients CA; on Kafka's mTLS
// listener (trusting exactly the published CA) the workload holding it
// reads and writes what was granted and nothing else; certificates the
// operator did not issue for it are refused; a rotated certificate works;
// a deleted Subscription's certificate opens nothing.
func TestCertificateIdentity(t *testing.T) {
	broker.LogOnFailure(t)
	ns := env.NamespaceT(t, "mtls")
	events, other := newTopic(ns, "events"), newTopic(ns, "other")
	createApproved(t, ns, "chg-topics", events, other)
	waitReady(t, events)
	waitReady(t, other)
	reader := newSub(ns, "reader", "chg-1", busv1.RoleConsume, tlsAuth(), "events")
	writer := newSub(ns, "writer", "chg-1", busv1.RoleProduce, tlsAuth(), "events")
	createApproved(t, ns, "chg-1", reader, writer)
	waitReady(t, reader)
	waitReady(t, writer)
	eventsTopic, otherTopic := events.Spec.TopicName, other.Spec.TopicName

	// The workload mounts its Secret; pkg/bus reads it as a pod would.
	readerSecret, writerSecret := issuedSecret(t, reader), issuedSecret(t, writer)
	readerDir, writerDir := t.TempDir(), t.TempDir()
	mountSecret(t, readerSecret, readerDir)
	mountSecret(t, writerSecret, writerDir)
	readerCreds, err := bus.CredentialsFromDir(readerDir)
	if err != nil {
		t.Fatal(err)
	}
	writerCreds, err := bus.CredentialsFromDir(writerDir)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(readerSecret.Data[bus.SecretKeyBootstrap]); got != broker.MTLSBootstrap() {
		t.Fatalf("bootstrap %q, want the mTLS listener %s", got, broker.MTLSBootstrap())
	}
	if readerCreds.SecurityProtocol() != bus.SecurityProtocolSSL || readerCreds.CertFile != filepath.Join(readerDir, bus.SecretKeyCert) {
		t.Fatalf("credentials from the mounted Secret: %s, certificate file %q", readerCreds.SecurityProtocol(), readerCreds.CertFile)
	}
	if reader.Status.Principal != "User:"+ns+".reader" {
		t.Fatalf("principal %q", reader.Status.Principal)
	}
	secrets := []string{keyProbe(t, readerSecret.Data[bus.SecretKeyKey]), keyProbe(t, writerSecret.Data[bus.SecretKeyKey])}

	// What was granted works: the writer produces, the reader consumes in
	// its group (pkg/bus, then the hmsbus CLI with the mounted Secret).
	if err := publish(writerCreds, eventsTopic, `{"n":1}`); err != nil {
		t.Fatalf("the writer's certificate cannot produce: %v", err)
	}
	if e, err := consumeOne(readerCreds, eventsTopic); err != nil || string(e.Data) != `{"n":1}` {
		t.Fatalf("the reader's certificate cannot consume: %v (%s)", err, e.Data)
	}
	if out, err := hmsbus(t, "pub", eventsTopic, `{"n":2}`, "--credentials-dir", writerDir); err != nil || !strings.Contains(out, "published") {
		t.Fatalf("hmsbus pub with the writer's certificate: %v\n%s", err, out)
	}
	if out, err := hmsbus(t, "sub", eventsTopic, "--credentials-dir", readerDir, "--max", "1", "--timeout", "20s"); err != nil || !strings.Contains(out, `{"n":2}`) {
		t.Fatalf("hmsbus sub with the reader's certificate: %v\n%s", err, out)
	}

	// The Java client config in the Secret works as it is (PEM key and
	// trust stores inline).
	if out, err := javaConsume(t, string(readerSecret.Data[bus.SecretKeyJavaConfig]), eventsTopic); err != nil || !strings.Contains(out, `{"n":1}`) {
		t.Fatalf("Java client with the reader's client.properties: %v\n%s", err, out)
	}

	// Nothing else: the reader cannot produce, read another topic or use
	// another group; the writer cannot read.
	mustFailWith(t, "the reader producing", publish(readerCreds, eventsTopic, `{"n":0}`), bus.ErrNotAuthorized)
	if err := publishAsAdmin(otherTopic, `{"secret":true}`); err != nil {
		t.Fatal(err)
	}
	_, err = streamFirst(readerCreds, otherTopic)
	mustFailWith(t, "the reader reading another topic", err, bus.ErrNotAuthorized)
	stranger := readerCreds
	stranger.ConsumerGroup = ns + ".someone-else"
	_, err = consumeOne(stranger, eventsTopic)
	mustFailWith(t, "the reader in another group", err, bus.ErrNotAuthorized)
	_, err = streamFirst(writerCreds, eventsTopic)
	mustFailWith(t, "the writer reading", err, bus.ErrNotAuthorized)
	if out, err := hmsbus(t, "pub", eventsTopic, `{"n":0}`, "--credentials-dir", readerDir); err == nil || !strings.Contains(out, "not authorized") {
		t.Fatalf("hmsbus pub with the reader's certificate: %v\n%s", err, out)
	}

	// The principal is the certificate's CN: a certificate of the clients
	// CA for another name authenticates, and is granted nothing.
	ca := operatorCA(t)
	now := time.Now()
	nobodyCert, nobodyKey := issue(t, ca, pkix.Name{CommonName: ns + ".nobody"}, now.Add(-time.Minute), now.Add(time.Hour))
	_, err = streamFirst(withCert(readerCreds, nobodyCert, nobodyKey), eventsTopic)
	mustFailWith(t, "a certificate for another CN", err, bus.ErrNotAuthorized)

	// Refused at the handshake: certificates of another CA (a stranger's,
	// and the launcher's CA, which the MTLS listener trusted until the
	// operator's CA was published), an expired certificate and one
	// without a CN, both from the clients CA itself, for the reader's CN.
	launcherCert, err := broker.CA().ClientCert(pkix.Name{CommonName: ns + ".reader"})
	if err != nil {
		t.Fatal(err)
	}
	launcherCertPEM, launcherKeyPEM := pemCert(t, launcherCert)
	foreignCert, foreignKey := issue(t, foreignCA(t), pkix.Name{CommonName: ns + ".reader"}, now.Add(-time.Minute), now.Add(time.Hour))
	expiredCert, expiredKey := issue(t, ca, pkix.Name{CommonName: ns + ".reader"}, now.Add(-2*time.Hour), now.Add(-time.Hour))
	noCNCert, noCNKey := issue(t, ca, pkix.Name{Organization: []string{"hms-bus"}, OrganizationalUnit: []string{ns + ".reader"}}, now.Add(-time.Minute), now.Add(time.Hour))
	for _, tc := range []struct {
		name      string
		cert, key []byte
	}{
		{"a certificate of another CA", foreignCert, foreignKey},
		{"a certificate of the broker's former client CA", launcherCertPEM, launcherKeyPEM},
		{"an expired certificate of the clients CA", expiredCert, expiredKey},
		{"a certificate of the clients CA without a CN", noCNCert, noCNKey},
	} {
		_, err := streamFirst(withCert(readerCreds, tc.cert, tc.key), eventsTopic)
		mustFailWith(t, tc.name, err, bus.ErrAuthenticationFailed)
	}

	// pkg/bus reads the mounted files at each connection: replace them
	// with the expired certificate, and the same credentials are refused.
	if err := os.WriteFile(filepath.Join(readerDir, bus.SecretKeyCert), expiredCert, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(readerDir, bus.SecretKeyKey), expiredKey, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = streamFirst(readerCreds, eventsTopic)
	mustFailWith(t, "the mounted files holding an expired certificate", err, bus.ErrAuthenticationFailed)

	// Rotation with the CLI: a new certificate and key; once the kubelet
	// refreshes the volume, the same running credentials present it.
	oldCert, oldKey := readerSecret.Data[bus.SecretKeyCert], readerSecret.Data[bus.SecretKeyKey]
	oldSerial := serialOf(t, oldCert)
	if out, err := hmsbus(t, "rotate", "reader", "-n", ns); err != nil {
		t.Fatalf("hmsbus rotate: %v\n%s", err, out)
	}
	eventually(t, "a new certificate in the Secret", func() error {
		readerSecret = issuedSecret(t, reader)
		if serialOf(t, readerSecret.Data[bus.SecretKeyCert]) == oldSerial {
			return errors.New("same certificate")
		}
		return nil
	})
	rotatedSerial := serialOf(t, readerSecret.Data[bus.SecretKeyCert])
	secrets = append(secrets, keyProbe(t, readerSecret.Data[bus.SecretKeyKey]))
	mountSecret(t, readerSecret, readerDir)
	if err := publish(writerCreds, eventsTopic, `{"n":3}`); err != nil {
		t.Fatal(err)
	}
	if e, err := consumeOne(readerCreds, eventsTopic); err != nil || string(e.Data) != `{"n":3}` {
		t.Fatalf("the rotated certificate cannot consume: %v (%s)", err, e.Data)
	}
	// The limit the README states: Kafka checks no revocation, so the
	// replaced certificate still authenticates (and, while the
	// Subscription exists, is granted) until it expires.
	if _, err := streamFirst(withCert(readerCreds, oldCert, oldKey), eventsTopic); err != nil {
		t.Fatalf("the replaced certificate: %v; if the broker now checks revocation, update the README's Identities section", err)
	}
	eventually(t, "status names the rotated certificate", func() error {
		if err := env.Client.Get(ctxT(t), clientKey(reader), reader); err != nil {
			return err
		}
		if c := reader.Status.Certificate; c == nil || c.SerialNumber != rotatedSerial {
			return fmt.Errorf("status certificate %+v, want serial %s", c, rotatedSerial)
		}
		return nil
	})

	// Deleting the Subscription removes its ACLs: the certificate, valid
	// until it expires (Kafka checks no revocation), authorises nothing.
	deleteAndWait(t, reader)
	_, err = streamFirst(readerCreds, eventsTopic)
	mustFailWith(t, "the deleted Subscription's certificate reading", err, bus.ErrNotAuthorized)
	_, err = consumeOne(readerCreds, eventsTopic)
	mustFailWith(t, "the deleted Subscription's certificate in its group", err, bus.ErrNotAuthorized)

	assertNoSecret(t, ns, secrets, reader, writer)
}
