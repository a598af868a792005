// Package integration runs hms-bus's API rules (CRD schemas and CEL rules,
// the ChangeTicket admission policies and the persona roles) on a real
// kube-apiserver, acting as the people who use it.
package integration

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/test/harness/testenv"
)

// env is the one control plane shared by every test in the package.
var env *testenv.Env

func TestMain(m *testing.M) {
	// envtest logs through controller-runtime; nothing here needs its chatter.
	logf.SetLogger(logr.Discard())
	os.Exit(testenv.RunMain(m, func(e *testenv.Env) { env = e }))
}

// The cast. Dave is both requester and reviewer, which is what it takes to
// reach the four-eyes rule; Oscar holds the reviewer role by a direct
// binding but is not in the reviewers group.
const (
	alice   = "alice"   // requester
	bob     = "bob"     // reviewer
	carol   = "carol"   // reviewer
	dave    = "dave"    // requester and reviewer
	erin    = "erin"    // auditor
	mallory = "mallory" // requester
	oscar   = "oscar"   // reviewer role, not in the reviewers group
)

func groupsOf(user string) []string {
	switch user {
	case alice, mallory:
		return []string{testenv.RequestersGroup}
	case bob, carol:
		return []string{testenv.ReviewersGroup}
	case dave:
		return []string{testenv.RequestersGroup, testenv.ReviewersGroup}
	case erin:
		return []string{testenv.AuditorsGroup}
	}
	return nil
}

// as returns a client acting as one of the cast.
func as(t *testing.T, user string) client.Client {
	t.Helper()
	c, err := env.As(user, groupsOf(user)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testContext bounds one request. It is not derived from t.Context(),
// which is already canceled when cleanups run.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantInvalid asserts err is a 422 Invalid whose message contains substr.
func wantInvalid(t *testing.T, err error, substr string) {
	t.Helper()
	wantStatus(t, err, apierrors.IsInvalid, "Invalid", substr)
}

// wantForbidden asserts err is a 403 Forbidden whose message contains substr.
func wantForbidden(t *testing.T, err error, substr string) {
	t.Helper()
	wantStatus(t, err, apierrors.IsForbidden, "Forbidden", substr)
}

func wantStatus(t *testing.T, err error, is func(error) bool, kind, substr string) {
	t.Helper()
	switch {
	case err == nil:
		t.Fatalf("request succeeded; want %s error containing %q", kind, substr)
	case !is(err):
		t.Fatalf("got error %v (reason %s); want %s containing %q", err, apierrors.ReasonForError(err), kind, substr)
	case !strings.Contains(err.Error(), substr):
		t.Fatalf("got %s error %q; want it to contain %q", kind, err.Error(), substr)
	}
}

func mustSucceed(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func newTopic(ns, name string) *busv1.Topic {
	return &busv1.Topic{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: busv1.TopicSpec{
			Partitions:   3,
			ChangeTicket: "chg-1",
		},
	}
}

func newSubscription(ns, name string) *busv1.Subscription {
	return &busv1.Subscription{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: busv1.SubscriptionSpec{
			Topics:       []busv1.TopicReference{{Name: "fee-updated"}},
			ChangeTicket: "chg-1",
		},
	}
}

func newTicket(ns, name, requester string) *busv1.ChangeTicket {
	return &busv1.ChangeTicket{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: busv1.ChangeTicketSpec{
			Reference:   "CHG-1042",
			Summary:     "FeeUpdated topic for the fee service",
			RequestedBy: requester,
			Covers:      []busv1.CoveredObject{{Kind: busv1.KindTopic, Name: "fee-updated"}},
			NotAfter:    metav1.NewTime(time.Now().Add(24 * time.Hour)),
		},
	}
}

// createTicket creates a ticket as its requester in a fresh namespace.
func createTicket(t *testing.T, requester string) *busv1.ChangeTicket {
	t.Helper()
	tk := newTicket(env.NamespaceT(t, "tk"), "chg-1", requester)
	mustSucceed(t, as(t, requester).Create(testContext(t), tk), "creating ticket as "+requester)
	return tk
}

func review(reviewer string) busv1.Review {
	return busv1.Review{Reviewer: reviewer, Time: metav1.Now(), Comment: "looks fine"}
}

// updateStatus reads the ticket as c's user, applies change and writes it
// back through the status subresource.
func updateStatus(t *testing.T, c client.Client, tk *busv1.ChangeTicket, change func(*busv1.ChangeTicketStatus)) error {
	t.Helper()
	ctx := testContext(t)
	cur := &busv1.ChangeTicket{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(tk), cur); err != nil {
		t.Fatalf("reading ticket %s: %v", tk.Name, err)
	}
	change(&cur.Status)
	return c.Status().Update(ctx, cur)
}

func approveAs(t *testing.T, user, named string, tk *busv1.ChangeTicket) error {
	t.Helper()
	return updateStatus(t, as(t, user), tk, func(s *busv1.ChangeTicketStatus) {
		s.Approvals = append(s.Approvals, review(named))
	})
}

func denyAs(t *testing.T, user, named string, tk *busv1.ChangeTicket) error {
	t.Helper()
	return updateStatus(t, as(t, user), tk, func(s *busv1.ChangeTicketStatus) {
		r := review(named)
		s.Denial = &r
	})
}

func getTicket(t *testing.T, tk *busv1.ChangeTicket) *busv1.ChangeTicket {
	t.Helper()
	cur := &busv1.ChangeTicket{}
	mustSucceed(t, env.Client.Get(testContext(t), client.ObjectKeyFromObject(tk), cur), "reading ticket")
	return cur
}

// eventually polls check until it returns nil or the deadline passes.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after 20s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// expectPolicyRejection is for polling until a policy or its params take
// effect: nil once err carries want, else what happened instead.
func expectPolicyRejection(err error, want string) error {
	switch {
	case err == nil:
		return errors.New("request succeeded")
	case !strings.Contains(err.Error(), want):
		return err
	}
	return nil
}
