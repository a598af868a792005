package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/pkg/bus"
	"github.com/hms-platform/bus-operator/test/harness/kafkabroker"
	"github.com/hms-platform/bus-operator/test/harness/testenv"
)

// The personas: a requester files tickets and objects, a reviewer who is
// not the requester approves them.
const (
	requester = "alice"
	reviewer  = "rita"
)

// opTimeout bounds one client operation. A refusal must come back as an
// error well within it; a success on this machine takes well under a
// second.
const opTimeout = 20 * time.Second

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls check until it returns nil, failing t after a minute.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: still failing after a minute: %v", what, err)
}

func requesterClient(t *testing.T) client.Client {
	t.Helper()
	c, err := env.As(requester, testenv.RequestersGroup)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// createApproved goes through the review as it should happen: the
// requester files a ticket covering objs and creates them, then the
// reviewer approves what exists (the approval pins those specs).
func createApproved(t *testing.T, ns, ticket string, objs ...client.Object) {
	t.Helper()
	var covers []busv1.CoveredObject
	for _, o := range objs {
		kind := busv1.KindSubscription
		if _, ok := o.(*busv1.Topic); ok {
			kind = busv1.KindTopic
		}
		covers = append(covers, busv1.CoveredObject{Kind: kind, Name: o.GetName()})
	}
	tk := &busv1.ChangeTicket{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ticket},
		Spec: busv1.ChangeTicketSpec{
			Reference: strings.ToUpper(ticket), Summary: "identity test " + ticket, RequestedBy: requester,
			Covers: covers, NotAfter: metav1.NewTime(time.Now().Add(time.Hour)),
		},
	}
	c := requesterClient(t)
	if err := c.Create(ctxT(t), tk); err != nil {
		t.Fatalf("filing ticket %s: %v", ticket, err)
	}
	for _, o := range objs {
		if err := c.Create(ctxT(t), o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
	if err := env.Approve(ctxT(t), ns, ticket, reviewer); err != nil {
		t.Fatalf("approving %s: %v", ticket, err)
	}
}

// newTopic is a one-partition Topic whose broker name is unique to the
// namespace (the broker is shared by the package).
func newTopic(ns, name string) *busv1.Topic {
	return &busv1.Topic{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: busv1.TopicSpec{TopicName: name + "." + ns, Partitions: 1, ReplicationFactor: ptr.To[int32](1),
			ChangeTicket: "chg-topics"},
	}
}

func newSub(ns, name, ticket string, role busv1.Role, auth *busv1.AuthenticationSpec, topics ...string) *busv1.Subscription {
	s := &busv1.Subscription{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       busv1.SubscriptionSpec{Role: role, ChangeTicket: ticket, Authentication: auth},
	}
	for _, tp := range topics {
		s.Spec.Topics = append(s.Spec.Topics, busv1.TopicReference{Name: tp})
	}
	return s
}

// waitReady waits until a Topic or Subscription is Ready=True.
func waitReady(t *testing.T, obj client.Object) {
	t.Helper()
	eventually(t, obj.GetName()+" Ready", func() error {
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		var conds []metav1.Condition
		switch o := obj.(type) {
		case *busv1.Topic:
			conds = o.Status.Conditions
		case *busv1.Subscription:
			conds = o.Status.Conditions
		}
		c := meta.FindStatusCondition(conds, busv1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("not ready: %+v", c)
		}
		return nil
	})
}

// deleteAndWait deletes obj as the requester and waits until the operator
// released it (its broker work done).
func deleteAndWait(t *testing.T, obj client.Object) {
	t.Helper()
	if err := requesterClient(t).Delete(ctxT(t), obj); err != nil {
		t.Fatalf("deleting %s: %v", obj.GetName(), err)
	}
	eventually(t, obj.GetName()+" released", func() error {
		err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(obj), obj)
		if err == nil {
			return fmt.Errorf("still there (finalizers %v)", obj.GetFinalizers())
		}
		return client.IgnoreNotFound(err)
	})
}

// issuedSecret reads the Secret the operator issued for sub.
func issuedSecret(t *testing.T, sub *busv1.Subscription) *corev1.Secret {
	t.Helper()
	sec := &corev1.Secret{}
	if err := env.Client.Get(ctxT(t), client.ObjectKey{Namespace: sub.Namespace, Name: sub.SecretName()}, sec); err != nil {
		t.Fatalf("reading the credentials Secret of %s: %v", sub.Name, err)
	}
	return sec
}

// mountSecret writes a Secret's data into dir, one file per key, as the
// kubelet mounts a Secret volume (and refreshes it after a change).
func mountSecret(t *testing.T, sec *corev1.Secret, dir string) {
	t.Helper()
	for k, v := range sec.Data {
		// Write then rename, as the kubelet swaps the whole volume
		// atomically: a reader never sees half a file.
		tmp := filepath.Join(dir, "."+k+".tmp")
		if err := os.WriteFile(tmp, v, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, k)); err != nil {
			t.Fatal(err)
		}
	}
}

// mountedCredentials mounts sub's Secret in a new directory and reads it
// as a pod would.
func mountedCredentials(t *testing.T, sub *busv1.Subscription) bus.Credentials {
	t.Helper()
	dir := t.TempDir()
	mountSecret(t, issuedSecret(t, sub), dir)
	creds, err := bus.CredentialsFromDir(dir)
	if err != nil {
		t.Fatalf("reading the mounted Secret of %s: %v", sub.Name, err)
	}
	return creds
}

// publish sends one event with pkg/bus.
func publish(c bus.Credentials, topic, data string) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	p, err := bus.NewPublisher(c, bus.PublisherOptions{Source: "/identity-test", DeliveryTimeout: opTimeout})
	if err != nil {
		return err
	}
	defer p.Close()
	_, err = p.Publish(ctx, topic, bus.Event{Type: "hms.test", Data: json.RawMessage(data)})
	return err
}

// consumeOne consumes in the credentials' consumer group until one event
// arrives, and acknowledges it.
func consumeOne(c bus.Credentials, topic string) (bus.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	s, err := bus.NewSubscriber(c, bus.SubscriberOptions{})
	if err != nil {
		return bus.Event{}, err
	}
	var got *bus.Event
	err = s.Run(ctx, topic, func(_ context.Context, e bus.Event) error {
		got = &e
		cancel()
		return nil
	})
	if err != nil {
		return bus.Event{}, err
	}
	if got == nil {
		return bus.Event{}, fmt.Errorf("no event on %s within %s", topic, opTimeout)
	}
	return *got, nil
}

// streamFirst reads the first event of topic without a group.
func streamFirst(c bus.Credentials, topic string) (bus.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	s, err := bus.NewStreamer(c, bus.StreamOptions{})
	if err != nil {
		return bus.Event{}, err
	}
	var got *bus.Event
	err = s.Stream(ctx, topic, bus.Earliest, func(_ context.Context, e bus.Event) error {
		got = &e
		cancel()
		return nil
	})
	if err != nil && got == nil {
		return bus.Event{}, err
	}
	if got == nil {
		return bus.Event{}, fmt.Errorf("no event on %s within %s", topic, opTimeout)
	}
	return *got, nil
}

// hmsbus runs the CLI built from this tree with the admin kubeconfig.
func hmsbus(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*opTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, hmsbusBin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("hmsbus %s: no answer within %s: %w", strings.Join(args, " "), 2*opTimeout, ctx.Err())
	}
	if err != nil {
		return string(out), fmt.Errorf("hmsbus %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// mustFailWith checks that err is one of the package's sentinels.
func mustFailWith(t *testing.T, what string, err, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded; want %v", what, want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("%s: %v; want %v", what, err, want)
	}
}

// publishAsAdmin writes a record out of band, so a topic holds data no
// Subscription under test may read.
func publishAsAdmin(topic, value string) error {
	cl, err := kgo.NewClient(broker.AdminOpts()...)
	if err != nil {
		return fmt.Errorf("making an admin producer: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(value)}).FirstErr(); err != nil {
		return fmt.Errorf("producing to %s as admin: %w", topic, err)
	}
	return nil
}

func clientKey(o client.Object) client.ObjectKey { return client.ObjectKeyFromObject(o) }

// javaConsume runs Kafka's own console consumer (the Java client, from
// the broker's jars) with a client.properties the operator issued, and
// returns what it printed: the first record of partition 0 of topic.
func javaConsume(t *testing.T, properties, topic string, jvmArgs ...string) (string, error) {
	t.Helper()
	home, err := kafkabroker.ResolveHome("")
	if err != nil {
		return "", err
	}
	// Without its group.id: the console consumer reads one partition from
	// an offset only outside a group (pkg/bus proves the group).
	var lines []string
	for _, l := range strings.Split(properties, "\n") {
		if !strings.HasPrefix(l, "group.id=") {
			lines = append(lines, l)
		}
	}
	props := filepath.Join(t.TempDir(), "client.properties")
	if err := os.WriteFile(props, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append([]string{"-Xmx128m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Dlog4j2.level=WARN"}, jvmArgs...)
	args = append(args, "-cp", filepath.Join(home, "libs", "*"), "org.apache.kafka.tools.consumer.ConsoleConsumer",
		"--bootstrap-server", propertyOf(properties, "bootstrap.servers"), "--command-config", props,
		"--topic", topic, "--partition", "0", "--offset", "earliest", "--max-messages", "1", "--timeout-ms", "30000")
	out, err := exec.CommandContext(ctx, "java", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("java console consumer: %w: %s", err, out)
	}
	return string(out), nil
}

// propertyOf reads a simple key=value line of a properties text.
func propertyOf(properties, key string) string {
	for _, l := range strings.Split(properties, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
