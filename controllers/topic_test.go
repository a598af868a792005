package controllers_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/audit"
	"github.com/hms-platform/bus-operator/internal/governance"
	"github.com/hms-platform/bus-operator/internal/kafka"
	"github.com/hms-platform/bus-operator/test/harness/testenv"
)

func newTopic(ns, name, brokerName, ticket string, partitions int32, cfg map[string]busv1.ConfigValue) *busv1.Topic {
	return &busv1.Topic{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       busv1.TopicSpec{TopicName: brokerName, Partitions: partitions, ReplicationFactor: ptr.To(broker.rf()), Config: cfg, ChangeTicket: ticket},
	}
}

func topicConds(tp *busv1.Topic) func() []metav1.Condition {
	return func() []metav1.Condition { return tp.Status.Conditions }
}

func waitTopicReady(t *testing.T, tp *busv1.Topic) {
	t.Helper()
	waitCondition(t, tp, topicConds(tp), busv1.ConditionReady, metav1.ConditionTrue, busv1.ReasonSucceeded)
}

// uniqueName gives each test its own broker topic name: the broker is
// shared by the whole package.
func uniqueName(ns, base string) string { return base + "." + ns }

func TestTopicLifecycle(t *testing.T) {
	ns := env.NamespaceT(t, "topics")
	name := uniqueName(ns, "FeeUpdated")
	tp := newTopic(ns, "fee-updated", name, "chg-1042", 3, map[string]busv1.ConfigValue{"retention.ms": "86400000", "cleanup.policy": "delete"})
	createApproved(t, ns, "chg-1042", tp)
	waitTopicReady(t, tp)

	var got kafka.Topic
	waitBrokerTopic(t, name, "broker topic after create", func(tp kafka.Topic, ok bool) error {
		if got = tp; !ok || got.Partitions != 3 || got.ReplicationFactor != broker.rf() || got.Configs["retention.ms"] != "86400000" {
			return fmt.Errorf("ok=%v %+v", ok, got)
		}
		return nil
	})
	if tp.Status.TopicID != got.ID || tp.Status.TopicName != name || tp.Status.Partitions != 3 || tp.Status.ObservedGeneration != tp.Generation {
		t.Fatalf("status does not report the broker topic: %+v", tp.Status)
	}
	if tp.Status.AppliedTicket == nil || tp.Status.AppliedTicket.Reference != "CHG-1042" || tp.Status.AppliedTicket.ApprovedBy[0] != reviewer {
		t.Fatalf("status.appliedTicket = %+v", tp.Status.AppliedTicket)
	}
	waitCondition(t, tp, topicConds(tp), busv1.ConditionApproved, metav1.ConditionTrue, busv1.ReasonTicketApproved)

	// Grow partitions, change one config and remove another (a change
	// reviewed under its own ticket): only those keys change, the removed
	// one returns to the broker default.
	changeApproved(t, ns, "chg-1043", tp, func(tp *busv1.Topic) {
		tp.Spec.Partitions = 6
		tp.Spec.Config = map[string]busv1.ConfigValue{"retention.ms": "3600000"}
	})
	eventually(t, "partitions and config applied", func() error {
		got, _ := brokerTopic(t, name)
		if got.Partitions != 6 || got.Configs["retention.ms"] != "3600000" {
			return fmt.Errorf("broker has %+v", got)
		}
		if _, still := got.Configs["cleanup.policy"]; still {
			return fmt.Errorf("removed key cleanup.policy still overridden: %v", got.Configs)
		}
		return nil
	})
	eventually(t, "status reports the change", func() error {
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(tp), tp); err != nil {
			return err
		}
		if tp.Status.Partitions != 6 || tp.Status.ObservedGeneration != tp.Generation || tp.Status.Config["cleanup.policy"] != "" {
			return fmt.Errorf("status %+v", tp.Status)
		}
		return nil
	})

	// Every change is in the audit topic, with the ticket and approver.
	records := readAudit(t, func(r audit.Record) bool { return r.Resource == name })
	ops := map[string]audit.Record{}
	for _, r := range records {
		ops[r.Operation] = r
	}
	for op, ref := range map[string]string{audit.OpCreateTopic: "CHG-1042", audit.OpAddPartitions: "CHG-1043", audit.OpAlterTopicConfig: "CHG-1043"} {
		r, ok := ops[op]
		if !ok {
			t.Fatalf("audit topic has no %s record for %s; has %v", op, name, records)
		}
		if r.Ticket == nil || r.Ticket.Reference != ref || r.Object.Namespace != ns || r.Cause != audit.CauseApproved {
			t.Fatalf("%s audit record incomplete: %+v", op, r)
		}
	}
	if n := countOps(records, audit.OpCreateTopic); n != 1 {
		t.Fatalf("want exactly one CreateTopic record, got %d", n)
	}
}

func TestTopicWaitsForItsTicket(t *testing.T) {
	ns := env.NamespaceT(t, "gov")
	cases := []struct {
		name, ticket string
		setup        func(t *testing.T, topicName string)
		reason       string
	}{
		{name: "pending", ticket: "chg-pending", setup: func(t *testing.T, n string) { fileTicket(t, ns, "chg-pending", covers(busv1.KindTopic, n)) }, reason: busv1.ReasonAwaitingApproval},
		{name: "missing", ticket: "chg-missing", setup: func(*testing.T, string) {}, reason: busv1.ReasonTicketMissing},
		{name: "denied", ticket: "chg-denied", setup: func(t *testing.T, n string) {
			fileTicket(t, ns, "chg-denied", covers(busv1.KindTopic, n))
			if err := env.Deny(ctxT(t), ns, "chg-denied", reviewer); err != nil {
				t.Fatal(err)
			}
		}, reason: busv1.ReasonTicketDenied},
		{name: "expired", ticket: "chg-expired", setup: func(t *testing.T, n string) {
			fileTicketSpec(t, ns, "chg-expired", ticketSpec{covers: []busv1.CoveredObject{covers(busv1.KindTopic, n)}, notAfter: -time.Minute})
			approveIgnoringPolicy(t, ns, "chg-expired")
		}, reason: busv1.ReasonTicketExpired},
		{name: "not-covering", ticket: "chg-other", setup: func(t *testing.T, _ string) {
			createApproved(t, ns, "chg-other", newTopic(ns, "something-else", uniqueName(ns, "SomethingElse"), "chg-other", 1, nil))
		}, reason: busv1.ReasonTicketNotCovering},
		{name: "other-namespace", ticket: "default/chg-1", setup: func(*testing.T, string) {}, reason: busv1.ReasonTicketNotCovering},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objName := "t-" + tc.name
			brokerName := uniqueName(ns, objName)
			tc.setup(t, objName)
			tp := newTopic(ns, objName, brokerName, tc.ticket, 1, nil)
			create(t, tp)
			waitCondition(t, tp, topicConds(tp), busv1.ConditionReady, metav1.ConditionFalse, tc.reason)
			waitCondition(t, tp, topicConds(tp), busv1.ConditionApproved, metav1.ConditionFalse, tc.reason)
			if _, exists := brokerTopic(t, brokerName); exists {
				t.Fatalf("topic %s reached the broker without an approved ticket", brokerName)
			}
		})
	}

	// Approving the pending ticket brings its Topic to Ready with no other touch.
	approve(t, ns, "chg-pending")
	tp := &busv1.Topic{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "t-pending"}}
	waitTopicReady(t, tp)
	waitBrokerTopic(t, uniqueName(ns, "t-pending"), "approved topic on the broker", func(_ kafka.Topic, ok bool) error {
		if !ok {
			return errors.New("absent")
		}
		return nil
	})
}

// approveIgnoringPolicy records an approval on a ticket whose window already
// closed; the operator must still refuse it as expired.
func approveIgnoringPolicy(t *testing.T, ns, name string) {
	t.Helper()
	if err := env.Approve(ctxT(t), ns, name, reviewer); err != nil {
		t.Logf("approval of expired ticket refused by admission (fine): %v", err)
	}
}

func TestTopicSpecChangeWithoutApprovalKeepsLastApprovedState(t *testing.T) {
	ns := env.NamespaceT(t, "hold")
	name := uniqueName(ns, "Held")
	tp := newTopic(ns, "held", name, "chg-1", 2, map[string]busv1.ConfigValue{"retention.ms": "1000"})
	createApproved(t, ns, "chg-1", tp)
	waitTopicReady(t, tp)

	fileTicket(t, ns, "chg-2", covers(busv1.KindTopic, "held"))
	update(t, tp, func(tp *busv1.Topic) {
		tp.Spec.ChangeTicket = "chg-2"
		tp.Spec.Partitions = 4
		tp.Spec.Config = map[string]busv1.ConfigValue{"retention.ms": "2000"}
	})
	waitCondition(t, tp, topicConds(tp), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonAwaitingApproval)
	if !strings.Contains(findCond(tp.Status.Conditions, busv1.ConditionReady), "last approved state") {
		t.Fatalf("Ready message should say the broker keeps the last approved state: %s", findCond(tp.Status.Conditions, busv1.ConditionReady))
	}
	// Out-of-band drift is still repaired to the last approved state.
	if err := admin.AlterTopicConfig(ctxT(t), name, kafka.ConfigAlter{Set: map[string]string{"retention.ms": "5"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "drift repaired to last approved state", func() error {
		got, _ := brokerTopic(t, name)
		if got.Partitions != 2 || got.Configs["retention.ms"] != "1000" {
			return fmt.Errorf("broker has %+v", got)
		}
		return nil
	})
	approve(t, ns, "chg-2")
	waitTopicReady(t, tp)
	waitBrokerTopic(t, name, "approved change applied", func(got kafka.Topic, _ bool) error {
		if got.Partitions != 4 || got.Configs["retention.ms"] != "2000" {
			return fmt.Errorf("broker has %+v", got)
		}
		return nil
	})
}

func TestTopicDriftRepair(t *testing.T) {
	ns := env.NamespaceT(t, "drift")
	name := uniqueName(ns, "Drifty")
	tp := newTopic(ns, "drifty", name, "chg-1", 2, map[string]busv1.ConfigValue{"retention.ms": "60000"})
	createApproved(t, ns, "chg-1", tp)
	waitTopicReady(t, tp)
	firstID := tp.Status.TopicID

	// A config edited out of band, and one added, are reverted.
	if err := admin.AlterTopicConfig(ctxT(t), name, kafka.ConfigAlter{Set: map[string]string{"retention.ms": "1", "segment.ms": "99999"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "config drift reverted", func() error {
		got, _ := brokerTopic(t, name)
		if got.Configs["retention.ms"] != "60000" || got.Configs["segment.ms"] != "" {
			return fmt.Errorf("broker configs %v", got.Configs)
		}
		return nil
	})

	// Partitions added out of band cannot be removed: reported, not hidden.
	if err := admin.SetPartitions(ctxT(t), name, 5); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, tp, topicConds(tp), busv1.ConditionDrifted, metav1.ConditionTrue, busv1.ReasonPartitionsAdded)
	if tp.Status.Partitions != 5 {
		t.Fatalf("status.partitions = %d, want the broker's 5", tp.Status.Partitions)
	}
	// Acknowledging the new count in the spec (a reviewed change) clears
	// the drift.
	changeApproved(t, ns, "chg-2", tp, func(tp *busv1.Topic) { tp.Spec.Partitions = 5 })
	eventually(t, "drift acknowledged", func() error {
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(tp), tp); err != nil {
			return err
		}
		if c := findCond(tp.Status.Conditions, busv1.ConditionDrifted); c != "" {
			return fmt.Errorf("still drifted: %s", c)
		}
		// The acknowledging change is applied under its own ticket (and
		// not merely waiting for it): what follows is then a pure repair.
		if tp.Status.ObservedGeneration != tp.Generation || tp.Status.AppliedTicket == nil || tp.Status.AppliedTicket.Reference != "CHG-2" {
			return fmt.Errorf("change not applied yet: %+v", tp.Status.AppliedTicket)
		}
		return nil
	})

	// A topic deleted out of band is recreated.
	if err := admin.DeleteTopic(ctxT(t), name); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deleted topic recreated", func() error {
		got, ok := brokerTopic(t, name)
		if !ok || got.ID == firstID || got.Partitions != 5 || got.Configs["retention.ms"] != "60000" {
			return fmt.Errorf("broker has ok=%v %+v", ok, got)
		}
		return nil
	})
	var records []audit.Record
	eventually(t, "drift repairs audited", func() error {
		records = readAudit(t, func(r audit.Record) bool { return r.Resource == name && r.Cause == audit.CauseDrift })
		if countOps(records, audit.OpAlterTopicConfig) == 0 || countOps(records, audit.OpCreateTopic) == 0 {
			all := readAudit(t, func(r audit.Record) bool { return r.Resource == name })
			var ops []string
			for _, r := range all {
				ops = append(ops, r.Operation+" ("+r.Cause+")")
			}
			return fmt.Errorf("want an AlterTopicConfig and a CreateTopic drift repair; the trail has %v", ops)
		}
		return nil
	})
	for _, r := range records {
		if r.Ticket == nil || (r.Ticket.Reference != "CHG-1" && r.Ticket.Reference != "CHG-2") {
			t.Fatalf("a drift repair must name the ticket that approved the restored state: %+v", r)
		}
	}
}

func TestTopicNoOpResyncWritesNothing(t *testing.T) {
	ns := env.NamespaceT(t, "noop")
	name := uniqueName(ns, "Quiet")
	tp := newTopic(ns, "quiet", name, "chg-1", 1, map[string]busv1.ConfigValue{"retention.ms": "1000"})
	createApproved(t, ns, "chg-1", tp)
	waitTopicReady(t, tp)
	time.Sleep(resync) // let any in-flight follow-up reconcile settle
	if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(tp), tp); err != nil {
		t.Fatal(err)
	}
	rv, before := tp.ResourceVersion, requests.Snapshot()
	// Several resync periods pass: the operator re-reads the broker but
	// writes neither to it nor to the Topic's status.
	time.Sleep(3 * resync)
	if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(tp), tp); err != nil {
		t.Fatal(err)
	}
	if tp.ResourceVersion != rv {
		t.Fatalf("a no-op resync wrote the Topic (resourceVersion %s -> %s): %+v", rv, tp.ResourceVersion, tp.Status.Conditions)
	}
	if window := requests.Snapshot().Minus(before); window.Writes() != 0 {
		t.Fatalf("a no-op resync made broker writes: %s", window)
	}
}

func TestTopicConflictFirstApprovedClaimWins(t *testing.T) {
	nsA := env.NamespaceT(t, "conflict-a")
	nsB := env.NamespaceT(t, "conflict-b")
	name := uniqueName(nsA, "Shared")
	first := newTopic(nsA, "shared", name, "chg-a", 2, nil)
	createApproved(t, nsA, "chg-a", first)
	waitTopicReady(t, first)
	second := newTopic(nsB, "shared", name, "chg-b", 8, map[string]busv1.ConfigValue{"retention.ms": "1"})
	createApproved(t, nsB, "chg-b", second)
	waitCondition(t, second, topicConds(second), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonConflict)
	waitCondition(t, second, topicConds(second), busv1.ConditionStalled, metav1.ConditionTrue, busv1.ReasonConflict)
	// Ready and Approved are always present, a conflict included.
	waitCondition(t, second, topicConds(second), busv1.ConditionApproved, metav1.ConditionTrue, busv1.ReasonTicketApproved)
	msg := findCond(second.Status.Conditions, busv1.ConditionReady)
	if !strings.Contains(msg, "claimed by Topic "+nsA+"/shared since") || !strings.Contains(msg, "holds topic ID "+first.Status.TopicID) {
		t.Fatalf("the loser must be told who holds the name: %s", msg)
	}
	if second.Status.TopicID != "" || second.Status.TopicName != "" {
		t.Fatalf("the loser must hold no ID of the topic it lost: %+v", second.Status)
	}
	got, _ := brokerTopic(t, name)
	if got.Partitions != 2 || got.Configs["retention.ms"] != "" {
		t.Fatalf("the conflicting Topic changed the broker: %+v", got)
	}

	// Deleting the winner (Retain) keeps the data; the other Topic then
	// takes the name over and adopts the existing broker topic, since its
	// ticket covers the change.
	if err := requesterClient(t).Delete(ctxT(t), first); err != nil {
		t.Fatal(err)
	}
	waitTopicReady(t, second)
	waitBrokerTopic(t, name, "adopting Topic applied its spec", func(got kafka.Topic, _ bool) error {
		if got.Partitions != 8 || got.Configs["retention.ms"] != "1" || second.Status.TopicID != got.ID {
			return fmt.Errorf("broker has %+v (status %+v)", got, second.Status)
		}
		return nil
	})
}

func TestTopicDeletionPolicies(t *testing.T) {
	ns := env.NamespaceT(t, "deletion")
	retained := uniqueName(ns, "Kept")
	deleted := uniqueName(ns, "Gone")
	keep := newTopic(ns, "kept", retained, "chg-1", 1, nil)
	gone := newTopic(ns, "gone", deleted, "chg-1", 1, nil)
	gone.Spec.DeletionPolicy = busv1.DeletionDelete
	createApproved(t, ns, "chg-1", keep, gone)
	waitTopicReady(t, keep)
	waitTopicReady(t, gone)

	c := requesterClient(t)
	if err := c.Delete(ctxT(t), keep); err != nil {
		t.Fatal(err)
	}
	eventually(t, "retained Topic released", func() error { return gone404(c, keep) })
	if _, ok := brokerTopic(t, retained); !ok {
		t.Fatal("Retain policy deleted the broker topic")
	}

	// Delete policy with a ticket that covers only Apply: the data stays
	// and the Topic says what it waits for.
	if err := c.Delete(ctxT(t), gone); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, gone, topicConds(gone), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonTicketNotCovering)
	if !strings.Contains(findCond(gone.Status.Conditions, busv1.ConditionReady), "operation Delete") {
		t.Fatalf("message should explain the Delete ticket: %s", findCond(gone.Status.Conditions, busv1.ConditionReady))
	}
	if _, ok := brokerTopic(t, deleted); !ok {
		t.Fatal("broker topic deleted without a ticket covering Delete")
	}
	// A ticket covering Delete lets the deletion through.
	changeApproved(t, ns, "chg-del", gone, func(*busv1.Topic) {}, busv1.OperationDelete)
	eventually(t, "deleted Topic released", func() error { return gone404(c, gone) })
	waitBrokerTopic(t, deleted, "broker topic deleted with the Topic", func(_ kafka.Topic, ok bool) error {
		if ok {
			return errors.New("Delete policy with an approved Delete ticket left the broker topic")
		}
		return nil
	})
	if n := countOps(readAudit(t, func(r audit.Record) bool { return r.Resource == deleted }), audit.OpDeleteTopic); n != 1 {
		t.Fatalf("want one DeleteTopic audit record, got %d", n)
	}
}

func TestTopicPause(t *testing.T) {
	ns := env.NamespaceT(t, "pause")
	name := uniqueName(ns, "Paused")
	tp := newTopic(ns, "paused", name, "chg-1", 1, nil)
	createApproved(t, ns, "chg-1", tp)
	waitTopicReady(t, tp)
	update(t, tp, func(tp *busv1.Topic) { tp.Annotations = map[string]string{busv1.AnnotationPaused: "true"} })
	waitCondition(t, tp, topicConds(tp), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonPaused)
	changeApproved(t, ns, "chg-2", tp, func(tp *busv1.Topic) { tp.Spec.Partitions = 3 })
	waitCondition(t, tp, topicConds(tp), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonPaused)
	time.Sleep(2 * resync)
	if got, _ := brokerTopic(t, name); got.Partitions != 1 {
		t.Fatalf("paused Topic changed the broker: %+v", got)
	}
	update(t, tp, func(tp *busv1.Topic) { delete(tp.Annotations, busv1.AnnotationPaused) })
	waitTopicReady(t, tp)
	waitBrokerTopic(t, name, "unpaused Topic applied", func(got kafka.Topic, _ bool) error {
		if got.Partitions != 3 {
			return fmt.Errorf("broker has %+v", got)
		}
		return nil
	})
}

func TestTopicBrokerRejectionIsStalledWithBrokerText(t *testing.T) {
	ns := env.NamespaceT(t, "reject")
	tp := newTopic(ns, "too-wide", uniqueName(ns, "TooWide"), "chg-1", 1, nil)
	tp.Spec.ReplicationFactor = ptr.To(broker.rf() + 4) // more replicas than the cluster has nodes
	createApproved(t, ns, "chg-1", tp)
	waitCondition(t, tp, topicConds(tp), busv1.ConditionStalled, metav1.ConditionTrue, busv1.ReasonBrokerRejected)
	msg := findCond(tp.Status.Conditions, busv1.ConditionReady)
	if !strings.Contains(msg, "INVALID_REPLICATION_FACTOR") {
		t.Fatalf("Ready message should carry the broker's error: %s", msg)
	}
	// The cluster decides this refusal (brokers join, or are fenced for a
	// moment after a restart): the status says it is asked again.
	if !strings.Contains(msg, "asked again every") {
		t.Fatalf("Ready message should say the request is retried: %s", msg)
	}
	assertSaidOnce(t, msg)
}

// assertSaidOnce fails when an error message repeats a piece of context
// ("creating topic X: creating topic X: ..."): each layer that wraps an
// error adds what it alone knows.
func assertSaidOnce(t *testing.T, msg string) {
	t.Helper()
	parts := strings.Split(msg, ": ")
	seen := map[string]bool{}
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if len(p) < 8 { // short fragments (codes, numbers) may recur
			continue
		}
		if seen[p] {
			t.Fatalf("message repeats %q: %s", p, msg)
		}
		seen[p] = true
	}
}

func TestTopicReservedNames(t *testing.T) {
	ns := env.NamespaceT(t, "reserved")
	tp := newTopic(ns, "audit", audit.DefaultTopic, "chg-1", 1, nil)
	createApproved(t, ns, "chg-1", tp)
	waitCondition(t, tp, topicConds(tp), busv1.ConditionStalled, metav1.ConditionTrue, busv1.ReasonNotAllowed)
}

// TestTopicBrokerDownThenUp must run alone: it stops the shared broker.
func TestTopicBrokerDownThenUp(t *testing.T) {
	ns := env.NamespaceT(t, "outage")
	name := uniqueName(ns, "Outage")
	fileTicket(t, ns, "chg-1", covers(busv1.KindTopic, "outage"))
	broker.stop()
	restarted := false
	defer func() {
		if !restarted {
			_ = broker.start()
		}
	}()
	tp := newTopic(ns, "outage", name, "chg-1", 2, nil)
	create(t, tp)
	approve(t, ns, "chg-1")
	waitCondition(t, tp, topicConds(tp), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonBrokerUnavailable)
	waitCondition(t, tp, topicConds(tp), busv1.ConditionReconciling, metav1.ConditionTrue, busv1.ReasonBrokerUnavailable)
	assertSaidOnce(t, findCond(tp.Status.Conditions, busv1.ConditionReady))
	if err := broker.start(); err != nil {
		t.Fatal(err)
	}
	restarted = true
	waitTopicReady(t, tp)
	waitBrokerTopic(t, name, "topic created after the broker came back", func(got kafka.Topic, ok bool) error {
		if !ok || got.Partitions != 2 {
			return fmt.Errorf("broker has ok=%v %+v", ok, got)
		}
		return nil
	})
}

// ---- helpers ----

func findCond(conds []metav1.Condition, typ string) string {
	for _, c := range conds {
		if c.Type == typ {
			return c.Message
		}
	}
	return ""
}

func gone404(c client.Client, obj client.Object) error {
	err := c.Get(ctxBackground(), client.ObjectKeyFromObject(obj), obj)
	if err == nil {
		return fmt.Errorf("%s still exists (finalizers %v)", obj.GetName(), obj.GetFinalizers())
	}
	return client.IgnoreNotFound(err)
}

func countOps(records []audit.Record, op string) int {
	n := 0
	for _, r := range records {
		if r.Operation == op {
			n++
		}
	}
	return n
}

// readAudit reads the audit topic from the earliest offset to its end, as
// an auditor would, and returns the changes that happened: each intent
// whose outcome says it succeeded (an intent with a failed outcome is a
// write the broker refused, not a change), filtered by keep.
func readAudit(t *testing.T, keep func(audit.Record) bool) []audit.Record {
	t.Helper()
	ctx := ctxT(t)
	offs, err := admin.PartitionOffsets(ctx, audit.DefaultTopic, 0)
	if err != nil {
		t.Fatalf("audit topic: %v", err)
	}
	stored, err := admin.ReadRecords(ctx, audit.DefaultTopic, 0, offs.Start, offs.End, 0)
	if err != nil {
		t.Fatalf("reading the audit topic: %v", err)
	}
	var intents []audit.Record
	results := map[string]string{}
	for _, sr := range stored {
		rec, err := audit.ParseRecord(sr.Value)
		if err != nil {
			t.Fatalf("audit record at offset %d: %v", sr.Offset, err)
		}
		switch rec.Phase {
		case audit.PhaseIntent:
			intents = append(intents, rec)
		case audit.PhaseOutcome:
			results[rec.ID] = rec.Result
		}
	}
	var out []audit.Record
	for _, rec := range intents {
		if results[rec.ID] == audit.ResultSucceeded && keep(rec) {
			rec.Result = audit.ResultSucceeded
			out = append(out, rec)
		}
	}
	return out
}

func TestTopicAdoptsMatchingBrokerTopicWithoutChanges(t *testing.T) {
	ns := env.NamespaceT(t, "adopt")
	name := uniqueName(ns, "Legacy")
	existing, err := admin.CreateTopic(ctxT(t), kafka.NewTopic{Name: name, Partitions: 2, ReplicationFactor: broker.rf(), Configs: map[string]string{"retention.ms": "7200000"}})
	if err != nil {
		t.Fatal(err)
	}
	before := requests.Snapshot()
	tp := newTopic(ns, "legacy", name, "chg-adopt", 2, map[string]busv1.ConfigValue{"retention.ms": "7200000"})
	createApproved(t, ns, "chg-adopt", tp)
	waitTopicReady(t, tp)
	if tp.Status.TopicID != existing.ID {
		t.Fatalf("adopted topic ID %s, want the existing %s (nothing may be deleted to adopt)", tp.Status.TopicID, existing.ID)
	}
	window := requests.Snapshot().Minus(before)
	if n := window.Of(kmsg.CreateTopics, kmsg.DeleteTopics, kmsg.IncrementalAlterConfigs, kmsg.CreatePartitions); n != 0 {
		t.Fatalf("adopting a matching topic made %d topic writes: %s", n, window)
	}
}

// approvePinned records rita's approval pinning the current spec of tp, as
// `hmsbus approve` does.
func approvePinned(t *testing.T, ns, ticket string, tp *busv1.Topic) {
	t.Helper()
	c, err := env.As(reviewer, testenv.ReviewersGroup)
	if err != nil {
		t.Fatal(err)
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		live := &busv1.Topic{}
		if err := c.Get(ctxT(t), client.ObjectKeyFromObject(tp), live); err != nil {
			return err
		}
		hash, err := governance.SpecHash(live.Spec)
		if err != nil {
			return err
		}
		tk := &busv1.ChangeTicket{}
		if err := c.Get(ctxT(t), client.ObjectKey{Namespace: ns, Name: ticket}, tk); err != nil {
			return err
		}
		tk.Status.Approvals = append(tk.Status.Approvals, busv1.Review{
			Reviewer: reviewer, Time: metav1.Now(),
			Pinned: []busv1.PinnedSpec{{Kind: busv1.KindTopic, Name: live.Name, SpecHash: hash}},
		})
		return c.Status().Update(ctxT(t), tk)
	})
	if err != nil {
		t.Fatalf("pinned approval of %s: %v", ticket, err)
	}
}

func TestTopicEditAfterPinnedApprovalNeedsANewTicket(t *testing.T) {
	ns := env.NamespaceT(t, "pinned")
	name := uniqueName(ns, "Pinned")
	fileTicket(t, ns, "chg-1", covers(busv1.KindTopic, "pinned"))
	tp := newTopic(ns, "pinned", name, "chg-1", 3, nil)
	create(t, tp)
	waitCondition(t, tp, topicConds(tp), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonAwaitingApproval)
	approvePinned(t, ns, "chg-1", tp)
	waitTopicReady(t, tp)

	// The requester edits the approved Topic under the same ticket: the
	// reviewer approved 3 partitions, not 12.
	update(t, tp, func(tp *busv1.Topic) { tp.Spec.Partitions = 12 })
	waitCondition(t, tp, topicConds(tp), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonSpecChanged)
	waitCondition(t, tp, topicConds(tp), busv1.ConditionApproved, metav1.ConditionFalse, busv1.ReasonSpecChanged)
	time.Sleep(resync)
	if got, _ := brokerTopic(t, name); got.Partitions != 3 {
		t.Fatalf("an edit after a pinned approval reached the broker: %d partitions", got.Partitions)
	}

	// A new ticket, approved for the new spec, lets it through.
	fileTicket(t, ns, "chg-2", covers(busv1.KindTopic, "pinned"))
	update(t, tp, func(tp *busv1.Topic) { tp.Spec.ChangeTicket = "chg-2" })
	approvePinned(t, ns, "chg-2", tp)
	waitTopicReady(t, tp)
	waitBrokerTopic(t, name, "approved change applied", func(got kafka.Topic, _ bool) error {
		if got.Partitions != 12 {
			return fmt.Errorf("%d partitions", got.Partitions)
		}
		return nil
	})
}
