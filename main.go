// Command manager runs the hms-bus operator: it reconciles approved Topic and
// Subscription declarations into broker topics, ACLs and SCRAM credentials.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/hms-platform/bus-operator/internal/audit"
	"github.com/hms-platform/bus-operator/internal/governance"
	"github.com/hms-platform/bus-operator/internal/kafka"
	"github.com/hms-platform/bus-operator/internal/operator"
)

// flags holds the command line; every flag can also come from an
// environment variable HMSBUS_<FLAG_NAME> (dashes as underscores), which is
// what a Deployment sets.
type flags struct {
	bootstrap, clientBootstrap      string
	mechanism, username             string
	passwordFile, credentialsSecret string
	tlsEnabled                      bool
	tlsCAFile, clientTLSCAFile      string
	scramIterations                 int
	minApprovals                    int
	approvalMode                    string
	maxTicketWindow, resync         time.Duration
	auditTopic                      string
	concurrency                     int
	metricsAddr, probeAddr          string
	pprofAddr                       string
	leaderElect                     bool
	leaderElectionNS                string
	operatorNamespace               string
	clientsCASecret, clientsCACM    string
	certValidity                    time.Duration
	clientTLSBootstrap              string
	clientOAuthBootstrap            string
	clientOAuthTLS                  bool
	tokenAudience                   string
	auditHead                       string
	watchNamespaces                 string
	eventRate                       float64
}

func main() {
	var f flags
	fs := flag.NewFlagSet("manager", flag.ExitOnError)
	fs.StringVar(&f.bootstrap, "kafka-bootstrap", "", "comma-separated broker addresses (host:port) the operator administers")
	fs.StringVar(&f.clientBootstrap, "client-bootstrap", "", "bootstrap address written into issued credentials (default: --kafka-bootstrap)")
	fs.StringVar(&f.mechanism, "kafka-sasl-mechanism", "SCRAM-SHA-512", "SASL mechanism of the admin user: SCRAM-SHA-512, SCRAM-SHA-256, PLAIN, or none")
	fs.StringVar(&f.username, "kafka-username", "", "admin user name (or use --kafka-credentials-secret)")
	fs.StringVar(&f.passwordFile, "kafka-password-file", "", "file holding the admin password (never pass a password on the command line)")
	fs.StringVar(&f.credentialsSecret, "kafka-credentials-secret", "", "namespace/name of a Secret with keys username and password for the admin user")
	fs.BoolVar(&f.tlsEnabled, "kafka-tls", false, "connect to the brokers with TLS")
	fs.StringVar(&f.tlsCAFile, "kafka-tls-ca-file", "", "PEM CA bundle to trust for the brokers (implies --kafka-tls)")
	fs.StringVar(&f.clientTLSCAFile, "client-tls-ca-file", "", "PEM CA bundle that clients trust for the brokers' TLS listeners, written into issued credentials (default: --kafka-tls-ca-file); for an operator that reaches the brokers on another listener than its workloads")
	fs.IntVar(&f.scramIterations, "scram-iterations", 4096, "PBKDF2 iterations of issued SCRAM credentials (Kafka's default 4096; 4096-16384)")
	fs.IntVar(&f.minApprovals, "min-approvals", 1, "minimum approvals every ChangeTicket needs")
	fs.StringVar(&f.approvalMode, "approval-mode", string(governance.ApprovalPinned), "what an approval approves: pinned (the covered specs as they were when it was recorded; later edits and objects created later need a new ticket) or window (an approval without pins approves any spec of the covered objects until the ticket expires: weaker, see README)")
	fs.DurationVar(&f.maxTicketWindow, "max-ticket-window", 30*24*time.Hour, "longest change window a ChangeTicket may have, from its creation")
	fs.DurationVar(&f.resync, "resync-period", 5*time.Minute, "how often broker state is re-read to repair drift (jittered)")
	fs.StringVar(&f.auditTopic, "audit-topic", "hms.audit", "broker topic that receives the audit trail (an intent record before each broker change, an outcome after it, hash-chained)")
	fs.StringVar(&f.auditHead, "audit-head-configmap", "hmsbus-audit-head", "ConfigMap (name in --operator-namespace, or namespace/name) where the audit chain's head is published for `hmsbus audit verify`")
	fs.IntVar(&f.concurrency, "max-concurrent-reconciles", operator.DefaultMaxConcurrentReconciles, "reconciles in flight per kind; broker requests of concurrent reconciles are batched")
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", ":8080", "metrics endpoint address, 0 to disable")
	fs.StringVar(&f.probeAddr, "health-probe-bind-address", ":8081", "health and readiness probe address")
	fs.StringVar(&f.pprofAddr, "pprof-bind-address", "0", "net/http/pprof endpoint address for profiling (e.g. 127.0.0.1:6060), 0 to disable")
	fs.BoolVar(&f.leaderElect, "leader-elect", false, "enable leader election, for running more than one replica")
	fs.StringVar(&f.leaderElectionNS, "leader-election-namespace", "", "namespace of the leader election lease (default: the pod's)")
	fs.Float64Var(&f.eventRate, "event-rate", audit.DefaultEventRate, "Normal BrokerChange Events per second at most (a burst of 100 above it); beyond it they are left out, the audit topic keeping every change; negative: no limit")
	fs.StringVar(&f.watchNamespaces, "watch-namespaces", "", "comma-separated namespaces the operator watches (default: all); with it, its RBAC can be granted per namespace (config/namespaced)")
	fs.StringVar(&f.operatorNamespace, "operator-namespace", orDefault(os.Getenv("POD_NAMESPACE"), "hmsbus-system"), "namespace of the operator's own objects (clients CA, audit chain head)")
	fs.StringVar(&f.clientsCASecret, "clients-ca-secret", "hmsbus-clients-ca", "Secret (name in --operator-namespace, or namespace/name) of the CA that issues client certificates; created if missing, or provide one with tls.crt and tls.key; empty disables certificate identities")
	fs.StringVar(&f.clientsCACM, "clients-ca-configmap", "hmsbus-clients-ca", "ConfigMap (in the CA Secret's namespace) where the clients CA certificate is published (key ca.crt) for the brokers' truststore")
	fs.DurationVar(&f.certValidity, "client-cert-validity", 30*24*time.Hour, "lifetime of issued client certificates; they are renewed after two thirds of it")
	fs.StringVar(&f.clientTLSBootstrap, "client-tls-bootstrap", "", "the brokers' client-certificate (SSL, ssl.client.auth=required) listener, written into the credentials of authentication type tls")
	fs.StringVar(&f.clientOAuthBootstrap, "client-oauth-bootstrap", "", "the brokers' SASL/OAUTHBEARER listener, written into the credentials of authentication type serviceAccount")
	fs.BoolVar(&f.clientOAuthTLS, "client-oauth-tls", true, "the OAUTHBEARER listener speaks TLS (SASL_SSL); tokens should never travel in clear text")
	fs.StringVar(&f.tokenAudience, "client-token-audience", "kafka", "audience of the ServiceAccount tokens workloads present to the broker")
	zopts := zap.Options{Development: false, TimeEncoder: zapcore.ISO8601TimeEncoder}
	zopts.BindFlags(fs)
	if err := envDefaults(fs); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	_ = fs.Parse(os.Args[1:])
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zopts)))
	setupLog := ctrl.Log.WithName("setup")

	ctx := ctrl.SetupSignalHandler()
	rc, err := ctrl.GetConfig()
	if err != nil {
		setupLog.Error(err, "no Kubernetes API configuration (kubeconfig or in-cluster)")
		os.Exit(1)
	}
	cfg, err := f.operatorConfig(ctx)
	if err != nil {
		setupLog.Error(err, "invalid configuration")
		os.Exit(2)
	}
	setupLog.Info("starting hms-bus operator", "bootstrap", cfg.Kafka.Bootstrap, "mechanism", cfg.Kafka.Mechanism, "user", cfg.Kafka.Username, "tls", cfg.Kafka.TLS != nil, "auditTopic", cfg.AuditTopic)
	if err := operator.Run(ctrl.LoggerInto(ctx, ctrl.Log), rc, cfg); err != nil {
		setupLog.Error(err, "operator stopped")
		os.Exit(1)
	}
}

// envDefaults lets HMSBUS_KAFKA_BOOTSTRAP and friends set flag defaults.
func envDefaults(fs *flag.FlagSet) error {
	var err error
	fs.VisitAll(func(fl *flag.Flag) {
		env := "HMSBUS_" + strings.ToUpper(strings.ReplaceAll(fl.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok && err == nil {
			if e := fl.Value.Set(v); e != nil {
				err = fmt.Errorf("environment %s: %w", env, e)
			}
		}
	})
	return err
}

func (f flags) operatorConfig(ctx context.Context) (operator.Config, error) {
	mode, err := governance.ParseApprovalMode(f.approvalMode)
	if err != nil {
		return operator.Config{}, fmt.Errorf("--approval-mode: %w", err)
	}
	cfg := operator.Config{
		Policy:                  governance.Policy{MinApprovals: int32(f.minApprovals), MaxWindow: f.maxTicketWindow, Mode: mode},
		ResyncPeriod:            f.resync,
		AuditTopic:              f.auditTopic,
		MaxConcurrentReconciles: f.concurrency,
		MetricsAddr:             f.metricsAddr,
		ProbeAddr:               f.probeAddr,
		PprofAddr:               f.pprofAddr,
		LeaderElection:          f.leaderElect,
		LeaderElectionNS:        f.leaderElectionNS,
	}
	if f.bootstrap == "" {
		return cfg, fmt.Errorf("--kafka-bootstrap (or HMSBUS_KAFKA_BOOTSTRAP) is required")
	}
	cfg.Kafka.Bootstrap = splitList(f.bootstrap)
	cfg.AuditHead = namespacedName(f.auditHead, f.operatorNamespace)
	cfg.WatchNamespaces = splitList(f.watchNamespaces)
	cfg.EventRate = float32(f.eventRate)
	if f.clientsCASecret != "" {
		cfg.ClientsCA = namespacedName(f.clientsCASecret, f.operatorNamespace)
		cfg.ClientsCAConfigMap = types.NamespacedName{Namespace: cfg.ClientsCA.Namespace, Name: f.clientsCACM}
	}
	if f.certValidity != 0 && f.certValidity < time.Hour {
		return cfg, fmt.Errorf("--client-cert-validity %s is too short: at least 1h, so renewals have time to happen", f.certValidity)
	}
	cfg.CertValidity = f.certValidity
	cfg.ClientMTLSBootstrap = splitList(f.clientTLSBootstrap)
	cfg.ClientOAuthBootstrap = splitList(f.clientOAuthBootstrap)
	cfg.ClientOAuthTLS = f.clientOAuthTLS
	cfg.TokenAudience = f.tokenAudience
	cfg.Kafka.SCRAMIterations = f.scramIterations
	cfg.ClientBootstrap = splitList(f.clientBootstrap)
	if f.mechanism != "none" {
		cfg.Kafka.Mechanism = f.mechanism
		user, pass, err := f.credentials(ctx)
		if err != nil {
			return cfg, err
		}
		cfg.Kafka.Username, cfg.Kafka.Password = user, pass
	}
	if f.tlsEnabled || f.tlsCAFile != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12} // system roots
		if f.tlsCAFile != "" {
			pem, err := os.ReadFile(f.tlsCAFile)
			if err != nil {
				return cfg, fmt.Errorf("reading --kafka-tls-ca-file: %w", err)
			}
			if tc, err = kafka.TLSConfigFromPEM(pem); err != nil {
				return cfg, fmt.Errorf("--kafka-tls-ca-file %s: %w", f.tlsCAFile, err)
			}
			// Issued credentials carry the CA, so clients trust the brokers too.
			cfg.ClientCA = pem
		}
		cfg.Kafka.TLS = tc
	}
	if f.clientTLSCAFile != "" {
		pem, err := os.ReadFile(f.clientTLSCAFile)
		if err != nil {
			return cfg, fmt.Errorf("reading --client-tls-ca-file: %w", err)
		}
		if _, err := kafka.TLSConfigFromPEM(pem); err != nil {
			return cfg, fmt.Errorf("--client-tls-ca-file %s: %w", f.clientTLSCAFile, err)
		}
		cfg.ClientCA = pem
	}
	return cfg, nil
}

// credentials reads the admin user and password from a file or a Secret;
// a password is never accepted as a flag value, where ps would show it.
func (f flags) credentials(ctx context.Context) (string, string, error) {
	switch {
	case f.credentialsSecret != "":
		ns, name, ok := strings.Cut(f.credentialsSecret, "/")
		if !ok || ns == "" || name == "" {
			return "", "", fmt.Errorf("--kafka-credentials-secret must be namespace/name, got %q", f.credentialsSecret)
		}
		rc, err := ctrl.GetConfig()
		if err != nil {
			return "", "", err
		}
		c, err := client.New(rc, client.Options{Scheme: operator.Scheme()})
		if err != nil {
			return "", "", fmt.Errorf("creating client: %w", err)
		}
		var s corev1.Secret
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &s); err != nil {
			return "", "", fmt.Errorf("reading broker credentials Secret %s: %w", f.credentialsSecret, err)
		}
		user, pass := strings.TrimSpace(string(s.Data["username"])), strings.TrimSpace(string(s.Data["password"]))
		if user == "" || pass == "" {
			return "", "", fmt.Errorf("secret %s must have non-empty keys username and password", f.credentialsSecret)
		}
		return user, pass, nil
	case f.passwordFile != "":
		if f.username == "" {
			return "", "", fmt.Errorf("--kafka-username is required with --kafka-password-file")
		}
		b, err := os.ReadFile(f.passwordFile)
		if err != nil {
			return "", "", fmt.Errorf("reading --kafka-password-file: %w", err)
		}
		pass := strings.TrimSpace(string(b))
		if pass == "" {
			return "", "", fmt.Errorf("--kafka-password-file %s is empty", f.passwordFile)
		}
		return f.username, pass, nil
	}
	return "", "", fmt.Errorf("%w: give --kafka-password-file with --kafka-username, or --kafka-credentials-secret (or --kafka-sasl-mechanism=none)", operator.ErrMissingCredentials)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// namespacedName reads "namespace/name", or a bare name in namespace.
func namespacedName(s, namespace string) types.NamespacedName {
	if ns, name, ok := strings.Cut(s, "/"); ok {
		return types.NamespacedName{Namespace: ns, Name: name}
	}
	return types.NamespacedName{Namespace: namespace, Name: s}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
