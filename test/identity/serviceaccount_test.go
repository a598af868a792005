package identity

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/pkg/bus"
)

func saAuth(name string) *busv1.AuthenticationSpec {
	return &busv1.AuthenticationSpec{Type: busv1.AuthServiceAccount, ServiceAccountName: name}
}

// TestServiceAccountIdentity: Subscriptions naming ServiceAccounts; the
// workloads present the ServiceAccounts' own tokens (TokenRequest, audience
// kafka) over SASL_SSL/OAUTHBEARER; Kafka's built-in validator checks them
// against the control plane's issuer and takes the principal from the
// subject. They read and write exactly what was granted; tokens for another
// audience, expired, not signed by the issuer, or of another
// ServiceAccount get nothing; the client reads the token file at each
// connection; after deletion the identity opens nothing.
func TestServiceAccountIdentity(t *testing.T) {
	broker.LogOnFailure(t)
	ns := env.NamespaceT(t, "satoken")
	payments, other := newTopic(ns, "payments"), newTopic(ns, "other")
	createApproved(t, ns, "chg-topics", payments, other)
	waitReady(t, payments)
	waitReady(t, other)
	paymentsTopic, otherTopic := payments.Spec.TopicName, other.Spec.TopicName
	for _, sa := range []string{"payment-service", "fee-service", "intruder"} {
		createServiceAccount(t, ns, sa)
	}
	reader := newSub(ns, "reader", "chg-1", busv1.RoleConsume, saAuth("payment-service"), "payments")
	writer := newSub(ns, "writer", "chg-1", busv1.RoleProduce, saAuth("fee-service"), "payments")
	createApproved(t, ns, "chg-1", reader, writer)
	waitReady(t, reader)
	waitReady(t, writer)
	if want := "User:system:serviceaccount:" + ns + ":payment-service"; reader.Status.Principal != want {
		t.Fatalf("principal %q, want %q", reader.Status.Principal, want)
	}

	// The Secret holds no secret: where to connect, the mechanism, where
	// the pod mounts its token and with which audience.
	readerSecret, writerSecret := issuedSecret(t, reader), issuedSecret(t, writer)
	for k, want := range map[string]string{
		bus.SecretKeyBootstrap: broker.OAuthBootstrap(), bus.SecretKeySecurityProtocol: bus.SecurityProtocolSASLSSL,
		bus.SecretKeyMechanism: bus.MechanismOAuthBearer, bus.SecretKeyTokenFile: bus.DefaultTokenFile, bus.SecretKeyTokenAudience: tokenAudience,
	} {
		if got := string(readerSecret.Data[k]); got != want {
			t.Fatalf("Secret key %s = %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{bus.SecretKeyPassword, bus.SecretKeyKey, bus.SecretKeyUsername} {
		if _, has := readerSecret.Data[k]; has {
			t.Fatalf("a ServiceAccount identity's Secret has %s", k)
		}
	}

	// The pods: the Secret mounted, and the projected token where the
	// Secret says (here a file the test owns).
	readerDir, writerDir := t.TempDir(), t.TempDir()
	mountSecret(t, readerSecret, readerDir)
	mountSecret(t, writerSecret, writerDir)
	readerTokenFile, writerTokenFile := filepath.Join(t.TempDir(), "token"), filepath.Join(t.TempDir(), "token")
	readerToken, writerToken := mintToken(t, ns, "payment-service", tokenAudience), mintToken(t, ns, "fee-service", tokenAudience)
	writeToken(t, readerTokenFile, readerToken)
	writeToken(t, writerTokenFile, writerToken)
	readerCreds, err := bus.CredentialsFromDir(readerDir)
	if err != nil {
		t.Fatal(err)
	}
	writerCreds, err := bus.CredentialsFromDir(writerDir)
	if err != nil {
		t.Fatal(err)
	}
	readerCreds.TokenFile, writerCreds.TokenFile = readerTokenFile, writerTokenFile
	secrets := append(tokenProbes(t, readerToken), tokenProbes(t, writerToken)...)

	// Granted: the fee service produces, the payment service consumes in
	// its group; with pkg/bus, then with hmsbus outside a pod
	// (--token-file).
	if err := publish(writerCreds, paymentsTopic, `{"fee":120}`); err != nil {
		t.Fatalf("the fee service's token cannot produce: %v", err)
	}
	if e, err := consumeOne(readerCreds, paymentsTopic); err != nil || string(e.Data) != `{"fee":120}` {
		t.Fatalf("the payment service's token cannot consume: %v (%s)", err, e.Data)
	}
	if out, err := hmsbus(t, "pub", paymentsTopic, `{"fee":125}`, "--credentials-dir", writerDir, "--token-file", writerTokenFile); err != nil || !strings.Contains(out, "published") {
		t.Fatalf("hmsbus pub --token-file: %v\n%s", err, out)
	}
	out, err := hmsbus(t, "sub", paymentsTopic, "--subscription", ns+"/reader", "--token-file", readerTokenFile, "--max", "1", "--timeout", "20s")
	if err != nil || !strings.Contains(out, `{"fee":125}`) {
		t.Fatalf("hmsbus sub --subscription --token-file: %v\n%s", err, out)
	}
	for _, p := range secrets {
		if strings.Contains(out, p) {
			t.Fatal("hmsbus printed the token")
		}
	}

	// The Java client config in the Secret works with the token mounted
	// where it says (KIP-768: a file:// token endpoint), given the JVM
	// flag Kafka 4 needs to read it.
	java := strings.ReplaceAll(string(readerSecret.Data[bus.SecretKeyJavaConfig]), bus.DefaultTokenFile, readerTokenFile)
	if out, err := javaConsume(t, java, paymentsTopic, "-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls=file://"+readerTokenFile); err != nil || !strings.Contains(out, `{"fee":120}`) {
		t.Fatalf("Java client with the payment service's client.properties: %v\n%s", err, out)
	}

	// Nothing else.
	mustFailWith(t, "the payment service producing", publish(readerCreds, paymentsTopic, `{"fee":0}`), bus.ErrNotAuthorized)
	if err := publishAsAdmin(otherTopic, `{"secret":true}`); err != nil {
		t.Fatal(err)
	}
	_, err = streamFirst(readerCreds, otherTopic)
	mustFailWith(t, "the payment service reading another topic", err, bus.ErrNotAuthorized)
	_, err = streamFirst(writerCreds, paymentsTopic)
	mustFailWith(t, "the fee service reading", err, bus.ErrNotAuthorized)

	// Tokens that get nothing. Each is checked with the reader's
	// credentials, whose own token streams the topic (the control).
	if _, err := streamFirst(readerCreds, paymentsTopic); err != nil {
		t.Fatalf("control: the payment service's token cannot stream: %v", err)
	}
	now := time.Now()
	forger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	valid := func(c map[string]any) {
		c["iat"], c["nbf"], c["exp"] = unix(now.Add(-time.Minute)), unix(now.Add(-time.Minute)), unix(now.Add(10*time.Minute))
	}
	expired := func(c map[string]any) {
		c["iat"], c["nbf"], c["exp"] = unix(now.Add(-2*time.Hour)), unix(now.Add(-2*time.Hour)), unix(now.Add(-time.Hour))
	}
	// Signed with the issuer's key and otherwise valid: authenticates, so
	// the refusals below are about what each one changes.
	reissued := resign(t, readerToken, saSigningKey, valid)
	checkToken(t, readerCreds, paymentsTopic, "the issuer's key, valid claims (control)", reissued, nil)

	otherAudience := mintToken(t, ns, "payment-service", "not-kafka")
	intruder := mintToken(t, ns, "intruder", tokenAudience)
	for _, tc := range []struct {
		name, token string
		want        error
	}{
		{"a token for another audience", otherAudience, bus.ErrAuthenticationFailed},
		{"an expired token signed by the issuer", resign(t, readerToken, saSigningKey, expired), bus.ErrAuthenticationFailed},
		{"a token not signed by the issuer", resign(t, readerToken, forger, valid), bus.ErrAuthenticationFailed},
		{"a token of another issuer", resign(t, readerToken, saSigningKey, func(c map[string]any) { valid(c); c["iss"] = "https://issuer.example/" }), bus.ErrAuthenticationFailed},
		{"a token of another ServiceAccount", intruder, bus.ErrNotAuthorized},
	} {
		checkToken(t, readerCreds, paymentsTopic, tc.name, tc.token, tc.want)
		secrets = append(secrets, tokenProbes(t, tc.token)...)
	}

	// The client reads the token file at each connection: the same
	// credentials, the file replaced between two connections.
	writeToken(t, readerTokenFile, intruder)
	_, err = streamFirst(readerCreds, paymentsTopic)
	mustFailWith(t, "the credentials with the intruder's token in the file", err, bus.ErrNotAuthorized)
	writeToken(t, readerTokenFile, readerToken)
	if _, err := streamFirst(readerCreds, paymentsTopic); err != nil {
		t.Fatalf("the same credentials after the file got the payment service's token back: %v", err)
	}
	writeToken(t, readerTokenFile, otherAudience)
	_, err = streamFirst(readerCreds, paymentsTopic)
	mustFailWith(t, "the same credentials with a token for another audience in the file", err, bus.ErrAuthenticationFailed)
	writeToken(t, readerTokenFile, readerToken)

	// Deleting the Subscription removes the principal's grants: its
	// token still authenticates (it is the ServiceAccount's, valid until
	// it expires) and opens nothing.
	deleteAndWait(t, reader)
	_, err = streamFirst(readerCreds, paymentsTopic)
	mustFailWith(t, "the deleted Subscription's ServiceAccount reading", err, bus.ErrNotAuthorized)
	_, err = consumeOne(readerCreds, paymentsTopic)
	mustFailWith(t, "the deleted Subscription's ServiceAccount in its group", err, bus.ErrNotAuthorized)
	// The other ServiceAccount's grants are untouched.
	if err := publish(writerCreds, paymentsTopic, `{"fee":135}`); err != nil {
		t.Fatalf("the fee service after the payment service's Subscription was deleted: %v", err)
	}

	assertNoSecret(t, ns, secrets, reader, writer)
}

// checkToken puts token in a token file and streams topic with c reading
// it: want nil means it must work, else it must fail with want.
func checkToken(t *testing.T, c bus.Credentials, topic, name, token string, want error) {
	t.Helper()
	c.TokenFile = filepath.Join(t.TempDir(), "token")
	writeToken(t, c.TokenFile, token)
	_, err := streamFirst(c, topic)
	if want == nil {
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return
	}
	mustFailWith(t, name, err, want)
}

// unix is a JWT NumericDate.
func unix(t time.Time) json.Number { return json.Number(strconv.FormatInt(t.Unix(), 10)) }
