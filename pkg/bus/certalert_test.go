package bus

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"testing"
	"time"
)

// A broker that refuses the client certificate answers the handshake with
// a TLS alert; that must read as refused credentials, like a wrong
// password, not as a network error to retry. The alert comes from a real
// handshake: crypto/tls's own error value, whatever it wraps.
func TestRefusedCertificateIsAnAuthenticationFailure(t *testing.T) {
	serverKey, serverCert := refusalTestCert(t, "server")
	clientKey, clientCert := refusalTestCert(t, "client") // trusted by no one
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{serverCert.Raw}, PrivateKey: serverKey}},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    x509.NewCertPool(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_ = c.(*tls.Conn).Handshake()
		_ = c.Close()
	}()
	roots := x509.NewCertPool()
	roots.AddCert(serverCert)
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
		RootCAs: roots, ServerName: "server",
		Certificates: []tls.Certificate{{Certificate: [][]byte{clientCert.Raw}, PrivateKey: clientKey}},
	})
	if err == nil {
		// TLS 1.3: the client finishes first; the refusal comes with the
		// first read.
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		_ = conn.Close()
	}
	if err == nil {
		t.Fatal("the server accepted a certificate it does not trust")
	}
	if got := classify(err); !errors.Is(got, ErrAuthenticationFailed) || !isFatal(got) {
		t.Fatalf("classify(%v) = %v; want ErrAuthenticationFailed", err, got)
	}
	// Other network errors stay what they are.
	other := &net.OpError{Op: "dial", Err: errors.New("connection refused")}
	if got := classify(other); errors.Is(got, ErrAuthenticationFailed) {
		t.Fatalf("a refused dial became %v", got)
	}
}

// refusalTestCert makes a self-signed ECDSA certificate for name, usable
// by a TLS server or client.
func refusalTestCert(t *testing.T, name string) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}
