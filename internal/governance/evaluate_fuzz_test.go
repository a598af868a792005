package governance

import (
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
)

// ticketFrom builds a ticket from fuzz input. reviews is a list of
// "reviewer@offset[|Kind/name=hash~uid;...]" separated by ","; the
// offset (seconds after creation) dates the review; a review without pins
// pins nothing; opPins is "reviewer|pins" the same way. covers is
// "Kind/name[+op]..." separated by ",".
func ticketFrom(requester, covers, reviews, denial string, required int32, windowSecs int64, opPins string) *busv1.ChangeTicket {
	created := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	t := &busv1.ChangeTicket{
		ObjectMeta: metav1.ObjectMeta{Namespace: "fees", Name: "chg-1", CreationTimestamp: metav1.NewTime(created)},
		Spec: busv1.ChangeTicketSpec{
			Reference: "CHG-1", RequestedBy: requester, RequiredApprovals: required,
			NotAfter: metav1.NewTime(created.Add(time.Duration(windowSecs) * time.Second)),
		},
	}
	for _, c := range strings.Split(covers, ",") {
		if c == "" {
			continue
		}
		kn, ops, _ := strings.Cut(c, "+")
		kind, name, _ := strings.Cut(kn, "/")
		cov := busv1.CoveredObject{Kind: busv1.CoveredKind(kind), Name: name}
		for _, op := range strings.Split(ops, "+") {
			if op != "" {
				cov.Operations = append(cov.Operations, busv1.Operation(op))
			}
		}
		t.Spec.Covers = append(t.Spec.Covers, cov)
	}
	pinsOf := func(s string) []busv1.PinnedSpec {
		var pins []busv1.PinnedSpec
		for _, p := range strings.Split(s, ";") {
			if p == "" {
				continue
			}
			kn, rest, _ := strings.Cut(p, "=")
			hash, uid, _ := strings.Cut(rest, "~")
			kind, name, _ := strings.Cut(kn, "/")
			pins = append(pins, busv1.PinnedSpec{Kind: busv1.CoveredKind(kind), Name: name, SpecHash: hash, UID: uid})
		}
		return pins
	}
	offset := func(s string) time.Time {
		var secs int64
		for _, r := range s {
			if r >= '0' && r <= '9' && secs < 1<<40 {
				secs = secs*10 + int64(r-'0')
			}
		}
		return created.Add(time.Duration(secs) * time.Second)
	}
	for _, r := range strings.Split(reviews, ",") {
		if r == "" {
			continue
		}
		who, rest, _ := strings.Cut(r, "@")
		at, pins, _ := strings.Cut(rest, "|")
		t.Status.Approvals = append(t.Status.Approvals, busv1.Review{Reviewer: who, Time: metav1.NewTime(offset(at)), Pinned: pinsOf(pins)})
	}
	for _, r := range strings.Split(opPins, ",") {
		if who, pins, ok := strings.Cut(r, "|"); ok {
			t.Status.OperatorPins = append(t.Status.OperatorPins, busv1.OperatorPin{Reviewer: who, Pinned: pinsOf(pins)})
		}
	}
	if who, at, ok := strings.Cut(denial, "@"); ok {
		t.Status.Denial = &busv1.Review{Reviewer: who, Time: metav1.NewTime(offset(at))}
	}
	return t
}

// FuzzEvaluate checks the governance decision against its rules, whatever
// the ticket: an allowed change always has a ticket in the object's own
// namespace that covers it for the operation, is not denied or expired,
// and has enough approvals, none by the requester, each (in pinned mode)
// pinning exactly this spec of this object. A refusal always says why.
func FuzzEvaluate(f *testing.F) {
	f.Add("alice", "Topic/fee-updated", "rita@10|Topic/fee-updated=sha256:aa~u1", "", int32(1), int64(86400), "", "Topic", "fee-updated", "Apply", "chg-1", "sha256:aa", "u1", int64(100), true)
	f.Add("alice", "Topic/fee-updated+Delete", "rita@10", "", int32(1), int64(86400), "rita|Topic/fee-updated=sha256:aa", "Topic", "fee-updated", "Delete", "chg-1", "sha256:aa", "", int64(100), true)
	f.Add("alice", "Topic/fee-updated", "alice@1|Topic/fee-updated=sha256:aa,bob@2", "", int32(2), int64(86400), "", "Topic", "fee-updated", "Apply", "chg-1", "sha256:aa", "", int64(50), false)
	f.Add("alice", "Subscription/payment", "rita@10,sam@20", "sam@15", int32(2), int64(3600), "", "Subscription", "payment", "Apply", "fees/chg-1", "sha256:bb", "", int64(30), false)
	f.Add("alice", "Topic/x", "rita@10|Topic/x=sha256:aa~old", "", int32(0), int64(10), "", "Topic", "x", "Apply", "other/chg-1", "sha256:aa", "new", int64(5), true)
	f.Fuzz(func(t *testing.T, requester, covers, reviews, denial string, required int32, windowSecs int64, opPins, kind, name, op, ref, hash, uid string, nowSecs int64, pinned bool) {
		required %= 5
		windowSecs %= 1 << 32
		nowSecs %= 1 << 32
		tk := ticketFrom(requester, covers, reviews, denial, required, windowSecs, opPins)
		p := DefaultPolicy
		if !pinned {
			p.Mode = ApprovalWindow
		}
		now := tk.CreationTimestamp.Add(time.Duration(nowSecs) * time.Second)
		s := Subject{Kind: busv1.CoveredKind(kind), Namespace: "fees", Name: name, Operation: busv1.Operation(op), TicketRef: ref, SpecHash: hash, UID: uid}
		d := Evaluate(tk, s, p, 0, now)
		if d.SpecHash != hash {
			t.Fatalf("decision carries spec hash %q, want %q", d.SpecHash, hash)
		}
		if !d.Allowed {
			if d.Reason == "" || d.Message == "" {
				t.Fatalf("a refusal without reason or message: %+v", d)
			}
			if nothing := Evaluate(nil, s, p, 0, now); nothing.Allowed {
				t.Fatal("allowed without a ticket")
			}
			return
		}
		// Allowed: every rule must hold.
		if ns, _ := TicketKey(s.Namespace, ref); ns != s.Namespace || strings.TrimSpace(ref) == "" {
			t.Fatalf("allowed through ticket reference %q from namespace %s", ref, s.Namespace)
		}
		if !covers_(tk, s) {
			t.Fatalf("allowed %s %s for %s, which the ticket does not cover (%v)", kind, name, op, tk.Spec.Covers)
		}
		if tk.Status.Denial != nil {
			t.Fatal("allowed under a denied ticket")
		}
		if !now.Before(ExpiresAt(tk, p)) {
			t.Fatalf("allowed at %s, after the window closed at %s", now, ExpiresAt(tk, p))
		}
		if d.Ticket == nil {
			t.Fatal("allowed without naming the ticket")
		}
		approvers := d.Ticket.ApprovedBy
		if int32(len(approvers)) < max(required, p.MinApprovals, 1) {
			t.Fatalf("allowed with %d approvals, %d required", len(approvers), max(required, p.MinApprovals, 1))
		}
		seen := map[string]bool{}
		for _, who := range approvers {
			if who == tk.Spec.RequestedBy {
				t.Fatalf("the requester %q counts as an approver", who)
			}
			if seen[who] {
				t.Fatalf("approver %q counted twice", who)
			}
			seen[who] = true
			i := slices.IndexFunc(tk.Status.Approvals, func(r busv1.Review) bool { return r.Reviewer == who })
			if i < 0 {
				t.Fatalf("approver %q has no approval", who)
			}
			if !pinned {
				continue
			}
			pins, ok := PinsOf(tk, tk.Status.Approvals[i])
			if !ok || !slices.ContainsFunc(pins, func(ps busv1.PinnedSpec) bool {
				return ps.Kind == s.Kind && ps.Name == s.Name && ps.SpecHash == hash && (ps.UID == "" || uid == "" || ps.UID == uid)
			}) {
				t.Fatalf("pinned mode allowed %s %s (hash %s, uid %s) through %s, whose pins %v do not bind it", kind, name, hash, uid, who, pins)
			}
		}
	})
}

// covers_ restates covers for the fuzzer: it must not share the code it
// checks.
func covers_(t *busv1.ChangeTicket, s Subject) bool {
	for _, c := range t.Spec.Covers {
		if c.Kind == s.Kind && c.Name == s.Name {
			if len(c.Operations) == 0 {
				return s.Operation == busv1.OperationApply
			}
			return slices.Contains(c.Operations, s.Operation)
		}
	}
	return false
}

// TestFuzzEvaluateSeedsReachAnApproval keeps FuzzEvaluate's allowed branch
// reachable: its first seeds must be allowed in both modes' sense.
func TestFuzzEvaluateSeedsReachAnApproval(t *testing.T) {
	created := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	tk := ticketFrom("alice", "Topic/fee-updated", "rita@10|Topic/fee-updated=sha256:aa~u1", "", 1, 86400, "")
	s := Subject{Kind: busv1.KindTopic, Namespace: "fees", Name: "fee-updated", Operation: busv1.OperationApply, TicketRef: "chg-1", SpecHash: "sha256:aa", UID: "u1"}
	if d := Evaluate(tk, s, DefaultPolicy, 0, created.Add(100*time.Second)); !d.Allowed {
		t.Fatalf("seed 1 refused: %s", d.Message)
	}
	tk = ticketFrom("alice", "Topic/fee-updated+Delete", "rita@10", "", 1, 86400, "rita|Topic/fee-updated=sha256:aa")
	s.Operation, s.UID = busv1.OperationDelete, ""
	if d := Evaluate(tk, s, DefaultPolicy, 0, created.Add(100*time.Second)); !d.Allowed {
		t.Fatalf("seed 2 refused: %s", d.Message)
	}
}
