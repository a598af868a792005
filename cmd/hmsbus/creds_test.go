package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hms-platform/bus-operator/internal/pki"
	"github.com/hms-platform/bus-operator/pkg/bus"
)

// mountCredentials writes c as the operator's Secret would be mounted.
func mountCredentials(t *testing.T, c bus.Credentials) string {
	t.Helper()
	dir := t.TempDir()
	for k, v := range bus.SecretData(c) {
		if err := os.WriteFile(filepath.Join(dir, k), v, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A serviceAccount Secret names the pod's token path; outside the pod
// --token-file says where the token is. Nothing else changes.
func TestTokenFileFlag(t *testing.T) {
	sa := bus.Credentials{Bootstrap: []string{"oauth:9096"}, TLS: true, Mechanism: bus.MechanismOAuthBearer,
		TokenFile: bus.DefaultTokenFile, TokenAudience: "kafka", ConsumerGroup: "fees.reader", Topics: []string{"FeeUpdated"}}
	dir := mountCredentials(t, sa)
	token := writeFile(t, "token", "header.payload.signature\n")
	a := &app{}
	ctx := context.Background()

	got, err := a.credentials(ctx, &credFlags{dir: dir, tokenFile: token})
	if err != nil {
		t.Fatal(err)
	}
	if got.TokenFile != token || got.Mechanism != bus.MechanismOAuthBearer || got.ConsumerGroup != "fees.reader" || got.Bootstrap[0] != "oauth:9096" {
		t.Fatalf("credentials with --token-file: %+v", got)
	}
	// Without the flag, the Secret's path stands.
	if got, err := a.credentials(ctx, &credFlags{dir: dir}); err != nil || got.TokenFile != bus.DefaultTokenFile {
		t.Fatalf("without --token-file: %+v, %v", got, err)
	}
	// A missing file is reported before anything connects.
	if _, err := a.credentials(ctx, &credFlags{dir: dir, tokenFile: token + ".missing"}); err == nil || !strings.Contains(err.Error(), "--token-file") {
		t.Fatalf("missing token file: %v", err)
	}

	// A token does not turn password credentials into token ones: their
	// bootstrap is the SCRAM listener.
	scram := mountCredentials(t, bus.Credentials{Bootstrap: []string{"b:9092"}, Mechanism: bus.MechanismSCRAMSHA512, Username: "fees.app", Password: "pw"})
	if _, err := a.credentials(ctx, &credFlags{dir: scram, tokenFile: token}); err == nil || !strings.Contains(err.Error(), "not for a ServiceAccount token") {
		t.Fatalf("--token-file with SCRAM credentials: %v", err)
	}

	// From the environment, the flag stands for HMSBUS_TOKEN_FILE, and the
	// variable is left as it was.
	for _, k := range []string{bus.EnvUsername, bus.EnvPassword, bus.EnvMechanism, bus.EnvCAFile, bus.EnvCertFile, bus.EnvKeyFile, bus.EnvTokenFile} {
		t.Setenv(k, "")
	}
	t.Setenv(bus.EnvBootstrap, "oauth:9096")
	t.Setenv(bus.EnvSecurityProtocol, bus.SecurityProtocolSASLSSL)
	t.Setenv(bus.EnvGroup, "fees.reader")
	got, err = a.credentials(ctx, &credFlags{tokenFile: token})
	if err != nil || got.TokenFile != token || got.Mechanism != bus.MechanismOAuthBearer || !got.TLS {
		t.Fatalf("from env with --token-file: %+v, %v", got, err)
	}
	if v := os.Getenv(bus.EnvTokenFile); v != "" {
		t.Fatalf("%s left set to %q", bus.EnvTokenFile, v)
	}
}

func TestCertFileFlags(t *testing.T) {
	caPEM, caKey, err := pki.NewCA("test clients CA", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.ParseCA(caPEM, caKey)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueClient("fees.sidecar", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tlsCreds := bus.Credentials{Bootstrap: []string{"mtls:9094"}, TLS: true, Username: "fees.sidecar",
		CertPEM: certPEM, KeyPEM: keyPEM, ConsumerGroup: "fees.sidecar"}
	dir := mountCredentials(t, tlsCreds)
	// Files given by flag are read at each connection, not now.
	cert, key := writeFile(t, "tls.crt", "cert"), writeFile(t, "tls.key", "key")
	a := &app{}
	ctx := context.Background()

	got, err := a.credentials(ctx, &credFlags{dir: dir, certFile: cert, keyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	if got.CertFile != cert || got.KeyFile != key || got.CertPEM != nil || got.SecurityProtocol() != bus.SecurityProtocolSSL {
		t.Fatalf("credentials with --cert-file: %+v", got)
	}
	if _, err := a.credentials(ctx, &credFlags{dir: dir, certFile: cert}); err == nil || !strings.Contains(err.Error(), "go together") {
		t.Fatalf("--cert-file without --key-file: %v", err)
	}
	token := writeFile(t, "token", "t")
	if _, err := a.credentials(ctx, &credFlags{dir: dir, certFile: cert, keyFile: key, tokenFile: token}); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Fatalf("--cert-file and --token-file: %v", err)
	}
	scram := mountCredentials(t, bus.Credentials{Bootstrap: []string{"b:9092"}, Mechanism: bus.MechanismSCRAMSHA512, Username: "fees.app", Password: "pw"})
	if _, err := a.credentials(ctx, &credFlags{dir: scram, certFile: cert, keyFile: key}); err == nil || !strings.Contains(err.Error(), "not for a client certificate") {
		t.Fatalf("--cert-file with SCRAM credentials: %v", err)
	}
}
