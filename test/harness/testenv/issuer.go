package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// The API server is an OIDC issuer for its ServiceAccount tokens: it serves
// a discovery document and the public keys (JWKS) tokens are signed with.
// A broker validating those tokens (SASL/OAUTHBEARER with Kafka's built-in
// validator) fetches the JWKS without Kubernetes credentials, so clusters
// that let outside verifiers do that bind the discovery role to
// unauthenticated users; PublicIssuerDiscovery does the same here.

// Issuer describes the API server's ServiceAccount token issuer, as its
// discovery document says.
type Issuer struct {
	// URL is the issuer (the tokens' iss claim; --service-account-issuer).
	URL string `json:"issuer"`
	// JWKSURI is where the verification keys are served.
	JWKSURI string `json:"jwks_uri"`
}

// publicDiscoveryBinding grants the API server's built-in issuer discovery
// role (GET on /.well-known/openid-configuration and /openid/v1/jwks, and
// nothing else) to unauthenticated clients.
const publicDiscoveryBinding = "hmsbus-testenv:public-issuer-discovery"

// issuerDiscoveryArgs makes the discovery document name a JWKS URI that
// clients can reach: by default the API server derives it from its
// advertise address (the machine's primary IP), while envtest binds the
// API server to 127.0.0.1 only.
func issuerDiscoveryArgs(opts *Options) {
	if !opts.PublicIssuerDiscovery {
		return
	}
	if _, set := opts.APIServerArgs["external-hostname"]; set {
		return
	}
	args := maps.Clone(opts.APIServerArgs)
	if args == nil {
		args = map[string]string{}
	}
	args["external-hostname"] = "127.0.0.1"
	opts.APIServerArgs = args
}

// serviceAccountKeyArgs writes Options.ServiceAccountSigningKey to a
// private temporary directory and points the API server's signing and
// verification key flags at it. It returns the directory ("" when no key
// was given), which the caller removes when the API server is gone.
func serviceAccountKeyArgs(opts *Options) (string, error) {
	if len(opts.ServiceAccountSigningKey) == 0 {
		return "", nil
	}
	block, _ := pem.Decode(opts.ServiceAccountSigningKey)
	if block == nil || !strings.Contains(block.Type, "PRIVATE KEY") {
		return "", errors.New("ServiceAccountSigningKey: want a PEM private key (RSA or ECDSA)")
	}
	dir, err := os.MkdirTemp("", "testenv-sa-")
	if err != nil {
		return "", fmt.Errorf("making a directory for the ServiceAccount signing key: %w", err)
	}
	path := filepath.Join(dir, "sa-signing.key")
	if err := os.WriteFile(path, opts.ServiceAccountSigningKey, 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("writing the ServiceAccount signing key: %w", err)
	}
	args := maps.Clone(opts.APIServerArgs)
	if args == nil {
		args = map[string]string{}
	}
	args["service-account-signing-key-file"] = path
	// The API server verifies tokens (and publishes the JWKS) with the keys
	// of --service-account-key-file only; it accepts a private key there
	// and uses its public half. envtest's default names its own key, which
	// would leave tokens signed with this one unverifiable.
	args["service-account-key-file"] = path
	opts.APIServerArgs = args
	return dir, nil
}

// ServingCAPEM is the CA certificate the API server's serving certificate
// chains to: what a client of its HTTPS endpoints (the JWKS) must trust.
func (e *Env) ServingCAPEM() []byte {
	return append([]byte(nil), e.Config.CAData...)
}

// ServiceAccountIssuer reads the issuer's discovery document, as admin.
func (e *Env) ServiceAccountIssuer(ctx context.Context) (Issuer, error) {
	hc, err := rest.HTTPClientFor(e.Config)
	if err != nil {
		return Issuer{}, fmt.Errorf("making an HTTP client for the API server: %w", err)
	}
	var iss Issuer
	if err := getJSON(ctx, hc, strings.TrimSuffix(e.Config.Host, "/")+"/.well-known/openid-configuration", &iss); err != nil {
		return Issuer{}, fmt.Errorf("reading the ServiceAccount issuer discovery document: %w", err)
	}
	if iss.URL == "" || iss.JWKSURI == "" {
		return Issuer{}, fmt.Errorf("the ServiceAccount issuer discovery document names no issuer or jwks_uri: %+v", iss)
	}
	return iss, nil
}

// publishIssuerDiscovery binds the discovery role to unauthenticated users
// and waits until an anonymous client (trusting only the serving CA) reads
// the JWKS.
func (e *Env) publishIssuerDiscovery(ctx context.Context) error {
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: publicDiscoveryBinding},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:service-account-issuer-discovery"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: "system:unauthenticated"}},
	}
	if err := e.Client.Create(ctx, crb); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("binding issuer discovery to unauthenticated users: %w", err)
	}
	iss, err := e.ServiceAccountIssuer(ctx)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(e.Config.CAData) {
		return errors.New("the API server's serving CA is not PEM")
	}
	anonymous := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}},
	}
	defer anonymous.CloseIdleConnections()
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return poll(waitCtx, "unauthenticated clients read the JWKS at "+iss.JWKSURI, func() (bool, error) {
		var jwks struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := getJSON(waitCtx, anonymous, iss.JWKSURI, &jwks); err != nil {
			return false, err
		}
		if len(jwks.Keys) == 0 {
			return false, errors.New("the JWKS holds no key")
		}
		return true, nil
	})
}

func getJSON(ctx context.Context, hc *http.Client, url string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("GET %s: reading the answer: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("GET %s: decoding: %w", url, err)
	}
	return nil
}
