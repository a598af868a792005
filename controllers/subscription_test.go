package controllers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/audit"
	"github.com/hms-platform/bus-operator/internal/kafka"
	"github.com/hms-platform/bus-operator/pkg/bus"
)

func newSub(ns, name, ticket string, role busv1.Role, topics ...busv1.TopicReference) *busv1.Subscription {
	return &busv1.Subscription{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       busv1.SubscriptionSpec{Topics: topics, Role: role, ChangeTicket: ticket},
	}
}

func ref(name string) busv1.TopicReference { return busv1.TopicReference{Name: name} }

func subConds(s *busv1.Subscription) func() []metav1.Condition {
	return func() []metav1.Condition { return s.Status.Conditions }
}

func waitSubReady(t *testing.T, s *busv1.Subscription) {
	t.Helper()
	waitCondition(t, s, subConds(s), busv1.ConditionReady, metav1.ConditionTrue, busv1.ReasonSucceeded)
}

// readyTopic creates an approved Topic and waits until it is on the broker.
func readyTopic(t *testing.T, ns, name string, allowed ...string) string {
	t.Helper()
	brokerName := uniqueName(ns, name)
	tp := newTopic(ns, name, brokerName, "chg-"+name, 1, nil)
	tp.Spec.AllowedNamespaces = allowed
	tp.Spec.ReplicationFactor = ptr.To[int32](1)
	createApproved(t, ns, "chg-"+name, tp)
	waitTopicReady(t, tp)
	return brokerName
}

// credentials reads the Secret the operator issued, as a workload would.
func credentials(t *testing.T, s *busv1.Subscription) (bus.Credentials, *corev1.Secret) {
	t.Helper()
	sec := &corev1.Secret{}
	if err := env.Client.Get(ctxT(t), client.ObjectKey{Namespace: s.Namespace, Name: s.SecretName()}, sec); err != nil {
		t.Fatalf("reading credentials Secret: %v", err)
	}
	c, err := bus.CredentialsFromSecretData(sec.Data)
	if err != nil {
		t.Fatalf("credentials in Secret %s unusable: %v", sec.Name, err)
	}
	return c, sec
}

func publish(ctx context.Context, c bus.Credentials, topic, data string) error {
	p, err := bus.NewPublisher(c, bus.PublisherOptions{Source: "/test", DeliveryTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer p.Close()
	_, err = p.Publish(ctx, topic, bus.Event{Type: "hms.test", Data: json.RawMessage(data)})
	return err
}

// consumeOne reads one event with the credentials' consumer group.
func consumeOne(ctx context.Context, c bus.Credentials, topic string) (bus.Event, error) {
	s, err := bus.NewSubscriber(c, bus.SubscriberOptions{})
	if err != nil {
		return bus.Event{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var got bus.Event
	err = s.Run(ctx, topic, func(_ context.Context, e bus.Event) error {
		got = e
		cancel()
		return nil
	})
	if got.Type != "" {
		return got, nil
	}
	if err == nil {
		err = errors.New("no event before the deadline")
	}
	return got, err
}

func streamErr(ctx context.Context, c bus.Credentials, topic string) error {
	st, err := bus.NewStreamer(c, bus.StreamOptions{})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return st.Stream(ctx, topic, bus.Earliest, func(context.Context, bus.Event) error { cancel(); return nil })
}

func TestSubscriptionLeastPrivilege(t *testing.T) {
	ns := env.NamespaceT(t, "subs")
	fees := readyTopic(t, ns, "fees")
	other := readyTopic(t, ns, "other")
	consumer := newSub(ns, "payment", "chg-subs", busv1.RoleConsume, ref("fees"))
	producer := newSub(ns, "fee-service", "chg-subs", busv1.RoleProduce, ref("fees"))
	createApproved(t, ns, "chg-subs", consumer, producer)
	waitSubReady(t, consumer)
	waitSubReady(t, producer)

	if consumer.Status.Principal != "User:"+ns+".payment" || consumer.Status.ConsumerGroup != ns+".payment" || consumer.Status.SecretName != "payment-bus-credentials" {
		t.Fatalf("consumer status %+v", consumer.Status)
	}
	if len(consumer.Status.GrantedACLs) != 3 || len(producer.Status.GrantedACLs) != 3 {
		t.Fatalf("granted ACLs: consumer %v producer %v", consumer.Status.GrantedACLs, producer.Status.GrantedACLs)
	}
	cc, csec := credentials(t, consumer)
	pc, psec := credentials(t, producer)
	if csec.OwnerReferences[0].Name != "payment" || !strings.Contains(string(csec.Data[bus.SecretKeyJavaConfig]), "ScramLoginModule") {
		t.Fatalf("Secret not owned or without a ready client config: %+v", csec.ObjectMeta)
	}
	ctx := ctxT(t)

	// The producer writes its topic, and can neither read it nor write another.
	if err := publish(ctx, pc, fees, `{"fee":120}`); err != nil {
		t.Fatalf("producer publishing to its topic: %v", err)
	}
	if err := publish(ctx, pc, other, `{"fee":1}`); !errors.Is(err, bus.ErrNotAuthorized) {
		t.Fatalf("producer writing another topic: want ErrNotAuthorized, got %v", err)
	}
	if err := streamErr(ctx, pc, fees); !errors.Is(err, bus.ErrNotAuthorized) {
		t.Fatalf("producer reading: want ErrNotAuthorized, got %v", err)
	}
	// Only the operator writes the audit trail.
	if err := publish(ctx, pc, audit.DefaultTopic, `{"forged":true}`); !errors.Is(err, bus.ErrNotAuthorized) {
		t.Fatalf("producer writing the audit topic: want ErrNotAuthorized, got %v", err)
	}

	// The consumer reads its topic in its group, and nothing else.
	ev, err := consumeOne(ctx, cc, fees)
	if err != nil || string(ev.Data) != `{"fee":120}` {
		t.Fatalf("consumer reading its topic: %v %+v", err, ev)
	}
	if err := streamErr(ctx, cc, other); !errors.Is(err, bus.ErrNotAuthorized) {
		t.Fatalf("consumer reading another topic: want ErrNotAuthorized, got %v", err)
	}
	otherGroup := cc
	otherGroup.ConsumerGroup = "someone-elses-group"
	if _, err := consumeOne(ctx, otherGroup, fees); !errors.Is(err, bus.ErrNotAuthorized) {
		t.Fatalf("consumer in another group: want ErrNotAuthorized, got %v", err)
	}
	if err := publish(ctx, cc, fees, `{"fee":0}`); !errors.Is(err, bus.ErrNotAuthorized) {
		t.Fatalf("consumer writing: want ErrNotAuthorized, got %v", err)
	}
	wrong := cc
	wrong.Password = "not-the-password"
	// Kafka answers SASL_AUTHENTICATION_FAILED; kfake closes the
	// connection, which pkg/bus reports with the same code.
	if err := streamErr(ctx, wrong, fees); !errors.Is(err, bus.ErrAuthenticationFailed) || !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("wrong password: want ErrAuthenticationFailed with SASL_AUTHENTICATION_FAILED, got %v", err)
	}

	// No password in logs, events, status or the audit topic.
	assertNoSecret(t, ns, string(csec.Data[bus.SecretKeyPassword]), consumer)
	assertNoSecret(t, ns, string(psec.Data[bus.SecretKeyPassword]), producer)
}

func assertNoSecret(t *testing.T, ns, password string, s *busv1.Subscription) {
	t.Helper()
	if len(password) < 16 {
		t.Fatalf("implausible password length %d", len(password))
	}
	if strings.Contains(logs.String(), password) {
		t.Fatal("a password appears in the operator's logs")
	}
	status, _ := json.Marshal(s.Status)
	if strings.Contains(string(status), password) {
		t.Fatal("a password appears in the Subscription status")
	}
	var evs eventsv1.EventList
	if err := env.Client.List(ctxT(t), &evs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(evs.Items) == 0 {
		t.Fatal("expected audit Events in the namespace")
	}
	for _, e := range evs.Items {
		if strings.Contains(e.Note, password) {
			t.Fatalf("a password appears in event %s", e.Name)
		}
	}
	records := readAudit(t, func(r audit.Record) bool { return r.Object.Namespace == ns })
	if len(records) == 0 {
		t.Fatal("expected audit records for the namespace")
	}
	raw, _ := json.Marshal(records)
	if strings.Contains(string(raw), password) {
		t.Fatal("a password appears in the audit topic")
	}
}

func TestSubscriptionRevocation(t *testing.T) {
	ns := env.NamespaceT(t, "revoke")
	a := readyTopic(t, ns, "a")
	b := readyTopic(t, ns, "b")
	sub := newSub(ns, "reader", "chg-s", busv1.RoleConsume, ref("a"), ref("b"))
	createApproved(t, ns, "chg-s", sub)
	waitSubReady(t, sub)
	principal := sub.Status.Principal

	// An ACL someone else granted this principal by hand, and one for
	// another principal: the operator reports the first and touches neither.
	manual := kafka.ACL{Principal: principal, Host: "*", ResourceType: kafka.ResourceTopic, ResourceName: "manual", PatternType: kafka.PatternLiteral, Operation: kafka.OpRead, Permission: kafka.PermissionAllow}
	bystander := kafka.ACL{Principal: "User:bystander", Host: "*", ResourceType: kafka.ResourceTopic, ResourceName: a, PatternType: kafka.PatternLiteral, Operation: kafka.OpRead, Permission: kafka.PermissionAllow}
	if err := admin.CreateACLs(ctxT(t), []kafka.ACL{manual, bystander}); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, sub, subConds(sub), busv1.ConditionDrifted, metav1.ConditionTrue, busv1.ReasonUnmanagedACLs)

	// Removing a topic from the list revokes exactly its grants.
	changeApproved(t, ns, "chg-s2", sub, func(s *busv1.Subscription) { s.Spec.Topics = []busv1.TopicReference{ref("a")} })
	eventually(t, "topic b revoked", func() error {
		acls, err := admin.DescribeACLs(ctxT(t), principal)
		if err != nil {
			return err
		}
		for _, x := range acls {
			if x.ResourceName == b {
				return fmt.Errorf("still granted on %s: %v", b, x)
			}
		}
		if !hasACL(acls, manual) || !hasACL(acls, kafka.ACL{Principal: principal, Host: "*", ResourceType: kafka.ResourceTopic, ResourceName: a, PatternType: kafka.PatternLiteral, Operation: kafka.OpRead, Permission: kafka.PermissionAllow}) {
			return fmt.Errorf("lost an ACL it should keep: %v", acls)
		}
		return nil
	})

	// Deleting the Subscription revokes its ACLs and user, nothing else.
	if err := requesterClient(t).Delete(ctxT(t), sub); err != nil {
		t.Fatal(err)
	}
	eventually(t, "subscription released", func() error { return gone404(requesterClient(t), sub) })
	acls, err := admin.DescribeACLs(ctxT(t), principal)
	if err != nil {
		t.Fatal(err)
	}
	if len(acls) != 1 || !hasACL(acls, manual) {
		t.Fatalf("after deletion only the hand-made ACL may remain, got %v", acls)
	}
	others, _ := admin.DescribeACLs(ctxT(t), "User:bystander")
	if !hasACL(others, bystander) {
		t.Fatal("another principal's ACL was touched")
	}
	users, err := admin.SCRAMMechanisms(ctxT(t), ns+".reader")
	if err != nil {
		t.Fatal(err)
	}
	if len(users[ns+".reader"]) != 0 {
		t.Fatalf("SCRAM user left behind: %v", users)
	}
}

func hasACL(acls []kafka.ACL, want kafka.ACL) bool {
	return slices.ContainsFunc(acls, func(a kafka.ACL) bool { return a.Key() == want.Key() })
}

func TestSubscriptionCrossNamespace(t *testing.T) {
	owner := env.NamespaceT(t, "owner")
	user := env.NamespaceT(t, "user")
	name := readyTopic(t, owner, "shared")
	sub := newSub(user, "reader", "chg-x", busv1.RoleConsume, busv1.TopicReference{Name: "shared", Namespace: owner})
	createApproved(t, user, "chg-x", sub)
	waitCondition(t, sub, subConds(sub), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonNotAllowed)
	acls, err := admin.DescribeACLs(ctxT(t), "User:"+user+".reader")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range acls {
		if a.ResourceName == name {
			t.Fatalf("a not-allowed Subscription got an ACL on %s: %v", name, a)
		}
	}
	// The owner allows the namespace: a Topic change, so it waits for the
	// Topic's own ticket; until then the Subscription stays refused.
	fileTicket(t, owner, "chg-share", covers(busv1.KindTopic, "shared"))
	tp := &busv1.Topic{ObjectMeta: metav1.ObjectMeta{Namespace: owner, Name: "shared"}}
	update(t, tp, func(tp *busv1.Topic) {
		tp.Spec.AllowedNamespaces = []string{user}
		tp.Spec.ChangeTicket = "chg-share"
	})
	waitCondition(t, tp, topicConds(tp), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonAwaitingApproval)
	time.Sleep(resync)
	waitCondition(t, sub, subConds(sub), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonNotAllowed)
	approve(t, owner, "chg-share")
	waitSubReady(t, sub)
	if !slices.Equal(sub.Status.Topics, []string{name}) {
		t.Fatalf("status.topics = %v", sub.Status.Topics)
	}
}

func TestSubscriptionRotationAndDriftRepair(t *testing.T) {
	ns := env.NamespaceT(t, "rotate")
	topic := readyTopic(t, ns, "events")
	sub := newSub(ns, "worker", "chg-r", busv1.RoleProduce, ref("events"))
	sub.Spec.Quota = &busv1.QuotaSpec{ProducerByteRate: ptr.To[int64](1 << 20)}
	createApproved(t, ns, "chg-r", sub)
	waitSubReady(t, sub)
	ctx := ctxT(t)
	first, _ := credentials(t, sub)
	if err := publish(ctx, first, topic, `{"n":1}`); err != nil {
		t.Fatalf("publishing with issued credentials: %v", err)
	}
	q, err := admin.DescribeQuota(ctx, ns+".worker")
	if err != nil || q.ProducerByteRate == nil || *q.ProducerByteRate != 1<<20 {
		t.Fatalf("quota not applied: %+v %v", q, err)
	}

	// Rotation: the Secret and the broker change together; the old
	// password stops working.
	update(t, sub, func(s *busv1.Subscription) {
		s.Annotations = map[string]string{busv1.AnnotationRotate: time.Now().Format(time.RFC3339Nano)}
	})
	var rotated bus.Credentials
	eventually(t, "password rotated", func() error {
		rotated, _ = credentials(t, sub)
		if rotated.Password == first.Password {
			return errors.New("Secret still has the old password")
		}
		return publish(ctx, rotated, topic, `{"n":2}`)
	})
	if err := streamErr(ctx, first, topic); !errors.Is(err, bus.ErrAuthenticationFailed) {
		t.Fatalf("old password after rotation: want ErrAuthenticationFailed, got %v", err)
	}
	if n := countOps(readAudit(t, func(r audit.Record) bool { return r.Resource == ns+".worker" && r.Cause == audit.CauseRotation }), audit.OpUpsertCredential); n != 1 {
		t.Fatalf("want one rotation audit record, got %d", n)
	}

	// A SCRAM user deleted on the broker is restored with the same password.
	if err := admin.DeleteSCRAM(ctx, ns+".worker", "SCRAM-SHA-512"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "SCRAM user restored", func() error { return publish(ctx, rotated, topic, `{"n":3}`) })

	// A removed ACL is restored.
	if err := admin.DeleteACLs(ctx, []kafka.ACL{{Principal: "User:" + ns + ".worker", Host: "*", ResourceType: kafka.ResourceTopic, ResourceName: topic, PatternType: kafka.PatternLiteral, Operation: kafka.OpWrite, Permission: kafka.PermissionAllow}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ACL restored", func() error { return publish(ctx, rotated, topic, `{"n":4}`) })

	// A deleted Secret is recreated with a new password that works.
	_, sec := credentials(t, sub)
	if err := env.Client.Delete(ctx, sec); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Secret recreated", func() error {
		again := &corev1.Secret{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(sec), again); err != nil {
			return err
		}
		c, err := bus.CredentialsFromSecretData(again.Data)
		if err != nil {
			return err
		}
		if again.UID == sec.UID {
			return errors.New("same Secret")
		}
		return publish(ctx, c, topic, `{"n":5}`)
	})
}

func TestSubscriptionWaitsForTicketAndTopic(t *testing.T) {
	ns := env.NamespaceT(t, "subwait")
	fileTicket(t, ns, "chg-w", covers(busv1.KindSubscription, "early"))
	sub := newSub(ns, "early", "chg-w", busv1.RoleConsume, ref("later"))
	create(t, sub)
	waitCondition(t, sub, subConds(sub), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonAwaitingApproval)
	sec := &corev1.Secret{}
	if err := env.Client.Get(ctxT(t), client.ObjectKey{Namespace: ns, Name: sub.SecretName()}, sec); err == nil {
		t.Fatal("credentials issued before approval")
	}
	approve(t, ns, "chg-w")
	waitCondition(t, sub, subConds(sub), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonTopicNotFound)
	// The Topic exists but waits for its own ticket: the Subscription
	// says so in the Topic's words.
	fileTicket(t, ns, "chg-t", covers(busv1.KindTopic, "later"))
	tp := newTopic(ns, "later", uniqueName(ns, "Later"), "chg-t", 1, nil)
	create(t, tp)
	eventually(t, "the Subscription names what its Topic waits for", func() error {
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(sub), sub); err != nil {
			return err
		}
		msg := findCond(sub.Status.Conditions, busv1.ConditionReady)
		if !strings.Contains(msg, "has not been created on the broker yet ("+busv1.ReasonAwaitingApproval) || !strings.Contains(msg, "chg-t") {
			return fmt.Errorf("Ready message: %s", msg)
		}
		return nil
	})
	// The Topic appearing wakes the Subscription: no other touch needed.
	approve(t, ns, "chg-t")
	waitTopicReady(t, tp)
	waitSubReady(t, sub)
}

func TestSubscriptionNeverTakesOverAForeignUser(t *testing.T) {
	ns := env.NamespaceT(t, "foreign")
	readyTopic(t, ns, "data")
	// Someone created this user by hand, with their own password.
	user := ns + ".squatter"
	if err := admin.UpsertSCRAM(ctxT(t), user, "SCRAM-SHA-512", "their-own-password-0123"); err != nil {
		t.Fatal(err)
	}
	sub := newSub(ns, "squatter", "chg-f", busv1.RoleConsume, ref("data"))
	createApproved(t, ns, "chg-f", sub)
	waitCondition(t, sub, subConds(sub), busv1.ConditionStalled, metav1.ConditionTrue, busv1.ReasonConflict)
	if msg := findCond(sub.Status.Conditions, busv1.ConditionReady); !strings.Contains(msg, "was not created by this operator") {
		t.Fatalf("Ready message: %s", msg)
	}
	if err := env.Client.Get(ctxT(t), client.ObjectKey{Namespace: ns, Name: sub.SecretName()}, &corev1.Secret{}); err == nil {
		t.Fatal("a Secret was issued for a user the operator does not own")
	}
	acls, err := admin.DescribeACLs(ctxT(t), "User:"+user)
	if err != nil || len(acls) != 0 {
		t.Fatalf("grants made to a foreign user: %v %v", acls, err)
	}
	// The owner's password still works: nothing was overwritten.
	c := bus.Credentials{Bootstrap: broker.bootstrap(), Username: user, Password: "their-own-password-0123"}
	if err := streamErr(ctxT(t), c, uniqueName(ns, "data")); !errors.Is(err, bus.ErrNotAuthorized) {
		t.Fatalf("the owner's password must still authenticate (and be refused only by ACLs), got %v", err)
	}
}

func TestSubscriptionSpecChangeWithoutApprovalKeepsLastApprovedGrants(t *testing.T) {
	ns := env.NamespaceT(t, "subhold")
	topic := readyTopic(t, ns, "orders")
	sub := newSub(ns, "shipper", "chg-1", busv1.RoleConsume, ref("orders"))
	sub.Spec.Quota = &busv1.QuotaSpec{ConsumerByteRate: ptr.To[int64](2048)}
	createApproved(t, ns, "chg-1", sub)
	waitSubReady(t, sub)
	creds, _ := credentials(t, sub)
	user := ns + ".shipper"

	// Role, mechanism and quota all change, under a ticket nobody approved.
	fileTicket(t, ns, "chg-2", covers(busv1.KindSubscription, "shipper"))
	update(t, sub, func(s *busv1.Subscription) {
		s.Spec.ChangeTicket = "chg-2"
		s.Spec.Role = busv1.RoleProduce
		s.Spec.Credentials = &busv1.CredentialsSpec{Mechanism: busv1.MechanismSCRAMSHA256}
		s.Spec.Quota = &busv1.QuotaSpec{ConsumerByteRate: ptr.To[int64](1 << 30)}
	})
	waitCondition(t, sub, subConds(sub), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonAwaitingApproval)
	time.Sleep(2 * resync)
	ctx := ctxT(t)
	mechs, err := admin.SCRAMMechanisms(ctx, user)
	if err != nil || !slices.Equal(mechs[user], []string{"SCRAM-SHA-512"}) {
		t.Fatalf("mechanism changed without approval: %v %v", mechs, err)
	}
	if q, err := admin.DescribeQuota(ctx, user); err != nil || q.ConsumerByteRate == nil || *q.ConsumerByteRate != 2048 {
		t.Fatalf("quota changed without approval: %+v %v", q, err)
	}
	acls, err := admin.DescribeACLs(ctx, "User:"+user)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range acls {
		if a.Operation == kafka.OpWrite {
			t.Fatalf("produce grant made without approval: %v", a)
		}
	}
	again, _ := credentials(t, sub)
	if again.Password != creds.Password || again.ConsumerGroup != creds.ConsumerGroup || again.Mechanism != "SCRAM-SHA-512" {
		t.Fatalf("the Secret followed the unapproved spec: group %q mechanism %q", again.ConsumerGroup, again.Mechanism)
	}
	superuser := bus.Credentials{Bootstrap: broker.bootstrap(), Username: broker.b.AdminUser, Password: broker.b.AdminPassword}
	if err := publish(ctx, superuser, topic, `{"n":0}`); err != nil {
		t.Fatal(err)
	}
	if _, err := consumeOne(ctx, creds, topic); err != nil {
		t.Fatal("the approved consumer must keep working meanwhile: ", err)
	}

	// Approval applies all of it: the old mechanism goes, the new one works.
	approve(t, ns, "chg-2")
	waitSubReady(t, sub)
	mechs, _ = admin.SCRAMMechanisms(ctx, user)
	if !slices.Equal(mechs[user], []string{"SCRAM-SHA-256"}) {
		t.Fatalf("mechanisms after approval: %v", mechs)
	}
	produced, _ := credentials(t, sub)
	if produced.Mechanism != "SCRAM-SHA-256" || produced.ConsumerGroup != "" {
		t.Fatalf("Secret after approval: mechanism %q group %q", produced.Mechanism, produced.ConsumerGroup)
	}
	if err := publish(ctx, produced, topic, `{"n":1}`); err != nil {
		t.Fatalf("approved producer cannot publish: %v", err)
	}
	if sub.Status.Role != busv1.RoleProduce || sub.Status.Quota == nil || *sub.Status.Quota.ConsumerByteRate != 1<<30 {
		t.Fatalf("status after approval: %+v", sub.Status)
	}
}
