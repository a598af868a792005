package localstack

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hms-platform/bus-operator/pkg/bus"
)

// The whole stack is exercised by test/e2e; these cover the parts that
// guard the user's files and carry credentials.

func TestPrepareStateDirRefusesForeignDir(t *testing.T) {
	dir := t.TempDir()
	precious := filepath.Join(dir, "precious.txt")
	if err := os.WriteFile(precious, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := prepareStateDir(dir)
	if err == nil || !strings.Contains(err.Error(), "refusing to wipe") {
		t.Fatalf("prepareStateDir on a foreign non-empty dir = %v; want a refusal", err)
	}
	if _, err := os.Stat(precious); err != nil {
		t.Fatalf("the foreign file is gone: %v", err)
	}
}

func TestPrepareStateDirWipesItsOwnDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	wiped, err := prepareStateDir(dir)
	if err != nil || wiped {
		t.Fatalf("first prepareStateDir = %v, %v; want a fresh dir, nothing wiped", wiped, err)
	}
	old := filepath.Join(dir, "operator.log")
	if err := os.WriteFile(old, []byte("earlier run"), 0o600); err != nil {
		t.Fatal(err)
	}
	wiped, err = prepareStateDir(dir)
	if err != nil || !wiped {
		t.Fatalf("second prepareStateDir = %v, %v; want the earlier run wiped", wiped, err)
	}
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the earlier run's file survived: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, stateMarker)); err != nil {
		t.Fatalf("the wiped dir is not marked again: %v", err)
	}
}

func TestSecretRoundTripThroughFiles(t *testing.T) {
	// What `kubectl get secret -o json` prints: data base64-encoded.
	const secretJSON = `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"payment-bus-credentials"},
	  "data":{"bootstrap.servers":"MTI3LjAuMC4xOjkwOTI=","username":"ZmVlcy5wYXltZW50","password":"czNjcjN0",
	  "sasl.mechanism":"U0NSQU0tU0hBLTUxMg==","group.id":"ZmVlcy5wYXltZW50"}}`
	data, err := SecretDataFromJSON([]byte(secretJSON))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "creds")
	if err := WriteSecretDir(dir, data); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, "password"))
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Fatalf("password file mode %v; want 0600", perm)
	}
	creds, err := bus.CredentialsFromDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if creds.Username != "fees.payment" || creds.Password != "s3cr3t" || creds.ConsumerGroup != "fees.payment" || creds.Bootstrap[0] != "127.0.0.1:9092" {
		t.Fatalf("credentials read back = %v; want fees.payment at 127.0.0.1:9092 with its password and group", creds)
	}
}

func TestSecretDataFromJSONRejectsOtherKinds(t *testing.T) {
	if _, err := SecretDataFromJSON([]byte(`{"kind":"ConfigMap","data":{}}`)); err == nil {
		t.Fatal("a ConfigMap was accepted as a Secret")
	}
}

func TestWriteSecretDirRejectsPathKeys(t *testing.T) {
	dir := t.TempDir()
	err := WriteSecretDir(filepath.Join(dir, "creds"), map[string][]byte{"../escape": []byte("x")})
	if err == nil {
		t.Fatal("a key with a path separator was written")
	}
	if _, err := os.Stat(filepath.Join(dir, "escape")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a file escaped the credentials dir: %v", err)
	}
}

func TestCheckBinariesNamesTheMakeTarget(t *testing.T) {
	err := CheckBinaries(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "make build controlplane") {
		t.Fatalf("CheckBinaries on an empty dir = %v; want a hint to run make build controlplane", err)
	}
}
