package controllers_test

import (
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/audit"
	"github.com/hms-platform/bus-operator/internal/kafka"
	"github.com/hms-platform/bus-operator/internal/pki"
	"github.com/hms-platform/bus-operator/pkg/bus"
	"github.com/hms-platform/bus-operator/test/harness/testenv"
)

// The tests in this file cover what the operator does for the identities
// without shared passwords: client certificates and ServiceAccount tokens.
// The embedded broker has neither listener; the Kafka tier proves that
// brokers accept exactly these identities.

func tlsAuth() *busv1.AuthenticationSpec { return &busv1.AuthenticationSpec{Type: busv1.AuthTLS} }

func saAuth(name string) *busv1.AuthenticationSpec {
	return &busv1.AuthenticationSpec{Type: busv1.AuthServiceAccount, ServiceAccountName: name}
}

// clientsCA reads the operator's clients CA as the broker's truststore
// would: from the published ConfigMap.
func clientsCA(t *testing.T) *x509.CertPool {
	t.Helper()
	cm := &corev1.ConfigMap{}
	eventually(t, "clients CA published", func() error {
		return env.Client.Get(ctxT(t), client.ObjectKey{Namespace: testenv.SystemNamespace, Name: "hmsbus-clients-ca"}, cm)
	})
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(cm.Data[pki.KeyCACert])) {
		t.Fatalf("ConfigMap hmsbus-clients-ca holds no CA certificate: %v", cm.Data)
	}
	return pool
}

// issuedCert reads and verifies the client certificate in a Subscription's
// Secret against the published CA.
func issuedCert(t *testing.T, sub *busv1.Subscription) (*x509.Certificate, *corev1.Secret) {
	t.Helper()
	cert, sec, err := readCert(t, sub)
	if err != nil {
		t.Fatal(err)
	}
	return cert, sec
}

func readCert(t *testing.T, sub *busv1.Subscription) (*x509.Certificate, *corev1.Secret, error) {
	t.Helper()
	sec := &corev1.Secret{}
	if err := env.Client.Get(ctxT(t), client.ObjectKey{Namespace: sub.Namespace, Name: sub.SecretName()}, sec); err != nil {
		return nil, nil, err
	}
	cert, err := pki.ParseCertificate(sec.Data[bus.SecretKeyCert])
	if err != nil {
		return nil, nil, fmt.Errorf("Secret %s has no client certificate: %w", sec.Name, err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: clientsCA(t), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, nil, fmt.Errorf("the certificate does not verify against the published clients CA: %w", err)
	}
	return cert, sec, nil
}

func TestCertificateIdentity(t *testing.T) {
	ns := env.NamespaceT(t, "mtls")
	topic := readyTopic(t, ns, "events")
	sub := newSub(ns, "sidecar", "chg-1", busv1.RoleConsume, ref("events"))
	sub.Spec.Authentication = tlsAuth()
	createApproved(t, ns, "chg-1", sub)
	waitSubReady(t, sub)

	cert, sec := issuedCert(t, sub)
	if cert.Subject.String() != "CN="+ns+".sidecar" {
		t.Fatalf("subject %q; the broker maps CN to the principal User:%s.sidecar", cert.Subject, ns)
	}
	if life := cert.NotAfter.Sub(cert.NotBefore); life < 29*24*time.Hour || life > 31*24*time.Hour {
		t.Fatalf("validity %s, want about 30 days", life)
	}
	for _, k := range []string{bus.SecretKeyCert, bus.SecretKeyKey, bus.SecretKeyJavaConfig, bus.SecretKeyLibrdkafkaConfig} {
		if len(sec.Data[k]) == 0 {
			t.Fatalf("Secret lacks %s", k)
		}
	}
	if _, has := sec.Data[bus.SecretKeyPassword]; has {
		t.Fatal("a certificate identity must have no password")
	}
	java := string(sec.Data[bus.SecretKeyJavaConfig])
	if !strings.Contains(java, "security.protocol=SSL") || !strings.Contains(java, "ssl.keystore.type=PEM") || strings.Contains(java, "sasl.") {
		t.Fatalf("client.properties for a certificate identity:\n%s", java)
	}
	creds, err := bus.CredentialsFromSecretData(sec.Data)
	if err != nil || creds.SecurityProtocol() != bus.SecurityProtocolSSL {
		t.Fatalf("the project's client cannot read the Secret: %v (%s)", err, creds.SecurityProtocol())
	}
	if sub.Status.Principal != "User:"+ns+".sidecar" || sub.Status.Authentication != busv1.AuthTLS || sub.Status.Certificate == nil ||
		sub.Status.Certificate.SerialNumber != cert.SerialNumber.Text(16) || sub.Status.Certificate.RenewAt == nil {
		t.Fatalf("status %+v", sub.Status)
	}
	if len(aclsOn(t, sub.Status.Principal, topic)) == 0 {
		t.Fatal("no grant for the certificate's principal")
	}
	if users, _ := admin.SCRAMMechanisms(ctxT(t), ns+".sidecar"); len(users[ns+".sidecar"]) != 0 {
		t.Fatalf("a certificate identity got a SCRAM user: %v", users)
	}
	assertNoKey(t, ns, string(sec.Data[bus.SecretKeyKey]), sub)

	// Rotation on request: a new key and certificate, audited.
	update(t, sub, func(s *busv1.Subscription) {
		s.Annotations = map[string]string{busv1.AnnotationRotate: time.Now().Format(time.RFC3339Nano)}
	})
	var rotated *x509.Certificate
	eventually(t, "certificate rotated", func() error {
		var err error
		if rotated, _, err = readCert(t, sub); err != nil {
			return err
		}
		if rotated.SerialNumber.Cmp(cert.SerialNumber) == 0 {
			return fmt.Errorf("same certificate")
		}
		return nil
	})
	if n := len(readAudit(t, func(r audit.Record) bool {
		return r.Operation == "IssueCertificate" && r.Object.Name == "sidecar" && r.Object.Namespace == ns && r.Cause == audit.CauseRotation
	})); n == 0 {
		t.Fatal("a rotation must be audited")
	}

	// Renewal: a certificate past two thirds of its life is replaced,
	// before it expires. Plant one as the operator would have issued it
	// 20 hours into a 24-hour life.
	ca := loadClientsCA(t)
	oldPEM, oldKey, err := ca.IssueClient(ns+".sidecar", 24*time.Hour, time.Now().Add(-20*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	plant(t, sub, map[string][]byte{bus.SecretKeyCert: oldPEM, bus.SecretKeyKey: oldKey})
	eventually(t, "certificate renewed", func() error {
		got, _, err := readCert(t, sub)
		if err != nil {
			return err
		}
		if string(got.Raw) == string(mustCert(t, oldPEM).Raw) || got.NotAfter.Before(time.Now().Add(29*24*time.Hour)) {
			return fmt.Errorf("not renewed yet (expires %s)", got.NotAfter)
		}
		return nil
	})

	// Tampering: a certificate of another CA, or of another CN, is replaced.
	otherCAPEM, otherCAKey, err := pki.NewCA("someone else", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.ParseCA(otherCAPEM, otherCAKey)
	if err != nil {
		t.Fatal(err)
	}
	foreignPEM, foreignKey, err := other.IssueClient(ns+".sidecar", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	plant(t, sub, map[string][]byte{bus.SecretKeyCert: foreignPEM, bus.SecretKeyKey: foreignKey})
	eventually(t, "foreign certificate replaced", func() error {
		_, _, err := readCert(t, sub) // verifies against our CA
		return err
	})
	stranger, strangerKey, err := ca.IssueClient(ns+".someone-else", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	plant(t, sub, map[string][]byte{bus.SecretKeyCert: stranger, bus.SecretKeyKey: strangerKey})
	eventually(t, "certificate of another CN replaced", func() error {
		got, _, err := readCert(t, sub)
		if err != nil {
			return err
		}
		if got.Subject.CommonName != ns+".sidecar" {
			return fmt.Errorf("subject %s", got.Subject)
		}
		return nil
	})
}

func TestSwitchingFromSCRAMToCertificateRemovesThePassword(t *testing.T) {
	ns := env.NamespaceT(t, "switch")
	topic := readyTopic(t, ns, "feed")
	sub := newSub(ns, "app", "chg-1", busv1.RoleProduce, ref("feed"))
	createApproved(t, ns, "chg-1", sub)
	waitSubReady(t, sub)
	user := ns + ".app"
	if users, _ := admin.SCRAMMechanisms(ctxT(t), user); len(users[user]) == 0 {
		t.Fatal("no SCRAM user for the SCRAM identity")
	}
	// Unapproved, the switch changes nothing.
	fileTicket(t, ns, "chg-2", covers(busv1.KindSubscription, "app"))
	update(t, sub, func(s *busv1.Subscription) { s.Spec.Authentication = tlsAuth(); s.Spec.ChangeTicket = "chg-2" })
	waitCondition(t, sub, subConds(sub), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonAwaitingApproval)
	if users, _ := admin.SCRAMMechanisms(ctxT(t), user); len(users[user]) == 0 {
		t.Fatal("an unapproved switch removed the SCRAM user")
	}
	approve(t, ns, "chg-2")
	waitSubReady(t, sub)
	if users, _ := admin.SCRAMMechanisms(ctxT(t), user); len(users[user]) != 0 {
		t.Fatalf("the old password still opens the broker: %v", users)
	}
	if _, sec := issuedCert(t, sub); len(sec.Data[bus.SecretKeyPassword]) != 0 {
		t.Fatal("the Secret still holds a password")
	}
	// Same principal, so the grants stay.
	if len(aclsOn(t, "User:"+user, topic)) == 0 {
		t.Fatal("the grant was lost in the switch")
	}
}

func TestServiceAccountIdentity(t *testing.T) {
	ns := env.NamespaceT(t, "sa")
	topic := readyTopic(t, ns, "payments")
	consumer := newSub(ns, "reader", "chg-1", busv1.RoleConsume, ref("payments"))
	consumer.Spec.Authentication = saAuth("payment-service")
	producer := newSub(ns, "writer", "chg-1", busv1.RoleProduce, ref("payments"))
	producer.Spec.Authentication = saAuth("payment-service")
	createApproved(t, ns, "chg-1", consumer, producer)
	// The ServiceAccount does not exist yet: nothing is granted, and the
	// Subscription says why.
	waitCondition(t, consumer, subConds(consumer), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonServiceAccountNotFound)
	principal := "User:system:serviceaccount:" + ns + ":payment-service"
	if acls := aclsOn(t, principal, topic); len(acls) != 0 {
		t.Fatalf("granted before the ServiceAccount exists: %v", acls)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "payment-service"}}
	if err := env.Client.Create(ctxT(t), sa); err != nil {
		t.Fatal(err)
	}
	waitSubReady(t, consumer)
	waitSubReady(t, producer)
	if consumer.Status.Principal != principal || consumer.Status.Username != "" {
		t.Fatalf("status %+v", consumer.Status)
	}
	acls := aclsOn(t, principal, topic)
	ops := map[string]bool{}
	for _, a := range acls {
		ops[a.Operation] = true
	}
	if !ops[kafka.OpRead] || !ops[kafka.OpWrite] || !ops[kafka.OpDescribe] {
		t.Fatalf("the shared principal should hold both Subscriptions' grants: %v", acls)
	}
	_, sec := credentials(t, consumer)
	if _, has := sec.Data[bus.SecretKeyPassword]; has {
		t.Fatal("a ServiceAccount identity must have no password")
	}
	if string(sec.Data[bus.SecretKeyMechanism]) != bus.MechanismOAuthBearer || string(sec.Data[bus.SecretKeyTokenAudience]) != "kafka" || string(sec.Data[bus.SecretKeyTokenFile]) != bus.DefaultTokenFile {
		t.Fatalf("Secret for a ServiceAccount identity: %v", keys(sec.Data))
	}
	if users, _ := admin.SCRAMMechanisms(ctxT(t), ns+".reader"); len(users[ns+".reader"]) != 0 {
		t.Fatalf("a ServiceAccount identity got a SCRAM user: %v", users)
	}

	// Deleting the producer revokes its own grants only: Describe on the
	// topic is the consumer's too, and stays.
	if err := requesterClient(t).Delete(ctxT(t), producer); err != nil {
		t.Fatal(err)
	}
	eventually(t, "producer released", func() error { return gone404(requesterClient(t), producer) })
	acls = aclsOn(t, principal, topic)
	ops = map[string]bool{}
	for _, a := range acls {
		ops[a.Operation] = true
	}
	if ops[kafka.OpWrite] || !ops[kafka.OpRead] || !ops[kafka.OpDescribe] {
		t.Fatalf("after deleting the producer: %v", acls)
	}
	if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(consumer), consumer); err != nil {
		t.Fatal(err)
	}
	if c := condOf(consumer.Status.Conditions, busv1.ConditionDrifted); c != nil {
		t.Fatalf("the consumer reports its sibling's ACLs as unmanaged: %s", c.Message)
	}
}

func TestServiceAccountQuotaIsRefused(t *testing.T) {
	ns := env.NamespaceT(t, "saquota")
	s := newSub(ns, "x", "chg-1", busv1.RoleConsume, ref("t"))
	s.Spec.Authentication = saAuth("x")
	rate := int64(4096)
	s.Spec.Quota = &busv1.QuotaSpec{ConsumerByteRate: &rate}
	err := requesterClient(t).Create(ctxT(t), s)
	if err == nil || !strings.Contains(err.Error(), "quota is not supported with authentication type serviceAccount") {
		t.Fatalf("err = %v", err)
	}
}

// assertNoKey checks that a private key appears in no log, event, status or
// audit record.
func assertNoKey(t *testing.T, ns, keyPEM string, s *busv1.Subscription) {
	t.Helper()
	// The base64 body of the key, without the PEM armour.
	body := strings.Join(slices.DeleteFunc(strings.Split(keyPEM, "\n"), func(l string) bool { return strings.HasPrefix(l, "-----") || l == "" }), "")
	if len(body) < 40 {
		t.Fatalf("implausible key %q", keyPEM)
	}
	probe := body[:40]
	assertNoSecret(t, ns, probe, s)
}

func loadClientsCA(t *testing.T) *pki.CA {
	t.Helper()
	sec := &corev1.Secret{}
	if err := env.Client.Get(ctxT(t), client.ObjectKey{Namespace: testenv.SystemNamespace, Name: "hmsbus-clients-ca"}, sec); err != nil {
		t.Fatal(err)
	}
	ca, err := pki.ParseCA(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// plant overwrites keys of a Subscription's Secret, as someone editing it
// by hand would.
func plant(t *testing.T, sub *busv1.Subscription, data map[string][]byte) {
	t.Helper()
	s := &corev1.Secret{}
	if err := env.Client.Get(ctxT(t), client.ObjectKey{Namespace: sub.Namespace, Name: sub.SecretName()}, s); err != nil {
		t.Fatal(err)
	}
	for k, v := range data {
		s.Data[k] = v
	}
	if err := env.Client.Update(ctxT(t), s); err != nil {
		t.Fatal(err)
	}
}

func mustCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	c, err := pki.ParseCertificate(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
