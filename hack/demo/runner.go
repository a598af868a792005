package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hms-platform/bus-operator/test/harness/localstack"
)

// commandTimeout bounds one foreground command: every command of the story
// either finishes in seconds or carries its own --timeout.
const commandTimeout = 3 * time.Minute

// runner runs the story's commands as a user would type them, printing
// each command and its output.
type runner struct {
	out     *syncWriter
	stack   *localstack.Stack
	cwd     string
	kubectl string
	hmsbus  string
	env     []string
}

// command is one invocation: bin is what the user types ("kubectl" or
// "hmsbus"), path what runs.
type command struct {
	bin, path string
	args      []string
	// quiet keeps stdout (a Secret's JSON) off the terminal and out of
	// errors; run returns stdout alone, so stderr warnings cannot spoil it.
	quiet bool
}

// kubectlAs runs kubectl as user ("admin", "alice", "rita").
func (r *runner) kubectlAs(user string, args ...string) command {
	return command{bin: "kubectl", path: r.kubectl, args: append([]string{"--kubeconfig", r.stack.KubeconfigPath(user)}, args...)}
}

// hmsbusAs runs hmsbus with user's kubeconfig.
func (r *runner) hmsbusAs(user string, args ...string) command {
	return command{bin: "hmsbus", path: r.hmsbus, args: append(args, "--kubeconfig", r.stack.KubeconfigPath(user))}
}

// hmsbusWith runs hmsbus with the credentials exported for a Subscription
// (or "broker-admin"), as a service with its Secret mounted would.
func (r *runner) hmsbusWith(creds string, args ...string) command {
	return command{bin: "hmsbus", path: r.hmsbus, args: append(args, "--credentials-dir", credsDir(r.stack, creds))}
}

func credsDir(s *localstack.Stack, name string) string { return s.Path("creds", name) }

// display is the command as the user would type it, with paths shortened
// relative to the working directory.
func (r *runner) display(c command) string {
	parts := []string{c.bin}
	for _, a := range c.args {
		parts = append(parts, shellQuote(r.rel(a)))
	}
	return strings.Join(parts, " ")
}

// rel shortens an absolute path under the working directory.
func (r *runner) rel(p string) string {
	if !filepath.IsAbs(p) {
		return p
	}
	if rel, err := filepath.Rel(r.cwd, p); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return p
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:=,@%+-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// run runs c in the foreground and returns its combined output; an error
// means it exited non-zero (the output is in the error too).
func (r *runner) run(ctx context.Context, c command) (string, error) {
	r.out.line("$ " + r.display(c))
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.path, c.args...)
	cmd.Env = r.env
	cmd.Dir = r.cwd
	var buf, errBuf bytes.Buffer
	var term *lineWriter
	if c.quiet {
		cmd.Stdout, cmd.Stderr = &buf, &errBuf
	} else {
		term = r.out.prefixed("    ")
		w := io.MultiWriter(&buf, term)
		cmd.Stdout, cmd.Stderr = w, w
	}
	err := cmd.Run()
	if term != nil {
		term.flush()
	}
	if err != nil {
		out := buf.String()
		if c.quiet {
			out = errBuf.String()
		}
		return out, fmt.Errorf("%s: %w\n%s", r.display(c), err, strings.TrimSpace(out))
	}
	return buf.String(), nil
}

// mustFail runs c and succeeds only if c fails with output containing want.
func (r *runner) mustFail(ctx context.Context, c command, want string) error {
	out, err := r.run(ctx, c)
	if err == nil {
		return fmt.Errorf("%s succeeded; it must be refused", r.display(c))
	}
	if !strings.Contains(out, want) {
		return fmt.Errorf("%s failed, but not with %q: %w", r.display(c), want, err)
	}
	r.out.line(fmt.Sprintf("    (refused, as it must be: %q)", want))
	return nil
}

// background is a command running while the story goes on; its output is
// printed live, each line prefixed with its label.
type background struct {
	label   string
	display string
	out     *localstack.SyncBuffer
	term    *lineWriter
	cancel  context.CancelFunc
	done    chan struct{}
	err     error
}

// start runs c in the background.
func (r *runner) start(ctx context.Context, label string, c command) (*background, error) {
	r.out.line(fmt.Sprintf("$ %s &    # [%s]", r.display(c), label))
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	b := &background{label: label, display: r.display(c), out: &localstack.SyncBuffer{}, term: r.out.prefixed("    [" + label + "] "), cancel: cancel, done: make(chan struct{})}
	cmd := exec.CommandContext(ctx, c.path, c.args...)
	cmd.Env = r.env
	cmd.Dir = r.cwd
	w := io.MultiWriter(b.out, b.term)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("starting %s: %w", b.display, err)
	}
	go func() {
		b.err = cmd.Wait()
		b.term.flush()
		close(b.done)
	}()
	return b, nil
}

// waitForOutput waits until the command has printed want.
func (b *background) waitForOutput(want string, timeout time.Duration) error {
	deadline := time.After(timeout)
	for !strings.Contains(b.out.String(), want) {
		select {
		case <-b.done:
			if strings.Contains(b.out.String(), want) {
				return nil
			}
			return fmt.Errorf("[%s] %s ended (%s) before printing %q", b.label, b.display, exitStatus(b.err), want)
		case <-deadline:
			return fmt.Errorf("[%s] %s has not printed %q after %s", b.label, b.display, want, timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// wait waits for the command to exit and returns its output; an error
// means it failed or did not end in time.
func (b *background) wait(timeout time.Duration) (string, error) {
	defer b.cancel()
	select {
	case <-b.done:
	case <-time.After(timeout):
		b.cancel()
		<-b.done
		return b.out.String(), fmt.Errorf("[%s] %s did not finish within %s", b.label, b.display, timeout)
	}
	if b.err != nil {
		return b.out.String(), fmt.Errorf("[%s] %s: %w", b.label, b.display, b.err)
	}
	return b.out.String(), nil
}

// exitStatus describes how a command ended.
func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// stop ends the command if it is still running (after a failed step).
func (b *background) stop() {
	b.cancel()
	<-b.done
}

// syncWriter serialises whole lines from the story and from background
// commands onto the terminal.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) line(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _ = io.WriteString(s.w, text+"\n")
}

// Write passes bytes straight through, partial lines included: the stack's
// progress ("starting ... ready in 4.1s") shows while it waits.
func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) printf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _ = fmt.Fprintf(s.w, format, args...)
}

// prefixed returns a writer that prints complete lines with prefix.
func (s *syncWriter) prefixed(prefix string) *lineWriter {
	return &lineWriter{dst: s, prefix: prefix}
}

// lineWriter buffers until a newline, so lines of concurrent commands
// never interleave mid-line.
type lineWriter struct {
	mu      sync.Mutex
	dst     *syncWriter
	prefix  string
	partial []byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.dst.line(l.prefix + string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
}

// flush prints a last line that had no newline.
func (l *lineWriter) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.partial) > 0 {
		l.dst.line(l.prefix + string(l.partial))
		l.partial = nil
	}
}
