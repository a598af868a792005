// Command hmsbus-demo plays the fee-update story of config/samples on a
// local stack started from the built binaries (`make demo`; on Apache Kafka
// instead of the embedded broker with `make demo BROKER=kafka`): a requester
// files a ChangeTicket, a reviewer approves it, the operator creates the
// topic and credentials, and services publish, subscribe and replay events
// with the credentials they were issued. Every step shows the command it
// runs and its output. Then the stack keeps running until Ctrl-C, unless
// --exit (or DEMO_EXIT=1) is given.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/hms-platform/bus-operator/test/harness/localstack"
)

func main() {
	os.Exit(run())
}

type options struct {
	binDir, stateDir, broker string
	exit                     bool
}

func parseFlags() options {
	var o options
	flag.StringVar(&o.binDir, "bin-dir", "bin", "directory holding manager, hmsbus, kube-apiserver and etcd")
	flag.StringVar(&o.stateDir, "state-dir", ".demo", "directory for kubeconfigs, logs and credentials (wiped at start)")
	flag.BoolVar(&o.exit, "exit", envBool("DEMO_EXIT"), "stop and exit right after the story instead of waiting for Ctrl-C (also DEMO_EXIT=1)")
	flag.StringVar(&o.broker, "broker", envOr("BROKER", localstack.BrokerEmbedded), "broker to run: embedded (fast) or kafka (Apache Kafka from bin/kafka; also BROKER=kafka)")
	flag.Parse()
	return o
}

// envOr is the environment variable name, or def when it is unset.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// envBool reads a boolean environment variable; anything unparsable but
// non-empty counts as true, as a user setting it means it.
func envBool(name string) bool {
	v := os.Getenv(name)
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	return err != nil || b
}

func run() int {
	opts := parseFlags()
	// envtest logs through controller-runtime; the demo prints its own lines.
	logf.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out := &syncWriter{w: os.Stdout}

	r, err := newRunner(out, opts.binDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	begin := time.Now()
	stack, err := localstack.Start(ctx, localstack.Options{BinDir: opts.binDir, StateDir: opts.stateDir, Progress: out, Broker: opts.broker})
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "demo: interrupted while starting the local stack")
		} else {
			fmt.Fprintln(os.Stderr, "demo: starting the local stack failed:", err)
		}
		return 1
	}
	out.line(fmt.Sprintf("local stack ready in %s (broker: %s)", localstack.Elapsed(begin), stack.BrokerName))
	r.stack = stack
	s := &story{r: r}
	code := 0
	if err := s.play(ctx); err != nil {
		code = 1
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "\ndemo: interrupted")
		} else {
			fmt.Fprintln(os.Stderr, "\ndemo:", err)
			s.tailOperatorLog()
		}
	} else {
		out.line(fmt.Sprintf("\nThe story completed in %s.", localstack.Elapsed(begin)))
		if !opts.exit {
			s.pokeAround()
			<-ctx.Done()
		}
	}
	out.line("\nstopping the local stack")
	if err := stack.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "demo: stopping the local stack:", err)
		code = 1
	}
	return code
}

// newRunner finds the binaries the story runs.
func newRunner(out *syncWriter, binDir string) (*runner, error) {
	cwd, err := os.Getwd()
	if err != nil {
		return nil, fmt.Errorf("finding the working directory: %w", err)
	}
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		return nil, errors.New("kubectl not found on PATH: the demo drives the cluster with it, as a user would")
	}
	if err := localstack.CheckBinaries(binDir); err != nil {
		return nil, err
	}
	hmsbus, err := filepath.Abs(filepath.Join(binDir, "hmsbus"))
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", binDir, err)
	}
	return &runner{out: out, cwd: cwd, kubectl: kubectl, hmsbus: hmsbus, env: localstack.Environ()}, nil
}
