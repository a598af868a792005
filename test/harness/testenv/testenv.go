// Package testenv starts a real kube-apiserver and etcd (controller-runtime's
// envtest, with the binaries built into <repo>/bin) with everything hms-bus
// installs: the CRDs, the ChangeTicket admission policies and the persona
// roles bound to their groups. Integration tests, controller tests and the
// local demo all use it, so it never depends on package testing in Start.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
)

// Groups the persona bindings in config/rbac/base/personas grant roles to.
const (
	RequestersGroup = "hms:bus-requesters"
	ReviewersGroup  = "hms:bus-reviewers"
	AuditorsGroup   = "hms:bus-auditors"
)

// SystemNamespace holds the operator and the governance ConfigMap.
const SystemNamespace = "hmsbus-system"

// AdminUser is the user name of Env.Config (envtest provisions it in
// system:masters). The ticket-requester policy applies to it too, so a
// ChangeTicket created as admin must have spec.requestedBy "admin".
const AdminUser = "admin"

// Options tunes Start. The zero value is what tests want.
type Options struct {
	// RootDir is the repository root; found by walking up to go.mod if empty.
	RootDir string
	// AssetsDir holds kube-apiserver and etcd. Default: $KUBEBUILDER_ASSETS,
	// else <RootDir>/bin.
	AssetsDir string
	// EtcdDataDir keeps etcd's data between runs (the demo); a temporary
	// directory, removed on Stop, if empty.
	EtcdDataDir string
	// APIServerArgs are extra kube-apiserver flags, name without dashes.
	APIServerArgs map[string]string
	// Output receives the control plane's logs; discarded if nil.
	Output io.Writer
	// StartTimeout bounds each control plane process start (default 60s;
	// the first start on a busy 2-core machine can be slow).
	StartTimeout time.Duration

	// ServiceAccountSigningKey, when set, is the PEM private key (RSA or
	// ECDSA) the API server signs ServiceAccount tokens with and publishes
	// at /openid/v1/jwks; default envtest's own key. A test that needs a
	// token TokenRequest will not mint (an expired one) signs it with this.
	ServiceAccountSigningKey []byte
	// PublicIssuerDiscovery lets unauthenticated clients read the
	// ServiceAccount issuer's discovery document and JWKS, as a broker
	// validating ServiceAccount tokens must (see issuer.go).
	PublicIssuerDiscovery bool
}

// Env is a running control plane with hms-bus installed.
type Env struct {
	// Config is the admin (system:masters) REST config.
	Config *rest.Config
	// Client is an admin client with the hms-bus and client-go kinds.
	Client client.Client
	// Environment is the underlying envtest environment.
	Environment *envtest.Environment
	// RootDir is the repository root the manifests were read from.
	RootDir string

	// tempDir holds files Start wrote for the API server (the signing
	// key); Stop removes it.
	tempDir string
}

var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(busv1.AddToScheme(scheme))
}

// Scheme knows the client-go kinds and bus.hms.io/v1.
func Scheme() *runtime.Scheme { return scheme }

// Start starts a control plane with default Options.
func Start() (*Env, error) { return StartWithOptions(Options{}) }

// StartWithOptions starts etcd and kube-apiserver, installs hms-bus and waits
// until its policies and roles are enforced. On error nothing is left running.
func StartWithOptions(opts Options) (*Env, error) {
	root, err := resolveRoot(opts.RootDir)
	if err != nil {
		return nil, err
	}
	assets, err := resolveAssets(root, opts.AssetsDir)
	if err != nil {
		return nil, err
	}
	issuerDiscoveryArgs(&opts)
	tempDir, err := serviceAccountKeyArgs(&opts)
	if err != nil {
		return nil, err
	}
	removeTemp := func() {
		if tempDir != "" {
			_ = os.RemoveAll(tempDir)
		}
	}
	te := newEnvironment(root, assets, opts)
	cfg, err := te.Start()
	if err != nil {
		// Start can fail after launching processes; Stop reaps them.
		_ = te.Stop()
		removeTemp()
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", assets, err)
	}
	env := &Env{Config: cfg, Environment: te, RootDir: root, tempDir: tempDir}
	if err := env.install(context.Background()); err != nil {
		_ = te.Stop()
		removeTemp()
		return nil, err
	}
	if opts.PublicIssuerDiscovery {
		if err := env.publishIssuerDiscovery(context.Background()); err != nil {
			_ = te.Stop()
			removeTemp()
			return nil, err
		}
	}
	return env, nil
}

func newEnvironment(root, assets string, opts Options) *envtest.Environment {
	te := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing:    true,
		Scheme:                   scheme,
		ControlPlaneStartTimeout: opts.StartTimeout,
	}
	if te.ControlPlaneStartTimeout == 0 && os.Getenv("KUBEBUILDER_CONTROLPLANE_START_TIMEOUT") == "" {
		te.ControlPlaneStartTimeout = 60 * time.Second
	}
	api := te.ControlPlane.GetAPIServer()
	// envtest defaults to RBAC already; set it explicitly because the
	// persona tests are meaningless without it.
	api.Configure().Set("authorization-mode", "RBAC")
	for name, value := range opts.APIServerArgs {
		api.Configure().Set(name, value)
	}
	if opts.Output != nil {
		api.Out, api.Err = opts.Output, opts.Output
	}
	te.ControlPlane.Etcd = &envtest.Etcd{DataDir: opts.EtcdDataDir}
	if opts.Output != nil {
		te.ControlPlane.Etcd.Out, te.ControlPlane.Etcd.Err = opts.Output, opts.Output
	}
	return te
}

// install applies the manifests a cluster running hms-bus has besides the
// CRDs, then waits until the API server enforces them.
func (e *Env) install(ctx context.Context) error {
	c, err := client.New(e.Config, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("creating admin client: %w", err)
	}
	e.Client = c
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: SystemNamespace}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", SystemNamespace, err)
	}
	for _, dir := range []string{"config/admission", "config/rbac/base/personas"} {
		if err := applyKustomization(ctx, c, filepath.Join(e.RootDir, dir)); err != nil {
			return err
		}
	}
	waitCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := e.waitForRBAC(waitCtx); err != nil {
		return err
	}
	return e.waitForPolicies(waitCtx)
}

// Stop stops the API server and etcd.
func (e *Env) Stop() error {
	if e == nil || e.Environment == nil {
		return nil
	}
	err := e.Environment.Stop()
	if e.tempDir != "" {
		_ = os.RemoveAll(e.tempDir)
	}
	if err != nil {
		return fmt.Errorf("stopping control plane: %w", err)
	}
	return nil
}

// As returns a client that acts as user, in groups, by impersonation from
// the admin config. The API server adds system:authenticated itself.
func (e *Env) As(user string, groups ...string) (client.Client, error) {
	cfg := rest.CopyConfig(e.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("creating client for user %s: %w", user, err)
	}
	return c, nil
}

// WriteKubeconfig writes an admin kubeconfig (context "envtest") for kubectl.
func (e *Env) WriteKubeconfig(path string) error {
	return writePrivateFile(path, e.Environment.KubeConfig)
}

// WriteUserKubeconfig writes a kubeconfig for a user in groups, who
// authenticates with a client certificate (no impersonation), so kubectl
// sessions in the demo act as real personas.
func (e *Env) WriteUserKubeconfig(path, user string, groups ...string) error {
	u, err := e.Environment.AddUser(envtest.User{Name: user, Groups: groups}, nil)
	if err != nil {
		return fmt.Errorf("provisioning user %s: %w", user, err)
	}
	data, err := u.KubeConfig()
	if err != nil {
		return fmt.Errorf("building kubeconfig for user %s: %w", user, err)
	}
	return writePrivateFile(path, data)
}

// writePrivateFile writes 0600: kubeconfigs hold private keys.
func writePrivateFile(path string, data []byte) error {
	if len(data) == 0 {
		return errors.New("no kubeconfig: the environment is not started")
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return nil
}

// CreateNamespace creates a namespace named prefix-<random> and returns its
// name. Namespaces are never really removed in envtest (no namespace
// controller), so tests should use a fresh one rather than clean up.
func (e *Env) CreateNamespace(ctx context.Context, prefix string) (string, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := e.Client.Create(ctx, ns); err != nil {
		return "", fmt.Errorf("creating namespace %s-*: %w", prefix, err)
	}
	return ns.Name, nil
}
