package governance

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
)

var (
	created = time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	now     = created.Add(time.Hour)
)

type ticketOpt func(*busv1.ChangeTicket)

func ticket(opts ...ticketOpt) *busv1.ChangeTicket {
	t := &busv1.ChangeTicket{
		ObjectMeta: metav1.ObjectMeta{Name: "chg-1042", Namespace: "fees", CreationTimestamp: metav1.NewTime(created)},
		Spec: busv1.ChangeTicketSpec{
			Reference:         "CHG-1042",
			RequestedBy:       "alice",
			Covers:            []busv1.CoveredObject{{Kind: busv1.KindTopic, Name: "fee-updated"}},
			NotAfter:          metav1.NewTime(created.Add(24 * time.Hour)),
			RequiredApprovals: 1,
		},
	}
	for _, o := range opts {
		o(t)
	}
	return t
}

// approvedBy records approvals that pin the default subject (Topic
// fee-updated with an empty spec hash), as `hmsbus approve` would.
func approvedBy(users ...string) ticketOpt {
	return func(t *busv1.ChangeTicket) {
		for i, u := range users {
			t.Status.Approvals = append(t.Status.Approvals, busv1.Review{Reviewer: u, Time: metav1.NewTime(created.Add(time.Duration(i+1) * time.Minute)),
				Pinned: []busv1.PinnedSpec{{Kind: busv1.KindTopic, Name: "fee-updated"}}})
		}
	}
}

// unpinnedApproval records an approval without pins, as plain kubectl would.
func unpinnedApproval(user string) ticketOpt {
	return func(t *busv1.ChangeTicket) {
		t.Status.Approvals = append(t.Status.Approvals, busv1.Review{Reviewer: user, Time: metav1.NewTime(created.Add(time.Minute))})
	}
}

// operatorPinned records the operator's pins for an unpinned approval.
func operatorPinned(user string, pins ...busv1.PinnedSpec) ticketOpt {
	return func(t *busv1.ChangeTicket) {
		t.Status.OperatorPins = append(t.Status.OperatorPins, busv1.OperatorPin{Reviewer: user, Time: metav1.NewTime(created.Add(2 * time.Minute)), Pinned: pins})
	}
}

func deniedBy(u string, at time.Time) ticketOpt {
	return func(t *busv1.ChangeTicket) {
		t.Status.Denial = &busv1.Review{Reviewer: u, Time: metav1.NewTime(at), Comment: "not in this quarter"}
	}
}

func required(n int32) ticketOpt { return func(t *busv1.ChangeTicket) { t.Spec.RequiredApprovals = n } }

func notAfter(d time.Duration) ticketOpt {
	return func(t *busv1.ChangeTicket) { t.Spec.NotAfter = metav1.NewTime(created.Add(d)) }
}

func coversOps(kind busv1.CoveredKind, name string, ops ...busv1.Operation) ticketOpt {
	return func(t *busv1.ChangeTicket) {
		t.Spec.Covers = []busv1.CoveredObject{{Kind: kind, Name: name, Operations: ops}}
	}
}

func topicSubject(op busv1.Operation) Subject {
	return Subject{Kind: busv1.KindTopic, Namespace: "fees", Name: "fee-updated", Operation: op, TicketRef: "chg-1042"}
}

func TestEvaluate(t *testing.T) {
	tests := []struct {
		name      string
		ticket    *busv1.ChangeTicket
		subject   Subject
		policy    Policy
		nsMin     int32
		at        time.Time
		allowed   bool
		reason    string
		msgSubstr string
	}{
		{name: "approved ticket covering the topic", ticket: ticket(approvedBy("rita")), subject: topicSubject(busv1.OperationApply), allowed: true, reason: busv1.ReasonTicketApproved, msgSubstr: "approved by rita"},
		{name: "no ticket reference", ticket: nil, subject: Subject{Kind: busv1.KindTopic, Namespace: "fees", Name: "fee-updated", Operation: busv1.OperationApply}, reason: busv1.ReasonTicketNotSpecified, msgSubstr: "needs an approved ChangeTicket"},
		{name: "ticket missing", ticket: nil, subject: topicSubject(busv1.OperationApply), reason: busv1.ReasonTicketMissing, msgSubstr: "chg-1042 not found in namespace fees"},
		{name: "ticket in another namespace", ticket: ticket(approvedBy("rita")), subject: Subject{Kind: busv1.KindTopic, Namespace: "fees", Name: "fee-updated", Operation: busv1.OperationApply, TicketRef: "other/chg-1042"}, reason: busv1.ReasonTicketNotCovering, msgSubstr: "another namespace"},
		{name: "ticket in own namespace by qualified name", ticket: ticket(approvedBy("rita")), subject: Subject{Kind: busv1.KindTopic, Namespace: "fees", Name: "fee-updated", Operation: busv1.OperationApply, TicketRef: "fees/chg-1042"}, allowed: true, reason: busv1.ReasonTicketApproved},
		{name: "awaiting approval", ticket: ticket(), subject: topicSubject(busv1.OperationApply), reason: busv1.ReasonAwaitingApproval, msgSubstr: "0 of 1 approvals"},
		{name: "self-approval does not count", ticket: ticket(approvedBy("alice")), subject: topicSubject(busv1.OperationApply), reason: busv1.ReasonAwaitingApproval, msgSubstr: "0 of 1"},
		{name: "duplicate reviewer counts once", ticket: ticket(required(2), approvedBy("rita", "rita")), subject: topicSubject(busv1.OperationApply), reason: busv1.ReasonAwaitingApproval, msgSubstr: "1 of 2"},
		{name: "two distinct reviewers meet two required", ticket: ticket(required(2), approvedBy("rita", "raj")), subject: topicSubject(busv1.OperationApply), allowed: true, reason: busv1.ReasonTicketApproved, msgSubstr: "rita, raj"},
		{name: "namespace minimum raises required approvals", ticket: ticket(approvedBy("rita")), nsMin: 2, subject: topicSubject(busv1.OperationApply), reason: busv1.ReasonAwaitingApproval, msgSubstr: "1 of 2"},
		{name: "operator minimum raises required approvals", ticket: ticket(approvedBy("rita")), policy: Policy{MinApprovals: 3}, subject: topicSubject(busv1.OperationApply), reason: busv1.ReasonAwaitingApproval, msgSubstr: "1 of 3"},
		{name: "denied", ticket: ticket(approvedBy("rita"), deniedBy("raj", created.Add(30*time.Minute))), subject: topicSubject(busv1.OperationApply), reason: busv1.ReasonTicketDenied, msgSubstr: "denied by raj: not in this quarter"},
		{name: "expired", ticket: ticket(approvedBy("rita"), notAfter(30*time.Minute)), subject: topicSubject(busv1.OperationApply), reason: busv1.ReasonTicketExpired, msgSubstr: "expired"},
		{name: "expires exactly at notAfter", ticket: ticket(approvedBy("rita")), at: created.Add(24 * time.Hour), subject: topicSubject(busv1.OperationApply), reason: busv1.ReasonTicketExpired},
		{name: "window capped by operator maximum", ticket: ticket(approvedBy("rita"), notAfter(365*24*time.Hour)), policy: Policy{MaxWindow: 30 * time.Minute}, subject: topicSubject(busv1.OperationApply), reason: busv1.ReasonTicketExpired},
		{name: "does not cover another object", ticket: ticket(approvedBy("rita")), subject: Subject{Kind: busv1.KindTopic, Namespace: "fees", Name: "other", Operation: busv1.OperationApply, TicketRef: "chg-1042"}, reason: busv1.ReasonTicketNotCovering, msgSubstr: "does not cover Topic other"},
		{name: "does not cover another kind of the same name", ticket: ticket(approvedBy("rita")), subject: Subject{Kind: busv1.KindSubscription, Namespace: "fees", Name: "fee-updated", Operation: busv1.OperationApply, TicketRef: "chg-1042"}, reason: busv1.ReasonTicketNotCovering},
		{name: "apply ticket does not authorise delete", ticket: ticket(approvedBy("rita")), subject: topicSubject(busv1.OperationDelete), reason: busv1.ReasonTicketNotCovering, msgSubstr: "for Delete"},
		{name: "delete must be named", ticket: ticket(approvedBy("rita"), coversOps(busv1.KindTopic, "fee-updated", busv1.OperationDelete)), subject: topicSubject(busv1.OperationDelete), allowed: true, reason: busv1.ReasonTicketApproved},
		{name: "delete-only ticket does not authorise apply", ticket: ticket(approvedBy("rita"), coversOps(busv1.KindTopic, "fee-updated", busv1.OperationDelete)), subject: topicSubject(busv1.OperationApply), reason: busv1.ReasonTicketNotCovering},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			at := tc.at
			if at.IsZero() {
				at = now
			}
			d := Evaluate(tc.ticket, tc.subject, tc.policy, tc.nsMin, at)
			if d.Allowed != tc.allowed || d.Reason != tc.reason {
				t.Fatalf("got allowed=%v reason=%s (%s), want allowed=%v reason=%s", d.Allowed, d.Reason, d.Message, tc.allowed, tc.reason)
			}
			if !strings.Contains(d.Message, tc.msgSubstr) {
				t.Errorf("message %q does not contain %q", d.Message, tc.msgSubstr)
			}
			if d.Allowed && (d.Ticket == nil || d.Ticket.Reference != "CHG-1042" || len(d.Ticket.ApprovedBy) == 0) {
				t.Errorf("allowed decision must name the ticket and approvers, got %+v", d.Ticket)
			}
			if !d.Allowed && d.Ticket != nil {
				t.Errorf("a refusal must not name an authorising ticket")
			}
		})
	}
}

func TestAssessApprovalAfterDenialDoesNotCount(t *testing.T) {
	tk := ticket(required(2), approvedBy("rita"), deniedBy("raj", created.Add(90*time.Second)))
	tk.Status.Approvals = append(tk.Status.Approvals, busv1.Review{Reviewer: "sam", Time: metav1.NewTime(created.Add(5 * time.Minute))})
	a := Assess(tk, Policy{}, 0, now)
	if a.State != busv1.TicketDenied {
		t.Fatalf("state %s, want Denied", a.State)
	}
	if len(a.ApprovedBy) != 1 || a.ApprovedBy[0] != "rita" {
		t.Fatalf("approvals counted %v, want only rita (sam approved after the denial)", a.ApprovedBy)
	}
}

func TestAssessStates(t *testing.T) {
	tests := []struct {
		name     string
		ticket   *busv1.ChangeTicket
		want     busv1.TicketState
		required int32
	}{
		{"pending", ticket(), busv1.TicketPending, 1},
		{"approved", ticket(approvedBy("rita")), busv1.TicketApproved, 1},
		{"denial wins over approval", ticket(approvedBy("rita"), deniedBy("raj", now)), busv1.TicketDenied, 1},
		{"denial wins over expiry", ticket(notAfter(time.Minute), deniedBy("raj", now)), busv1.TicketDenied, 1},
		{"expiry wins over approval", ticket(approvedBy("rita"), notAfter(time.Minute)), busv1.TicketExpired, 1},
		{"zero required counts as one", ticket(required(0)), busv1.TicketPending, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := Assess(tc.ticket, Policy{}, 0, now)
			if a.State != tc.want || a.RequiredApprovals != tc.required {
				t.Fatalf("got %s/%d, want %s/%d", a.State, a.RequiredApprovals, tc.want, tc.required)
			}
		})
	}
}

func TestExpiresAtIgnoresCapWithoutCreationTime(t *testing.T) {
	tk := ticket()
	tk.CreationTimestamp = metav1.Time{}
	if got := ExpiresAt(tk, Policy{MaxWindow: time.Minute}); !got.Equal(tk.Spec.NotAfter.Time) {
		t.Fatalf("got %s, want notAfter", got)
	}
}

func pinnedApproval(user string, pins ...busv1.PinnedSpec) ticketOpt {
	return func(t *busv1.ChangeTicket) {
		t.Status.Approvals = append(t.Status.Approvals, busv1.Review{Reviewer: user, Time: metav1.NewTime(created.Add(time.Minute)), Pinned: pins})
	}
}

func pin(kind busv1.CoveredKind, name, hash string) busv1.PinnedSpec {
	return busv1.PinnedSpec{Kind: kind, Name: name, SpecHash: hash}
}

func TestEvaluatePinnedApprovals(t *testing.T) {
	const seen, edited = "sha256:aaaa", "sha256:bbbb"
	subject := func(hash string) Subject {
		s := topicSubject(busv1.OperationApply)
		s.SpecHash = hash
		return s
	}
	tests := []struct {
		name    string
		ticket  *busv1.ChangeTicket
		subject Subject
		policy  Policy
		allowed bool
		reason  string
		msg     string
	}{
		{name: "pinned spec unchanged", ticket: ticket(pinnedApproval("rita", pin(busv1.KindTopic, "fee-updated", seen))), subject: subject(seen), allowed: true, reason: busv1.ReasonTicketApproved},
		{name: "spec edited after a pinned approval", ticket: ticket(pinnedApproval("rita", pin(busv1.KindTopic, "fee-updated", seen))), subject: subject(edited), reason: busv1.ReasonSpecChanged, msg: "file a new ChangeTicket"},
		{name: "object the reviewer did not pin is not approved", ticket: ticket(pinnedApproval("rita", pin(busv1.KindSubscription, "fee-updated", seen))), subject: subject(edited), reason: busv1.ReasonNotReviewed, msg: "did not exist when rita approved"},
		{name: "window mode: object the reviewer did not pin is approved in any spec", ticket: ticket(pinnedApproval("rita", pin(busv1.KindSubscription, "fee-updated", seen))), subject: subject(edited), policy: Policy{Mode: ApprovalWindow}, allowed: true, reason: busv1.ReasonTicketApproved},
		{name: "window mode: reviewer pins still bind", ticket: ticket(pinnedApproval("rita", pin(busv1.KindTopic, "fee-updated", seen))), subject: subject(edited), policy: Policy{Mode: ApprovalWindow}, reason: busv1.ReasonSpecChanged},
		{name: "unpinned approval waits for the operator's pins", ticket: ticket(unpinnedApproval("rita")), subject: subject(seen), reason: busv1.ReasonAwaitingApproval, msg: "operator is pinning the specs approved by rita"},
		{name: "unpinned approval with operator pins of this spec", ticket: ticket(unpinnedApproval("rita"), operatorPinned("rita", pin(busv1.KindTopic, "fee-updated", seen))), subject: subject(seen), allowed: true, reason: busv1.ReasonTicketApproved},
		{name: "unpinned approval, object edited after the operator pinned it", ticket: ticket(unpinnedApproval("rita"), operatorPinned("rita", pin(busv1.KindTopic, "fee-updated", seen))), subject: subject(edited), reason: busv1.ReasonSpecChanged},
		{name: "unpinned approval, object created after the operator pinned", ticket: ticket(unpinnedApproval("rita"), operatorPinned("rita")), subject: subject(seen), reason: busv1.ReasonNotReviewed},
		{name: "reviewer pins win over operator pins", ticket: ticket(pinnedApproval("rita", pin(busv1.KindTopic, "fee-updated", seen)), operatorPinned("rita", pin(busv1.KindTopic, "fee-updated", edited))), subject: subject(seen), allowed: true, reason: busv1.ReasonTicketApproved},
		{name: "window mode: unpinned approval approves any spec", ticket: ticket(unpinnedApproval("rita")), subject: subject(edited), policy: Policy{Mode: ApprovalWindow}, allowed: true, reason: busv1.ReasonTicketApproved},
		{name: "a pin of a deleted object of the same name does not approve its successor", ticket: ticket(pinnedApproval("rita", busv1.PinnedSpec{Kind: busv1.KindTopic, Name: "fee-updated", SpecHash: seen, UID: "uid-1"})), subject: withUID(subject(seen), "uid-2"), reason: busv1.ReasonNotReviewed},
		{name: "a pin of this very object", ticket: ticket(pinnedApproval("rita", busv1.PinnedSpec{Kind: busv1.KindTopic, Name: "fee-updated", SpecHash: seen, UID: "uid-1"})), subject: withUID(subject(seen), "uid-1"), allowed: true, reason: busv1.ReasonTicketApproved},
		{name: "operator pins of another reviewer do not count", ticket: ticket(unpinnedApproval("rita"), operatorPinned("raj", pin(busv1.KindTopic, "fee-updated", seen))), subject: subject(seen), reason: busv1.ReasonAwaitingApproval},
		{name: "one of two approvals saw another spec", ticket: ticket(required(2), pinnedApproval("rita", pin(busv1.KindTopic, "fee-updated", seen)), pinnedApproval("raj", pin(busv1.KindTopic, "fee-updated", edited))), subject: subject(edited), reason: busv1.ReasonSpecChanged},
		{name: "two approvals of the same spec", ticket: ticket(required(2), pinnedApproval("rita", pin(busv1.KindTopic, "fee-updated", seen)), pinnedApproval("raj", pin(busv1.KindTopic, "fee-updated", seen))), subject: subject(seen), allowed: true, reason: busv1.ReasonTicketApproved},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Evaluate(tc.ticket, tc.subject, tc.policy, 0, now)
			if d.Allowed != tc.allowed || d.Reason != tc.reason || !strings.Contains(d.Message, tc.msg) {
				t.Fatalf("got allowed=%v %s: %s; want allowed=%v %s containing %q", d.Allowed, d.Reason, d.Message, tc.allowed, tc.reason, tc.msg)
			}
		})
	}
}

func TestSpecHashIsStableAndSensitive(t *testing.T) {
	a := busv1.TopicSpec{Partitions: 3, Config: map[string]busv1.ConfigValue{"retention.ms": "1", "cleanup.policy": "delete"}, ChangeTicket: "chg"}
	b := busv1.TopicSpec{Partitions: 3, Config: map[string]busv1.ConfigValue{"cleanup.policy": "delete", "retention.ms": "1"}, ChangeTicket: "chg"}
	ha, err := SpecHash(a)
	if err != nil {
		t.Fatal(err)
	}
	hb, _ := SpecHash(b)
	if ha != hb || !strings.HasPrefix(ha, "sha256:") || len(ha) != len("sha256:")+64 {
		t.Fatalf("equal specs hash %s and %s", ha, hb)
	}
	b.Partitions = 4
	if hc, _ := SpecHash(b); hc == ha {
		t.Fatal("a changed spec kept its hash")
	}
}

func TestParseApprovalMode(t *testing.T) {
	for in, want := range map[string]ApprovalMode{"": ApprovalPinned, "pinned": ApprovalPinned, " Window ": ApprovalWindow} {
		if got, err := ParseApprovalMode(in); err != nil || got != want {
			t.Errorf("%q: got %s, %v; want %s", in, got, err, want)
		}
	}
	if _, err := ParseApprovalMode("loose"); err == nil || !strings.Contains(err.Error(), "want pinned or window") {
		t.Errorf("loose: %v", err)
	}
}

func TestNeedsOperatorPin(t *testing.T) {
	tk := ticket(unpinnedApproval("rita"), pinnedApproval("raj", pin(busv1.KindTopic, "fee-updated", "sha256:aa")))
	if got := NeedsOperatorPin(tk); len(got) != 1 || got[0] != "rita" {
		t.Fatalf("got %v, want [rita]", got)
	}
	operatorPinned("rita")(tk)
	if got := NeedsOperatorPin(tk); len(got) != 0 {
		t.Fatalf("after the operator pinned: got %v", got)
	}
}

func withUID(s Subject, uid string) Subject {
	s.UID = uid
	return s
}
