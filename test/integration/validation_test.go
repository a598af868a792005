package integration

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
)

// Creating an invalid Topic is refused with a message that says what to fix.
func TestTopicCreateValidation(t *testing.T) {
	ns := env.NamespaceT(t, "tpv")
	c := as(t, alice)
	cases := []struct {
		name   string
		mutate func(*busv1.Topic)
		want   string
	}{
		{"zero partitions", func(tp *busv1.Topic) { tp.Spec.Partitions = 0 }, "should be greater than or equal to 1"},
		{"topic name dot dot", func(tp *busv1.Topic) { tp.Spec.TopicName = ".." }, "topicName must not be '.' or '..'"},
		{"topic name illegal chars", func(tp *busv1.Topic) { tp.Spec.TopicName = "fee updated!" }, "should match '^[a-zA-Z0-9._-]+$'"},
		{"topic name 250 chars", func(tp *busv1.Topic) { tp.Spec.TopicName = strings.Repeat("a", 250) }, "may not be more than 249"},
		{"unknown config key", func(tp *busv1.Topic) { tp.Spec.Config = map[string]busv1.ConfigValue{"retention.mss": "1000"} }, "config has an unknown key"},
		{"retention.ms not a number", func(tp *busv1.Topic) { tp.Spec.Config = map[string]busv1.ConfigValue{"retention.ms": "abc"} }, "retention values must be -1 (unlimited) or a non-negative integer"},
		{"bogus cleanup.policy", func(tp *busv1.Topic) { tp.Spec.Config = map[string]busv1.ConfigValue{"cleanup.policy": "bogus"} }, "config cleanup.policy must be delete, compact or compact,delete"},
		{"min.insync.replicas above RF", func(tp *busv1.Topic) {
			tp.Spec.ReplicationFactor = ptr.To[int32](2)
			tp.Spec.Config = map[string]busv1.ConfigValue{"min.insync.replicas": "3"}
		}, "config min.insync.replicas must not exceed replicationFactor"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTopic(ns, "t"+strings.Repeat("x", i))
			tc.mutate(tp)
			wantInvalid(t, c.Create(testContext(t), tp), tc.want)
		})
	}
	// The same Topic without the mistake is accepted, so each case above
	// failed for its own reason.
	mustSucceed(t, c.Create(testContext(t), newTopic(ns, "valid")), "creating a valid Topic")
}

// Changes Kafka cannot make, or that would orphan a broker topic, are refused.
func TestTopicUpdateValidation(t *testing.T) {
	ns := env.NamespaceT(t, "tpu")
	c := as(t, alice)
	base := newTopic(ns, "fee-updated")
	base.Spec.TopicName = "FeeUpdated"
	base.Spec.ReplicationFactor = ptr.To[int32](3)
	mustSucceed(t, c.Create(testContext(t), base), "creating Topic")

	cases := []struct {
		name   string
		mutate func(*busv1.Topic)
		want   string
	}{
		{"lower partitions", func(tp *busv1.Topic) { tp.Spec.Partitions = 2 }, "partitions may only grow"},
		{"rename topic", func(tp *busv1.Topic) { tp.Spec.TopicName = "FeeChanged" }, "topicName is immutable"},
		{"drop topic name", func(tp *busv1.Topic) { tp.Spec.TopicName = "" }, "topicName is immutable"},
		{"change replication factor", func(tp *busv1.Topic) { tp.Spec.ReplicationFactor = ptr.To[int32](2) }, "replicationFactor is immutable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cur := &busv1.Topic{}
			mustSucceed(t, c.Get(testContext(t), client.ObjectKeyFromObject(base), cur), "reading Topic")
			tc.mutate(cur)
			wantInvalid(t, c.Update(testContext(t), cur), tc.want)
		})
	}
	t.Run("grow partitions is allowed", func(t *testing.T) {
		cur := &busv1.Topic{}
		mustSucceed(t, c.Get(testContext(t), client.ObjectKeyFromObject(base), cur), "reading Topic")
		cur.Spec.Partitions = 6
		mustSucceed(t, c.Update(testContext(t), cur), "growing partitions")
	})
}

func TestSubscriptionValidation(t *testing.T) {
	ns := env.NamespaceT(t, "sub")
	c := as(t, alice)
	t.Run("consumer group with role Produce", func(t *testing.T) {
		s := newSubscription(ns, "payments-producer")
		s.Spec.Role = busv1.RoleProduce
		s.Spec.ConsumerGroup = "payments"
		wantInvalid(t, c.Create(testContext(t), s), "consumerGroup applies only to role Consume")
	})
	t.Run("same topic twice", func(t *testing.T) {
		s := newSubscription(ns, "payments-dup")
		s.Spec.Topics = []busv1.TopicReference{{Name: "fee-updated"}, {Name: "fee-updated"}}
		wantInvalid(t, c.Create(testContext(t), s), "topics must not list the same Topic twice")
	})
	t.Run("more than 100 topics", func(t *testing.T) {
		s := newSubscription(ns, "payments-many")
		s.Spec.Topics = nil
		for i := range 101 {
			s.Spec.Topics = append(s.Spec.Topics, busv1.TopicReference{Name: fmt.Sprintf("t%d", i)})
		}
		wantInvalid(t, c.Create(testContext(t), s), "must have at most 100 items")
	})
	t.Run("another Subscription's default Secret", func(t *testing.T) {
		s := newSubscription(ns, "squatter")
		s.Spec.Credentials = &busv1.CredentialsSpec{SecretName: "payment-bus-credentials"}
		wantInvalid(t, c.Create(testContext(t), s), "secretName must not end in -bus-credentials")
	})
	t.Run("its own default Secret named explicitly", func(t *testing.T) {
		s := newSubscription(ns, "payment")
		s.Spec.Credentials = &busv1.CredentialsSpec{SecretName: "payment-bus-credentials"}
		wantInvalid(t, c.Create(testContext(t), s), "leave secretName out to use this Subscription's own default")
	})
	t.Run("a consumer group of another namespace", func(t *testing.T) {
		s := newSubscription(ns, "thief")
		s.Spec.ConsumerGroup = "fees.payment"
		wantInvalid(t, c.Create(testContext(t), s), "spec.consumerGroup must start with \""+ns+".\"")
	})
	t.Run("a consumer group without the namespace prefix", func(t *testing.T) {
		s := newSubscription(ns, "bare")
		s.Spec.ConsumerGroup = "payments"
		wantInvalid(t, c.Create(testContext(t), s), "a consumer group belongs to the Subscription's namespace")
	})
	t.Run("a consumer group of its own namespace", func(t *testing.T) {
		s := newSubscription(ns, "grouped")
		s.Spec.ConsumerGroup = ns + ".grouped-v2"
		mustSucceed(t, c.Create(testContext(t), s), "creating Subscription with its own namespace's group")
	})
	t.Run("same name in another namespace is a different topic", func(t *testing.T) {
		s := newSubscription(ns, "payments-two")
		s.Spec.Topics = []busv1.TopicReference{{Name: "fee-updated"}, {Name: "fee-updated", Namespace: "fees"}}
		mustSucceed(t, c.Create(testContext(t), s), "creating Subscription")
	})
}

func TestChangeTicketSpecValidation(t *testing.T) {
	t.Run("duplicate covers", func(t *testing.T) {
		tk := newTicket(env.NamespaceT(t, "tkv"), "chg-dup", alice)
		tk.Spec.Covers = append(tk.Spec.Covers, tk.Spec.Covers[0])
		wantInvalid(t, as(t, alice).Create(testContext(t), tk), "Duplicate value")
	})
	t.Run("widening covers after creation", func(t *testing.T) {
		tk := createTicket(t, alice)
		cur := getTicket(t, tk)
		cur.Spec.Covers = append(cur.Spec.Covers, busv1.CoveredObject{Kind: busv1.KindSubscription, Name: "payments"})
		wantInvalid(t, as(t, alice).Update(testContext(t), cur), "spec is immutable: file a new ChangeTicket")
	})
	t.Run("extending the window after creation", func(t *testing.T) {
		tk := createTicket(t, alice)
		cur := getTicket(t, tk)
		cur.Spec.NotAfter.Time = cur.Spec.NotAfter.AddDate(1, 0, 0)
		wantInvalid(t, as(t, alice).Update(testContext(t), cur), "spec is immutable")
	})
}

// NameClaims are the operator's: requesters cannot create them, and nobody
// can move one to another owner.
func TestNameClaimsAreImmutableAndOperatorOnly(t *testing.T) {
	ctx := testContext(t)
	nc := &busv1.NameClaim{
		ObjectMeta: metav1.ObjectMeta{Name: busv1.ClaimObjectName(busv1.ClaimBrokerTopic, "Claimed.Topic")},
		Spec: busv1.NameClaimSpec{Kind: busv1.ClaimBrokerTopic, Name: "Claimed.Topic",
			Owner: busv1.ClaimOwner{Kind: busv1.KindTopic, Namespace: "fees", Name: "claimed", UID: "uid-1"}},
	}
	wantForbidden(t, as(t, alice).Create(ctx, nc.DeepCopy()), "cannot create resource")
	mustSucceed(t, env.Client.Create(ctx, nc), "creating a claim as the cluster admin")
	nc.Spec.Owner.UID = "uid-2"
	wantInvalid(t, env.Client.Update(ctx, nc), "a claim is immutable: it never moves to another owner")
	// A second claim object for the same name cannot exist: the object name
	// is derived from the name, and '.' and '_' spellings share it.
	twin := &busv1.NameClaim{
		ObjectMeta: metav1.ObjectMeta{Name: busv1.ClaimObjectName(busv1.ClaimBrokerTopic, "Claimed_Topic")},
		Spec:       busv1.NameClaimSpec{Kind: busv1.ClaimBrokerTopic, Name: "Claimed_Topic", Owner: busv1.ClaimOwner{Kind: busv1.KindTopic, Namespace: "x", Name: "y", UID: "uid-3"}},
	}
	if err := env.Client.Create(ctx, twin); !apierrors.IsAlreadyExists(err) {
		t.Fatalf("a second claim on a colliding name: want AlreadyExists, got %v", err)
	}
}

// Topics and Subscriptions carry the operator's finalizer from their
// creation (the mutating admission policy), so the operator need not write
// them once more just to add it.
func TestFinalizerIsAddedAtCreation(t *testing.T) {
	ns := env.NamespaceT(t, "fin")
	c := as(t, alice)
	tp := newTopic(ns, "with-finalizer")
	mustSucceed(t, c.Create(testContext(t), tp), "creating Topic")
	sub := newSubscription(ns, "with-finalizer")
	sub.Finalizers = []string{"example.com/other"}
	mustSucceed(t, c.Create(testContext(t), sub), "creating Subscription")
	for _, o := range []client.Object{tp, sub} {
		if got := o.GetFinalizers(); !slices.Contains(got, busv1.Finalizer) {
			t.Fatalf("%T %s finalizers %v, want %s", o, o.GetName(), got, busv1.Finalizer)
		}
	}
	if !slices.Contains(sub.Finalizers, "example.com/other") {
		t.Fatalf("a finalizer of the requester's was lost: %v", sub.Finalizers)
	}
}
