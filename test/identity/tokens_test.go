package identity

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func createServiceAccount(t *testing.T, ns, name string) {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if _, err := kube.CoreV1().ServiceAccounts(ns).Create(ctxT(t), sa, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating ServiceAccount %s/%s: %v", ns, name, err)
	}
}

// mintToken asks the API server for a token of a ServiceAccount with one
// audience (TokenRequest, what the kubelet does for a projected token).
func mintToken(t *testing.T, ns, sa, audience string) string {
	t.Helper()
	tr := &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{Audiences: []string{audience}}}
	got, err := kube.CoreV1().ServiceAccounts(ns).CreateToken(ctxT(t), sa, tr, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("requesting a token of %s/%s for audience %q: %v", ns, sa, audience, err)
	}
	return got.Status.Token
}

// resign returns a copy of a token the API server issued, with its claims
// changed by mutate and signed again with key, keeping the header (alg and
// kid). Signed with saSigningKey it is a token the API server could have
// issued; with another key, a forgery.
func resign(t *testing.T, token string, key *rsa.PrivateKey, mutate func(claims map[string]any)) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", token)
	}
	var header struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(b64(t, parts[0]), &header); err != nil || header.Alg != "RS256" {
		t.Fatalf("token header %s: %v; the tests sign RS256 like the API server with an RSA key", b64(t, parts[0]), err)
	}
	claims := map[string]any{}
	dec := json.NewDecoder(bytes.NewReader(b64(t, parts[1])))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil {
		t.Fatal(err)
	}
	mutate(claims)
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	signed := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload)
	sum := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func b64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("decoding JWT segment: %v", err)
	}
	return b
}

// writeToken replaces the token file at once, as the kubelet's atomic
// writer swaps a projected volume: a reader never sees half a token.
func writeToken(t *testing.T, path, token string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".token.tmp")
	if err := os.WriteFile(tmp, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
