package localstack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// process is a child the stack started, with its output in a log file.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	log     *os.File
	done    chan struct{}
	waitErr error // valid once done is closed
}

// startProcess runs bin with args, stdout and stderr appended to logPath.
// The child gets its own process group, so a Ctrl-C in the terminal reaches
// only the caller, which then stops the children in the right order.
func startProcess(name, logPath string, env []string, bin string, args ...string) (*process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating %s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", name, bin, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, log: f, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		if p.waitErr == nil {
			return true, fmt.Errorf("%s exited unexpectedly (log: %s)%s", p.name, p.logPath, logTail(p.logPath))
		}
		return true, fmt.Errorf("%s exited: %w (log: %s)%s", p.name, p.waitErr, p.logPath, logTail(p.logPath))
	default:
		return false, nil
	}
}

// stop sends SIGINT, the signal both binaries shut down cleanly on, and
// kills the process if it has not ended within timeout.
func (p *process) stop(timeout time.Duration) error {
	select {
	case <-p.done:
		return nil // already gone; exited() reported why, if anyone asked
	default:
	}
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("interrupting %s: %w", p.name, err)
	}
	select {
	case <-p.done:
		return p.exitError()
	case <-time.After(timeout):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("%s did not stop within %s of SIGINT and was killed (log: %s)", p.name, timeout, p.logPath)
}

// exitError ignores the exit status an interrupt itself causes.
func (p *process) exitError() error {
	var exit *exec.ExitError
	if errors.As(p.waitErr, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGINT {
			return nil
		}
		return fmt.Errorf("%s exited with %w after SIGINT (log: %s)", p.name, p.waitErr, p.logPath)
	}
	return p.waitErr
}

// waitFor polls check every 100ms until it reports done, the process exits,
// or the timeout passes.
func (p *process) waitFor(ctx context.Context, what string, timeout time.Duration, check func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := errors.New("not yet")
	for {
		if gone, err := p.exited(); gone {
			return err
		}
		done, err := check()
		if done {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting until %s: %w (last error: %w; log: %s)%s", what, ctx.Err(), last, p.logPath, logTail(p.logPath))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// logTail is the end of a log file, for error messages that would
// otherwise send the user digging.
func logTail(path string) string {
	tail := TailFile(path, 15)
	if tail == "" {
		return ""
	}
	return "\n--- last lines of " + path + " ---\n" + tail
}

// TailFile returns the last n lines of a file ("" if it cannot be read).
func TailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// FreePorts returns n ports free right now on 127.0.0.1. Another process
// could take one before it is used; on a developer machine that is rare
// enough, and the start fails with a clear error if it happens.
func FreePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
