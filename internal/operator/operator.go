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
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/controllers"
	"github.com/hms-platform/bus-operator/internal/audit"
	"github.com/hms-platform/bus-operator/internal/governance"
	"github.com/hms-platform/bus-operator/internal/kafka"
)

// Config is everything the operator needs besides the API server.
type Config struct {
	Kafka kafka.Config
	// ClientBootstrap is written into issued credentials; defaults to
	// Kafka.Bootstrap.
	ClientBootstrap []string
	// ClientCA is the PEM CA bundle clients must trust (TLS only).
	ClientCA []byte

	Policy                  governance.Policy
	ResyncPeriod            time.Duration
	AuditTopic              string
	MaxConcurrentReconciles int

	MetricsAddr          string
	ProbeAddr            string
	LeaderElection       bool
	LeaderElectionNS     string
	LeaderElectionID     string
	SkipNameValidation   bool // tests start several managers in one process
	GracefulShutdownTime time.Duration
}

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
		cfg.MaxConcurrentReconciles = 8
	}
	// Only our own Secrets are cached: caching every Secret in the cluster
	// would cost memory and widen what a compromised operator could read.
	managed := labels.SelectorFromSet(labels.Set{controllers.LabelManagedBy: controllers.ManagedByValue})
	skip := cfg.SkipNameValidation
	mgr, err := ctrl.NewManager(rc, ctrl.Options{
		Scheme:                  Scheme(),
		Metrics:                 metricsserver.Options{BindAddress: cfg.MetricsAddr},
		HealthProbeBindAddress:  cfg.ProbeAddr,
		LeaderElection:          cfg.LeaderElection,
		LeaderElectionNamespace: cfg.LeaderElectionNS,
		LeaderElectionID:        orDefault(cfg.LeaderElectionID, "hmsbus-operator.bus.hms.io"),
		// Leases are released on shutdown so a new leader takes over at
		// once instead of waiting out the lease.
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       durationPtr(cfg.GracefulShutdownTime),
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Label: managed},
		}},
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
	rec := &audit.Recorder{Admin: admin, Topic: cfg.AuditTopic, Events: events}
	opts := controllers.Options{Policy: cfg.Policy, ResyncPeriod: cfg.ResyncPeriod, AuditTopic: cfg.AuditTopic}

	setups := []interface{ SetupWithManager(ctrl.Manager) error }{
		&controllers.ChangeTicketReconciler{Client: mgr.GetClient(), Options: opts},
		&controllers.TopicReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Admin: admin, Audit: rec, Events: events, Options: opts, MaxConcurrentReconciles: cfg.MaxConcurrentReconciles},
		&controllers.SubscriptionReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Admin: admin, Audit: rec, Events: events, Options: opts,
			ClientBootstrap: cfg.ClientBootstrap, ClientTLS: cfg.Kafka.TLS != nil, ClientCA: cfg.ClientCA, MaxConcurrentReconciles: cfg.MaxConcurrentReconciles},
	}
	for _, s := range setups {
		if err := s.SetupWithManager(mgr); err != nil {
			admin.Close()
			return nil, nil, err
		}
	}
	if err := mgr.Add(&auditTopicEnsurer{admin: admin, topic: cfg.AuditTopic}); err != nil {
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

// auditTopicEnsurer creates the audit topic, retrying with back-off while
// the broker is unreachable: the operator keeps running and says why.
type auditTopicEnsurer struct {
	admin kafka.Admin
	topic string
}

func (a *auditTopicEnsurer) NeedLeaderElection() bool { return true }

func (a *auditTopicEnsurer) Start(ctx context.Context) error {
	lg := log.FromContext(ctx).WithName("audit")
	delay := time.Second
	for {
		err := audit.EnsureTopic(ctx, a.admin, a.topic)
		if err == nil {
			lg.Info("audit topic ready", "topic", a.topic)
			return nil
		}
		if kafka.IsRejected(err) {
			lg.Error(err, "broker refused the audit topic; broker changes are still recorded as Events")
			return nil
		}
		lg.Error(err, "broker not reachable yet; retrying", "topic", a.topic, "retryIn", delay.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Minute)
	}
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
