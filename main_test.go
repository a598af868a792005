package main

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hms-platform/bus-operator/internal/governance"
	"github.com/hms-platform/bus-operator/internal/operator"
	"github.com/hms-platform/bus-operator/internal/pki"
)

func TestOperatorConfigErrorsAreClear(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "password")
	empty := filepath.Join(dir, "empty")
	badCA := filepath.Join(dir, "ca.pem")
	for p, content := range map[string]string{pw: "s3cret-admin-password\n", empty: "\n", badCA: "not a certificate"} {
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := flags{bootstrap: "127.0.0.1:9092", mechanism: "SCRAM-SHA-512", username: "admin", passwordFile: pw, scramIterations: 4096}
	cases := []struct {
		name   string
		mutate func(*flags)
		want   string
		is     error
	}{
		{name: "no bootstrap", mutate: func(f *flags) { f.bootstrap = "" }, want: "--kafka-bootstrap (or HMSBUS_KAFKA_BOOTSTRAP) is required"},
		{name: "no credentials", mutate: func(f *flags) { f.passwordFile = "" }, is: operator.ErrMissingCredentials, want: "--kafka-password-file"},
		{name: "password file without user", mutate: func(f *flags) { f.username = "" }, want: "--kafka-username is required"},
		{name: "missing password file", mutate: func(f *flags) { f.passwordFile = filepath.Join(dir, "nope") }, want: "reading --kafka-password-file"},
		{name: "empty password file", mutate: func(f *flags) { f.passwordFile = empty }, want: "is empty"},
		{name: "secret reference without namespace", mutate: func(f *flags) { f.credentialsSecret = "admin-secret" }, want: "must be namespace/name"},
		{name: "CA file without a certificate", mutate: func(f *flags) { f.tlsCAFile = badCA }, want: "holds no PEM certificate"},
		{name: "client CA file without a certificate", mutate: func(f *flags) { f.clientTLSCAFile = badCA }, want: "--client-tls-ca-file " + badCA},
		{name: "client CA file missing", mutate: func(f *flags) { f.clientTLSCAFile = filepath.Join(dir, "nope") }, want: "reading --client-tls-ca-file"},
		{name: "approval mode unknown", mutate: func(f *flags) { f.approvalMode = "loose" }, want: "--approval-mode: approval mode \"loose\": want pinned or window"},
		{name: "certificates valid too briefly", mutate: func(f *flags) { f.certValidity = time.Minute }, want: "--client-cert-validity 1m0s is too short"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := base
			tc.mutate(&f)
			_, err := f.operatorConfig(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("got %v, want errors.Is %v", err, tc.is)
			}
			if strings.Contains(err.Error(), "s3cret-admin-password") {
				t.Fatal("an error shows the password")
			}
		})
	}

	cfg, err := base.operatorConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Kafka.Password != "s3cret-admin-password" || cfg.Kafka.Username != "admin" || cfg.Kafka.SCRAMIterations != 4096 || cfg.Kafka.TLS != nil {
		t.Fatalf("valid flags gave %+v", cfg.Kafka.Bootstrap)
	}
	if cfg.Policy.Mode != governance.ApprovalPinned {
		t.Fatalf("approvals must pin by default, got %q", cfg.Policy.Mode)
	}
	scoped := base
	scoped.watchNamespaces, scoped.operatorNamespace, scoped.clientsCASecret, scoped.auditHead = "fees, payments", "ops", "hmsbus-clients-ca", "audit/head"
	cfg, err = scoped.operatorConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.WatchNamespaces, []string{"fees", "payments"}) || cfg.ClientsCA.String() != "ops/hmsbus-clients-ca" || cfg.AuditHead.String() != "audit/head" {
		t.Fatalf("namespaced settings: %v %s %s", cfg.WatchNamespaces, cfg.ClientsCA, cfg.AuditHead)
	}
	// The CA clients trust may differ from the operator's own connection:
	// it reaches the brokers on a plain listener, its workloads on TLS.
	caPEM, _, err := pki.NewCA("brokers", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "brokers-ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	clientsTLS := base
	clientsTLS.clientTLSCAFile = caFile
	if cfg, err := clientsTLS.operatorConfig(context.Background()); err != nil || string(cfg.ClientCA) != string(caPEM) || cfg.Kafka.TLS != nil {
		t.Fatalf("--client-tls-ca-file: CA for clients %t, operator TLS %v, err %v", string(cfg.ClientCA) == string(caPEM), cfg.Kafka.TLS != nil, err)
	}
	none := base
	none.mechanism, none.passwordFile, none.username = "none", "", ""
	if cfg, err := none.operatorConfig(context.Background()); err != nil || cfg.Kafka.Mechanism != "" {
		t.Fatalf("mechanism none needs no credentials: %v", err)
	}
}

func TestEnvironmentSetsFlagDefaults(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	var bootstrap string
	var resyncConcurrency int
	fs.StringVar(&bootstrap, "kafka-bootstrap", "", "")
	fs.IntVar(&resyncConcurrency, "max-concurrent-reconciles", 8, "")
	t.Setenv("HMSBUS_KAFKA_BOOTSTRAP", "broker-0:9093,broker-1:9093")
	t.Setenv("HMSBUS_MAX_CONCURRENT_RECONCILES", "16")
	if err := envDefaults(fs); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if bootstrap != "broker-0:9093,broker-1:9093" || resyncConcurrency != 16 {
		t.Fatalf("got %q %d", bootstrap, resyncConcurrency)
	}
	t.Setenv("HMSBUS_MAX_CONCURRENT_RECONCILES", "many")
	if err := envDefaults(fs); err == nil || !strings.Contains(err.Error(), "HMSBUS_MAX_CONCURRENT_RECONCILES") {
		t.Fatalf("a bad environment value must name the variable, got %v", err)
	}
}
