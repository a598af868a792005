package testenv

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// StartT starts an Env for one test and stops it when the test ends. Prefer
// one Env per package (RunMain): a start costs several seconds.
func StartT(t testing.TB) *Env {
	t.Helper()
	start := time.Now()
	env, err := Start()
	if err != nil {
		t.Fatalf("starting test control plane: %v", err)
	}
	t.Logf("test control plane ready in %s", time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping test control plane: %v", err)
		}
	})
	return env
}

// RunMain is for TestMain: it starts one Env for the package, hands it to
// use (typically to store it in a package variable), runs the tests, stops
// the Env and returns the exit code:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.RunMain(m, func(e *testenv.Env) { env = e })) }
func RunMain(m *testing.M, use func(*Env)) int {
	start := time.Now()
	env, err := Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "starting test control plane: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "test control plane ready in %s\n", time.Since(start).Round(time.Millisecond))
	use(env)
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "stopping test control plane: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// NamespaceT creates a fresh namespace for a test (see CreateNamespace).
func (e *Env) NamespaceT(t testing.TB, prefix string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ns, err := e.CreateNamespace(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}
