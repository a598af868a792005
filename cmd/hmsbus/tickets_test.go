package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/governance"
)

var now = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

func topic(ns, name string, spec busv1.TopicSpec, status busv1.TopicStatus) *busv1.Topic {
	return &busv1.Topic{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec, Status: status}
}

func TestTopicChanges(t *testing.T) {
	applied := busv1.TopicStatus{
		TopicName: "FeeUpdated", Partitions: 3, ReplicationFactor: 3,
		Config: map[string]string{"retention.ms": "86400000", "cleanup.policy": "delete"},
	}
	cases := []struct {
		name string
		tp   *busv1.Topic
		ops  []busv1.Operation
		want []string
	}{
		{
			name: "new topic",
			tp: topic("fees", "fee-updated", busv1.TopicSpec{TopicName: "FeeUpdated", Partitions: 6, ReplicationFactor: ptr[int32](3),
				Config: map[string]busv1.ConfigValue{"retention.ms": "604800000", "cleanup.policy": "delete"}}, busv1.TopicStatus{}),
			want: []string{"create topic: 6 partitions, replication factor 3", "+ cleanup.policy=delete", "+ retention.ms=604800000"},
		},
		{
			name: "new topic with the broker's replication factor",
			tp:   topic("fees", "fee-updated", busv1.TopicSpec{Partitions: 1}, busv1.TopicStatus{}),
			want: []string{"create topic: 1 partitions, replication factor broker default"},
		},
		{
			name: "grow partitions, change, add and remove config",
			tp: topic("fees", "fee-updated", busv1.TopicSpec{TopicName: "FeeUpdated", Partitions: 6,
				Config: map[string]busv1.ConfigValue{"retention.ms": "604800000", "max.message.bytes": "2097152"}}, applied),
			want: []string{
				"partitions 3 -> 6",
				"- cleanup.policy (was delete; back to the broker default)",
				"+ max.message.bytes=2097152",
				"~ retention.ms: 86400000 -> 604800000",
			},
		},
		{
			name: "nothing to change",
			tp: topic("fees", "fee-updated", busv1.TopicSpec{TopicName: "FeeUpdated", Partitions: 3, ReplicationFactor: ptr[int32](3),
				Config: map[string]busv1.ConfigValue{"retention.ms": "86400000", "cleanup.policy": "delete"}}, applied),
			want: []string{"no change on the broker"},
		},
		{
			name: "widening who may subscribe is shown",
			tp: topic("fees", "fee-updated", busv1.TopicSpec{TopicName: "FeeUpdated", Partitions: 3, AllowedNamespaces: []string{"sms", "payments"},
				Config: map[string]busv1.ConfigValue{"retention.ms": "86400000", "cleanup.policy": "delete"}}, applied),
			want: []string{"Subscriptions allowed from namespaces [none] -> [payments, sms] (besides fees)"},
		},
		{
			name: "delete authorised",
			tp: topic("fees", "fee-updated", busv1.TopicSpec{TopicName: "FeeUpdated", Partitions: 3, DeletionPolicy: busv1.DeletionDelete,
				Config: map[string]busv1.ConfigValue{"retention.ms": "86400000", "cleanup.policy": "delete"}}, applied),
			ops:  []busv1.Operation{busv1.OperationApply, busv1.OperationDelete},
			want: []string{"may delete topic FeeUpdated and its data when the Topic is deleted (deletionPolicy Delete)"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := topicChanges(tc.tp, tc.ops); !slices.Equal(got, tc.want) {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func TestSubscriptionChanges(t *testing.T) {
	topics := map[client.ObjectKey]*busv1.Topic{
		{Namespace: "fees", Name: "fee-updated"}:  topic("fees", "fee-updated", busv1.TopicSpec{TopicName: "FeeUpdated"}, busv1.TopicStatus{}),
		{Namespace: "fees", Name: "fee-deleted"}:  topic("fees", "fee-deleted", busv1.TopicSpec{TopicName: "FeeDeleted"}, busv1.TopicStatus{}),
		{Namespace: "audit", Name: "audit-trail"}: topic("audit", "audit-trail", busv1.TopicSpec{}, busv1.TopicStatus{}),
	}
	sub := func(role busv1.Role, refs []busv1.TopicReference, status busv1.SubscriptionStatus) *busv1.Subscription {
		return &busv1.Subscription{
			ObjectMeta: metav1.ObjectMeta{Namespace: "payments", Name: "payment-fees"},
			Spec:       busv1.SubscriptionSpec{Role: role, Topics: refs},
			Status:     status,
		}
	}
	granted := busv1.SubscriptionStatus{
		Principal: "User:payments.payment-fees",
		Topics:    []string{"FeeUpdated", "FeeDeleted"},
		GrantedACLs: []busv1.ACLEntry{
			{ResourceType: "Topic", ResourceName: "FeeUpdated", PatternType: "Literal", Operation: "Read"},
			{ResourceType: "Topic", ResourceName: "FeeUpdated", PatternType: "Literal", Operation: "Describe"},
		},
	}
	feeUpdated := busv1.TopicReference{Name: "fee-updated", Namespace: "fees"}
	feeDeleted := busv1.TopicReference{Name: "fee-deleted", Namespace: "fees"}
	cases := []struct {
		name string
		sub  *busv1.Subscription
		want []string
	}{
		{
			name: "new consumer",
			sub:  sub("", []busv1.TopicReference{feeUpdated, {Name: "audit-trail", Namespace: "audit"}}, busv1.SubscriptionStatus{}),
			want: []string{
				"create user payments.payment-fees (SCRAM-SHA-512) and its credentials Secret payment-fees-bus-credentials",
				"grant Consume on FeeUpdated, audit-trail",
				"grant consumer group payments.payment-fees",
			},
		},
		{
			name: "new producer",
			sub:  sub(busv1.RoleProduce, []busv1.TopicReference{feeUpdated}, busv1.SubscriptionStatus{}),
			want: []string{
				"create user payments.payment-fees (SCRAM-SHA-512) and its credentials Secret payment-fees-bus-credentials",
				"grant Produce on FeeUpdated",
			},
		},
		{
			name: "add one topic, revoke another",
			sub:  sub(busv1.RoleConsume, []busv1.TopicReference{feeUpdated, {Name: "audit-trail", Namespace: "audit"}}, granted),
			want: []string{"+ grant Consume on audit-trail", "- revoke FeeDeleted"},
		},
		{
			name: "role change",
			sub:  sub(busv1.RoleProduce, []busv1.TopicReference{feeUpdated, feeDeleted}, granted),
			want: []string{"role Consume -> Produce"},
		},
		{
			name: "missing topic, same namespace reference",
			sub:  sub(busv1.RoleConsume, []busv1.TopicReference{feeUpdated, feeDeleted, {Name: "ghost"}}, granted),
			want: []string{"! Topic payments/ghost not found: nothing is granted for it"},
		},
		{
			name: "nothing to change",
			sub:  sub(busv1.RoleConsume, []busv1.TopicReference{feeUpdated, feeDeleted}, granted),
			want: []string{"no change on the broker"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := subscriptionChanges(tc.sub, topics); !slices.Equal(got, tc.want) {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func ticket(ns, name, ref string, mutate func(*busv1.ChangeTicket)) busv1.ChangeTicket {
	t := busv1.ChangeTicket{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: busv1.ChangeTicketSpec{
			Reference: ref, Summary: "summary of " + ref, RequestedBy: "alice",
			NotAfter: metav1.NewTime(now.Add(72 * time.Hour)), RequiredApprovals: 1,
		},
	}
	if mutate != nil {
		mutate(&t)
	}
	return t
}

func TestRenderTickets(t *testing.T) {
	v := &ticketView{
		tickets: []busv1.ChangeTicket{
			ticket("fees", "chg-1", "CHG-1", func(t *busv1.ChangeTicket) {
				t.Spec.Covers = []busv1.CoveredObject{
					{Kind: busv1.KindTopic, Name: "fee-updated"},
					{Kind: busv1.KindSubscription, Name: "ghost-sub"},
				}
				t.Spec.RequiredApprovals = 2
				// Not yet evaluated by the operator: counted here, the
				// requester's own entry excluded.
				t.Status.Approvals = []busv1.Review{{Reviewer: "bob"}, {Reviewer: "alice"}}
			}),
			ticket("fees", "chg-2", "CHG-2", func(t *busv1.ChangeTicket) {
				t.Status = busv1.ChangeTicketStatus{State: busv1.TicketApproved, ObservedGeneration: 1, ValidApprovals: 1, RequiredApprovals: 1,
					ExpiresAt: ptr(metav1.NewTime(now.Add(90 * time.Minute)))}
			}),
			ticket("fees", "chg-3", "CHG-3", func(t *busv1.ChangeTicket) {
				t.Spec.NotAfter = metav1.NewTime(now.Add(-2 * time.Hour))
			}),
		},
		topics: map[client.ObjectKey]*busv1.Topic{
			{Namespace: "fees", Name: "fee-updated"}: topic("fees", "fee-updated", busv1.TopicSpec{TopicName: "FeeUpdated", Partitions: 3}, busv1.TopicStatus{}),
		},
		subs: map[client.ObjectKey]*busv1.Subscription{},
	}
	var out bytes.Buffer
	if err := renderTickets(&out, v, now, false); err != nil {
		t.Fatal(err)
	}
	want := `NAME   REFERENCE  STATE     APPROVALS  REQUESTER  EXPIRES                       SUMMARY
chg-1  CHG-1      Pending   1/2        alice      2030-06-04T12:00Z (in 3d)     summary of CHG-1
chg-2  CHG-2      Approved  1/1        alice      2030-06-01T13:30Z (in 90m)    summary of CHG-2
chg-3  CHG-3      Expired   0/1        alice      2030-06-01T10:00Z (120m ago)  summary of CHG-3

fees/chg-1 (CHG-1) would change:
  Topic fee-updated (broker topic FeeUpdated):
    create topic: 3 partitions, replication factor broker default
  Subscription ghost-sub: not found (create it before the ticket is approved)
`
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
	}

	out.Reset()
	if err := renderTickets(&out, v, now, true); err != nil {
		t.Fatal(err)
	}
	if first := strings.SplitN(out.String(), "\n", 2)[0]; !strings.HasPrefix(first, "NAMESPACE  NAME") {
		t.Errorf("with -A the table starts %q, want a NAMESPACE column", first)
	}

	out.Reset()
	if err := renderTickets(&out, &ticketView{}, now, false); err != nil || out.String() != "No ChangeTickets found.\n" {
		t.Errorf("empty: %q, %v", out.String(), err)
	}
}

func TestReviewable(t *testing.T) {
	open := ticket("fees", "chg-1", "CHG-1", nil)
	if err := reviewable(&open, now); err != nil {
		t.Errorf("open ticket: %v", err)
	}
	denied := ticket("fees", "chg-1", "CHG-1", func(t *busv1.ChangeTicket) {
		t.Status.Denial = &busv1.Review{Reviewer: "carol", Time: metav1.NewTime(now)}
	})
	if err := reviewable(&denied, now); err == nil || !strings.Contains(err.Error(), "denied by carol") {
		t.Errorf("denied ticket: %v", err)
	}
	// The operator's effective window wins over the requested one.
	capped := ticket("fees", "chg-1", "CHG-1", func(t *busv1.ChangeTicket) {
		t.Status.ExpiresAt = ptr(metav1.NewTime(now.Add(-time.Minute)))
	})
	if err := reviewable(&capped, now); err == nil || !strings.Contains(err.Error(), "window closed") {
		t.Errorf("expired ticket: %v", err)
	}
}

func TestRenderTicketsShowsEditsAfterPinnedApproval(t *testing.T) {
	approved := busv1.TopicSpec{TopicName: "FeeUpdated", Partitions: 3, ChangeTicket: "chg-9"}
	pinnedHash, err := governance.SpecHash(approved)
	if err != nil {
		t.Fatal(err)
	}
	view := func(current busv1.TopicSpec) *ticketView {
		return &ticketView{
			tickets: []busv1.ChangeTicket{ticket("fees", "chg-9", "CHG-9", func(t *busv1.ChangeTicket) {
				t.Spec.Covers = []busv1.CoveredObject{{Kind: busv1.KindTopic, Name: "fee-updated"}}
				t.Status = busv1.ChangeTicketStatus{State: busv1.TicketApproved, ObservedGeneration: 1, ValidApprovals: 1, RequiredApprovals: 1,
					Approvals: []busv1.Review{{Reviewer: "bob", Pinned: []busv1.PinnedSpec{{Kind: busv1.KindTopic, Name: "fee-updated", SpecHash: pinnedHash}}}}}
			})},
			topics: map[client.ObjectKey]*busv1.Topic{
				{Namespace: "fees", Name: "fee-updated"}: topic("fees", "fee-updated", current, busv1.TopicStatus{}),
			},
			subs: map[client.ObjectKey]*busv1.Subscription{},
		}
	}
	var out bytes.Buffer
	if err := renderTickets(&out, view(approved), now, false); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "edited after") {
		t.Fatalf("an unchanged spec is reported as edited:\n%s", out.String())
	}
	edited := approved
	edited.Partitions = 12
	out.Reset()
	if err := renderTickets(&out, view(edited), now, false); err != nil {
		t.Fatal(err)
	}
	want := "fees/chg-9 (CHG-9) is approved, but these were edited after their spec was pinned by the approval; they wait for a new ticket:\n  Topic fee-updated\n"
	if !strings.Contains(out.String(), want) {
		t.Fatalf("got:\n%s\nwant it to contain:\n%s", out.String(), want)
	}
}

func TestRenderTicketsShowsObjectsCreatedAfterApproval(t *testing.T) {
	spec := busv1.TopicSpec{Partitions: 1, ChangeTicket: "chg-9"}
	tk := ticket("fees", "chg-9", "CHG-9", func(t *busv1.ChangeTicket) {
		t.Spec.Covers = []busv1.CoveredObject{{Kind: busv1.KindTopic, Name: "early"}, {Kind: busv1.KindTopic, Name: "late"}}
		// Approved with plain kubectl; the operator pinned what existed.
		t.Status = busv1.ChangeTicketStatus{State: busv1.TicketApproved, ObservedGeneration: 1, ValidApprovals: 1, RequiredApprovals: 1,
			Approvals:    []busv1.Review{{Reviewer: "bob"}},
			OperatorPins: []busv1.OperatorPin{{Reviewer: "bob", Pinned: []busv1.PinnedSpec{{Kind: busv1.KindTopic, Name: "early", SpecHash: mustHash(spec)}}}}}
	})
	v := &ticketView{
		tickets: []busv1.ChangeTicket{tk},
		topics: map[client.ObjectKey]*busv1.Topic{
			{Namespace: "fees", Name: "early"}: topic("fees", "early", spec, busv1.TopicStatus{}),
			{Namespace: "fees", Name: "late"}:  topic("fees", "late", spec, busv1.TopicStatus{}),
		},
		subs: map[client.ObjectKey]*busv1.Subscription{},
	}
	var out bytes.Buffer
	if err := renderTickets(&out, v, now, false); err != nil {
		t.Fatal(err)
	}
	want := "fees/chg-9 (CHG-9) is approved, but these did not exist when it was approved, so no reviewer saw them; they need a new review:\n  Topic late\n"
	if !strings.Contains(out.String(), want) || strings.Contains(out.String(), "  Topic early\n") {
		t.Fatalf("got:\n%s\nwant it to contain only late:\n%s", out.String(), want)
	}
}

func mustHash(spec any) string {
	h, err := governance.SpecHash(spec)
	if err != nil {
		panic(err)
	}
	return h
}
