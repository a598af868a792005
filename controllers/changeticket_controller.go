package controllers

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/governance"
	"github.com/hms-platform/bus-operator/internal/review"
)

// ChangeTicketReconciler records what a ticket amounts to: its state, the
// approvals that count and the end of its window. Topics and Subscriptions
// do not read these conditions (they recompute the decision); the status is
// for people, kubectl and GitOps tools.
type ChangeTicketReconciler struct {
	client.Client
	Options
}

// +kubebuilder:rbac:groups=bus.hms.io,resources=changetickets,verbs=get;list;watch
// +kubebuilder:rbac:groups=bus.hms.io,resources=changetickets/status,verbs=get;update;patch

// Reconcile evaluates one ChangeTicket.
func (r *ChangeTicketReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	// Tickets own no broker state, so they carry no finalizer.
	return reconcileShape(ctx, r.Client, nil, req, &busv1.ChangeTicket{}, func(t *busv1.ChangeTicket) any { return t.Status }, nil, r.evaluate)
}

func (r *ChangeTicketReconciler) evaluate(ctx context.Context, t *busv1.ChangeTicket) (reconcile.Result, error) {
	nsMin, err := namespaceMinApprovals(ctx, r.Client, t.Namespace)
	if err != nil {
		return reconcile.Result{}, err
	}
	now := r.now()
	a := governance.Assess(t, r.Policy, nsMin, now)
	if err := r.pinUnpinnedApprovals(ctx, t, a, now); err != nil {
		return reconcile.Result{}, err
	}
	r.record(t, a)

	// The window closes by the clock, not by an event: wake up then, so
	// Expired turns True and referencing objects are told.
	if until := a.ExpiresAt.Sub(now); until > 0 && a.State != busv1.TicketDenied {
		return reconcile.Result{RequeueAfter: until + time.Second}, nil
	}
	return reconcile.Result{}, nil
}

// pinUnpinnedApprovals records, for each approval that pinned nothing (one
// written with plain kubectl), the specs of the covered objects as they are
// now: the approval approves those and nothing created or edited later. The
// reviewer's own pins, when given, are what counts instead.
func (r *ChangeTicketReconciler) pinUnpinnedApprovals(ctx context.Context, t *busv1.ChangeTicket, a governance.Assessment, now time.Time) error {
	if !r.Policy.Pinned() || a.State == busv1.TicketDenied || a.State == busv1.TicketExpired {
		return nil
	}
	reviewers := governance.NeedsOperatorPin(t)
	if len(reviewers) == 0 {
		return nil
	}
	pins, _, err := review.Pins(ctx, r.Client, t)
	if err != nil {
		return err
	}
	for _, reviewer := range reviewers {
		t.Status.OperatorPins = append(t.Status.OperatorPins, busv1.OperatorPin{Reviewer: reviewer, Time: metav1.NewTime(now.UTC().Truncate(time.Second)), Pinned: pins})
	}
	log.FromContext(ctx).Info("pinned the specs approved without pins", "reviewers", reviewers, "objects", len(pins))
	return nil
}

func (r *ChangeTicketReconciler) record(t *busv1.ChangeTicket, a governance.Assessment) {
	gen := t.Generation
	st := &t.Status
	st.State = a.State
	st.RequiredApprovals = a.RequiredApprovals
	st.ValidApprovals = int32(len(a.ApprovedBy))
	exp := metav1.NewTime(a.ExpiresAt.UTC().Truncate(time.Second))
	st.ExpiresAt = &exp
	st.ObservedGeneration = gen

	// Approved is set once and never goes back to False: it records that
	// the reviewers approved. Whether the ticket still authorises anything
	// is what Denied and Expired say.
	approvedBefore := meta.IsStatusConditionTrue(st.Conditions, busv1.ConditionApproved)
	switch {
	case approvedBefore:
	case a.State == busv1.TicketApproved:
		setCondition(&st.Conditions, gen, busv1.ConditionApproved, metav1.ConditionTrue, busv1.ReasonApproved, fmt.Sprintf("approved by %v", a.ApprovedBy))
	default:
		meta.RemoveStatusCondition(&st.Conditions, busv1.ConditionApproved)
	}

	if st.Denial != nil {
		setCondition(&st.Conditions, gen, busv1.ConditionDenied, metav1.ConditionTrue, busv1.ReasonDenied, a.Message)
	} else {
		setCondition(&st.Conditions, gen, busv1.ConditionDenied, metav1.ConditionFalse, busv1.ReasonPending, "no reviewer has denied this ticket")
	}
	if !r.now().Before(a.ExpiresAt) {
		setCondition(&st.Conditions, gen, busv1.ConditionExpired, metav1.ConditionTrue, busv1.ReasonExpired, fmt.Sprintf("change window closed at %s", a.ExpiresAt.UTC().Format(time.RFC3339)))
	} else {
		setCondition(&st.Conditions, gen, busv1.ConditionExpired, metav1.ConditionFalse, busv1.ReasonWithinWindow, fmt.Sprintf("valid until %s", a.ExpiresAt.UTC().Format(time.RFC3339)))
	}
}

// SetupWithManager registers the controller. Status writes by reviewers
// (approvals) must wake it, so no generation filter here.
func (r *ChangeTicketReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&busv1.ChangeTicket{}).
		Named("changeticket").
		Complete(r)
}
