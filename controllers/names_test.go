package controllers_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/audit"
	"github.com/hms-platform/bus-operator/pkg/bus"
)

// The tests in this file are about names that carry data or identity: every
// such name is claimed once, atomically, by an approved object, and never
// moves while its owner exists.

// claimOf reads the NameClaim of a name, or nil.
func claimOf(t *testing.T, kind busv1.ClaimKind, name string) *busv1.NameClaim {
	t.Helper()
	nc := &busv1.NameClaim{}
	err := env.Client.Get(ctxT(t), client.ObjectKey{Name: busv1.ClaimObjectName(kind, name)}, nc)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return nc
}

// TestTopicNameRaceHasExactlyOneOwner races many approved Topics from several
// namespaces for one broker name, created within the same second: exactly one
// owns it, every other is told who does and holds no ID of it, and no data is
// lost whatever is deleted afterwards.
func TestTopicNameRaceHasExactlyOneOwner(t *testing.T) {
	const namespaces, perNamespace = 4, 2
	var nss []string
	for i := range namespaces {
		nss = append(nss, env.NamespaceT(t, fmt.Sprintf("race%d", i)))
	}
	name := uniqueName(nss[0], "Raced")
	var all []*busv1.Topic
	for i, ns := range nss {
		var objs []client.Object
		var covered []busv1.CoveredObject
		for j := range perNamespace {
			// Half use '.' where the name has it, half '_': the broker
			// treats those spellings as one name, and so do claims.
			brokerName := name
			if (i+j)%2 == 1 {
				brokerName = strings.ReplaceAll(name, ".", "_")
			}
			tp := newTopic(ns, fmt.Sprintf("raced-%d", j), brokerName, "chg-race", 1, nil)
			tp.Spec.DeletionPolicy = busv1.DeletionDelete
			all = append(all, tp)
			objs = append(objs, tp)
			covered = append(covered, covers(busv1.KindTopic, tp.Name, busv1.OperationApply, busv1.OperationDelete))
		}
		fileTicket(t, ns, "chg-race", covered...)
		for _, o := range objs {
			create(t, o)
		}
	}
	// Every ticket is approved at once: the Topics reconcile concurrently.
	var wg sync.WaitGroup
	for _, ns := range nss {
		wg.Go(func() { approve(t, ns, "chg-race") })
	}
	wg.Wait()

	var owners []*busv1.Topic
	eventually(t, "one owner, the rest in conflict", func() error {
		owners = owners[:0]
		conflicts := 0
		for _, tp := range all {
			if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(tp), tp); err != nil {
				return err
			}
			switch c := condOf(tp.Status.Conditions, busv1.ConditionReady); {
			case c == nil:
				return fmt.Errorf("%s/%s has no Ready yet", tp.Namespace, tp.Name)
			case c.Status == metav1.ConditionTrue:
				owners = append(owners, tp)
			case c.Reason == busv1.ReasonConflict:
				conflicts++
			default:
				return fmt.Errorf("%s/%s: %s %s", tp.Namespace, tp.Name, c.Reason, c.Message)
			}
		}
		if len(owners) != 1 || conflicts != len(all)-1 {
			return fmt.Errorf("%d owners, %d conflicts", len(owners), conflicts)
		}
		return nil
	})
	owner := owners[0]
	nc := claimOf(t, busv1.ClaimBrokerTopic, owner.BrokerTopicName())
	if nc == nil || nc.Spec.Owner.UID != string(owner.UID) {
		t.Fatalf("the claim must name the owner %s/%s: %+v", owner.Namespace, owner.Name, nc)
	}
	for _, tp := range all {
		if tp.UID == owner.UID {
			continue
		}
		if tp.Status.TopicID != "" {
			t.Fatalf("loser %s/%s holds topic ID %s", tp.Namespace, tp.Name, tp.Status.TopicID)
		}
		msg := findCond(tp.Status.Conditions, busv1.ConditionReady)
		if !strings.Contains(msg, fmt.Sprintf("claimed by Topic %s/%s since", owner.Namespace, owner.Name)) {
			t.Fatalf("loser %s/%s is not told who holds the name: %s", tp.Namespace, tp.Name, msg)
		}
	}

	// Data written now must survive every deletion that follows.
	superuser := bus.Credentials{Bootstrap: broker.bootstrap(), Username: broker.b.AdminUser, Password: broker.b.AdminPassword}
	ownerName := owner.BrokerTopicName()
	if err := publish(ctxT(t), superuser, ownerName, `{"n":1}`); err != nil {
		t.Fatal(err)
	}
	// Delete every loser, each with deletionPolicy Delete and a ticket that
	// covers Delete: none may touch the owner's topic.
	c := requesterClient(t)
	for _, tp := range all {
		if tp.UID != owner.UID {
			if err := c.Delete(ctxT(t), tp); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tp := range all {
		if tp.UID != owner.UID {
			eventually(t, "loser released", func() error { return gone404(c, tp) })
		}
	}
	got, ok := brokerTopic(t, ownerName)
	if !ok || got.ID != owner.Status.TopicID {
		t.Fatalf("deleting the losers touched the owner's topic: ok=%v %+v", ok, got)
	}
	if n := countOps(readAudit(t, func(r audit.Record) bool {
		return r.Operation == audit.OpDeleteTopic && (r.Resource == name || r.Resource == strings.ReplaceAll(name, ".", "_"))
	}), audit.OpDeleteTopic); n != 0 {
		t.Fatalf("a loser deleted a topic: %d DeleteTopic records", n)
	}
	if _, err := consumeFromStart(ctxT(t), superuser, ownerName); err != nil {
		t.Fatalf("records written before the deletions are gone: %v", err)
	}
	if nc := claimOf(t, busv1.ClaimBrokerTopic, ownerName); nc == nil || nc.Spec.Owner.UID != string(owner.UID) {
		t.Fatalf("the claim moved while its owner exists: %+v", nc)
	}
}

// TestTopicClaimPassesOnWithoutDataLoss deletes the owner (Retain): the next
// approved claimant takes the name over and adopts the topic with its data.
func TestTopicClaimPassesOnWithoutDataLoss(t *testing.T) {
	nsA := env.NamespaceT(t, "handover-a")
	nsB := env.NamespaceT(t, "handover-b")
	name := uniqueName(nsA, "Handed")
	first := newTopic(nsA, "handed", name, "chg-1", 1, nil)
	createApproved(t, nsA, "chg-1", first)
	waitTopicReady(t, first)
	second := newTopic(nsB, "handed", name, "chg-1", 1, nil)
	createApproved(t, nsB, "chg-1", second)
	waitCondition(t, second, topicConds(second), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonConflict)

	superuser := bus.Credentials{Bootstrap: broker.bootstrap(), Username: broker.b.AdminUser, Password: broker.b.AdminPassword}
	if err := publish(ctxT(t), superuser, name, `{"kept":true}`); err != nil {
		t.Fatal(err)
	}
	if err := requesterClient(t).Delete(ctxT(t), first); err != nil {
		t.Fatal(err)
	}
	waitTopicReady(t, second)
	if second.Status.TopicID != first.Status.TopicID {
		t.Fatalf("the new owner must adopt the same topic (ID %s), got %s", first.Status.TopicID, second.Status.TopicID)
	}
	if nc := claimOf(t, busv1.ClaimBrokerTopic, name); nc == nil || nc.Spec.Owner.UID != string(second.UID) {
		t.Fatalf("claim after hand-over: %+v", nc)
	}
	ev, err := consumeFromStart(ctxT(t), superuser, name)
	if err != nil || string(ev.Data) != `{"kept":true}` {
		t.Fatalf("data lost in the hand-over: %v %+v", err, ev)
	}
}

// TestUnapprovedTopicClaimsNothing: a Topic whose ticket is pending or denied
// never keeps an approved one from its name, and is told who holds it.
func TestUnapprovedTopicClaimsNothing(t *testing.T) {
	squat := env.NamespaceT(t, "squat")
	real := env.NamespaceT(t, "real")
	name := uniqueName(squat, "Wanted")
	pending := newTopic(squat, "pending", name, "chg-pending", 1, nil)
	fileTicket(t, squat, "chg-pending", covers(busv1.KindTopic, "pending"))
	create(t, pending)
	denied := newTopic(squat, "denied", name, "chg-denied", 1, nil)
	fileTicket(t, squat, "chg-denied", covers(busv1.KindTopic, "denied"))
	create(t, denied)
	if err := env.Deny(ctxT(t), squat, "chg-denied", reviewer); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, pending, topicConds(pending), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonAwaitingApproval)
	waitCondition(t, denied, topicConds(denied), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonTicketDenied)
	if nc := claimOf(t, busv1.ClaimBrokerTopic, name); nc != nil {
		t.Fatalf("an unapproved Topic claimed the name: %+v", nc.Spec.Owner)
	}

	// The approved owner is paused: it holds the name, nothing exists yet.
	owner := newTopic(real, "wanted", name, "chg-1", 1, nil)
	owner.Annotations = map[string]string{busv1.AnnotationPaused: "true"}
	createApproved(t, real, "chg-1", owner)
	waitCondition(t, owner, topicConds(owner), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonPaused)
	// An approved latecomer is told the truth: claimed, nothing on the broker.
	late := newTopic(squat, "late", name, "chg-late", 1, nil)
	createApproved(t, squat, "chg-late", late)
	waitCondition(t, late, topicConds(late), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonConflict)
	if msg := findCond(late.Status.Conditions, busv1.ConditionReady); !strings.Contains(msg, "nothing exists on the broker for it yet") || !strings.Contains(msg, "claimed by Topic "+real+"/wanted") {
		t.Fatalf("conflict message: %s", msg)
	}
	eventually(t, "the pending Topic learns who holds the name", func() error {
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(pending), pending); err != nil {
			return err
		}
		if msg := findCond(pending.Status.Conditions, busv1.ConditionReady); !strings.Contains(msg, "claimed by Topic "+real+"/wanted") {
			return fmt.Errorf("message %q", msg)
		}
		return nil
	})
	update(t, owner, func(tp *busv1.Topic) { delete(tp.Annotations, busv1.AnnotationPaused) })
	waitTopicReady(t, owner)
}

// TestStaleClaimIsReleased: an owner removed without releasing its claim
// (its finalizer taken off by hand) leaves a stale claim, which the next
// approved claimant replaces.
func TestStaleClaimIsReleased(t *testing.T) {
	nsA := env.NamespaceT(t, "stale-a")
	nsB := env.NamespaceT(t, "stale-b")
	name := uniqueName(nsA, "Stale")
	first := newTopic(nsA, "stale", name, "chg-1", 1, nil)
	createApproved(t, nsA, "chg-1", first)
	waitTopicReady(t, first)
	second := newTopic(nsB, "stale", name, "chg-1", 1, nil)
	createApproved(t, nsB, "chg-1", second)
	waitCondition(t, second, topicConds(second), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonConflict)

	// The operator is bypassed: finalizer removed, then the object deleted.
	if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(first), first); err != nil {
		t.Fatal(err)
	}
	first.Finalizers = nil
	if err := env.Client.Update(ctxT(t), first); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Delete(ctxT(t), first); err != nil {
		t.Fatal(err)
	}
	// Nothing wakes the loser but its own resync or an edit: annotate it.
	update(t, second, func(tp *busv1.Topic) { tp.Annotations = map[string]string{"touch": "1"} })
	waitTopicReady(t, second)
	if nc := claimOf(t, busv1.ClaimBrokerTopic, name); nc == nil || nc.Spec.Owner.UID != string(second.UID) {
		t.Fatalf("stale claim not replaced: %+v", nc)
	}
}

// TestConsumerGroupBelongsToOneSubscription: a group is claimed by the first
// approved Subscription; another Subscription in the namespace naming it is
// told who holds it and gets no grant on it, and no Subscription can name a
// group of another namespace at all.
func TestConsumerGroupBelongsToOneSubscription(t *testing.T) {
	ns := env.NamespaceT(t, "groups")
	other := env.NamespaceT(t, "thief")
	readyTopic(t, ns, "ledger", other)
	payment := newSub(ns, "payment", "chg-1", busv1.RoleConsume, ref("ledger"))
	createApproved(t, ns, "chg-1", payment)
	waitSubReady(t, payment)

	// Same namespace, explicit name of payment's default group.
	copycat := newSub(ns, "copycat", "chg-2", busv1.RoleConsume, ref("ledger"))
	copycat.Spec.ConsumerGroup = ns + ".payment"
	createApproved(t, ns, "chg-2", copycat)
	waitCondition(t, copycat, subConds(copycat), busv1.ConditionStalled, metav1.ConditionTrue, busv1.ReasonConflict)
	if msg := findCond(copycat.Status.Conditions, busv1.ConditionReady); !strings.Contains(msg, "claimed by Subscription "+ns+"/payment") {
		t.Fatalf("conflict message: %s", msg)
	}
	acls, err := admin.DescribeACLs(ctxT(t), "User:"+ns+".copycat")
	if err != nil || len(acls) != 0 {
		t.Fatalf("the copycat got grants: %v %v", acls, err)
	}

	// Another namespace, allowed on the topic, naming the team's group:
	// refused at admission.
	thief := newSub(other, "reader", "chg-x", busv1.RoleConsume, busv1.TopicReference{Namespace: ns, Name: "ledger"})
	thief.Spec.ConsumerGroup = ns + ".payment"
	err = requesterClient(t).Create(ctxT(t), thief)
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.consumerGroup must start with \""+other+".\"") {
		t.Fatalf("a Subscription naming another namespace's group must be refused at admission, got %v", err)
	}
	// Payment's grant is untouched.
	if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(payment), payment); err != nil {
		t.Fatal(err)
	}
	if payment.Status.ConsumerGroup != ns+".payment" || findCond(payment.Status.Conditions, busv1.ConditionReady) == "" {
		t.Fatalf("payment status: %+v", payment.Status)
	}
}

// TestCredentialSecretNames: default Secret names are reserved by the CRD,
// and two Subscriptions naming the same explicit Secret: the first approved
// keeps it, the second is told.
func TestCredentialSecretNames(t *testing.T) {
	ns := env.NamespaceT(t, "secrets")
	readyTopic(t, ns, "feed")
	// Nobody may name another Subscription's default Secret.
	squatter := newSub(ns, "squatter", "chg-x", busv1.RoleConsume, ref("feed"))
	squatter.Spec.Credentials = &busv1.CredentialsSpec{SecretName: "payment-bus-credentials"}
	if err := requesterClient(t).Create(ctxT(t), squatter); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("naming a default Secret must be refused, got %v", err)
	}

	first := newSub(ns, "first", "chg-1", busv1.RoleConsume, ref("feed"))
	first.Spec.Credentials = &busv1.CredentialsSpec{SecretName: "shared-creds"}
	createApproved(t, ns, "chg-1", first)
	waitSubReady(t, first)
	firstCreds, _ := credentials(t, first)

	second := newSub(ns, "second", "chg-2", busv1.RoleConsume, ref("feed"))
	second.Spec.Credentials = &busv1.CredentialsSpec{SecretName: "shared-creds"}
	createApproved(t, ns, "chg-2", second)
	waitCondition(t, second, subConds(second), busv1.ConditionStalled, metav1.ConditionTrue, busv1.ReasonConflict)
	if msg := findCond(second.Status.Conditions, busv1.ConditionReady); !strings.Contains(msg, "claimed by Subscription "+ns+"/first") {
		t.Fatalf("conflict message: %s", msg)
	}
	again, _ := credentials(t, first)
	if again.Username != firstCreds.Username || again.Password != firstCreds.Password {
		t.Fatal("the second Subscription changed the first one's Secret")
	}

	// Deleting the first frees the name: the second takes it with fresh
	// credentials of its own.
	if err := requesterClient(t).Delete(ctxT(t), first); err != nil {
		t.Fatal(err)
	}
	waitSubReady(t, second)
	mine, _ := credentials(t, second)
	if mine.Username != ns+".second" || mine.Password == firstCreds.Password {
		t.Fatalf("second's credentials: user %s", mine.Username)
	}
}

// TestSecretTamperingIsRepairedOrReported edits the issued Secret out of
// band in every way a person could: each is repaired (and a new password
// issued where the password itself may be compromised), or, for a Secret
// replaced by someone else, reported; Ready never stays True while the
// operator cannot act.
func TestSecretTamperingIsRepairedOrReported(t *testing.T) {
	ns := env.NamespaceT(t, "tamper")
	topic := readyTopic(t, ns, "stream")
	sub := newSub(ns, "worker", "chg-1", busv1.RoleProduce, ref("stream"))
	createApproved(t, ns, "chg-1", sub)
	waitSubReady(t, sub)
	ctx := ctxT(t)
	key := client.ObjectKey{Namespace: ns, Name: sub.SecretName()}

	edit := func(what string, mutate func(*corev1.Secret)) {
		t.Helper()
		s := &corev1.Secret{}
		if err := env.Client.Get(ctx, key, s); err != nil {
			t.Fatal(err)
		}
		mutate(s)
		if err := env.Client.Update(ctx, s); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// repaired waits until the Secret is the operator's again and its
	// credentials work.
	repaired := func(what string) bus.Credentials {
		t.Helper()
		var c bus.Credentials
		eventually(t, what+" repaired", func() error {
			s := &corev1.Secret{}
			if err := env.Client.Get(ctx, key, s); err != nil {
				return err
			}
			if s.Labels["app.kubernetes.io/managed-by"] != "hmsbus-operator" || !metav1.IsControlledBy(s, sub) || s.Annotations["bus.hms.io/password-sha256"] == "" {
				return fmt.Errorf("not repaired: labels %v annotations %v owners %v", s.Labels, s.Annotations, s.OwnerReferences)
			}
			var err error
			if c, err = bus.CredentialsFromSecretData(s.Data); err != nil {
				return err
			}
			return publish(ctx, c, topic, `{"ok":true}`)
		})
		waitSubReady(t, sub)
		return c
	}
	before, _ := credentials(t, sub)

	edit("label removed", func(s *corev1.Secret) { delete(s.Labels, "app.kubernetes.io/managed-by") })
	afterLabel := repaired("label")
	if afterLabel.Password != before.Password {
		t.Fatal("repairing a label must not change the password")
	}
	edit("owner reference removed", func(s *corev1.Secret) { s.OwnerReferences = nil })
	repaired("owner reference")
	edit("bootstrap edited", func(s *corev1.Secret) { s.Data[bus.SecretKeyBootstrap] = []byte("evil.example:9092") })
	if c := repaired("bootstrap"); strings.Join(c.Bootstrap, ",") != strings.Join(broker.bootstrap(), ",") {
		t.Fatalf("bootstrap not restored: %v", c.Bootstrap)
	}
	// The operator's cache compares a Secret by a digest it computes; one
	// planted on the Secret is never believed, on the cached path or on
	// the live one (label removed).
	for _, unlabel := range []bool{false, true} {
		edit("bootstrap edited under a planted digest", func(s *corev1.Secret) {
			s.Annotations["bus.hms.io/cached-data-sha256"] = strings.Repeat("0", 64)
			s.Data[bus.SecretKeyBootstrap] = []byte("evil.example:9092")
			if unlabel {
				delete(s.Labels, "app.kubernetes.io/managed-by")
			}
		})
		if c := repaired("bootstrap under a planted digest"); strings.Join(c.Bootstrap, ",") != strings.Join(broker.bootstrap(), ",") {
			t.Fatalf("bootstrap not restored: %v", c.Bootstrap)
		}
	}
	edit("password edited", func(s *corev1.Secret) { s.Data[bus.SecretKeyPassword] = []byte("chosen-by-someone-else-0123456789") })
	afterPassword := repaired("password")
	if afterPassword.Password == "chosen-by-someone-else-0123456789" || afterPassword.Password == before.Password {
		t.Fatal("an edited password must be replaced by a new one")
	}
	edit("digest removed", func(s *corev1.Secret) { delete(s.Annotations, "bus.hms.io/password-sha256") })
	repaired("digest")

	// A Secret replaced by someone else is never written to: reported.
	old := &corev1.Secret{}
	if err := env.Client.Get(ctx, key, old); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Delete(ctx, old); err != nil {
		t.Fatal(err)
	}
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sub.SecretName(),
		OwnerReferences: []metav1.OwnerReference{{APIVersion: busv1.GroupVersion.String(), Kind: "Subscription", Name: sub.Name, UID: sub.UID, Controller: ptr.To(true)}}},
		StringData: map[string]string{"password": "planted"}}
	err := env.Client.Create(ctx, foreign)
	switch {
	case err == nil:
		waitCondition(t, sub, subConds(sub), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonConflict)
		live := &corev1.Secret{}
		if err := env.Client.Get(ctx, key, live); err != nil {
			t.Fatal(err)
		}
		if string(live.Data["password"]) != "planted" || live.Labels["app.kubernetes.io/managed-by"] != "" {
			t.Fatal("the operator wrote to a Secret it did not create")
		}
		if err := env.Client.Delete(ctx, live); err != nil {
			t.Fatal(err)
		}
	case apierrors.IsAlreadyExists(err):
		// The operator re-issued its own Secret first: also correct.
	default:
		t.Fatal(err)
	}
	// Once the planted Secret is gone, fresh credentials are issued.
	repaired("replacement")

	records := readAudit(t, func(r audit.Record) bool {
		return r.Resource == ns+".worker" && r.Operation == audit.OpUpsertCredential && r.Cause == audit.CauseDrift
	})
	if len(records) == 0 {
		t.Fatal("a new password issued after tampering must be audited as a drift repair")
	}
}

// consumeFromStart reads the first event of a topic without a group.
func consumeFromStart(ctx context.Context, c bus.Credentials, topic string) (bus.Event, error) {
	st, err := bus.NewStreamer(c, bus.StreamOptions{})
	if err != nil {
		return bus.Event{}, err
	}
	var got bus.Event
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	err = st.Stream(ctx, topic, bus.Earliest, func(_ context.Context, e bus.Event) error { got = e; cancel(); return nil })
	if got.Type != "" {
		return got, nil
	}
	if err == nil {
		err = errors.New("no event before the deadline")
	}
	return got, err
}

func condOf(conds []metav1.Condition, typ string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == typ {
			return &conds[i]
		}
	}
	return nil
}
