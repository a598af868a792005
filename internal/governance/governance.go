// Package governance decides, as pure functions, what a ChangeTicket
// authorises. Controllers never trust a ticket's status conditions for this:
// reviewers write to the status subresource, so the decision is recomputed
// from the approvals, the denial and the spec every time.
package governance

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
)

// Policy is the operator-wide governance policy.
type Policy struct {
	// MinApprovals raises every ticket's required approvals to at least this.
	MinApprovals int32
	// MaxWindow caps a ticket's change window, counted from its creation.
	MaxWindow time.Duration
	// RequirePinned counts only approvals that pin the object's spec
	// (Review.Pinned), so every approved change is exactly what a reviewer
	// saw. Without it an unpinned approval approves any spec of the object
	// for the ticket's window.
	RequirePinned bool
}

// DefaultPolicy is used when the operator is given no flags.
var DefaultPolicy = Policy{MinApprovals: 1, MaxWindow: 30 * 24 * time.Hour}

// Assessment is what a ticket amounts to at a moment.
type Assessment struct {
	State             busv1.TicketState
	RequiredApprovals int32
	// ApprovedBy lists the reviewers whose approvals count, in order.
	ApprovedBy []string
	// ExpiresAt is the effective end of the change window.
	ExpiresAt time.Time
	// Message explains the state in a sentence.
	Message string
}

// Assess evaluates a ticket. namespaceMin is the namespace's
// bus.hms.io/min-approvals (0 when unset).
func Assess(t *busv1.ChangeTicket, p Policy, namespaceMin int32, now time.Time) Assessment {
	a := Assessment{
		RequiredApprovals: max(t.Spec.RequiredApprovals, p.MinApprovals, namespaceMin, 1),
		ExpiresAt:         ExpiresAt(t, p),
	}
	// An approval counts only from a reviewer other than the requester; the
	// admission policy already refuses self-approval, but the ticket must
	// stay safe even if that policy is missing from a cluster.
	for _, ap := range t.Status.Approvals {
		if ap.Reviewer == t.Spec.RequestedBy || slices.Contains(a.ApprovedBy, ap.Reviewer) {
			continue
		}
		if t.Status.Denial != nil && ap.Time.After(t.Status.Denial.Time.Time) {
			continue
		}
		a.ApprovedBy = append(a.ApprovedBy, ap.Reviewer)
	}
	switch {
	case t.Status.Denial != nil:
		a.State = busv1.TicketDenied
		a.Message = fmt.Sprintf("denied by %s", t.Status.Denial.Reviewer)
		if c := t.Status.Denial.Comment; c != "" {
			a.Message += ": " + c
		}
	case !now.Before(a.ExpiresAt):
		a.State = busv1.TicketExpired
		a.Message = fmt.Sprintf("change window closed at %s", a.ExpiresAt.UTC().Format(time.RFC3339))
	case int32(len(a.ApprovedBy)) >= a.RequiredApprovals:
		a.State = busv1.TicketApproved
		a.Message = fmt.Sprintf("approved by %s; valid until %s", strings.Join(a.ApprovedBy, ", "), a.ExpiresAt.UTC().Format(time.RFC3339))
	default:
		a.State = busv1.TicketPending
		a.Message = fmt.Sprintf("%d of %d approvals", len(a.ApprovedBy), a.RequiredApprovals)
	}
	return a
}

// ExpiresAt is the effective end of a ticket's window: its notAfter, capped
// at MaxWindow after creation so that no ticket is valid for long.
func ExpiresAt(t *busv1.ChangeTicket, p Policy) time.Time {
	end := t.Spec.NotAfter.Time
	if p.MaxWindow > 0 && !t.CreationTimestamp.IsZero() {
		if limit := t.CreationTimestamp.Add(p.MaxWindow); limit.Before(end) {
			end = limit
		}
	}
	return end
}

// Subject is the object and operation a ticket must authorise.
type Subject struct {
	Kind      busv1.CoveredKind
	Namespace string
	Name      string
	Operation busv1.Operation
	// TicketRef is the object's spec.changeTicket: a name, or
	// namespace/name (which must be the object's own namespace).
	TicketRef string
	// SpecHash is SpecHash of the object's current spec, checked against
	// pinned approvals.
	SpecHash string
}

// SpecHash identifies a spec: "sha256:" and the hex SHA-256 of its JSON.
// encoding/json writes struct fields in declaration order and map keys
// sorted, so equal specs hash equal.
func SpecHash(spec any) (string, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return "", fmt.Errorf("hashing spec: %w", err)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// Decision answers "may this object's current spec be applied?".
type Decision struct {
	Allowed bool
	// Reason is one of the api/v1 Reason constants.
	Reason  string
	Message string
	// Ticket describes the authorising ticket when Allowed.
	Ticket *busv1.AppliedTicket
	// ExpiresAt is when an allowing decision lapses by itself.
	ExpiresAt time.Time
}

// TicketKey splits a ticket reference into namespace and name; a bare name
// is in the object's namespace.
func TicketKey(objNamespace, ref string) (namespace, name string) {
	if ns, n, ok := strings.Cut(ref, "/"); ok {
		return ns, n
	}
	return objNamespace, ref
}

// Evaluate decides whether ticket (nil when it does not exist) authorises
// the subject now. It is the single answer every controller uses.
func Evaluate(ticket *busv1.ChangeTicket, s Subject, p Policy, namespaceMin int32, now time.Time) Decision {
	ns, name := TicketKey(s.Namespace, s.TicketRef)
	switch {
	case strings.TrimSpace(s.TicketRef) == "":
		return deny(busv1.ReasonTicketNotSpecified, "no spec.changeTicket: every change needs an approved ChangeTicket")
	case ns != s.Namespace:
		return deny(busv1.ReasonTicketNotCovering, fmt.Sprintf("ChangeTicket %s/%s is in another namespace: a ticket only authorises objects in its own namespace (%s)", ns, name, s.Namespace))
	case ticket == nil:
		return deny(busv1.ReasonTicketMissing, fmt.Sprintf("ChangeTicket %s not found in namespace %s", name, s.Namespace))
	}
	if !covers(ticket, s) {
		return deny(busv1.ReasonTicketNotCovering, fmt.Sprintf("ChangeTicket %s (%s) does not cover %s %s for %s", ticket.Name, ticket.Spec.Reference, s.Kind, s.Name, s.Operation))
	}
	a := Assess(ticket, p, namespaceMin, now)
	switch a.State {
	case busv1.TicketDenied:
		return deny(busv1.ReasonTicketDenied, fmt.Sprintf("ChangeTicket %s (%s) was %s", ticket.Name, ticket.Spec.Reference, a.Message))
	case busv1.TicketExpired:
		return deny(busv1.ReasonTicketExpired, fmt.Sprintf("ChangeTicket %s (%s) expired: %s; file a new ticket", ticket.Name, ticket.Spec.Reference, a.Message))
	case busv1.TicketPending:
		return deny(busv1.ReasonAwaitingApproval, fmt.Sprintf("ChangeTicket %s (%s) awaits approval: %s", ticket.Name, ticket.Spec.Reference, a.Message))
	}
	approvers, changed, unpinned := approvalsFor(ticket, a.ApprovedBy, s, p)
	if int32(len(approvers)) < a.RequiredApprovals {
		switch {
		case changed > 0:
			return deny(busv1.ReasonSpecChanged, fmt.Sprintf("the spec of %s %s changed after it was approved under ChangeTicket %s (%s); an approval covers the spec the reviewer saw, so file a new ChangeTicket for this change", s.Kind, s.Name, ticket.Name, ticket.Spec.Reference))
		case unpinned > 0:
			return deny(busv1.ReasonAwaitingApproval, fmt.Sprintf("ChangeTicket %s (%s) has approvals that do not pin the spec of %s %s, and the operator requires pinned approvals: approve with `hmsbus approve`", ticket.Name, ticket.Spec.Reference, s.Kind, s.Name))
		}
		return deny(busv1.ReasonAwaitingApproval, fmt.Sprintf("ChangeTicket %s (%s) awaits approval: %d of %d approvals", ticket.Name, ticket.Spec.Reference, len(approvers), a.RequiredApprovals))
	}
	return Decision{
		Allowed: true,
		Reason:  busv1.ReasonTicketApproved,
		Message: fmt.Sprintf("ChangeTicket %s (%s) %s", ticket.Name, ticket.Spec.Reference, a.Message),
		Ticket: &busv1.AppliedTicket{
			Name:       ticket.Name,
			Reference:  ticket.Spec.Reference,
			ApprovedBy: approvers,
		},
		ExpiresAt: a.ExpiresAt,
	}
}

// approvalsFor returns the approvers whose approval holds for the subject's
// current spec, and counts the approvals that pinned another spec
// (changed) or none when pins are required (unpinned).
func approvalsFor(t *busv1.ChangeTicket, valid []string, s Subject, p Policy) (approvers []string, changed, unpinned int) {
	for _, r := range t.Status.Approvals {
		if !slices.Contains(valid, r.Reviewer) || slices.Contains(approvers, r.Reviewer) {
			continue
		}
		i := slices.IndexFunc(r.Pinned, func(ps busv1.PinnedSpec) bool { return ps.Kind == s.Kind && ps.Name == s.Name })
		switch {
		case i >= 0 && r.Pinned[i].SpecHash == s.SpecHash:
			approvers = append(approvers, r.Reviewer)
		case i >= 0:
			changed++
		case p.RequirePinned:
			unpinned++
		default:
			approvers = append(approvers, r.Reviewer)
		}
	}
	return approvers, changed, unpinned
}

func covers(t *busv1.ChangeTicket, s Subject) bool {
	for _, c := range t.Spec.Covers {
		if c.Kind != s.Kind || c.Name != s.Name {
			continue
		}
		ops := c.Operations
		if len(ops) == 0 {
			ops = []busv1.Operation{busv1.OperationApply}
		}
		return slices.Contains(ops, s.Operation)
	}
	return false
}

func deny(reason, msg string) Decision {
	return Decision{Reason: reason, Message: msg}
}
