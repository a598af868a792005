package integration

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/test/harness/testenv"
)

func TestTicketRequesterMustBeCreator(t *testing.T) {
	tk := newTicket(env.NamespaceT(t, "req"), "chg-1", bob)
	wantInvalid(t, as(t, alice).Create(testContext(t), tk),
		"spec.requestedBy must be the user creating the ticket (alice), got bob")

	tk.Spec.RequestedBy = alice
	mustSucceed(t, as(t, alice).Create(testContext(t), tk), "creating a ticket in one's own name")
}

func TestReviewerApprovalIsRecorded(t *testing.T) {
	tk := createTicket(t, alice)
	mustSucceed(t, approveAs(t, bob, bob, tk), "bob approving alice's ticket")
	mustSucceed(t, approveAs(t, carol, carol, tk), "carol adding a second approval")

	got := getTicket(t, tk).Status.Approvals
	if len(got) != 2 || got[0].Reviewer != bob || got[1].Reviewer != carol {
		t.Fatalf("approvals = %+v; want bob then carol", got)
	}
}

func TestSelfApprovalIsRejected(t *testing.T) {
	tk := createTicket(t, dave)
	wantForbidden(t, approveAs(t, dave, dave, tk),
		"four-eyes: the requester cannot approve their own ticket (dave requested it)")
}

func TestSelfDenialIsRejected(t *testing.T) {
	tk := createTicket(t, dave)
	wantForbidden(t, denyAs(t, dave, dave, tk), "four-eyes: the requester cannot deny their own ticket")
}

func TestApprovalMustNameTheRecordingUser(t *testing.T) {
	tk := createTicket(t, alice)
	wantInvalid(t, approveAs(t, bob, carol, tk), "an approval must name the user recording it (bob), got carol")
	wantInvalid(t, denyAs(t, bob, carol, tk), "a denial must name the user recording it (bob), got carol")
	// A reviewer cannot launder a self-approval through someone else either.
	wantInvalid(t, approveAs(t, bob, alice, tk), "an approval must name the user recording it (bob), got alice")
}

// Oscar was given the reviewer role by a direct binding, not by membership of
// the reviewers group: RBAC lets him write the status, the policy does not
// let him approve.
func TestNonReviewerApprovalIsRejected(t *testing.T) {
	tk := createTicket(t, alice)
	ctx := testContext(t)
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: tk.Namespace, Name: "oscar-reviewer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "hmsbus-reviewer"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: oscar}},
	}
	mustSucceed(t, env.Client.Create(ctx, rb), "binding the reviewer role to oscar")

	const want = "only members of group hms:bus-reviewers may approve or deny ChangeTickets; oscar is not a member"
	// The RoleBinding reaches the authorizer through an informer; until it
	// does, the request is refused by RBAC instead.
	eventually(t, "oscar's approval reaches the admission policy", func() error {
		return expectPolicyRejection(approveAs(t, oscar, oscar, tk), want)
	})
	wantForbidden(t, approveAs(t, oscar, oscar, tk), want)
	wantForbidden(t, denyAs(t, oscar, oscar, tk), want)
	// Mallory, a requester, has no RBAC for the status at all.
	wantForbidden(t, approveAs(t, mallory, mallory, tk), `cannot update resource "changetickets/status"`)
}

func TestRecordedApprovalsCannotBeRewritten(t *testing.T) {
	tk := createTicket(t, alice)
	mustSucceed(t, approveAs(t, bob, bob, tk), "bob approving")
	mustSucceed(t, approveAs(t, carol, carol, tk), "carol approving")

	const appendOnly = "approvals are append-only: an existing approval cannot be edited or removed"
	edit := func(s *busv1.ChangeTicketStatus) { s.Approvals[0].Comment = "actually, no" }
	remove := func(s *busv1.ChangeTicketStatus) { s.Approvals = s.Approvals[1:] }
	removeAll := func(s *busv1.ChangeTicketStatus) { s.Approvals = nil }
	backdate := func(s *busv1.ChangeTicketStatus) { s.Approvals[1].Time.Time = s.Approvals[1].Time.AddDate(0, 0, -7) }

	wantInvalid(t, updateStatus(t, as(t, bob), tk, edit), appendOnly)
	wantInvalid(t, updateStatus(t, as(t, bob), tk, remove), appendOnly)
	wantInvalid(t, updateStatus(t, as(t, carol), tk, removeAll), appendOnly)
	// The rule binds the operator (and any admin) too.
	wantInvalid(t, updateStatus(t, env.Client, tk, backdate), appendOnly)
	wantInvalid(t, updateStatus(t, env.Client, tk, removeAll), appendOnly)

	if got := getTicket(t, tk).Status.Approvals; len(got) != 2 || got[0].Comment != "looks fine" {
		t.Fatalf("approvals changed to %+v", got)
	}
}

func TestDenialIsFinal(t *testing.T) {
	tk := createTicket(t, alice)
	mustSucceed(t, denyAs(t, bob, bob, tk), "bob denying")

	wantForbidden(t, approveAs(t, carol, carol, tk), "the ticket was denied by bob: it cannot be approved any more")
	wantInvalid(t, denyAs(t, carol, carol, tk), "a denial cannot be edited or withdrawn")
	wantInvalid(t, updateStatus(t, env.Client, tk, func(s *busv1.ChangeTicketStatus) { s.Denial = nil }),
		"a denial cannot be edited or withdrawn")
}

func TestExpiredTicketCannotBeApproved(t *testing.T) {
	tk := createTicket(t, alice)
	mustSucceed(t, updateStatus(t, env.Client, tk, func(s *busv1.ChangeTicketStatus) {
		s.State = busv1.TicketExpired
		s.Conditions = []metav1.Condition{{
			Type: busv1.ConditionExpired, Status: metav1.ConditionTrue, Reason: busv1.ReasonExpired,
			Message: "window closed", LastTransitionTime: metav1.Now(),
		}}
	}), "operator marking the ticket expired")

	wantForbidden(t, approveAs(t, bob, bob, tk), "the ticket has expired: it cannot be approved any more")
}

// The operator's bookkeeping writes add no review, so the policy does not
// evaluate them; they succeed and are stored.
func TestOperatorStatusWritesAreAccepted(t *testing.T) {
	tk := createTicket(t, alice)
	mustSucceed(t, approveAs(t, bob, bob, tk), "bob approving")
	mustSucceed(t, updateStatus(t, env.Client, tk, func(s *busv1.ChangeTicketStatus) {
		s.State = busv1.TicketApproved
		s.RequiredApprovals, s.ValidApprovals, s.ObservedGeneration = 1, 1, 1
		s.Conditions = []metav1.Condition{{
			Type: busv1.ConditionApproved, Status: metav1.ConditionTrue, Reason: busv1.ReasonApproved,
			Message: "approved by bob", LastTransitionTime: metav1.Now(),
		}}
	}), "operator writing state and conditions")

	got := getTicket(t, tk).Status
	if got.State != busv1.TicketApproved || len(got.Conditions) != 1 || got.ValidApprovals != 1 {
		t.Fatalf("status = %+v; want the operator's write stored", got)
	}
}

// A reviewer may record a review, nothing else: otherwise a reviewer could
// write an Approved condition the operator never sets back.
func TestReviewerCannotWriteOperatorFields(t *testing.T) {
	tk := createTicket(t, alice)
	const want = "reviewers may only add approvals or a denial"
	forgeState := func(s *busv1.ChangeTicketStatus) { s.State = busv1.TicketApproved }
	forgeCondition := func(s *busv1.ChangeTicketStatus) {
		s.Approvals = append(s.Approvals, review(bob))
		s.Conditions = []metav1.Condition{{
			Type: busv1.ConditionApproved, Status: metav1.ConditionTrue, Reason: busv1.ReasonApproved,
			Message: "forged", LastTransitionTime: metav1.Now(),
		}}
	}
	forgePins := func(s *busv1.ChangeTicketStatus) {
		s.Approvals = append(s.Approvals, review(bob))
		s.OperatorPins = []busv1.OperatorPin{{Reviewer: bob, Time: metav1.Now(), Pinned: []busv1.PinnedSpec{{Kind: busv1.KindTopic, Name: "anything", SpecHash: "sha256:" + strings.Repeat("0", 64)}}}}
	}
	wantForbidden(t, updateStatus(t, as(t, bob), tk, forgeState), want)
	wantForbidden(t, updateStatus(t, as(t, bob), tk, forgeCondition), want)
	wantForbidden(t, updateStatus(t, as(t, bob), tk, forgePins), want)
}

// Operator pins, once written, are kept: nobody (the operator included) can
// rewrite what an approval was pinned to.
func TestOperatorPinsAreAppendOnly(t *testing.T) {
	tk := createTicket(t, alice)
	pin := busv1.OperatorPin{Reviewer: bob, Time: metav1.Now(), Pinned: []busv1.PinnedSpec{{Kind: busv1.KindTopic, Name: "fee-updated", SpecHash: "sha256:" + strings.Repeat("a", 64)}}}
	mustSucceed(t, updateStatus(t, env.Client, tk, func(s *busv1.ChangeTicketStatus) { s.OperatorPins = []busv1.OperatorPin{pin} }), "recording an operator pin")
	rewrite := func(s *busv1.ChangeTicketStatus) {
		s.OperatorPins[0].Pinned[0].SpecHash = "sha256:" + strings.Repeat("b", 64)
	}
	wantInvalid(t, updateStatus(t, env.Client, tk, rewrite), "operator pins are append-only")
	drop := func(s *busv1.ChangeTicketStatus) { s.OperatorPins = nil }
	wantInvalid(t, updateStatus(t, env.Client, tk, drop), "operator pins are append-only")
}

// With a status subresource the main resource ignores status, so a
// requester cannot smuggle approvals in with the ticket.
func TestStatusCannotBeSmuggledThroughMainResource(t *testing.T) {
	ctx := testContext(t)
	c := as(t, alice)
	tk := newTicket(env.NamespaceT(t, "smug"), "chg-1", alice)
	tk.Status.Approvals = []busv1.Review{review(bob)}
	tk.Status.State = busv1.TicketApproved
	mustSucceed(t, c.Create(ctx, tk), "creating a ticket carrying a status")
	if got := getTicket(t, tk).Status; len(got.Approvals) != 0 || got.State != "" {
		t.Fatalf("status after create = %+v; want it empty", got)
	}

	cur := getTicket(t, tk)
	cur.Status.Approvals = []busv1.Review{review(bob)}
	cur.Labels = map[string]string{"team": "fees"}
	mustSucceed(t, c.Update(ctx, cur), "updating the ticket's metadata with a status attached")
	got := getTicket(t, tk)
	if len(got.Status.Approvals) != 0 || got.Labels["team"] != "fees" {
		t.Fatalf("after update: labels %v, approvals %+v; want label stored, approvals dropped", got.Labels, got.Status.Approvals)
	}
}

// Without its ConfigMap the review policy refuses every status write (fails
// closed); with the group key missing it says what to fix.
func TestMissingGovernanceConfigFailsClosed(t *testing.T) {
	ctx := testContext(t)
	key := client.ObjectKey{Namespace: testenv.SystemNamespace, Name: "hmsbus-governance"}
	orig := &corev1.ConfigMap{}
	mustSucceed(t, env.Client.Get(ctx, key, orig), "reading governance ConfigMap")
	t.Cleanup(func() { restoreGovernance(t, orig) })
	tk := createTicket(t, alice)
	dryRunApprove := func() error {
		cur := getTicket(t, tk)
		cur.Status.Approvals = append(cur.Status.Approvals, review(bob))
		return as(t, bob).Status().Update(testContext(t), cur, client.DryRunAll)
	}

	noKey := orig.DeepCopy()
	noKey.Data = map[string]string{"somethingElse": "x"}
	mustSucceed(t, env.Client.Update(ctx, noKey), "removing reviewersGroup")
	const wantNoKey = "has no data.reviewersGroup: ticket reviews are refused until it is set"
	eventually(t, "policy sees the ConfigMap without reviewersGroup", func() error {
		return expectPolicyRejection(dryRunApprove(), wantNoKey)
	})
	wantForbidden(t, dryRunApprove(), wantNoKey)

	mustSucceed(t, env.Client.Delete(ctx, noKey), "deleting governance ConfigMap")
	const wantMissing = "no params found for policy binding with `Deny` parameterNotFoundAction"
	eventually(t, "policy sees the ConfigMap gone", func() error {
		return expectPolicyRejection(dryRunApprove(), wantMissing)
	})
	wantInvalid(t, dryRunApprove(), wantMissing)
	// The API server resolves params before matchConditions, so even the
	// operator's bookkeeping is refused until the ConfigMap is back.
	cur := getTicket(t, tk)
	cur.Status.State = busv1.TicketPending
	wantInvalid(t, env.Client.Status().Update(ctx, cur, client.DryRunAll), wantMissing)
}

func restoreGovernance(t *testing.T, orig *corev1.ConfigMap) {
	ctx := testContext(t)
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: orig.Namespace, Name: orig.Name, Labels: orig.Labels},
		Data:       orig.Data,
	}
	if err := env.Client.Delete(ctx, cm); client.IgnoreNotFound(err) != nil {
		t.Errorf("deleting modified governance ConfigMap: %v", err)
	}
	if err := env.Client.Create(ctx, cm); err != nil {
		t.Errorf("restoring governance ConfigMap: %v", err)
		return
	}
	// Later tests need the policy to see the restored params again.
	tk := createTicket(t, alice)
	eventually(t, "reviews accepted again after restoring the ConfigMap", func() error {
		cur := getTicket(t, tk)
		cur.Status.Approvals = append(cur.Status.Approvals, review(bob))
		return as(t, bob).Status().Update(testContext(t), cur, client.DryRunAll)
	})
}
