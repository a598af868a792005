package controllers_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/audit"
	"github.com/hms-platform/bus-operator/internal/kafka"
)

// The tests in this file check that a Subscription's grants are exactly what
// an approval covered, and that what the current state of other objects would
// add needs a ticket that is valid now.

// aclsOn returns the principal's ACLs on a resource name.
func aclsOn(t *testing.T, principal, resource string) []kafka.ACL {
	t.Helper()
	all, err := admin.DescribeACLs(ctxT(t), principal)
	if err != nil {
		t.Fatal(err)
	}
	var out []kafka.ACL
	for _, a := range all {
		if a.ResourceName == resource {
			out = append(out, a)
		}
	}
	return out
}

func TestRecreatedTopicNeedsAValidTicketForTheGrant(t *testing.T) {
	ns := env.NamespaceT(t, "regrant")
	first := readyTopic(t, ns, "orders")
	sub := newSub(ns, "shipper", "chg-sub", busv1.RoleProduce, ref("orders"))
	createApproved(t, ns, "chg-sub", sub)
	waitSubReady(t, sub)
	principal := sub.Status.Principal
	if len(aclsOn(t, principal, first)) == 0 {
		t.Fatal("approved grant missing")
	}
	// The ticket is denied after it was applied: what it granted stays
	// (it was valid when written), but it authorises nothing new.
	if err := env.Deny(ctxT(t), ns, "chg-sub", "raj"); err != nil {
		t.Fatal(err)
	}

	// The Topic is deleted (Retain) and recreated under another broker
	// name, approved under its own ticket.
	tp := &busv1.Topic{}
	if err := env.Client.Get(ctxT(t), client.ObjectKey{Namespace: ns, Name: "orders"}, tp); err != nil {
		t.Fatal(err)
	}
	if err := requesterClient(t).Delete(ctxT(t), tp); err != nil {
		t.Fatal(err)
	}
	eventually(t, "grant on the deleted Topic revoked", func() error {
		if acls := aclsOn(t, principal, first); len(acls) != 0 {
			return fmt.Errorf("still granted: %v", acls)
		}
		return nil
	})
	second := uniqueName(ns, "orders-v2")
	again := newTopic(ns, "orders", second, "chg-orders-v2", 1, nil)
	createApproved(t, ns, "chg-orders-v2", again)
	waitTopicReady(t, again)
	waitCondition(t, sub, subConds(sub), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonGrantNeedsTicket)
	if msg := findCond(sub.Status.Conditions, busv1.ConditionReady); !strings.Contains(msg, second) || !strings.Contains(msg, "denied") {
		t.Fatalf("the message must name the grant and why it waits: %s", msg)
	}
	time.Sleep(2 * resync)
	if acls := aclsOn(t, principal, second); len(acls) != 0 {
		t.Fatalf("a denied ticket granted the recreated topic: %v", acls)
	}
	for _, r := range readAudit(t, func(r audit.Record) bool { return r.Resource == principal && r.Operation == audit.OpCreateACL }) {
		if strings.Contains(fmt.Sprint(r.After), second) {
			t.Fatalf("an audit record grants %s without an approval: %+v", second, r)
		}
	}

	// A new ticket for the Subscription, approved, grants it.
	changeApproved(t, ns, "chg-sub-2", sub, func(*busv1.Subscription) {})
	waitSubReady(t, sub)
	if len(aclsOn(t, principal, second)) == 0 {
		t.Fatal("the approved grant on the recreated topic is missing")
	}
	if len(sub.Status.GrantedTopics) != 1 || sub.Status.GrantedTopics[0].UID != string(again.UID) || sub.Status.GrantedTopics[0].TopicID != again.Status.TopicID {
		t.Fatalf("status.grantedTopics must record the approved Topic and topic ID: %+v", sub.Status.GrantedTopics)
	}
}

func TestNarrowedAllowedNamespacesRevokes(t *testing.T) {
	owner := env.NamespaceT(t, "narrow-owner")
	user := env.NamespaceT(t, "narrow-user")
	name := readyTopic(t, owner, "shared", user)
	sub := newSub(user, "reader", "chg-1", busv1.RoleConsume, busv1.TopicReference{Namespace: owner, Name: "shared"})
	createApproved(t, user, "chg-1", sub)
	waitSubReady(t, sub)
	principal := sub.Status.Principal
	if len(aclsOn(t, principal, name)) == 0 {
		t.Fatal("approved cross-namespace grant missing")
	}
	tp := &busv1.Topic{}
	if err := env.Client.Get(ctxT(t), client.ObjectKey{Namespace: owner, Name: "shared"}, tp); err != nil {
		t.Fatal(err)
	}
	changeApproved(t, owner, "chg-narrow", tp, func(tp *busv1.Topic) { tp.Spec.AllowedNamespaces = nil })
	waitTopicReady(t, tp)
	eventually(t, "cross-namespace grant revoked", func() error {
		if acls := aclsOn(t, principal, name); len(acls) != 0 {
			return fmt.Errorf("still granted: %v", acls)
		}
		return nil
	})
	waitCondition(t, sub, subConds(sub), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonNotAllowed)

	// Widening it again is a Topic change approved by the owner, but the
	// grant comes back only under a ticket valid for the Subscription:
	// chg-1 still is, and pins the Subscription's unchanged spec.
	changeApproved(t, owner, "chg-widen", tp, func(tp *busv1.Topic) { tp.Spec.AllowedNamespaces = []string{user} })
	waitSubReady(t, sub)
}

func TestExpiredTicketGrantsNothingNew(t *testing.T) {
	ns := env.NamespaceT(t, "expired-grant")
	fileTicketSpec(t, ns, "chg-short", ticketSpec{covers: []busv1.CoveredObject{covers(busv1.KindSubscription, "early")}, notAfter: 3 * time.Second})
	sub := newSub(ns, "early", "chg-short", busv1.RoleConsume, ref("later"))
	create(t, sub)
	approve(t, ns, "chg-short")
	waitCondition(t, sub, subConds(sub), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonTopicNotFound)
	tk := &busv1.ChangeTicket{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "chg-short"}}
	waitState(t, tk, busv1.TicketExpired)

	name := readyTopic(t, ns, "later")
	waitCondition(t, sub, subConds(sub), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonGrantNeedsTicket)
	if msg := findCond(sub.Status.Conditions, busv1.ConditionReady); !strings.Contains(msg, "expired") {
		t.Fatalf("message: %s", msg)
	}
	if acls := aclsOn(t, "User:"+ns+".early", name); len(acls) != 0 {
		t.Fatalf("an expired ticket granted a topic created later: %v", acls)
	}
}

func TestUnpinnedApprovalApprovesWhatExisted(t *testing.T) {
	ns := env.NamespaceT(t, "unpinned")
	fileTicket(t, ns, "chg-1", covers(busv1.KindTopic, "present"), covers(busv1.KindTopic, "absent"))
	present := newTopic(ns, "present", uniqueName(ns, "Present"), "chg-1", 1, nil)
	create(t, present)
	// A reviewer approves with plain kubectl: no pins.
	if err := env.ApproveUnpinned(ctxT(t), ns, "chg-1", reviewer); err != nil {
		t.Fatal(err)
	}
	waitTopicReady(t, present)
	tk := &busv1.ChangeTicket{}
	eventually(t, "the operator pins what existed", func() error {
		if err := env.Client.Get(ctxT(t), client.ObjectKey{Namespace: ns, Name: "chg-1"}, tk); err != nil {
			return err
		}
		if len(tk.Status.OperatorPins) != 1 || tk.Status.OperatorPins[0].Reviewer != reviewer || len(tk.Status.OperatorPins[0].Pinned) != 1 || tk.Status.OperatorPins[0].Pinned[0].Name != "present" {
			return fmt.Errorf("operatorPins %+v", tk.Status.OperatorPins)
		}
		return nil
	})

	// An object created after the approval is not approved by it.
	absent := newTopic(ns, "absent", uniqueName(ns, "Absent"), "chg-1", 1, nil)
	create(t, absent)
	waitCondition(t, absent, topicConds(absent), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonNotReviewed)
	if _, ok := brokerTopic(t, uniqueName(ns, "Absent")); ok {
		t.Fatal("an object created after the approval reached the broker")
	}
	// An edit after the approval is not approved either.
	update(t, present, func(tp *busv1.Topic) { tp.Spec.Partitions = 4 })
	waitCondition(t, present, topicConds(present), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonSpecChanged)
	time.Sleep(resync)
	if got, _ := brokerTopic(t, uniqueName(ns, "Present")); got.Partitions != 1 {
		t.Fatalf("an edit after an unpinned approval reached the broker: %d partitions", got.Partitions)
	}
}
