package controllers_test

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
)

func ticketConds(tk *busv1.ChangeTicket) func() []metav1.Condition {
	return func() []metav1.Condition { return tk.Status.Conditions }
}

func waitState(t *testing.T, tk *busv1.ChangeTicket, want busv1.TicketState) {
	t.Helper()
	eventually(t, fmt.Sprintf("ticket %s state %s", tk.Name, want), func() error {
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(tk), tk); err != nil {
			return err
		}
		if tk.Status.State != want {
			return fmt.Errorf("state %q", tk.Status.State)
		}
		return nil
	})
}

func TestTicketApprovedNeverFlipsBack(t *testing.T) {
	ns := env.NamespaceT(t, "tickets")
	tk := fileTicket(t, ns, "chg-7", covers(busv1.KindTopic, "x"))
	create(t, newTopic(ns, "x", uniqueName(ns, "X"), "chg-7", 1, nil))
	waitState(t, tk, busv1.TicketPending)
	if meta.FindStatusCondition(tk.Status.Conditions, busv1.ConditionApproved) != nil {
		t.Fatal("a pending ticket must not carry an Approved condition")
	}
	waitCondition(t, tk, ticketConds(tk), busv1.ConditionExpired, metav1.ConditionFalse, busv1.ReasonWithinWindow)
	if tk.Status.ExpiresAt == nil || tk.Status.RequiredApprovals != 1 || tk.Status.ValidApprovals != 0 {
		t.Fatalf("status %+v", tk.Status)
	}

	approve(t, ns, "chg-7")
	waitState(t, tk, busv1.TicketApproved)
	waitCondition(t, tk, ticketConds(tk), busv1.ConditionApproved, metav1.ConditionTrue, busv1.ReasonApproved)

	// A later denial ends the ticket; Approved stays True as the record of
	// what the reviewers did.
	if err := env.Deny(ctxT(t), ns, "chg-7", "raj"); err != nil {
		t.Fatal(err)
	}
	waitState(t, tk, busv1.TicketDenied)
	waitCondition(t, tk, ticketConds(tk), busv1.ConditionDenied, metav1.ConditionTrue, busv1.ReasonDenied)
	if c := meta.FindStatusCondition(tk.Status.Conditions, busv1.ConditionApproved); c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("Approved flipped back: %+v", c)
	}
}

func TestTicketExpiresByTheClock(t *testing.T) {
	ns := env.NamespaceT(t, "expiry")
	tk := fileTicketSpec(t, ns, "chg-short", ticketSpec{covers: []busv1.CoveredObject{covers(busv1.KindTopic, "short"), covers(busv1.KindTopic, "present")}, notAfter: 4 * time.Second})
	create(t, newTopic(ns, "present", uniqueName(ns, "Present"), "chg-short", 1, nil))
	approve(t, ns, "chg-short")
	waitState(t, tk, busv1.TicketApproved)
	// Nothing touches the ticket again: the controller wakes at the end of
	// the window by itself.
	waitState(t, tk, busv1.TicketExpired)
	waitCondition(t, tk, ticketConds(tk), busv1.ConditionExpired, metav1.ConditionTrue, busv1.ReasonExpired)
	waitCondition(t, tk, ticketConds(tk), busv1.ConditionApproved, metav1.ConditionTrue, busv1.ReasonApproved)

	// A Topic referencing the expired ticket is told so, and nothing
	// reaches the broker.
	tp := newTopic(ns, "short", uniqueName(ns, "Short"), "chg-short", 1, nil)
	create(t, tp)
	waitCondition(t, tp, topicConds(tp), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonTicketExpired)
	if _, ok := brokerTopic(t, uniqueName(ns, "Short")); ok {
		t.Fatal("an expired ticket let a topic through")
	}
}

func TestNamespaceRaisesRequiredApprovals(t *testing.T) {
	ns := env.NamespaceT(t, "strict")
	nsObj := &corev1.Namespace{}
	if err := env.Client.Get(ctxT(t), client.ObjectKey{Name: ns}, nsObj); err != nil {
		t.Fatal(err)
	}
	nsObj.Annotations = map[string]string{busv1.AnnotationMinApprovals: "2"}
	if err := env.Client.Update(ctxT(t), nsObj); err != nil {
		t.Fatal(err)
	}
	tk := fileTicket(t, ns, "chg-2eyes", covers(busv1.KindTopic, "strict"))
	tp := newTopic(ns, "strict", uniqueName(ns, "Strict"), "chg-2eyes", 1, nil)
	create(t, tp)
	approve(t, ns, "chg-2eyes")
	waitCondition(t, tp, topicConds(tp), busv1.ConditionReady, metav1.ConditionFalse, busv1.ReasonAwaitingApproval)
	// The ticket was pending before the first approval too: wait until the
	// operator has counted it.
	eventually(t, "one of two approvals counted", func() error {
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(tk), tk); err != nil {
			return err
		}
		if tk.Status.State != busv1.TicketPending || tk.Status.RequiredApprovals != 2 || tk.Status.ValidApprovals != 1 {
			return fmt.Errorf("state %s, %d of %d approvals", tk.Status.State, tk.Status.ValidApprovals, tk.Status.RequiredApprovals)
		}
		return nil
	})
	if err := env.Approve(ctxT(t), ns, "chg-2eyes", "raj"); err != nil {
		t.Fatal(err)
	}
	waitTopicReady(t, tp)
}
