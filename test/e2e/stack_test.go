package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hms-platform/bus-operator/test/harness/localstack"
)

// The shared stack's namespace and declarations: one producer on two
// topics, and one consumer per topic. Single partitions make offsets exact.
const (
	shopNS       = "shop"
	shopTicket   = "chg-7"
	ordersTopic  = "shop.orders"
	ledgerTopic  = "shop.ledger"
	writerSub    = "shop-writer"
	workerSub    = "order-worker"
	readerSub    = "ledger-reader"
	eventType    = "hms.shop.Recorded"
	setupTimeout = 3 * time.Minute
)

const shopManifests = `apiVersion: bus.hms.io/v1
kind: ChangeTicket
metadata: {name: chg-7, namespace: shop}
spec:
  reference: CHG-7
  summary: Orders and ledger topics for the e2e suite
  requestedBy: alice
  notAfter: "%s"
  covers:
    - {kind: Topic, name: orders}
    - {kind: Topic, name: ledger}
    - {kind: Subscription, name: shop-writer}
    - {kind: Subscription, name: order-worker}
    - {kind: Subscription, name: ledger-reader}
---
apiVersion: bus.hms.io/v1
kind: Topic
metadata: {name: orders, namespace: shop}
spec: {topicName: shop.orders, partitions: 1, changeTicket: chg-7}
---
apiVersion: bus.hms.io/v1
kind: Topic
metadata: {name: ledger, namespace: shop}
spec: {topicName: shop.ledger, partitions: 1, changeTicket: chg-7}
---
apiVersion: bus.hms.io/v1
kind: Subscription
metadata: {name: shop-writer, namespace: shop}
spec: {role: Produce, topics: [{name: orders}, {name: ledger}], changeTicket: chg-7}
---
apiVersion: bus.hms.io/v1
kind: Subscription
metadata: {name: order-worker, namespace: shop}
spec: {role: Consume, topics: [{name: orders}], changeTicket: chg-7}
---
apiVersion: bus.hms.io/v1
kind: Subscription
metadata: {name: ledger-reader, namespace: shop}
spec: {role: Consume, topics: [{name: ledger}], changeTicket: chg-7}
`

// fixture is a running stack with the shop declarations approved, Ready,
// and their credentials exported as mounted-Secret directories.
type fixture struct {
	stack *localstack.Stack
	// creds maps a Subscription name to its credentials dir.
	creds map[string]string
}

var shared struct {
	once     sync.Once
	fixture  *fixture
	err      error
	progress bytes.Buffer
	// dir holds the manifests and, in state/, the stack's state dir.
	dir string
}

// sharedFixture starts the shared stack on first use; the tests that need
// it share one, and TestMain stops it.
func sharedFixture(t *testing.T) *fixture {
	t.Helper()
	requireBinaries(t)
	shared.once.Do(func() {
		begin := time.Now()
		shared.fixture, shared.err = setUpFixture()
		t.Logf("shared stack set up in %s:\n%s", time.Since(begin).Round(100*time.Millisecond), shared.progress.String())
	})
	if shared.err != nil {
		t.Fatalf("setting up the shared stack (state and logs in %s): %v", shared.dir, shared.err)
	}
	return shared.fixture
}

// stopShared stops the shared stack. Its dir is removed unless the tests
// failed, when its logs say what went wrong.
func stopShared(testsFailed bool) error {
	if shared.fixture == nil {
		return nil
	}
	err := shared.fixture.stack.Stop()
	if err != nil || testsFailed {
		fmt.Fprintf(os.Stderr, "the shared stack's state and logs are kept in %s\n", shared.dir)
		return err
	}
	return os.RemoveAll(shared.dir)
}

// setUpFixture does what the shop team and its reviewer would do: the
// admin creates the namespace, alice applies the declarations, rita
// approves, and the services' Secrets are mounted (exported as files).
func setUpFixture() (*fixture, error) {
	dir, err := os.MkdirTemp("", "hmsbus-e2e-")
	if err != nil {
		return nil, err
	}
	shared.dir = dir
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	stack, err := localstack.Start(ctx, localstack.Options{BinDir: binDir, StateDir: filepath.Join(dir, "state"), RootDir: repoRoot, Progress: &shared.progress, Broker: brokerUnderTest})
	if err != nil {
		return nil, err
	}
	f := &fixture{stack: stack, creds: map[string]string{}}
	if err := f.declareAndApprove(dir); err != nil {
		return nil, errors.Join(err, f.diagnose(), stack.Stop())
	}
	for _, sub := range []string{writerSub, workerSub, readerSub} {
		if err := f.exportCredentials(sub); err != nil {
			return nil, errors.Join(err, stack.Stop())
		}
	}
	return f, nil
}

func (f *fixture) declareAndApprove(dir string) error {
	manifest := filepath.Join(dir, "shop.yaml")
	body := fmt.Sprintf(shopManifests, time.Now().Add(24*time.Hour).UTC().Format(time.RFC3339))
	if err := os.WriteFile(manifest, []byte(body), 0o600); err != nil {
		return err
	}
	steps := []struct {
		bin  string
		args []string
	}{
		{"kubectl", f.kubeconfig("admin", "create", "namespace", shopNS)},
		{"kubectl", f.kubeconfig(localstack.Requester, "apply", "-f", manifest)},
		{f.hmsbus(), f.kubeconfig(localstack.Reviewer, "approve", shopTicket, "-n", shopNS, "--comment", "e2e")},
		{"kubectl", f.kubeconfig(localstack.Requester, "wait", "--for=condition=Ready", "-n", shopNS, "--timeout=120s",
			"topic/orders", "topic/ledger", "subscription/"+writerSub, "subscription/"+workerSub, "subscription/"+readerSub)},
	}
	for _, s := range steps {
		if r := execute(setupTimeout, localstack.Environ(), s.bin, s.args...); r.err != nil {
			return fmt.Errorf("%s %s:\n%s", filepath.Base(s.bin), strings.Join(s.args, " "), r)
		}
	}
	return nil
}

// diagnose adds the objects' state and the operator's log to a failure.
func (f *fixture) diagnose() error {
	r := execute(30*time.Second, localstack.Environ(), "kubectl", f.kubeconfig("admin", "get", "topics,subscriptions,changetickets", "-n", shopNS, "-o", "wide")...)
	return fmt.Errorf("objects:\n%s%s\noperator log (%s):\n%s", r.stdout, r.stderr,
		f.stack.Path(localstack.OperatorLog), localstack.TailFile(f.stack.Path(localstack.OperatorLog), 30))
}

// exportCredentials writes a Subscription's Secret as files, the way a
// Secret volume is mounted; the admin reads it, as the kubelet would.
func (f *fixture) exportCredentials(sub string) error {
	secret := sub + "-bus-credentials"
	r := execute(time.Minute, localstack.Environ(), "kubectl", f.kubeconfig("admin", "get", "secret", secret, "-n", shopNS, "-o", "json")...)
	if r.err != nil {
		return fmt.Errorf("reading Secret %s: %w: %s", secret, r.err, r.stderr)
	}
	data, err := localstack.SecretDataFromJSON([]byte(r.stdout))
	if err != nil {
		return fmt.Errorf("reading Secret %s: %w", secret, err)
	}
	dir := f.stack.Path("creds", sub)
	if err := localstack.WriteSecretDir(dir, data); err != nil {
		return err
	}
	f.creds[sub] = dir
	return nil
}

// kubeconfig prefixes args with user's --kubeconfig.
func (f *fixture) kubeconfig(user string, args ...string) []string {
	return append([]string{"--kubeconfig", f.stack.KubeconfigPath(user)}, args...)
}

func (f *fixture) hmsbus() string { return filepath.Join(binDir, "hmsbus") }

// bus runs hmsbus with a Subscription's credentials.
func (f *fixture) bus(timeout time.Duration, sub string, args ...string) result {
	return execute(timeout, localstack.Environ(), f.hmsbus(), append(args, "--credentials-dir", f.creds[sub])...)
}

// publish sends one event with a known id and returns where it was stored,
// as "topic/partition@offset".
func (f *fixture) publish(t *testing.T, topic, id string) string {
	t.Helper()
	r := f.bus(time.Minute, writerSub, "pub", topic, fmt.Sprintf(`{"id":%q}`, id), "--type", eventType, "--id", id)
	if r.err != nil {
		t.Fatalf("publishing %s to %s:\n%s", id, topic, r)
	}
	_, at, ok := strings.Cut(strings.TrimSpace(r.stdout), " to ")
	if !strings.HasPrefix(r.stdout, "published "+id+" to ") || !ok {
		t.Fatalf("pub printed %q; want \"published %s to TOPIC/PARTITION@OFFSET\"", r.stdout, id)
	}
	return at
}

// eventIDs lists the ids of the events printed in text form, in order.
func eventIDs(out string) []string {
	var ids []string
	for _, field := range strings.Fields(out) {
		if id, ok := strings.CutPrefix(field, "id="); ok {
			ids = append(ids, id)
		}
	}
	return ids
}

// background is a command left running while the test goes on.
type background struct {
	cmd    *exec.Cmd
	out    *localstack.SyncBuffer
	errOut *localstack.SyncBuffer
	done   chan struct{}
	err    error
}

func (f *fixture) startBus(t *testing.T, sub string, args ...string) *background {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, f.hmsbus(), append(args, "--credentials-dir", f.creds[sub])...)
	cmd.Env = localstack.Environ()
	b := &background{cmd: cmd, out: &localstack.SyncBuffer{}, errOut: &localstack.SyncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = b.out, b.errOut
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting hmsbus %s: %v", strings.Join(args, " "), err)
	}
	go func() {
		b.err = cmd.Wait()
		cancel()
		close(b.done)
	}()
	t.Cleanup(func() { cancel(); <-b.done })
	return b
}

// wait returns the command's result once it exits.
func (b *background) wait(t *testing.T) result {
	t.Helper()
	select {
	case <-b.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("hmsbus %s did not exit within 2m", strings.Join(b.cmd.Args[1:], " "))
	}
	return result{stdout: b.out.String(), stderr: b.errOut.String(), err: b.err}
}
