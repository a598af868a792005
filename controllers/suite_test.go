package controllers_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/governance"
	"github.com/hms-platform/bus-operator/internal/kafka"
	"github.com/hms-platform/bus-operator/internal/operator"
	"github.com/hms-platform/bus-operator/test/harness/brokers"
	"github.com/hms-platform/bus-operator/test/harness/localstack"
	"github.com/hms-platform/bus-operator/test/harness/testenv"
)

// The suite runs the real manager against the real API server (envtest with
// the kube-apiserver and etcd built into bin/) and the broker under test
// (HMSBUS_TEST_BROKER: the embedded kfake cluster, or Apache Kafka), with
// SASL/SCRAM and ACLs enforced.
var (
	env      *testenv.Env
	broker   *brokerHandle
	admin    *kafka.Client // the test's own admin client, for assertions and out-of-band changes
	logs     = &localstack.SyncBuffer{}
	resync   = 2 * time.Second
	requests requestCounts
)

const (
	requester = "alice"
	reviewer  = "rita"
)

// brokerHandle is the broker under test. It restarts on the same ports
// with its data, so a "broker down, then up" test keeps the cluster's
// state.
type brokerHandle struct {
	b *brokers.Broker
}

func (h *brokerHandle) start() error { return h.b.Start() }

func (h *brokerHandle) stop() {
	if err := h.b.Stop(); err != nil {
		// Kafka was killed after its stop timeout: it is down all the same.
		fmt.Fprintln(os.Stderr, "stopping the broker:", err)
	}
}

func (h *brokerHandle) bootstrap() []string { return h.b.Bootstrap() }

// rf is the replication factor the broker under test can hold: 3 on the
// embedded cluster, 1 on a single Kafka node.
func (h *brokerHandle) rf() int32 { return h.b.ReplicationFactor() }

// requestCounts reads the broker's request counts (by API key, from kfake
// itself or from the proxy in front of Kafka).
type requestCounts struct{}

// Snapshot is the requests counted so far; subtract two for a window.
func (requestCounts) Snapshot() brokers.Counts { return broker.b.Requests() }

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	var err error
	if env, err = testenv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "starting test control plane:", err)
		return 1
	}
	stopManager, err := startBrokerAndOperator()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		_ = env.Stop()
		return 1
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "--- last lines of the %s log ---\n%s\n", broker.b.Name(), broker.b.LogTail(80))
	}
	// The manager goes first: the API server waits for open watches.
	stopManager()
	if err := broker.b.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "closing the broker:", err)
	}
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping test control plane:", err)
	}
	return code
}

func startBrokerAndOperator() (func(), error) {
	b, err := brokers.Start(brokers.Options{Restartable: true, AdminPassword: "test-admin-secret-0123456789"})
	if err != nil {
		return nil, err
	}
	broker = &brokerHandle{b: b}
	kcfg := kafka.Config{
		Bootstrap: broker.bootstrap(), Mechanism: b.Mechanism(),
		Username: b.AdminUser, Password: b.AdminPassword,
		RequestTimeout: 4 * time.Second,
		// kfake always tells clients 4096 iterations, whatever a
		// credential was stored with, so only 4096 authenticates there;
		// on Kafka the issued credentials use 8192, which it honours.
		SCRAMIterations: b.SCRAMIterations(),
	}
	// kfake has no client-certificate listener: that address only goes
	// into issued Secrets there.
	mtls := broker.bootstrap()
	if addrs := b.MTLSBootstrap(); addrs != nil {
		mtls = addrs
	}
	if admin, err = kafka.New(context.Background(), kcfg); err != nil {
		return nil, err
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(io.MultiWriter(logs, os.Stderr)), zap.UseDevMode(false)))
	mgr, opClient, err := operator.New(env.Config, operator.Config{
		Kafka:        kcfg,
		Policy:       governance.Policy{MinApprovals: 1, MaxWindow: 24 * time.Hour},
		ResyncPeriod: resync,
		// kfake has no client-certificate or OAUTHBEARER listener: these
		// addresses only go into issued Secrets; the Kafka tier proves
		// the identities against real listeners.
		ClientMTLSBootstrap:  mtls,
		ClientOAuthBootstrap: broker.bootstrap(),
		ClientsCA:            types.NamespacedName{Namespace: testenv.SystemNamespace, Name: "hmsbus-clients-ca"},
		ClientsCAConfigMap:   types.NamespacedName{Namespace: testenv.SystemNamespace, Name: "hmsbus-clients-ca"},
		MetricsAddr:          "0",
		ProbeAddr:            "0",
		SkipNameValidation:   true,
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer opClient.Close()
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager stopped:", err)
		}
	}()
	return func() { cancel(); <-done; admin.Close() }, nil
}

// ---- helpers shared by the tests ----

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls check until it returns nil or the deadline passes.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		time.Sleep(150 * time.Millisecond)
	}
	t.Fatalf("%s: still failing after 30s: %v", what, err)
}

// requesterClient acts as the requester persona.
func requesterClient(t *testing.T) client.Client {
	c, err := env.As(requester, testenv.RequestersGroup)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type ticketSpec struct {
	covers   []busv1.CoveredObject
	notAfter time.Duration
}

// fileTicket creates a ChangeTicket as the requester, covering objects.
func fileTicket(t *testing.T, ns, name string, covers ...busv1.CoveredObject) *busv1.ChangeTicket {
	t.Helper()
	return fileTicketSpec(t, ns, name, ticketSpec{covers: covers, notAfter: time.Hour})
}

func fileTicketSpec(t *testing.T, ns, name string, s ticketSpec) *busv1.ChangeTicket {
	t.Helper()
	tk := &busv1.ChangeTicket{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: busv1.ChangeTicketSpec{
			Reference: strings.ToUpper(name), Summary: "test change " + name, RequestedBy: requester,
			Covers: s.covers, NotAfter: metav1.NewTime(time.Now().Add(s.notAfter)),
		},
	}
	if err := requesterClient(t).Create(ctxT(t), tk); err != nil {
		t.Fatalf("filing ticket %s: %v", name, err)
	}
	return tk
}

func approve(t *testing.T, ns, ticket string) {
	t.Helper()
	if err := env.Approve(ctxT(t), ns, ticket, reviewer); err != nil {
		t.Fatalf("approving %s: %v", ticket, err)
	}
}

func covers(kind busv1.CoveredKind, name string, ops ...busv1.Operation) busv1.CoveredObject {
	return busv1.CoveredObject{Kind: kind, Name: name, Operations: ops}
}

// kindOf is the ticket kind of a Topic or Subscription.
func kindOf(t *testing.T, obj client.Object) busv1.CoveredKind {
	switch obj.(type) {
	case *busv1.Topic:
		return busv1.KindTopic
	case *busv1.Subscription:
		return busv1.KindSubscription
	}
	t.Fatalf("no ticket kind for %T", obj)
	return ""
}

// createApproved goes through the review the way it should happen: the
// requester files a ticket covering objs and creates them, then the reviewer
// approves what exists (the approval pins their specs).
func createApproved(t *testing.T, ns, ticket string, objs ...client.Object) {
	t.Helper()
	var c []busv1.CoveredObject
	for _, o := range objs {
		c = append(c, covers(kindOf(t, o), o.GetName()))
	}
	fileTicket(t, ns, ticket, c...)
	for _, o := range objs {
		create(t, o)
	}
	approve(t, ns, ticket)
}

// changeApproved edits obj under a new ticket and has it approved: an
// approved object's later edit needs its own review.
func changeApproved[T client.Object](t *testing.T, ns, ticket string, obj T, mutate func(T), ops ...busv1.Operation) {
	t.Helper()
	fileTicket(t, ns, ticket, covers(kindOf(t, obj), obj.GetName(), ops...))
	update(t, obj, func(o T) {
		mutate(o)
		setTicket(o, ticket)
	})
	approve(t, ns, ticket)
}

func setTicket(obj client.Object, ticket string) {
	switch o := obj.(type) {
	case *busv1.Topic:
		o.Spec.ChangeTicket = ticket
	case *busv1.Subscription:
		o.Spec.ChangeTicket = ticket
	}
}

func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := requesterClient(t).Create(ctxT(t), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

// update re-reads obj, applies mutate and writes it back, retrying on
// conflicts with the operator's writes.
func update[T client.Object](t *testing.T, obj T, mutate func(T)) {
	t.Helper()
	c := requesterClient(t)
	for range 20 {
		if err := c.Get(ctxT(t), client.ObjectKeyFromObject(obj), obj); err != nil {
			t.Fatal(err)
		}
		mutate(obj)
		err := c.Update(ctxT(t), obj)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			t.Fatalf("updating %s: %v", obj.GetName(), err)
		}
	}
	t.Fatalf("updating %s: too many conflicts", obj.GetName())
}

// waitCondition waits until obj's condition typ has status and reason.
func waitCondition(t *testing.T, obj client.Object, conds func() []metav1.Condition, typ string, status metav1.ConditionStatus, reason string) {
	t.Helper()
	eventually(t, fmt.Sprintf("%s %s=%s/%s", obj.GetName(), typ, status, reason), func() error {
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		c := meta.FindStatusCondition(conds(), typ)
		if c == nil {
			return errors.New("condition absent")
		}
		if c.Status != status || (reason != "" && c.Reason != reason) {
			return fmt.Errorf("got %s/%s: %s", c.Status, c.Reason, c.Message)
		}
		return nil
	})
}

func brokerTopic(t *testing.T, name string) (kafka.Topic, bool) {
	t.Helper()
	got, err := admin.DescribeTopics(ctxT(t), name)
	if err != nil {
		t.Fatalf("describing %s: %v", name, err)
	}
	tp, ok := got[name]
	return tp, ok
}

// waitBrokerTopic waits until the broker's view of topic name passes
// check. Apache Kafka answers a topic write once its controller has
// committed it, and its brokers' describe answers follow a moment later,
// so a check right after Ready (or after a Topic is released) must allow
// for that; kfake answers at once.
func waitBrokerTopic(t *testing.T, name, what string, check func(tp kafka.Topic, exists bool) error) {
	t.Helper()
	eventually(t, what, func() error {
		got, err := admin.DescribeTopics(ctxT(t), name)
		if err != nil {
			return err
		}
		tp, ok := got[name]
		return check(tp, ok)
	})
}

func ctxBackground() context.Context { return context.Background() }
