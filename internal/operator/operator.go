// Package operator assembles the manager: the broker adapter, the audit
// recorder and the three reconcilers. main.go, the integration tests and the
// demo all run this same code.
package operator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/controllers"
	"github.com/hms-platform/bus-operator/internal/audit"
	"github.com/hms-platform/bus-operator/internal/governance"
	"github.com/hms-platform/bus-operator/internal/kafka"
	"github.com/hms-platform/bus-operator/internal/pki"
)

// Config is everything the operator needs besides the API server.
type Config struct {
	Kafka kafka.Config
	// ClientBootstrap is written into issued credentials; defaults to
	// Kafka.Bootstrap.
	ClientBootstrap []string
	// ClientCA is the PEM CA bundle clients must trust (TLS only).
	ClientCA []byte
	// ClientMTLSBootstrap is the brokers' client-certificate listener and
	// ClientsCA the Secret holding the CA that issues those certificates
	// (created if missing; its certificate is published in
	// ClientsCAConfigMap). CertValidity is their lifetime.
	ClientMTLSBootstrap []string
	ClientsCA           types.NamespacedName
	ClientsCAConfigMap  types.NamespacedName
	CertValidity        time.Duration
	// ClientOAuthBootstrap is the brokers' SASL/OAUTHBEARER listener
	// (TLS when ClientOAuthTLS) for ServiceAccount tokens with
	// TokenAudience.
	ClientOAuthBootstrap []string
	ClientOAuthTLS       bool
	TokenAudience        string

	// EventRate bounds the Normal BrokerChange Events per second (0: the
	// default, audit.DefaultEventRate; negative: no limit).
	EventRate float32
	// WatchNamespaces limits the operator to these namespaces (empty: all);
	// its RBAC can then be granted per namespace (config/namespaced).
	WatchNamespaces []string
	// AuditHead is the ConfigMap where the audit chain's head is
	// published for verifiers (default hmsbus-system/hmsbus-audit-head).
	AuditHead types.NamespacedName

	Policy                  governance.Policy
	ResyncPeriod            time.Duration
	AuditTopic              string
	MaxConcurrentReconciles int

	MetricsAddr string
	ProbeAddr   string
	// PprofAddr serves net/http/pprof ("" or "0": off). It is for
	// profiling a running operator, so it is off by default.
	PprofAddr            string
	LeaderElection       bool
	LeaderElectionNS     string
	LeaderElectionID     string
	SkipNameValidation   bool // tests start several managers in one process
	GracefulShutdownTime time.Duration
}

// DefaultMaxConcurrentReconciles: a reconcile mostly waits (on the API
// server and the broker, whose requests concurrent reconciles share), so
// throughput is reconciles in flight divided by their latency; 32 keeps the
// API server, not the operator, the limit (see test/bench/README.md).
const DefaultMaxConcurrentReconciles = 32

// Scheme returns a scheme with the bus.hms.io kinds and the core kinds.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := busv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// Run starts the operator and blocks until ctx ends.
func Run(ctx context.Context, rc *rest.Config, cfg Config) error {
	mgr, admin, err := New(rc, cfg)
	if err != nil {
		return err
	}
	defer admin.Close()
	return mgr.Start(ctx)
}

// New builds the manager without starting it. The returned client must be
// closed after the manager stops.
func New(rc *rest.Config, cfg Config) (manager.Manager, *kafka.Client, error) {
	if cfg.AuditTopic == "" {
		cfg.AuditTopic = audit.DefaultTopic
	}
	if len(cfg.ClientBootstrap) == 0 {
		cfg.ClientBootstrap = cfg.Kafka.Bootstrap
	}
	if cfg.MaxConcurrentReconciles <= 0 {
		cfg.MaxConcurrentReconciles = DefaultMaxConcurrentReconciles
	}
	// Only our own Secrets are cached: caching every Secret in the cluster
	// would cost memory and widen what a compromised operator could read.
	managed := labels.SelectorFromSet(labels.Set{controllers.LabelManagedBy: controllers.ManagedByValue})
	skip := cfg.SkipNameValidation
	var namespaces map[string]cache.Config
	for _, ns := range cfg.WatchNamespaces {
		if namespaces == nil {
			namespaces = map[string]cache.Config{}
		}
		namespaces[ns] = cache.Config{}
	}
	mgr, err := ctrl.NewManager(rc, ctrl.Options{
		Scheme:                  Scheme(),
		Metrics:                 metricsserver.Options{BindAddress: cfg.MetricsAddr},
		HealthProbeBindAddress:  cfg.ProbeAddr,
		PprofBindAddress:        orDefault(cfg.PprofAddr, "0"),
		LeaderElection:          cfg.LeaderElection,
		LeaderElectionNamespace: cfg.LeaderElectionNS,
		LeaderElectionID:        orDefault(cfg.LeaderElectionID, "hmsbus-operator.bus.hms.io"),
		// Leases are released on shutdown so a new leader takes over at
		// once instead of waiting out the lease.
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       durationPtr(cfg.GracefulShutdownTime),
		Cache: cache.Options{
			// Namespaced kinds are watched in these namespaces only (all
			// when empty); NameClaims and Namespaces are cluster-scoped.
			DefaultNamespaces: namespaces,
			ByObject: map[client.Object]cache.ByObject{
				// The cached copy keeps only the keys a reconcile reads
				// (and a digest of the rest): see TrimCachedSecret.
				&corev1.Secret{}: {Label: managed, Transform: controllers.TrimCachedSecret},
			},
			// No reconciler reads managedFields, and they are the largest
			// part of most cached objects: stripping them before they are
			// stored cuts the cache's memory (see test/bench/README.md).
			DefaultTransform: cache.TransformStripManagedFields(),
		},
		Controller: config.Controller{SkipNameValidation: &skip},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("creating manager: %w", err)
	}
	admin, err := kafka.New(context.Background(), cfg.Kafka)
	if err != nil {
		return nil, nil, fmt.Errorf("creating broker client: %w", err)
	}
	events := mgr.GetEventRecorder("hmsbus-operator")
	// The head is read and written around the cache: caching ConfigMaps
	// would mean watching every ConfigMap in the cluster.
	heads := &audit.ConfigMapHeads{Reader: mgr.GetAPIReader(), Writer: mgr.GetClient(), Namespace: cfg.AuditHead.Namespace, Name: cfg.AuditHead.Name}
	rec := &audit.Recorder{Admin: admin, Topic: cfg.AuditTopic, Events: events, Heads: heads, EventRate: cfg.EventRate}
	opts := controllers.Options{Policy: cfg.Policy, ResyncPeriod: cfg.ResyncPeriod, AuditTopic: cfg.AuditTopic, WatchNamespaces: cfg.WatchNamespaces}

	var caStore *pki.Store
	if cfg.ClientsCA.Name != "" {
		caStore = &pki.Store{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Secret: cfg.ClientsCA, ConfigMap: cfg.ClientsCAConfigMap, KeepPrevious: cfg.CertValidity}
		if caStore.ConfigMap.Name == "" {
			caStore.ConfigMap = cfg.ClientsCA
		}
		if err := mgr.Add(pki.Publisher{Store: caStore}); err != nil {
			admin.Close()
			return nil, nil, fmt.Errorf("adding clients CA publisher: %w", err)
		}
	}
	setups := []interface{ SetupWithManager(ctrl.Manager) error }{
		&controllers.ChangeTicketReconciler{Client: mgr.GetClient(), Options: opts},
		&controllers.TopicReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Admin: admin, Audit: rec, Events: events, Options: opts, MaxConcurrentReconciles: cfg.MaxConcurrentReconciles},
		&controllers.SubscriptionReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Admin: admin, Audit: rec, Events: events, Options: opts,
			ClientBootstrap: cfg.ClientBootstrap, ClientTLS: cfg.Kafka.TLS != nil, ClientCA: cfg.ClientCA, MaxConcurrentReconciles: cfg.MaxConcurrentReconciles,
			ClientMTLSBootstrap: cfg.ClientMTLSBootstrap, CA: caStore, CertValidity: cfg.CertValidity,
			ClientOAuthBootstrap: cfg.ClientOAuthBootstrap, ClientOAuthTLS: cfg.ClientOAuthTLS, TokenAudience: cfg.TokenAudience},
	}
	for _, s := range setups {
		if err := s.SetupWithManager(mgr); err != nil {
			admin.Close()
			return nil, nil, err
		}
	}
	// The keeper loads the chain (creating the audit topic if missing),
	// closes intents a stopped process left open and publishes the head.
	if err := mgr.Add(&audit.Keeper{Recorder: rec}); err != nil {
		admin.Close()
		return nil, nil, fmt.Errorf("adding audit topic runnable: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", func(*http.Request) error { return nil }); err != nil {
		admin.Close()
		return nil, nil, fmt.Errorf("adding health check: %w", err)
	}
	// Readiness reports the broker: an unreachable broker shows up on the
	// pod as not ready, without the restarts a failing liveness probe causes.
	if err := mgr.AddReadyzCheck("broker", func(r *http.Request) error {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		return admin.Ping(ctx)
	}); err != nil {
		admin.Close()
		return nil, nil, fmt.Errorf("adding readiness check: %w", err)
	}
	return mgr, admin, nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func durationPtr(d time.Duration) *time.Duration {
	if d <= 0 {
		d = 30 * time.Second
	}
	return &d
}

// ErrMissingCredentials is returned when the broker admin credentials are
// not given.
var ErrMissingCredentials = errors.New("broker admin credentials missing")
