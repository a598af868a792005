package faultstack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/hms-platform/bus-operator/test/harness/localstack"
)

// AcquiredLeaseLog is what the leader election logs when a process becomes
// the leader ("Successfully acquired lease" from controller-runtime's
// logger, "successfully acquired lease" from client-go's klog): Leading
// matches it whatever its case.
const AcquiredLeaseLog = "successfully acquired lease"

// Operator is one bin/manager process.
type Operator struct {
	// Name identifies it in the stack's directory (its log is
	// operator-<Name>.log).
	Name    string
	LogPath string
	// ProbeAddr serves /healthz and /readyz.
	ProbeAddr string

	cmd     *exec.Cmd
	logFile *os.File
	done    chan struct{}
	waitErr error
	started time.Time
}

// StartOperator runs bin/manager as the operator's user against the broker,
// with args appended to the connection flags (e.g. --watch-namespaces,
// --leader-elect), and returns once its /readyz answers 200 (the broker is
// reachable), the process exits, or ctx ends.
func (s *Stack) StartOperator(ctx context.Context, name string, args ...string) (*Operator, error) {
	ports, err := localstack.FreePorts(1)
	if err != nil {
		return nil, err
	}
	op := &Operator{
		Name: name, LogPath: s.Path("operator-" + name + ".log"),
		ProbeAddr: fmt.Sprintf("127.0.0.1:%d", ports[0]), done: make(chan struct{}),
	}
	all := []string{
		"--kafka-bootstrap", joinAddrs(s.Broker.Bootstrap()),
		"--kafka-username", s.Broker.AdminUser,
		"--kafka-password-file", s.passwordFile,
		"--scram-iterations", strconv.Itoa(s.Broker.SCRAMIterations()),
		"--metrics-bind-address", "0",
		"--health-probe-bind-address", op.ProbeAddr,
	}
	all = append(all, args...)
	if op.logFile, err = os.OpenFile(op.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
		return nil, fmt.Errorf("faultstack: creating operator log: %w", err)
	}
	op.cmd = exec.Command(filepath.Join(s.BinDir, "manager"), all...)
	op.cmd.Env = localstack.Environ("KUBECONFIG=" + s.operatorKubeconfig)
	op.cmd.Stdout, op.cmd.Stderr = op.logFile, op.logFile
	// Its own process group, and SIGKILL if the test binary dies: an
	// operator left behind would keep writing to the next run's broker.
	op.cmd.SysProcAttr = sysProcAttr()
	if err := op.cmd.Start(); err != nil {
		_ = op.logFile.Close()
		return nil, fmt.Errorf("faultstack: starting operator %s: %w", name, err)
	}
	op.started = time.Now()
	go func() {
		op.waitErr = op.cmd.Wait()
		_ = op.logFile.Close()
		close(op.done)
	}()
	s.mu.Lock()
	s.operators = append(s.operators, op)
	s.mu.Unlock()
	if err := op.waitReady(ctx, s.startTimeout); err != nil {
		_ = op.Kill()
		return nil, err
	}
	return op, nil
}

// waitReady polls /readyz until it answers 200.
func (op *Operator) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	url := "http://" + op.ProbeAddr + "/readyz"
	var last error
	for {
		if err := op.Exited(); err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("faultstack: %w", err)
		}
		resp, err := hc.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s answered %s", url, resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("faultstack: operator %s not ready: %w (last: %w; log %s)%s", op.Name, ctx.Err(), last, op.LogPath, op.tail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// PID is the process ID.
func (op *Operator) PID() int { return op.cmd.Process.Pid }

// Exited returns nil while the process runs, else how it ended.
func (op *Operator) Exited() error {
	select {
	case <-op.done:
		if op.waitErr == nil {
			return fmt.Errorf("operator %s exited (status 0; log %s)%s", op.Name, op.LogPath, op.tail())
		}
		return fmt.Errorf("operator %s exited: %w (log %s)%s", op.Name, op.waitErr, op.LogPath, op.tail())
	default:
		return nil
	}
}

// Kill ends the process with SIGKILL, as a node failure or the OOM killer
// would, and waits until it is gone: nothing it started gets finished.
func (op *Operator) Kill() error {
	select {
	case <-op.done:
		return nil
	default:
	}
	if err := op.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("faultstack: killing operator %s: %w", op.Name, err)
	}
	<-op.done
	return nil
}

// Stop asks the process to shut down (SIGINT, as Kubernetes would with
// SIGTERM) and waits up to timeout before killing it. It reports a process
// that had to be killed or exited with an error.
func (op *Operator) Stop(timeout time.Duration) error {
	select {
	case <-op.done:
		return nil
	default:
	}
	if err := op.cmd.Process.Signal(os.Interrupt); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("faultstack: interrupting operator %s: %w", op.Name, err)
	}
	select {
	case <-op.done:
	case <-time.After(timeout):
		_ = op.cmd.Process.Kill()
		<-op.done
		return fmt.Errorf("faultstack: operator %s did not stop within %s of SIGINT and was killed (log %s)", op.Name, timeout, op.LogPath)
	}
	var exit *exec.ExitError
	if op.waitErr != nil && (!errors.As(op.waitErr, &exit) || !exit.Sys().(syscall.WaitStatus).Signaled()) {
		return fmt.Errorf("faultstack: operator %s exited with %w after SIGINT (log %s)%s", op.Name, op.waitErr, op.LogPath, op.tail())
	}
	return nil
}

// Log is the process's output so far.
func (op *Operator) Log() ([]byte, error) {
	b, err := os.ReadFile(op.LogPath)
	if err != nil {
		return nil, fmt.Errorf("faultstack: reading operator log: %w", err)
	}
	return b, nil
}

// Leading reports whether the process has logged that it acquired the
// leader election lease.
func (op *Operator) Leading() bool {
	b, err := op.Log()
	return err == nil && bytes.Contains(bytes.ToLower(b), []byte(AcquiredLeaseLog))
}

func (op *Operator) tail() string {
	t := localstack.TailFile(op.LogPath, 20)
	if t == "" {
		return ""
	}
	return "\n--- last lines of " + op.LogPath + " ---\n" + t
}
