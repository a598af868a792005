package badinput

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/hms-platform/bus-operator/internal/governance"
	"github.com/hms-platform/bus-operator/internal/kafka"
	"github.com/hms-platform/bus-operator/internal/operator"
	"github.com/hms-platform/bus-operator/test/harness/embedded"
	"github.com/hms-platform/bus-operator/test/harness/localstack"
	"github.com/hms-platform/bus-operator/test/harness/testenv"
)

// The stack every case runs against: one control plane, one embedded broker
// and one operator for the whole package, as in controllers/suite_test.go.
var (
	env   *testenv.Env
	admin *kafka.Client // the test's own broker admin, for the "nothing reached the broker" checks
	// opLogs holds everything the operator logged, searched for panics.
	opLogs = &localstack.SyncBuffer{}
	// opDone is closed if the manager stops before the suite ends, which
	// would mean the operator died under some case.
	opDone chan struct{}
	// hmsbusBin is the CLI built for this run.
	hmsbusBin string
	// kubeconfigs holds a client-certificate kubeconfig per persona, for
	// the CLI (it must act as a real user, not by impersonation).
	kubeconfigs = map[string]string{}
)

// personas are the users cases act as, with their groups. "admin" is the
// envtest cluster admin (system:masters) and is handled separately.
var personas = map[string][]string{
	"alice":   {testenv.RequestersGroup},                         // requester, the default
	"mallory": {testenv.RequestersGroup},                         // another requester
	"rita":    {testenv.ReviewersGroup},                          // reviewer
	"bob":     {testenv.ReviewersGroup},                          // second reviewer
	"dave":    {testenv.RequestersGroup, testenv.ReviewersGroup}, // both: reaches the four-eyes rule
	"erin":    {testenv.AuditorsGroup},                           // auditor: read-only
	"oscar":   nil,                                               // authenticated, no persona at all
}

// defaultParallel is how many cases run at once when -test.parallel is not
// given: the default (GOMAXPROCS, 2 on the CI machines) would leave most
// of the time waiting on the operator rather than working.
const defaultParallel = "8"

func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		_ = flag.Set("test.parallel", defaultParallel)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "hmsbus-badinput-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(tmp) }()

	// Building the CLI and starting the control plane both take seconds on
	// a busy machine; do them at once.
	built := make(chan error, 1)
	go func() { built <- buildCLI(tmp) }()

	start := time.Now()
	if env, err = testenv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "starting test control plane:", err)
		if err := <-built; err != nil {
			fmt.Fprintln(os.Stderr, "building hmsbus:", err)
		}
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping test control plane:", err)
		}
	}()
	if err := <-built; err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := writeKubeconfigs(tmp); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	stop, err := startBrokerAndOperator(tmp)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	fmt.Fprintf(os.Stderr, "badinput: stack ready in %s\n", time.Since(start).Round(time.Millisecond))
	return m.Run()
}

// buildCLI builds cmd/hmsbus into dir. The test builds it itself rather than
// trusting bin/hmsbus, which may be older than the source under test.
func buildCLI(dir string) error {
	// `go test` puts the go command that runs it first on PATH.
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("finding the go command to build hmsbus: %w", err)
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	hmsbusBin = filepath.Join(dir, "hmsbus")
	cmd := exec.Command(goBin, "build", "-o", hmsbusBin, "./cmd/hmsbus")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building hmsbus: %w\n%s", err, out)
	}
	return nil
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

func writeKubeconfigs(dir string) error {
	for user, groups := range personas {
		path := filepath.Join(dir, user+".kubeconfig")
		if err := env.WriteUserKubeconfig(path, user, groups...); err != nil {
			return err
		}
		kubeconfigs[user] = path
	}
	path := filepath.Join(dir, "admin.kubeconfig")
	if err := env.WriteKubeconfig(path); err != nil {
		return err
	}
	kubeconfigs["admin"] = path
	return nil
}

func startBrokerAndOperator(tmp string) (func(), error) {
	ports, err := localstack.FreePorts(3)
	if err != nil {
		return nil, err
	}
	b, err := embedded.Start(embedded.Options{Ports: ports, DataDir: filepath.Join(tmp, "broker"), AdminPassword: "badinput-admin-secret-0123456789"})
	if err != nil {
		return nil, err
	}
	kcfg := kafka.Config{
		Bootstrap: b.Addrs(), Mechanism: embedded.AdminMechanism,
		Username: b.AdminUser, Password: b.AdminPassword,
		RequestTimeout: 4 * time.Second,
		// kfake always advertises 4096 iterations (see README, Known limits).
		SCRAMIterations: kafka.MinSCRAMIterations,
	}
	if admin, err = kafka.New(context.Background(), kcfg); err != nil {
		b.Close()
		return nil, err
	}
	// JSON logs into the buffer only: the checks search them, and a
	// failing case prints the tail, which keeps a green run quiet.
	ctrl.SetLogger(zap.New(zap.WriteTo(opLogs), zap.UseDevMode(false)))
	mgr, opClient, err := operator.New(env.Config, operator.Config{
		Kafka:  kcfg,
		Policy: governance.Policy{MinApprovals: 1, MaxWindow: 24 * time.Hour},
		// No case needs drift repair; a long resync keeps the broker and
		// the API server free for the cases.
		ResyncPeriod:       time.Minute,
		MetricsAddr:        "0",
		ProbeAddr:          "0",
		SkipNameValidation: true,
	})
	if err != nil {
		admin.Close()
		b.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	opDone = make(chan struct{})
	go func() {
		defer close(opDone)
		defer opClient.Close()
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager stopped:", err)
		}
	}()
	return func() {
		// The manager goes first: the API server waits for open watches.
		cancel()
		<-opDone
		admin.Close()
		b.Close()
	}, nil
}
