package kafkabroker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// CA is a private certificate authority made in memory. The launcher makes
// one per broker for its server certificate (clients trust CA.CertPEM), and
// tests make more of them to stand for the clients CAs the mTLS listener
// trusts (Options.ClientCAPEM).
type CA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

// certValidity is long enough for any test run or demo session, and short
// enough that a leaked key of a forgotten test directory is soon worthless.
const certValidity = 7 * 24 * time.Hour

// NewCA makes a self-signed ECDSA P-256 CA.
func NewCA(commonName string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("signing CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing CA certificate: %w", err)
	}
	return &CA{cert: cert, key: key, certPEM: pemBlock("CERTIFICATE", der)}, nil
}

// CertPEM is the CA certificate, PEM encoded: what clients trust.
func (c *CA) CertPEM() []byte { return append([]byte(nil), c.certPEM...) }

// Pool is a cert pool holding only this CA.
func (c *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.cert)
	return p
}

// ClientCert issues a client certificate (ECDSA, extended key usage
// clientAuth, which Java's TLS checks) for subject. On the broker's mTLS
// listener a subject whose first RDN is CN=x becomes principal User:x.
func (c *CA) ClientCert(subject pkix.Name) (tls.Certificate, error) {
	key, der, err := c.issue(subject, x509.ExtKeyUsageClientAuth, nil, nil)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// serverPEM issues a server certificate for hosts (DNS names or IPs) and
// returns one PEM file holding the unencrypted PKCS#8 key and the
// certificate chain: the form Kafka reads with ssl.keystore.type=PEM and
// ssl.keystore.location.
func (c *CA) serverPEM(hosts []string) ([]byte, error) {
	var dns []string
	var ips []net.IP
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else if h != "" {
			dns = append(dns, h)
		}
	}
	key, der, err := c.issue(pkix.Name{CommonName: "hms-bus kafka broker"}, x509.ExtKeyUsageServerAuth, dns, ips)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding broker key: %w", err)
	}
	out := pemBlock("PRIVATE KEY", keyDER)
	out = append(out, pemBlock("CERTIFICATE", der)...)
	return append(out, c.certPEM...), nil
}

func (c *CA) issue(subject pkix.Name, usage x509.ExtKeyUsage, dns []string, ips []net.IP) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		return nil, nil, fmt.Errorf("signing certificate for %s: %w", subject, err)
	}
	return key, der, nil
}

func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating certificate serial: %w", err)
	}
	return n, nil
}

func pemBlock(kind string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
}
