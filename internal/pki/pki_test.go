package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

var now = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func newTestCA(t *testing.T) *CA {
	t.Helper()
	certPEM, keyPEM, err := NewCA("test CA", 365*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ParseCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestIssueClientCertificate(t *testing.T) {
	ca := newTestCA(t)
	certPEM, keyPEM, err := ca.IssueClient("fees.payment", 30*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Verify(certPEM, keyPEM, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.String() != "CN=fees.payment" {
		t.Errorf("subject %q, want CN=fees.payment (the broker maps CN to the principal)", cert.Subject)
	}
	if k, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("key %T, want ECDSA P-256", cert.PublicKey)
	}
	if cert.IsCA || len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("a client certificate must be for clientAuth only: CA=%v EKU=%v", cert.IsCA, cert.ExtKeyUsage)
	}
	if got := cert.NotAfter.Sub(now); got != 30*24*time.Hour {
		t.Errorf("validity %s", got)
	}
	// Renewal comes well before expiry: two thirds into the lifetime.
	renew := RenewAt(cert)
	if !renew.After(now) || cert.NotAfter.Sub(renew) < 9*24*time.Hour {
		t.Errorf("renew at %s, expires %s", renew, cert.NotAfter)
	}
	// The pair works as a TLS client certificate.
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Errorf("not a usable key pair: %v", err)
	}
}

func TestVerifyRefusesWhatTheCADidNotIssue(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	certPEM, keyPEM, err := other.IssueClient("fees.payment", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Verify(certPEM, keyPEM, now); err == nil {
		t.Error("a certificate of another CA verified")
	}
	mine, _, err := ca.IssueClient("fees.payment", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Verify(mine, keyPEM, now); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("a certificate with someone else's key: %v", err)
	}
	if _, err := ca.Verify(mine, keyPEM, now.Add(2*time.Hour)); err == nil {
		t.Error("an expired certificate verified")
	}
}

func TestClientCertificateNeverOutlivesTheCA(t *testing.T) {
	certPEM, keyPEM, err := NewCA("short CA", 24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ParseCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _, err := ca.IssueClient("x.y", 30*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := ParseCertificate(leaf)
	if cert.NotAfter.After(ca.Cert.NotAfter) {
		t.Errorf("client certificate ends %s, after its CA %s", cert.NotAfter, ca.Cert.NotAfter)
	}
}

func TestParseCARefusesMismatchesAndNonCAs(t *testing.T) {
	ca := newTestCA(t)
	_, otherKey, err := NewCA("other", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCA(ca.CertPEM, otherKey); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("mismatched key: %v", err)
	}
	leaf, leafKey, err := ca.IssueClient("a.b", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCA(leaf, leafKey); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("leaf as CA: %v", err)
	}
	if _, err := ParseCA([]byte("garbage"), otherKey); err == nil {
		t.Error("garbage certificate accepted")
	}
	if _, _, err := ca.IssueClient("", time.Hour, now); err == nil {
		t.Error("empty common name accepted")
	}
}

func TestPublishedBundleKeepsThePreviousCAForAWhile(t *testing.T) {
	oldCA, newCA := newTestCA(t), newTestCA(t)
	keep := 30 * 24 * time.Hour
	cm := &corev1.ConfigMap{Data: map[string]string{KeyCACert: string(oldCA.CertPEM)}}

	// Unchanged CA: the bundle is just it.
	if b, ann := publishedBundle(cm, oldCA, now, keep); b != string(oldCA.CertPEM) || ann != nil {
		t.Fatalf("unchanged CA: %q %v", b, ann)
	}
	// The CA is replaced: new first, old kept beside it until now+keep.
	b, ann := publishedBundle(cm, newCA, now, keep)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(b)) || !strings.HasPrefix(b, string(newCA.CertPEM)) {
		t.Fatalf("bundle after a change: %q", b)
	}
	if first, _ := ParseCertificate([]byte(b)); !first.Equal(newCA.Cert) {
		t.Fatal("the current CA must come first")
	}
	if ann[annotationPreviousUntil] != now.Add(keep).Format(time.RFC3339) {
		t.Fatalf("annotation %v", ann)
	}
	// Certificates of either CA verify against the bundle.
	for _, ca := range []*CA{oldCA, newCA} {
		leaf, _, err := ca.IssueClient("a.b", time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		cert, _ := ParseCertificate(leaf)
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Fatalf("a certificate of %s does not verify against the bundle: %v", ca.Cert.Subject, err)
		}
	}
	// Later calls keep the bundle until the time, then drop the old CA.
	cm = &corev1.ConfigMap{Data: map[string]string{KeyCACert: b}}
	cm.Annotations = ann
	if b2, ann2 := publishedBundle(cm, newCA, now.Add(keep/2), keep); b2 != b || ann2[annotationPreviousUntil] != ann[annotationPreviousUntil] {
		t.Fatalf("halfway: %q %v", b2, ann2)
	}
	if b3, ann3 := publishedBundle(cm, newCA, now.Add(keep), keep); b3 != string(newCA.CertPEM) || ann3 != nil {
		t.Fatalf("after the time: %q %v", b3, ann3)
	}
}
