// Package interop proves that credentials the operator issues work, as
// they are, with Kafka clients nobody here wrote: Kafka's own Java console
// producer and consumer (configured only from the Secret's client.properties)
// and librdkafka through Python's confluent-kafka (configured only from the
// Secret's librdkafka.properties). A real operator, a real API server and
// Apache Kafka (always: whatever HMSBUS_TEST_BROKER says, since kfake's
// caveats, such as closing the connection on a wrong password, would hide
// what these clients see in production) issue and check them; each client
// must do what was granted and be refused what was not, so a credential
// that is wrong or too broad fails the tests. `make test` runs the package
// in its Kafka tier only.
package interop

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/governance"
	"github.com/hms-platform/bus-operator/internal/kafka"
	"github.com/hms-platform/bus-operator/internal/operator"
	"github.com/hms-platform/bus-operator/pkg/bus"
	"github.com/hms-platform/bus-operator/test/harness/brokers"
	"github.com/hms-platform/bus-operator/test/harness/kafkabroker"
	"github.com/hms-platform/bus-operator/test/harness/testenv"
)

var (
	env    *testenv.Env
	broker *brokers.Broker
	admin  *kafka.Client
	// issued holds the fixture's Secrets, written as files.
	issued fixture
)

// The fixture: one namespace, two topics, a producer and a consumer of
// "orders" only. "ledger" is granted to nobody.
const (
	requester = "alice"
	reviewer  = "rita"
	ticket    = "chg-interop"
	ordersObj = "orders"
	ledgerObj = "ledger"
	writerSub = "writer"
	readerSub = "reader"
)

type fixture struct {
	ns                     string
	orders, ledger         string // broker topic names
	writerDir, readerDir   string // the Secrets' keys as files
	readerGroup            string
	writerJava, readerJava string
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	logf.SetLogger(logr.Discard())
	var err error
	if env, err = testenv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "starting test control plane:", err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping test control plane:", err)
		}
	}()
	if broker, err = brokers.Start(brokers.Options{Kind: brokers.Kafka}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = broker.Close() }()
	stop, err := startOperator()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	dir, err := os.MkdirTemp("", "hmsbus-interop-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if issued, err = setUp(dir); err != nil {
		fmt.Fprintln(os.Stderr, "setting up the interop fixture:", err)
		return 1
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "--- last lines of the %s log ---\n%s\n", broker.Name(), broker.LogTail(60))
	}
	return code
}

// startOperator runs the operator in this process, as controllers' suite
// does, against the broker under test.
func startOperator() (func(), error) {
	kcfg := kafka.Config{
		Bootstrap: broker.Bootstrap(), Mechanism: broker.Mechanism(),
		Username: broker.AdminUser, Password: broker.AdminPassword,
		RequestTimeout:  5 * time.Second,
		SCRAMIterations: broker.SCRAMIterations(),
	}
	var err error
	if admin, err = kafka.New(context.Background(), kcfg); err != nil {
		return nil, err
	}
	mgr, opClient, err := operator.New(env.Config, operator.Config{
		Kafka:              kcfg,
		Policy:             governance.Policy{MinApprovals: 1, MaxWindow: 24 * time.Hour},
		ResyncPeriod:       time.Minute,
		MetricsAddr:        "0",
		ProbeAddr:          "0",
		SkipNameValidation: true,
	})
	if err != nil {
		admin.Close()
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

// setUp declares the fixture as a team would, has it approved, waits until
// it is Ready and writes the issued Secrets into dir.
func setUp(dir string) (fixture, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns, err := env.CreateNamespace(ctx, "interop")
	if err != nil {
		return fixture{}, err
	}
	f := fixture{ns: ns, orders: "interop.orders." + ns, ledger: "interop.ledger." + ns}
	alice, err := env.As(requester, testenv.RequestersGroup)
	if err != nil {
		return fixture{}, err
	}
	objs := []client.Object{
		&busv1.ChangeTicket{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ticket},
			Spec: busv1.ChangeTicketSpec{
				Reference: "CHG-INTEROP", Summary: "clients nobody here wrote", RequestedBy: requester,
				NotAfter: metav1.NewTime(time.Now().Add(time.Hour)),
				Covers: []busv1.CoveredObject{
					{Kind: busv1.KindTopic, Name: ordersObj}, {Kind: busv1.KindTopic, Name: ledgerObj},
					{Kind: busv1.KindSubscription, Name: writerSub}, {Kind: busv1.KindSubscription, Name: readerSub},
				},
			},
		},
		topic(ns, ordersObj, f.orders),
		topic(ns, ledgerObj, f.ledger),
		subscription(ns, writerSub, busv1.RoleProduce),
		subscription(ns, readerSub, busv1.RoleConsume),
	}
	for _, o := range objs {
		if err := alice.Create(ctx, o); err != nil {
			return fixture{}, fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}
	if err := env.Approve(ctx, ns, ticket, reviewer); err != nil {
		return fixture{}, err
	}
	for _, o := range objs[1:] {
		if err := waitReady(ctx, o); err != nil {
			return fixture{}, err
		}
	}
	for _, s := range []struct {
		name string
		dir  *string
	}{{writerSub, &f.writerDir}, {readerSub, &f.readerDir}} {
		sec := &corev1.Secret{}
		key := client.ObjectKey{Namespace: ns, Name: s.name + "-bus-credentials"}
		if err := env.Client.Get(ctx, key, sec); err != nil {
			return fixture{}, fmt.Errorf("reading the Secret of %s: %w", s.name, err)
		}
		*s.dir = filepath.Join(dir, s.name)
		if err := writeSecret(*s.dir, sec.Data); err != nil {
			return fixture{}, err
		}
	}
	f.writerJava = filepath.Join(f.writerDir, bus.SecretKeyJavaConfig)
	f.readerJava = filepath.Join(f.readerDir, bus.SecretKeyJavaConfig)
	group, err := os.ReadFile(filepath.Join(f.readerDir, bus.SecretKeyGroup))
	if err != nil {
		return fixture{}, fmt.Errorf("the consumer's Secret has no group: %w", err)
	}
	f.readerGroup = string(group)
	return f, nil
}

func topic(ns, name, brokerName string) *busv1.Topic {
	return &busv1.Topic{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       busv1.TopicSpec{TopicName: brokerName, Partitions: 1, ChangeTicket: ticket},
	}
}

func subscription(ns, name string, role busv1.Role) *busv1.Subscription {
	return &busv1.Subscription{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       busv1.SubscriptionSpec{Role: role, Topics: []busv1.TopicReference{{Name: ordersObj}}, ChangeTicket: ticket},
	}
}

// waitReady waits until obj's Ready condition is True.
func waitReady(ctx context.Context, obj client.Object) error {
	var last string
	for {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		var conds []metav1.Condition
		switch o := obj.(type) {
		case *busv1.Topic:
			conds = o.Status.Conditions
		case *busv1.Subscription:
			conds = o.Status.Conditions
		}
		if c := meta.FindStatusCondition(conds, busv1.ConditionReady); c != nil {
			if c.Status == metav1.ConditionTrue {
				return nil
			}
			last = c.Reason + ": " + c.Message
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%T %s not Ready (%s): %w", obj, obj.GetName(), last, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// writeSecret writes one file per key, as a mounted Secret volume.
func writeSecret(dir string, data map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("writing credentials: %w", err)
	}
	for k, v := range data {
		if err := os.WriteFile(filepath.Join(dir, k), v, 0o600); err != nil {
			return fmt.Errorf("writing credentials: %w", err)
		}
	}
	return nil
}

// property reads key from a Java properties file the operator wrote
// (single-line values: the ones read here are never escaped).
func property(t *testing.T, path, key string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if k, v, ok := strings.Cut(strings.TrimRight(line, "\n"), "="); ok && k == key {
			return v
		}
	}
	t.Fatalf("%s has no %s", path, key)
	return ""
}

// withPassword copies a properties file with the password replaced, for a
// client whose credential is wrong.
func withPassword(t *testing.T, path, from, to string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), from) {
		t.Fatalf("%s does not hold the issued password", path)
	}
	out := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.WriteFile(out, []byte(strings.ReplaceAll(string(data), from, to)), 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

// endOffset is the number of records in partition 0 of topic, read as the
// broker admin: the truth a client's own report is checked against.
func endOffset(t *testing.T, topic string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(broker.AdminOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("listing the end offset of %s: %v", topic, err)
	}
	o, ok := ends.Lookup(topic, 0)
	if !ok {
		t.Fatalf("no end offset for %s", topic)
	}
	return o.Offset
}

// kafkaLibs is the class path of Kafka's own tools (make kafka).
func kafkaLibs(t *testing.T) string {
	t.Helper()
	home, err := kafkabroker.ResolveHome("")
	if err != nil {
		t.Fatalf("Kafka's console clients come from bin/kafka: %v", err)
	}
	return filepath.Join(home, "libs", "*")
}
