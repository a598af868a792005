// Package bench measures the operator on the real stack: the kube-apiserver
// and etcd built into bin/ (envtest) and the embedded kfake broker with
// SASL/SCRAM and ACLs, with the manager running in this process exactly as
// main.go assembles it. It holds only benchmarks, so `go test` (and `make
// test`) starts nothing here; run them with
//
//	go test -run '^$' -bench . -benchtime 1x ./test/bench/ -v
package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/hms-platform/bus-operator/internal/governance"
	"github.com/hms-platform/bus-operator/internal/kafka"
	"github.com/hms-platform/bus-operator/internal/operator"
	"github.com/hms-platform/bus-operator/test/harness/embedded"
	"github.com/hms-platform/bus-operator/test/harness/testenv"
)

const (
	requester = "alice"
	reviewer  = "rita"
)

// stack is the control plane and broker the benchmarks share. It starts on
// first use, so a plain `go test` of this package costs nothing.
type stack struct {
	env       *testenv.Env
	broker    *embedded.Broker
	kcfg      kafka.Config
	admin     *kafka.Client // the benchmark's own client, for polling the broker
	requests  *embedded.RequestCounter
	requester client.Client
	watcher   client.WithWatch
}

var (
	// operatorLog is muted while a manager stops: its in-flight reconciles
	// then fail with "context canceled", which says nothing.
	operatorLog = &mutableWriter{}

	stackOnce sync.Once
	shared    *stack
	stackErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.stop()
	}
	os.Exit(code)
}

func getStack(b *testing.B) *stack {
	b.Helper()
	stackOnce.Do(func() {
		// Only the operator's errors are worth seeing next to the figures.
		ctrl.SetLogger(zap.New(zap.WriteTo(operatorLog), zap.Level(zapcore.ErrorLevel)))
		shared, stackErr = startStack()
	})
	if stackErr != nil {
		b.Fatalf("starting the benchmark stack: %v", stackErr)
	}
	return shared
}

func startStack() (*stack, error) {
	env, err := testenv.Start()
	if err != nil {
		return nil, fmt.Errorf("starting control plane: %w", err)
	}
	s := &stack{env: env, requests: &embedded.RequestCounter{}}
	if err := s.startBroker(); err != nil {
		s.stop()
		return nil, err
	}
	if s.requester, err = env.As(requester, testenv.RequestersGroup); err != nil {
		s.stop()
		return nil, err
	}
	if s.watcher, err = client.NewWithWatch(env.Config, client.Options{Scheme: testenv.Scheme()}); err != nil {
		s.stop()
		return nil, fmt.Errorf("creating watch client: %w", err)
	}
	return s, nil
}

func (s *stack) startBroker() error {
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		return err
	}
	s.broker = b
	s.requests.Attach(b)
	s.kcfg = kafka.Config{
		Bootstrap: b.Addrs(), Mechanism: embedded.AdminMechanism,
		Username: b.AdminUser, Password: b.AdminPassword,
		RequestTimeout: 10 * time.Second,
		// kfake announces 4096 iterations whatever a credential was
		// stored with, so only 4096 authenticates there.
		SCRAMIterations: kafka.MinSCRAMIterations,
	}
	if s.admin, err = kafka.New(context.Background(), s.kcfg); err != nil {
		return fmt.Errorf("creating benchmark admin client: %w", err)
	}
	return nil
}

func (s *stack) stop() {
	if s.admin != nil {
		s.admin.Close()
	}
	if s.broker != nil {
		s.broker.Close()
	}
	if err := s.env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}

// startOperator runs a manager, configured as the brief of each benchmark
// needs, until the benchmark ends. Each benchmark has its own manager so a
// short resync period of one does not load the others.
func (s *stack) startOperator(b *testing.B, resync time.Duration) {
	b.Helper()
	mgr, opClient, err := operator.New(s.env.Config, operator.Config{
		Kafka:                   s.kcfg,
		Policy:                  governance.Policy{MinApprovals: 1, MaxWindow: 24 * time.Hour},
		ResyncPeriod:            resync,
		MaxConcurrentReconciles: 16,
		MetricsAddr:             "0",
		ProbeAddr:               "0",
		SkipNameValidation:      true,
	})
	if err != nil {
		b.Fatalf("creating operator: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		defer opClient.Close()
		done <- mgr.Start(ctx)
	}()
	b.Cleanup(func() {
		operatorLog.muted.Store(true)
		defer operatorLog.muted.Store(false)
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			b.Errorf("operator stopped: %v", err)
		}
	})
	syncCtx, syncCancel := context.WithTimeout(ctx, 30*time.Second)
	defer syncCancel()
	if !mgr.GetCache().WaitForCacheSync(syncCtx) {
		b.Fatal("operator cache did not sync within 30s")
	}
}

// waitQuiet waits until the broker has seen no request for quiet, so a
// window starts without the tail of earlier work (a new manager's first
// pass over existing Topics, say).
func (s *stack) waitQuiet(b *testing.B, quiet, limit time.Duration) {
	b.Helper()
	deadline := time.Now().Add(limit)
	last := s.requests.Snapshot()
	lastChange := time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		now := s.requests.Snapshot()
		if len(now.Minus(last)) != 0 {
			last, lastChange = now, time.Now()
			continue
		}
		if time.Since(lastChange) >= quiet {
			return
		}
	}
	b.Fatalf("the broker did not go quiet for %s within %s", quiet, limit)
}

func (s *stack) namespace(b *testing.B, prefix string) string {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ns, err := s.env.CreateNamespace(ctx, prefix)
	if err != nil {
		b.Fatal(err)
	}
	return ns
}

// mutableWriter writes to stderr unless muted.
type mutableWriter struct{ muted atomic.Bool }

func (w *mutableWriter) Write(p []byte) (int, error) {
	if w.muted.Load() {
		return len(p), nil
	}
	return os.Stderr.Write(p)
}
