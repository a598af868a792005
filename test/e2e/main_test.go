// Package e2e drives the built binaries (bin/manager, bin/hmsbus, the demo)
// with kubectl, as a user would: no test code stands between the user's
// commands and the cluster or the broker. `make test` builds bin/ first.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/hms-platform/bus-operator/test/harness/brokers"
	"github.com/hms-platform/bus-operator/test/harness/kafkabroker"
	"github.com/hms-platform/bus-operator/test/harness/localstack"
)

// repoRoot is the repository root, two levels above this package.
var repoRoot = func() string {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		panic(err)
	}
	return root
}()

var binDir = filepath.Join(repoRoot, "bin")

// brokerUnderTest is the broker the stacks run (HMSBUS_TEST_BROKER): the
// embedded one, or Apache Kafka in `make test`'s Kafka tier, where the demo
// and the workflows play on Kafka too.
var brokerUnderTest string

func TestMain(m *testing.M) {
	// envtest logs through controller-runtime; the stack's log files hold
	// everything worth reading.
	logf.SetLogger(logr.Discard())
	kind, err := brokers.Selected()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	brokerUnderTest = string(kind)
	name := "embedded kfake"
	if kind == brokers.Kafka {
		name = "Apache Kafka"
		if home, err := kafkabroker.ResolveHome(""); err == nil {
			if v, err := kafkabroker.HomeVersion(home); err == nil {
				name += " " + v
			}
		}
	}
	brokers.Announce(name + " (started by each stack)")
	code := m.Run()
	if err := stopShared(code != 0); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the shared stack:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// requireBinaries fails the test unless bin/ holds what the suite runs.
func requireBinaries(t *testing.T) {
	t.Helper()
	if err := localstack.CheckBinaries(binDir); err != nil {
		t.Fatalf("the e2e tests run the built binaries: %v", err)
	}
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Fatalf("kubectl is not on PATH: the e2e tests drive the cluster with it")
	}
}

// result is what a finished command printed.
type result struct {
	stdout, stderr string
	err            error
}

func (r result) String() string {
	return fmt.Sprintf("exit: %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
}

// execute runs bin with args from the repository root, bounded by timeout.
func execute(timeout time.Duration, env []string, bin string, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = repoRoot
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s %s: no exit within %s: %w", filepath.Base(bin), strings.Join(args, " "), timeout, ctx.Err())
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// mustRun runs a command that must succeed and returns its stdout.
func mustRun(t *testing.T, timeout time.Duration, bin string, args ...string) string {
	t.Helper()
	r := execute(timeout, localstack.Environ(), bin, args...)
	if r.err != nil {
		t.Fatalf("%s %s failed:\n%s", filepath.Base(bin), strings.Join(args, " "), r)
	}
	return r.stdout
}

// eventually polls check until it returns nil, failing after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// lines returns the non-empty lines of s that contain substr.
func linesWith(s, substr string) []string {
	var out []string
	for line := range strings.Lines(s) {
		line = strings.TrimRight(line, "\n")
		if line != "" && strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}
