package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/governance"
	"github.com/hms-platform/bus-operator/pkg/bus"
	"github.com/hms-platform/bus-operator/test/harness/testenv"
)

// env is a real kube-apiserver with the CRDs, the ChangeTicket admission
// policies and the persona roles installed, shared by the package's tests.
var env *testenv.Env

func TestMain(m *testing.M) {
	logf.SetLogger(logr.Discard())
	code := testenv.RunMain(m, func(e *testenv.Env) { env = e })
	closeSharedBroker() // started by the first test that needs a broker
	os.Exit(code)
}

// The cast, as in test/integration: alice requests, bob and carol review,
// dave does both, erin audits.
func groupsOf(user string) []string {
	switch user {
	case "alice":
		return []string{testenv.RequestersGroup}
	case "bob", "carol":
		return []string{testenv.ReviewersGroup}
	case "dave":
		return []string{testenv.RequestersGroup, testenv.ReviewersGroup}
	case "erin":
		return []string{testenv.AuditorsGroup}
	}
	return nil
}

func as(t *testing.T, user string) client.Client {
	t.Helper()
	c, err := env.As(user, groupsOf(user)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// kubeCtx bounds API calls; not t.Context(), which cleanups outlive.
func kubeCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fileTicket creates a ticket as its requester, as the policy demands, and
// the Topic it covers (once per namespace), since a reviewer approves what
// exists.
func fileTicket(t *testing.T, ns, name, requester string) client.ObjectKey {
	t.Helper()
	tp := &busv1.Topic{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fee-updated"}, Spec: busv1.TopicSpec{Partitions: 1, ChangeTicket: name}}
	if err := env.Client.Create(kubeCtx(t), tp); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating the covered Topic: %v", err)
	}
	return fileTicketOnly(t, ns, name, requester)
}

// fileTicketOnly creates a ticket without creating what it covers.
func fileTicketOnly(t *testing.T, ns, name, requester string) client.ObjectKey {
	t.Helper()
	tk := &busv1.ChangeTicket{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: busv1.ChangeTicketSpec{
			Reference: strings.ToUpper(name), Summary: "test change", RequestedBy: requester,
			Covers:   []busv1.CoveredObject{{Kind: busv1.KindTopic, Name: "fee-updated"}},
			NotAfter: metav1.NewTime(time.Now().Add(24 * time.Hour)),
		},
	}
	if err := as(t, requester).Create(kubeCtx(t), tk); err != nil {
		t.Fatalf("filing ticket %s as %s: %v", name, requester, err)
	}
	return client.ObjectKeyFromObject(tk)
}

func reviewBy(user, comment string) busv1.Review {
	return busv1.Review{Reviewer: user, Time: metav1.Now(), Comment: comment}
}

func getTicket(t *testing.T, key client.ObjectKey) *busv1.ChangeTicket {
	t.Helper()
	var tk busv1.ChangeTicket
	if err := env.Client.Get(kubeCtx(t), key, &tk); err != nil {
		t.Fatal(err)
	}
	return &tk
}

func reviewers(rs []busv1.Review) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Reviewer)
	}
	return out
}

func TestCurrentUserFollowsImpersonation(t *testing.T) {
	for _, user := range []string{"bob", "erin"} {
		got, err := currentUser(kubeCtx(t), as(t, user))
		if err != nil || got != user {
			t.Errorf("currentUser as %s = %q, %v", user, got, err)
		}
	}
}

func TestApprove(t *testing.T) {
	ns := env.NamespaceT(t, "approve")
	key := fileTicket(t, ns, "chg-1", "alice")
	ctx := kubeCtx(t)

	msg, err := approveTicket(ctx, as(t, "bob"), key, reviewBy("bob", "looks right"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg, "approved ChangeTicket "+ns+"/chg-1 (CHG-1) as bob: 1 of 1") {
		t.Errorf("message = %q", msg)
	}
	tk := getTicket(t, key)
	if len(tk.Status.Approvals) != 1 || tk.Status.Approvals[0].Reviewer != "bob" || tk.Status.Approvals[0].Comment != "looks right" {
		t.Fatalf("approvals = %+v", tk.Status.Approvals)
	}

	if !strings.Contains(msg, "pinned the spec of 1 object(s)") || strings.Contains(msg, "do not exist yet") {
		t.Errorf("the message must say what the approval pinned: %q", msg)
	}

	msg, err = approveTicket(ctx, as(t, "bob"), key, reviewBy("bob", "again"))
	if err != nil || !strings.Contains(msg, "bob already approved") {
		t.Fatalf("second approval: %q, %v", msg, err)
	}
	if got := getTicket(t, key).Status.Approvals; len(got) != 1 {
		t.Fatalf("second approval changed the list: %+v", got)
	}
}

func TestApproveRejectedByPolicyShowsItsMessage(t *testing.T) {
	ns := env.NamespaceT(t, "four-eyes")
	own := fileTicket(t, ns, "chg-own", "dave")
	_, err := approveTicket(kubeCtx(t), as(t, "dave"), own, reviewBy("dave", ""))
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "rejected by the API server") || !strings.Contains(err.Error(), "four-eyes") {
		t.Fatalf("self-approval: err = %v; want the policy's four-eyes refusal", err)
	}

	// A requester may not write ticket status at all (RBAC, not the policy).
	other := fileTicket(t, ns, "chg-other", "dave")
	_, err = approveTicket(kubeCtx(t), as(t, "alice"), other, reviewBy("alice", ""))
	if !apierrors.IsForbidden(err) {
		t.Fatalf("approval by a requester: err = %v; want Forbidden", err)
	}
	if got := getTicket(t, other).Status.Approvals; len(got) != 0 {
		t.Fatalf("refused approvals were recorded: %+v", got)
	}
}

func TestConcurrentApprovalsAreBothKept(t *testing.T) {
	ns := env.NamespaceT(t, "concurrent")
	key := fileTicket(t, ns, "chg-2", "alice")
	ctx := kubeCtx(t)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, user := range []string{"bob", "carol"} {
		wg.Go(func() {
			_, errs[i] = approveTicket(ctx, as(t, user), key, reviewBy(user, ""))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("approval %d: %v", i, err)
		}
	}
	got := reviewers(getTicket(t, key).Status.Approvals)
	if len(got) != 2 || !strings.Contains(strings.Join(got, ","), "bob") || !strings.Contains(strings.Join(got, ","), "carol") {
		t.Fatalf("approvals = %v, want bob and carol (the later write must not overwrite the earlier)", got)
	}
}

// racingClient lets another reviewer approve between our read and our
// patch, once, so the optimistic-lock conflict and its retry always happen.
type racingClient struct {
	client.Client
	interleave func()
	patches    int
}

func (r *racingClient) Status() client.SubResourceWriter {
	return &racingWriter{SubResourceWriter: r.Client.Status(), r: r}
}

type racingWriter struct {
	client.SubResourceWriter
	r *racingClient
}

func (w *racingWriter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	w.r.patches++
	if f := w.r.interleave; f != nil {
		w.r.interleave = nil
		f()
	}
	return w.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}

func TestApprovalRetriesOnConflict(t *testing.T) {
	ns := env.NamespaceT(t, "conflict")
	key := fileTicket(t, ns, "chg-6", "alice")
	ctx := kubeCtx(t)
	c := &racingClient{Client: as(t, "bob"), interleave: func() {
		if _, err := approveTicket(ctx, as(t, "carol"), key, reviewBy("carol", "")); err != nil {
			t.Errorf("carol's approval: %v", err)
		}
	}}
	if _, err := approveTicket(ctx, c, key, reviewBy("bob", "")); err != nil {
		t.Fatal(err)
	}
	if c.patches != 2 {
		t.Errorf("bob's approval took %d patches, want 2 (a conflict, then a retry)", c.patches)
	}
	if got := reviewers(getTicket(t, key).Status.Approvals); !reflect.DeepEqual(got, []string{"carol", "bob"}) {
		t.Fatalf("approvals = %v, want carol's kept and bob's added", got)
	}
}

func TestDenyEndsTheTicket(t *testing.T) {
	ns := env.NamespaceT(t, "deny")
	key := fileTicket(t, ns, "chg-3", "alice")
	ctx := kubeCtx(t)
	if _, err := denyTicket(ctx, as(t, "carol"), key, reviewBy("carol", "retention too long")); err != nil {
		t.Fatal(err)
	}
	if d := getTicket(t, key).Status.Denial; d == nil || d.Reviewer != "carol" || d.Comment != "retention too long" {
		t.Fatalf("denial = %+v", d)
	}
	_, err := approveTicket(ctx, as(t, "bob"), key, reviewBy("bob", ""))
	if err == nil || !strings.Contains(err.Error(), "denied by carol") {
		t.Fatalf("approving a denied ticket: err = %v", err)
	}
}

func TestResolveTicketByReference(t *testing.T) {
	ns := env.NamespaceT(t, "resolve")
	fileTicket(t, ns, "chg-4", "alice")
	c := as(t, "bob")
	for _, arg := range []string{"chg-4", "CHG-4"} {
		if name, err := resolveTicket(kubeCtx(t), c, ns, arg); err != nil || name != "chg-4" {
			t.Errorf("resolveTicket(%q) = %q, %v", arg, name, err)
		}
	}
	if _, err := resolveTicket(kubeCtx(t), c, ns, "CHG-404"); err == nil {
		t.Error("unknown ticket: no error")
	}
}

// TestCLI runs the commands as a user would, through a kubeconfig and
// kubectl-style impersonation flags.
func TestCLI(t *testing.T) {
	ns := env.NamespaceT(t, "cli")
	fileTicket(t, ns, "chg-5", "alice")
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := env.WriteKubeconfig(kubeconfig); err != nil {
		t.Fatal(err)
	}
	run := func(user string, args ...string) (string, error) {
		var out, errOut bytes.Buffer
		root := newRootCmd("kubectl-bus", &out, &errOut)
		flags := []string{"--kubeconfig", kubeconfig, "-n", ns, "--as", user}
		for _, g := range groupsOf(user) {
			flags = append(flags, "--as-group", g)
		}
		root.SetArgs(append(args, flags...))
		err := root.ExecuteContext(kubeCtx(t))
		return out.String() + errOut.String(), err
	}

	out, err := run("dave", "approve", "CHG-5", "--comment", "fine")
	if err != nil || !strings.Contains(out, "approved ChangeTicket "+ns+"/chg-5 (CHG-5) as dave") {
		t.Fatalf("approve as dave: %v\n%s", err, out)
	}
	out, err = run("alice", "approve", "chg-5")
	if err == nil || !strings.Contains(out, "forbidden") {
		t.Fatalf("approve as alice (a requester): %v\n%s", err, out)
	}
	out, err = run("erin", "tickets")
	if err != nil || !strings.Contains(out, "chg-5") || !strings.Contains(out, "1/1") {
		t.Fatalf("tickets as erin: %v\n%s", err, out)
	}
	out, err = run("erin", "status")
	if err != nil || !strings.Contains(out, "ChangeTickets:") || !strings.Contains(out, "chg-5") {
		t.Fatalf("status as erin: %v\n%s", err, out)
	}
}

func TestRotate(t *testing.T) {
	ns := env.NamespaceT(t, "rotate")
	sub := newSubscription(ns, "payment-fees")
	if err := as(t, "alice").Create(kubeCtx(t), sub); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	stamp, err := requestRotation(kubeCtx(t), as(t, "alice"), client.ObjectKeyFromObject(sub), at)
	if err != nil {
		t.Fatal(err)
	}
	var got busv1.Subscription
	if err := env.Client.Get(kubeCtx(t), client.ObjectKeyFromObject(sub), &got); err != nil {
		t.Fatal(err)
	}
	if stamp != "2030-01-02T03:04:05Z" || got.Annotations[busv1.AnnotationRotate] != stamp {
		t.Fatalf("annotation = %q (stamp %q)", got.Annotations[busv1.AnnotationRotate], stamp)
	}
	if _, err := requestRotation(kubeCtx(t), as(t, "erin"), client.ObjectKeyFromObject(sub), at); !apierrors.IsForbidden(err) {
		t.Fatalf("rotation by an auditor: err = %v, want Forbidden", err)
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

func TestSubscriptionCredentials(t *testing.T) {
	ns := env.NamespaceT(t, "creds")
	ctx := kubeCtx(t)
	sub := newSubscription(ns, "payment-fees")
	if err := env.Client.Create(ctx, sub); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(sub)
	if _, err := subscriptionCredentials(ctx, env.Client, ns, sub.Name); err == nil || !strings.Contains(err.Error(), "no credentials yet") {
		t.Fatalf("before the Secret exists: err = %v", err)
	}

	want := bus.Credentials{Bootstrap: []string{"b0:9092"}, Mechanism: bus.MechanismSCRAMSHA512, Username: ns + ".payment-fees", Password: "pw", ConsumerGroup: ns + ".payment-fees", Topics: []string{"FeeUpdated"}}
	writeSecret := func(name string) {
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: bus.SecretData(want)}
		if err := env.Client.Create(ctx, secret); err != nil {
			t.Fatal(err)
		}
	}
	// The default name, before the operator has written status.
	writeSecret("payment-fees-bus-credentials")
	got, err := subscriptionCredentials(ctx, env.Client, ns, sub.Name)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("default Secret: %+v, %v", got, err)
	}

	// status.secretName wins once the operator has recorded it.
	want.Password = "rotated"
	writeSecret("custom-name")
	if err := env.Client.Get(ctx, key, sub); err != nil {
		t.Fatal(err)
	}
	sub.Status.SecretName = "custom-name"
	if err := env.Client.Status().Update(ctx, sub); err != nil {
		t.Fatal(err)
	}
	got, err = subscriptionCredentials(ctx, env.Client, ns, sub.Name)
	if err != nil || got.Password != "rotated" {
		t.Fatalf("status.secretName: password %q, %v", got.Password, err)
	}
}

func TestApprovePinsTheSpecsItApproves(t *testing.T) {
	ns := env.NamespaceT(t, "pin")
	ctx := kubeCtx(t)
	tp := &busv1.Topic{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fee-updated"},
		Spec:       busv1.TopicSpec{TopicName: "FeeUpdated", Partitions: 3, ChangeTicket: "chg-1"},
	}
	if err := as(t, "alice").Create(ctx, tp); err != nil {
		t.Fatal(err)
	}
	key := fileTicket(t, ns, "chg-1", "alice")
	msg, err := approveTicket(ctx, as(t, "bob"), key, reviewBy("bob", ""))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg, "pinned the spec of 1 object(s)") || strings.Contains(msg, "not pinned") {
		t.Errorf("message = %q", msg)
	}
	// The pin is the hash the operator computes from the stored spec
	// (defaults included).
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(tp), tp); err != nil {
		t.Fatal(err)
	}
	want, err := governance.SpecHash(tp.Spec)
	if err != nil {
		t.Fatal(err)
	}
	pins := getTicket(t, key).Status.Approvals[0].Pinned
	if len(pins) != 1 || pins[0].Kind != busv1.KindTopic || pins[0].Name != "fee-updated" || pins[0].SpecHash != want || pins[0].UID != string(tp.UID) {
		t.Fatalf("pins = %+v, want %s", pins, want)
	}
}

// countingClient counts the reads a command makes.
type countingClient struct {
	client.Client
	gets, lists atomic.Int32
}

func (c *countingClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c.gets.Add(1)
	return c.Client.Get(ctx, key, obj, opts...)
}

func (c *countingClient) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	c.lists.Add(1)
	return c.Client.List(ctx, list, opts...)
}

// TestApproveReadsOnlyWhatItCovers: a reviewer approving a ticket of 100
// objects waits for reads of those objects only, never for a list of a
// namespace that may hold thousands, and a few of them at a time.
func TestApproveReadsOnlyWhatItCovers(t *testing.T) {
	ns := env.NamespaceT(t, "big")
	ctx := kubeCtx(t)
	var covered []busv1.CoveredObject
	for i := range 150 {
		kind := busv1.KindTopic
		var obj client.Object = &busv1.Topic{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("t-%03d", i)}, Spec: busv1.TopicSpec{Partitions: 1, ChangeTicket: "chg-big"}}
		if i%2 == 1 {
			kind = busv1.KindSubscription
			obj = &busv1.Subscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("s-%03d", i)},
				Spec: busv1.SubscriptionSpec{Topics: []busv1.TopicReference{{Name: "t-000"}}, ChangeTicket: "chg-big"}}
		}
		if i < 98 || i >= 100 { // 98 and 99 do not exist yet; 100 and up are not covered
			if err := as(t, "alice").Create(ctx, obj); err != nil {
				t.Fatal(err)
			}
		}
		if i < 100 {
			covered = append(covered, busv1.CoveredObject{Kind: kind, Name: obj.GetName()})
		}
	}
	tk := &busv1.ChangeTicket{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "chg-big"},
		Spec:       busv1.ChangeTicketSpec{Reference: "CHG-BIG", Summary: "a big change", RequestedBy: "alice", Covers: covered, NotAfter: metav1.NewTime(time.Now().Add(time.Hour))},
	}
	if err := as(t, "alice").Create(ctx, tk); err != nil {
		t.Fatal(err)
	}
	c := &countingClient{Client: as(t, "bob")}
	msg, err := approveTicket(ctx, c, client.ObjectKeyFromObject(tk), reviewBy("bob", ""))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg, "pinned the spec of 98 object(s)") || !strings.Contains(msg, "not approved by this review, since they do not exist yet: Topic t-098, Subscription s-099") {
		t.Fatalf("message = %q", msg)
	}
	if g, l := c.gets.Load(), c.lists.Load(); g != 101 || l != 0 {
		t.Fatalf("approving 100 objects made %d gets and %d lists; want the ticket and each covered object read once, nothing listed", g, l)
	}
	if pins := getTicket(t, client.ObjectKeyFromObject(tk)).Status.Approvals[0].Pinned; len(pins) != 98 {
		t.Fatalf("%d pins, want 98", len(pins))
	}
}

// TestApproveRefusesATicketWithNothingToApprove: nothing it covers exists.
func TestApproveRefusesATicketWithNothingToApprove(t *testing.T) {
	ns := env.NamespaceT(t, "empty")
	key := fileTicketOnly(t, ns, "chg-empty", "alice")
	_, err := approveTicket(kubeCtx(t), as(t, "bob"), key, reviewBy("bob", ""))
	if err == nil || !strings.Contains(err.Error(), "none of the objects it covers exists yet (Topic fee-updated)") {
		t.Fatalf("err = %v", err)
	}
	if len(getTicket(t, key).Status.Approvals) != 0 {
		t.Fatal("an approval was recorded")
	}
}
