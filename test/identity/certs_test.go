package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/hms-platform/bus-operator/internal/pki"
	"github.com/hms-platform/bus-operator/pkg/bus"
)

// operatorCA reads the clients CA (certificate and key) from the Secret
// the operator keeps it in: the refusal tests issue certificates the
// operator itself never would (expired, without a CN) from the very CA
// the broker trusts, so only the property under test is wrong.
func operatorCA(t *testing.T) *pki.CA {
	t.Helper()
	sec := &corev1.Secret{}
	if err := env.Client.Get(ctxT(t), clientsCA, sec); err != nil {
		t.Fatalf("reading the clients CA Secret: %v", err)
	}
	ca, err := pki.ParseCA(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// issue signs a client certificate for subject, valid from notBefore to
// notAfter, with a new ECDSA P-256 key, and returns both as PEM.
func issue(t *testing.T, ca *pki.CA, subject pkix.Name, notBefore, notAfter time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: subject, NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		AuthorityKeyId: ca.Cert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pemKey(t, key)
}

// foreignCA is a CA the broker does not trust.
func foreignCA(t *testing.T) *pki.CA {
	t.Helper()
	certPEM, keyPEM, err := pki.NewCA("not the clients CA", 24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.ParseCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// pemCert encodes a tls.Certificate's leaf and key as PEM.
func pemCert(t *testing.T, c tls.Certificate) (certPEM, keyPEM []byte) {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), pemKey(t, c.PrivateKey)
}

func pemKey(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// withCert is c presenting another certificate (held in memory).
func withCert(c bus.Credentials, certPEM, keyPEM []byte) bus.Credentials {
	c.CertFile, c.KeyFile = "", ""
	c.CertPEM, c.KeyPEM = certPEM, keyPEM
	return c
}

func serialOf(t *testing.T, certPEM []byte) string {
	t.Helper()
	c, err := pki.ParseCertificate(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.Text(16)
}
