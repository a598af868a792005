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

// ApprovalMode says what an approval approves.
type ApprovalMode string

const (
	// ApprovalPinned (the default): an approval approves the covered
	// objects exactly as they were when it was recorded. The reviewer's
	// pins say so; for an approval without pins the operator pins what
	// existed when it first saw the approval (status.operatorPins). An
	// object edited afterwards, or created afterwards, is not approved.
	ApprovalPinned ApprovalMode = "pinned"
	// ApprovalWindow: an approval without pins approves any spec of the
	// covered objects until the ticket's window closes. Reviewer pins still
	// bind. This trusts the requester not to change an approved object
	// after the review.
	ApprovalWindow ApprovalMode = "window"
)

// ParseApprovalMode reads an --approval-mode value.
func ParseApprovalMode(s string) (ApprovalMode, error) {
	switch m := ApprovalMode(strings.ToLower(strings.TrimSpace(s))); m {
	case ApprovalPinned, ApprovalWindow:
		return m, nil
	case "":
		return ApprovalPinned, nil
	}
	return "", fmt.Errorf("approval mode %q: want %s or %s", s, ApprovalPinned, ApprovalWindow)
}

// Policy is the operator-wide governance policy.
type Policy struct {
	// MinApprovals raises every ticket's required approvals to at least this.
	MinApprovals int32
	// MaxWindow caps a ticket's change window, counted from its creation.
	MaxWindow time.Duration
	// Mode says what an approval approves; the zero value is ApprovalPinned.
	Mode ApprovalMode
}

// Pinned reports whether approvals bind the specs they saw.
func (p Policy) Pinned() bool { return p.Mode != ApprovalWindow }

// DefaultPolicy is used when the operator is given no flags.
var DefaultPolicy = Policy{MinApprovals: 1, MaxWindow: 30 * 24 * time.Hour, Mode: ApprovalPinned}

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
	// UID of the object, checked against pins that record one.
	UID string
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
	// SpecHash is the hash of the spec the decision is about: what an
	// allowing decision approved.
	SpecHash string
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
	d := evaluate(ticket, s, p, namespaceMin, now)
	d.SpecHash = s.SpecHash
	return d
}

func evaluate(ticket *busv1.ChangeTicket, s Subject, p Policy, namespaceMin int32, now time.Time) Decision {
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
	m := approvalsFor(ticket, a.ApprovedBy, s, p)
	if int32(len(m.approvers)) < a.RequiredApprovals {
		ref := fmt.Sprintf("ChangeTicket %s (%s)", ticket.Name, ticket.Spec.Reference)
		switch {
		case len(m.changed) > 0:
			return deny(busv1.ReasonSpecChanged, fmt.Sprintf("the spec of %s %s changed after %s approved it under %s; an approval covers the spec the reviewer saw, so file a new ChangeTicket for this change", s.Kind, s.Name, strings.Join(m.changed, ", "), ref))
		case len(m.notReviewed) > 0:
			return deny(busv1.ReasonNotReviewed, fmt.Sprintf("%s %s did not exist when %s approved %s, so that approval does not cover it: a reviewer approves what exists; ask for a new review or file a new ChangeTicket", s.Kind, s.Name, strings.Join(m.notReviewed, ", "), ref))
		case len(m.awaitingPin) > 0:
			return deny(busv1.ReasonAwaitingApproval, fmt.Sprintf("%s: the operator is pinning the specs approved by %s", ref, strings.Join(m.awaitingPin, ", ")))
		}
		return deny(busv1.ReasonAwaitingApproval, fmt.Sprintf("%s awaits approval: %d of %d approvals", ref, len(m.approvers), a.RequiredApprovals))
	}
	approvers := m.approvers
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

// approvalMatch sorts the valid approvals of a ticket by what they say of
// one subject's current spec.
type approvalMatch struct {
	// approvers approved exactly this spec.
	approvers []string
	// changed approved another spec of the subject.
	changed []string
	// notReviewed approved the ticket when the subject did not exist.
	notReviewed []string
	// awaitingPin approved without pins, and the operator has not recorded
	// what existed at that moment yet.
	awaitingPin []string
}

// approvalsFor matches each valid approval's pins (the reviewer's own, or
// else the operator's for that approval) against the subject's spec.
func approvalsFor(t *busv1.ChangeTicket, valid []string, s Subject, p Policy) approvalMatch {
	var m approvalMatch
	for _, r := range t.Status.Approvals {
		if !slices.Contains(valid, r.Reviewer) || slices.Contains(m.approvers, r.Reviewer) {
			continue
		}
		pins, pinned := PinsOf(t, r)
		if !pinned {
			if p.Pinned() {
				m.awaitingPin = append(m.awaitingPin, r.Reviewer)
			} else {
				m.approvers = append(m.approvers, r.Reviewer)
			}
			continue
		}
		i := slices.IndexFunc(pins, func(ps busv1.PinnedSpec) bool {
			// A pin of an object of that name deleted since is a pin of
			// another object.
			return ps.Kind == s.Kind && ps.Name == s.Name && (ps.UID == "" || s.UID == "" || ps.UID == s.UID)
		})
		switch {
		case i >= 0 && pins[i].SpecHash == s.SpecHash:
			m.approvers = append(m.approvers, r.Reviewer)
		case i >= 0:
			m.changed = append(m.changed, r.Reviewer)
		case p.Pinned():
			m.notReviewed = append(m.notReviewed, r.Reviewer)
		default:
			// Window mode: the reviewer pinned other objects, not this
			// one, which is approved in any spec for the window.
			m.approvers = append(m.approvers, r.Reviewer)
		}
	}
	return m
}

// PinsOf returns the specs an approval binds: the reviewer's pins, or, for
// an approval that pinned nothing, what the operator pinned when it first
// saw it. pinned is false when neither exists yet.
func PinsOf(t *busv1.ChangeTicket, r busv1.Review) (pins []busv1.PinnedSpec, pinned bool) {
	if len(r.Pinned) > 0 {
		return r.Pinned, true
	}
	for _, op := range t.Status.OperatorPins {
		if op.Reviewer == r.Reviewer {
			return op.Pinned, true
		}
	}
	return nil, false
}

// NeedsOperatorPin lists the reviewers whose approvals pin nothing and have
// no operator pins yet: in pinned mode the operator records, for each, the
// covered specs as they are now.
func NeedsOperatorPin(t *busv1.ChangeTicket) []string {
	var out []string
	for _, r := range t.Status.Approvals {
		if _, pinned := PinsOf(t, r); !pinned {
			out = append(out, r.Reviewer)
		}
	}
	return out
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
