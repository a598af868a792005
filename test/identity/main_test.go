// Package identity proves the identities without shared passwords end to
// end: client certificates from the operator's clients CA on Kafka's mTLS
// listener, and Kubernetes ServiceAccount tokens on a SASL_SSL/OAUTHBEARER
// listener that Kafka's built-in validator checks against the test control
// plane's own issuer. Everything is real: the kube-apiserver and etcd built
// into bin/, Apache Kafka from bin/kafka, the operator in-process (the code
// main.go runs), and the workload side through pkg/bus and the hmsbus
// binary.
package identity

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/hms-platform/bus-operator/internal/governance"
	"github.com/hms-platform/bus-operator/internal/kafka"
	"github.com/hms-platform/bus-operator/internal/operator"
	"github.com/hms-platform/bus-operator/internal/pki"
	"github.com/hms-platform/bus-operator/test/harness/kafkabroker"
	"github.com/hms-platform/bus-operator/test/harness/testenv"
)

// tokenAudience is the audience the operator documents and the broker
// expects.
const tokenAudience = "kafka"

// clientsCA names the operator's clients CA Secret and the ConfigMap that
// publishes its certificate.
var clientsCA = types.NamespacedName{Namespace: testenv.SystemNamespace, Name: "hmsbus-clients-ca"}

var (
	env *testenv.Env
	// issuer is the API server's ServiceAccount token issuer, which the
	// broker's OAUTHBEARER listener trusts.
	issuer testenv.Issuer
	// saSigningKey is the key the API server signs ServiceAccount tokens
	// with: the tests sign the tokens TokenRequest will not mint (expired).
	saSigningKey *rsa.PrivateKey
	broker       *kafkabroker.Broker
	admin        *kadm.Client
	kube         kubernetes.Interface
	// logs holds everything the operator logged.
	logs = &syncBuffer{}
	// hmsbusBin is the CLI built from this tree; kubeconfig is an admin
	// kubeconfig for it.
	hmsbusBin, kubeconfig string
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	// A Kafka-tier package: it needs the jars make kafka fetches, and says
	// so before anything starts.
	if _, err := kafkabroker.ResolveHome(""); err != nil {
		hint := ""
		if !strings.Contains(err.Error(), "make kafka") {
			hint = " (run make kafka)"
		}
		fmt.Fprintf(os.Stderr, "test/identity runs Apache Kafka itself and cannot start: %v%s\n", err, hint)
		return 1
	}
	work, err := os.MkdirTemp("", "hmsbus-identity-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(work) }()
	stop, err := start(work)
	if err != nil {
		fmt.Fprintln(os.Stderr, "test/identity:", err)
		if broker != nil {
			fmt.Fprintf(os.Stderr, "--- last lines of %s ---\n%s\n", broker.LogPath(), broker.LogTail(60))
		}
		stop()
		return 1
	}
	code := m.Run()
	stop()
	return code
}

// start brings up, in order: the hmsbus build (in the background), the
// control plane with a signing key the tests hold and public issuer
// discovery, Kafka with an OAUTHBEARER listener validating against that
// issuer, the operator, and finally the MTLS listener's trust in the
// operator's published clients CA. The returned stop undoes whatever was
// started, in reverse.
func start(work string) (stop func(), err error) {
	var stops []func()
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	began := time.Now()
	built := buildHmsbus(work)
	// Whatever happens, the build is over before work is removed.
	stops = append(stops, func() { _ = built() })

	if saSigningKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return stop, fmt.Errorf("generating the ServiceAccount signing key: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(saSigningKey)
	if err != nil {
		return stop, fmt.Errorf("encoding the ServiceAccount signing key: %w", err)
	}
	env, err = testenv.StartWithOptions(testenv.Options{
		ServiceAccountSigningKey: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		PublicIssuerDiscovery:    true,
	})
	if err != nil {
		return stop, fmt.Errorf("starting the control plane: %w", err)
	}
	// The manager goes before the API server (stops run in reverse): the
	// API server waits for open watches.
	stops = append(stops, func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the control plane:", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if issuer, err = env.ServiceAccountIssuer(ctx); err != nil {
		return stop, err
	}
	if kube, err = kubernetes.NewForConfig(env.Config); err != nil {
		return stop, fmt.Errorf("making a clientset: %w", err)
	}
	kubeconfig = filepath.Join(work, "admin.kubeconfig")
	if err := env.WriteKubeconfig(kubeconfig); err != nil {
		return stop, err
	}
	fmt.Fprintf(os.Stderr, "test/identity: control plane ready in %s; ServiceAccount issuer %s\n", time.Since(began).Round(time.Millisecond), issuer.URL)

	broker, err = kafkabroker.Start(kafkabroker.Options{OAuth: &kafkabroker.OAuth{
		JWKSURL:   issuer.JWKSURI,
		JWKSCAPEM: env.ServingCAPEM(),
		Issuer:    issuer.URL,
		Audience:  []string{tokenAudience},
	}})
	if err != nil {
		return stop, err
	}
	stops = append(stops, func() {
		if err := broker.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping kafka:", err)
		}
	})
	fmt.Fprintf(os.Stderr, "test/identity: Apache Kafka %s ready after %s (log %s)\n", broker.Version(), time.Since(began).Round(time.Millisecond), broker.LogPath())
	kcl, err := kgo.NewClient(broker.AdminOpts()...)
	if err != nil {
		return stop, fmt.Errorf("making the admin client: %w", err)
	}
	admin = kadm.NewClient(kcl)
	stops = append(stops, kcl.Close)

	stopOperator, err := startOperator()
	if err != nil {
		return stop, err
	}
	stops = append(stops, stopOperator)
	if err := trustPublishedClientsCA(ctx, work); err != nil {
		return stop, err
	}
	if err := built(); err != nil {
		return stop, err
	}
	fmt.Fprintf(os.Stderr, "test/identity: stack ready after %s\n", time.Since(began).Round(time.Millisecond))
	return stop, nil
}

// startOperator runs the operator in-process with both identity listeners
// configured, its log captured for the no-secret checks.
func startOperator() (func(), error) {
	kcfg := kafka.Config{
		Bootstrap: []string{broker.Bootstrap()}, Mechanism: kafkabroker.AdminMechanism,
		Username: broker.AdminUser, Password: broker.AdminPassword,
		RequestTimeout: 10 * time.Second,
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(io.MultiWriter(logs, os.Stderr)), zap.UseDevMode(false)))
	mgr, opClient, err := operator.New(env.Config, operator.Config{
		Kafka: kcfg,
		// Issued Secrets carry the broker's CA: both identity listeners
		// serve its certificate.
		ClientCA:             broker.CAPEM(),
		ClientMTLSBootstrap:  []string{broker.MTLSBootstrap()},
		ClientOAuthBootstrap: []string{broker.OAuthBootstrap()},
		ClientOAuthTLS:       true,
		TokenAudience:        tokenAudience,
		ClientsCA:            clientsCA,
		ClientsCAConfigMap:   clientsCA,
		Policy:               governance.Policy{MinApprovals: 1, MaxWindow: 24 * time.Hour},
		ResyncPeriod:         time.Minute,
		MetricsAddr:          "0",
		ProbeAddr:            "0",
	})
	if err != nil {
		return nil, fmt.Errorf("building the operator: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer opClient.Close()
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "operator stopped:", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}

// trustPublishedClientsCA makes the MTLS listener trust exactly the CA the
// operator published in its ConfigMap, the way a production broker follows
// it without a restart: write the PEM to a file and point the listener's
// trust store at it with a dynamic broker config (KIP-226). Until then the
// listener trusts the launcher's own CA, whose certificates the tests then
// see refused.
func trustPublishedClientsCA(ctx context.Context, work string) error {
	cm := &corev1.ConfigMap{}
	for {
		err := env.Client.Get(ctx, clientsCA, cm)
		if err == nil && cm.Data[pki.KeyCACert] != "" {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the operator to publish its clients CA in ConfigMap %s: %w (last error: %w)", clientsCA, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	path := filepath.Join(work, "clients-ca.pem")
	if err := os.WriteFile(path, []byte(cm.Data[pki.KeyCACert]), 0o600); err != nil {
		return fmt.Errorf("writing the clients CA trust store: %w", err)
	}
	return setMTLSTruststore(ctx, path)
}

// setMTLSTruststore points the MTLS listener's PEM trust store at path.
func setMTLSTruststore(ctx context.Context, path string) error {
	resp, err := admin.AlterBrokerConfigs(ctx, []kadm.AlterConfig{{
		Op: kadm.SetConfig, Name: "listener.name.mtls.ssl.truststore.location", Value: &path,
	}}, 1)
	for _, r := range resp {
		if err == nil && r.Err != nil {
			err = fmt.Errorf("%w: %s", r.Err, r.ErrMessage)
		}
	}
	if err != nil {
		return fmt.Errorf("pointing the MTLS listener's trust store at %s: %w", path, err)
	}
	return nil
}

// buildHmsbus builds the CLI from this tree, as make build would, while
// the stack starts. The returned function waits for the build.
func buildHmsbus(work string) func() error {
	done := make(chan struct{})
	var err error
	hmsbusBin = filepath.Join(work, "hmsbus")
	go func() {
		defer close(done)
		root, rerr := repoRoot()
		if rerr != nil {
			err = rerr
			return
		}
		cmd := exec.Command("go", "build", "-o", hmsbusBin, "./cmd/hmsbus")
		cmd.Dir = root
		if out, berr := cmd.CombinedOutput(); berr != nil {
			err = fmt.Errorf("building hmsbus: %w\n%s", berr, out)
		}
	}()
	return func() error {
		<-done
		return err
	}
}

func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("no go.mod above " + wd)
		}
	}
}

// syncBuffer collects the operator's log while tests read it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
