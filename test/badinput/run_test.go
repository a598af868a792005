package badinput

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/kafka"
)

// minCases keeps the corpus from shrinking unnoticed.
const minCases = 60

// waitFor bounds every wait for a condition. The operator answers in
// milliseconds; the margin is for a loaded 2-core machine.
const waitFor = 45 * time.Second

// TestBadInput runs every case in testdata/, each in its own namespace and
// in parallel: cases share the API server, the broker and the operator but
// no names (every broker name a case can create carries its namespace).
func TestBadInput(t *testing.T) {
	cases, err := loadCases("testdata")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < minCases {
		t.Fatalf("the corpus has %d cases, fewer than %d", len(cases), minCases)
	}
	// Runs after every parallel case has finished.
	t.Cleanup(func() { checkOperatorHealthy(t) })
	for _, lc := range cases {
		t.Run(lc.name, func(t *testing.T) {
			t.Parallel()
			runCase(t, lc)
		})
	}
}

// checkOperatorHealthy fails the run if the operator stopped or logged a
// panic (controller-runtime recovers reconciler panics and logs them, so a
// crash would otherwise pass unnoticed).
func checkOperatorHealthy(t *testing.T) {
	select {
	case <-opDone:
		t.Errorf("the operator stopped while the cases ran")
	default:
	}
	for _, line := range strings.Split(opLogs.String(), "\n") {
		low := strings.ToLower(line)
		if strings.Contains(low, "panic") || strings.Contains(low, "runtime error") {
			t.Errorf("the operator logged a panic: %s", line)
		}
	}
}

// runner runs one case.
type runner struct {
	t    *testing.T
	c    *caseFile
	data templateData
	// objects are every object the case created or tried to create, so
	// the broker check knows the case's names.
	objects []*unstructured.Unstructured
	// renamed holds topicName values from updates, which must not reach
	// the broker either.
	renamed []string
	// cli is the last CLI run.
	cli cliResult
}

type cliResult struct {
	stdout, stderr string
	exitCode       int
}

func runCase(t *testing.T, lc loadedCase) {
	data := templateData{NS: env.NamespaceT(t, nsPrefix(lc.name))}
	if lc.usesNS2() {
		data.NS2 = env.NamespaceT(t, "other")
	}
	c, err := lc.render(data)
	if err != nil {
		t.Fatalf("%s: %v", lc.path, err)
	}
	t.Logf("case: %s (namespace %s)", lc.title, data.NS)
	for _, b := range lc.bugs {
		t.Logf("known bug, pinned to its current behaviour (see %s): %s", lc.path, b)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logOperatorLines(t, data)
		}
	})
	r := &runner{t: t, c: c, data: data}
	r.checkIsolation()
	for i, s := range c.Setup {
		if err := r.do(s, "alice"); err != nil {
			t.Fatalf("setup step %d: %v", i+1, err)
		}
	}
	before := r.snapshot(*c.Action)
	err = r.do(*c.Action, c.As)
	switch c.Expect.Outcome {
	case "rejected":
		r.expectRejected(err, before)
	case "condition":
		if err != nil {
			t.Fatalf("action failed: %v; want it accepted and the object to reach %s=%s/%s", err, c.Expect.Type, c.Expect.Status, c.Expect.Reason)
		}
		for i, s := range c.After {
			if err := r.do(s, "alice"); err != nil {
				t.Fatalf("after step %d: %v", i+1, err)
			}
		}
		r.expectCondition()
	case "exit-error", "exit-ok":
		if err != nil {
			t.Fatalf("running hmsbus: %v", err)
		}
		r.expectCLI()
	}
	r.checkBroker()
}

// nsPrefix makes the case name a namespace prefix, so a namespace in the
// operator's logs says which case it belongs to.
func nsPrefix(name string) string {
	p := strings.Trim(regexp.MustCompile(`[^a-z0-9-]+`).ReplaceAllString(strings.ToLower(name), "-"), "-")
	if len(p) > 40 {
		p = strings.TrimRight(p[:40], "-")
	}
	return p
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// clientFor acts as a persona.
func clientFor(persona string) (client.Client, error) {
	if persona == "admin" {
		return env.Client, nil
	}
	return env.As(persona, personas[persona]...)
}

// do runs one step as persona (unless the step names its own).
func (r *runner) do(s step, persona string) error {
	if s.As != "" {
		persona = s.As
	}
	ctx := ctxT(r.t)
	switch {
	case s.Ticket != nil:
		return r.fileTicket(ctx, persona, s.Ticket)
	case s.Create != nil:
		return r.create(ctx, persona, s.Create)
	case s.Update != nil:
		return r.update(ctx, persona, s.Update)
	case s.Delete != nil:
		c, err := clientFor(persona)
		if err != nil {
			return err
		}
		return c.Delete(ctx, r.ref(*s.Delete))
	case s.Approve != "":
		ns, name := r.ticketKey(s.Approve)
		return env.Approve(ctx, ns, name, reviewerOr(s.As))
	case s.Deny != "":
		ns, name := r.ticketKey(s.Deny)
		return env.Deny(ctx, ns, name, reviewerOr(s.As))
	case s.Review != nil:
		return r.review(ctx, persona, s.Review)
	case s.Wait != nil:
		return r.wait(s.Wait)
	case s.CLI != nil:
		return r.runCLI(ctx, persona, s.CLI)
	}
	return errors.New("empty step")
}

// ticketKey reads "name" or "namespace/name".
func (r *runner) ticketKey(ref string) (string, string) {
	if ns, name, ok := strings.Cut(ref, "/"); ok {
		return ns, name
	}
	return r.data.NS, ref
}

func reviewerOr(as string) string {
	if as == "" {
		return "rita"
	}
	return as
}

func (r *runner) ns(ns string) string {
	if ns == "" {
		return r.data.NS
	}
	return ns
}

var kinds = map[string]schema.GroupVersionKind{
	"Topic":        busv1.GroupVersion.WithKind("Topic"),
	"Subscription": busv1.GroupVersion.WithKind("Subscription"),
	"ChangeTicket": busv1.GroupVersion.WithKind("ChangeTicket"),
	"Secret":       {Version: "v1", Kind: "Secret"},
	"ConfigMap":    {Version: "v1", Kind: "ConfigMap"},
}

// ref is an empty object of ref's kind, name and namespace.
func (r *runner) ref(ref objectRef) *unstructured.Unstructured {
	gvk, ok := kinds[ref.Kind]
	if !ok {
		r.t.Fatalf("unknown kind %q", ref.Kind)
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	u.SetNamespace(r.ns(ref.Namespace))
	u.SetName(ref.Name)
	return u
}

func (r *runner) get(ref objectRef) (*unstructured.Unstructured, error) {
	u := r.ref(ref)
	err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(u), u)
	return u, err
}

func (r *runner) fileTicket(ctx context.Context, persona string, ts *ticketStep) error {
	notAfter := time.Hour
	if ts.NotAfter != "" {
		d, err := time.ParseDuration(ts.NotAfter)
		if err != nil {
			return fmt.Errorf("ticket notAfter: %w", err)
		}
		notAfter = d
	}
	tk := &busv1.ChangeTicket{
		ObjectMeta: metav1.ObjectMeta{Namespace: r.ns(ts.Namespace), Name: ts.Name},
		Spec: busv1.ChangeTicketSpec{
			Reference: strings.ToUpper(ts.Name), Summary: "bad-input case " + r.t.Name(), RequestedBy: persona,
			NotAfter: metav1.NewTime(time.Now().Add(notAfter)), RequiredApprovals: ts.RequiredApprovals,
		},
	}
	for _, cov := range ts.Covers {
		kindName, ops, _ := strings.Cut(cov, ":")
		kind, name, ok := strings.Cut(kindName, "/")
		if !ok {
			return fmt.Errorf("ticket covers %q: want Kind/name[:Op,Op]", cov)
		}
		co := busv1.CoveredObject{Kind: busv1.CoveredKind(kind), Name: name}
		if ops != "" {
			for _, op := range strings.Split(ops, ",") {
				co.Operations = append(co.Operations, busv1.Operation(op))
			}
		}
		tk.Spec.Covers = append(tk.Spec.Covers, co)
	}
	c, err := clientFor(persona)
	if err != nil {
		return err
	}
	if err := c.Create(ctx, tk); err != nil {
		return fmt.Errorf("filing ticket %s as %s: %w", ts.Name, persona, err)
	}
	return nil
}

func (r *runner) create(ctx context.Context, persona string, obj map[string]any) error {
	u := &unstructured.Unstructured{Object: deepCopy(obj)}
	if u.GetNamespace() == "" {
		u.SetNamespace(r.data.NS)
	}
	r.objects = append(r.objects, u.DeepCopy())
	c, err := clientFor(persona)
	if err != nil {
		return err
	}
	return c.Create(ctx, u)
}

// deepCopy copies a decoded case object, so a retried or rendered case
// never shares maps with the one the client mutates.
func deepCopy(m map[string]any) map[string]any {
	return runtime.DeepCopyJSON(m)
}

func (r *runner) update(ctx context.Context, persona string, us *updateStep) error {
	if us.Kind == "Topic" {
		if spec, ok := us.Patch["spec"].(map[string]any); ok {
			if name, ok := spec["topicName"].(string); ok {
				r.renamed = append(r.renamed, name)
			}
		}
	}
	body, err := json.Marshal(us.Patch)
	if err != nil {
		return err
	}
	c, err := clientFor(persona)
	if err != nil {
		return err
	}
	u := r.ref(us.objectRef)
	patch := client.RawPatch(types.MergePatchType, body)
	if us.Status {
		return c.Status().Patch(ctx, u, patch)
	}
	return c.Patch(ctx, u, patch)
}

// review writes an approval or denial naming rs.Approve/rs.Deny, as the
// persona, the way a reviewer using kubectl would: read the ticket, add the
// entry, update the status subresource. The operator writes the same status,
// so a conflict is retried on a fresh read, as kubectl edit would be; any
// other refusal is the outcome under test.
func (r *runner) review(ctx context.Context, persona string, rs *reviewStep) error {
	c, err := clientFor(persona)
	if err != nil {
		return err
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		tk := &busv1.ChangeTicket{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: r.ns(rs.Namespace), Name: rs.Ticket}, tk); err != nil {
			return err
		}
		if rs.Approve != "" {
			tk.Status.Approvals = append(tk.Status.Approvals, busv1.Review{Reviewer: rs.Approve, Time: metav1.Now(), Comment: "bad-input case"})
		} else {
			tk.Status.Denial = &busv1.Review{Reviewer: rs.Deny, Time: metav1.Now(), Comment: "bad-input case"}
		}
		return c.Status().Update(ctx, tk)
	})
}

func (r *runner) wait(ws *waitStep) error {
	typ, status := ws.Type, ws.Status
	if typ == "" {
		typ = "Ready"
	}
	if status == "" {
		status = "True"
	}
	return poll(func() error { return r.conditionIs(ws.objectRef, typ, status, ws.Reason, "") })
}

func poll(check func() error) error {
	deadline := time.Now().Add(waitFor)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still not so after %s: %w", waitFor, err)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

// conditionIs checks one condition of an object. For Ready it also wants
// the condition to be about the current generation, so a condition left
// from before an update cannot match.
func (r *runner) conditionIs(ref objectRef, typ, status, reason, msg string) error {
	u, err := r.get(ref)
	if err != nil {
		return err
	}
	cond, err := findCondition(u, typ)
	if err != nil {
		return err
	}
	switch {
	case cond.Status != metav1.ConditionStatus(status) || (reason != "" && cond.Reason != reason):
		return fmt.Errorf("%s %s is %s/%s: %s", ref.Name, typ, cond.Status, cond.Reason, cond.Message)
	case msg != "" && !strings.Contains(cond.Message, msg):
		return fmt.Errorf("%s %s message %q does not contain %q", ref.Name, typ, cond.Message, msg)
	case typ == "Ready" && cond.ObservedGeneration != u.GetGeneration():
		return fmt.Errorf("%s Ready is about generation %d, the object is at %d", ref.Name, cond.ObservedGeneration, u.GetGeneration())
	}
	return nil
}

func findCondition(u *unstructured.Unstructured, typ string) (*metav1.Condition, error) {
	raw, _, err := unstructured.NestedSlice(u.Object, "status", "conditions")
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	var conds []metav1.Condition
	if err := json.Unmarshal(b, &conds); err != nil {
		return nil, err
	}
	for i := range conds {
		if conds[i].Type == typ {
			return &conds[i], nil
		}
	}
	return nil, fmt.Errorf("%s has no %s condition yet", u.GetName(), typ)
}

func (r *runner) runCLI(ctx context.Context, persona string, cs *cliStep) error {
	ctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	// The namespace goes before the command so the case's args are the
	// user's: cobra reads persistent flags anywhere.
	cmd := exec.CommandContext(ctx, hmsbusBin, append([]string{"--namespace=" + r.data.NS}, cs.Args...)...)
	// A clean environment: no HMSBUS_* credentials or kubeconfig of the
	// machine running the tests leak into a case.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + r.t.TempDir(), "KUBECONFIG=" + kubeconfigs[persona]}
	for k, v := range cs.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdin = strings.NewReader(cs.Stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r.cli = cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("hmsbus %v did not finish in time; stdout %q, stderr %q", cs.Args, r.cli.stdout, r.cli.stderr)
	case errors.As(err, &exit):
		r.cli.exitCode = exit.ExitCode()
	case err != nil:
		return err
	}
	return nil
}

// snapshot records what a rejected action must leave unchanged.
func (r *runner) snapshot(s step) *unstructured.Unstructured {
	ref, ok := s.target()
	switch {
	case s.Review != nil:
		ref, ok = objectRef{Kind: "ChangeTicket", Name: s.Review.Ticket, Namespace: s.Review.Namespace}, true
	case s.Approve != "" || s.Deny != "":
		ns, name := r.ticketKey(s.Approve + s.Deny)
		ref, ok = objectRef{Kind: "ChangeTicket", Name: name, Namespace: ns}, true
	}
	if !ok || s.Create != nil {
		return nil
	}
	u, err := r.get(ref)
	if err != nil {
		return nil
	}
	return u
}

func (r *runner) expectRejected(err error, before *unstructured.Unstructured) {
	t, e := r.t, r.c.Expect
	t.Helper()
	switch {
	case err == nil:
		t.Fatalf("the action was accepted; want it rejected with %q", e.Message)
	case e.Reason != "" && string(apierrors.ReasonForError(err)) != e.Reason:
		t.Fatalf("rejected with reason %s; want %s: %v", apierrors.ReasonForError(err), e.Reason, err)
	case !strings.Contains(err.Error(), e.Field):
		t.Fatalf("the rejection does not name the field %s: %v", e.Field, err)
	case !strings.Contains(err.Error(), e.Message):
		t.Fatalf("rejected with %q; want it to contain %q", err.Error(), e.Message)
	case e.NotMessage != "" && strings.Contains(err.Error(), e.NotMessage):
		t.Fatalf("rejected with %q; it must not contain %q", err.Error(), e.NotMessage)
	}
	t.Logf("rejected as expected: %v", err)
	// Nothing of a rejected action may be stored.
	if s := r.c.Action; s.Create != nil {
		ref, _ := s.target()
		if _, err := r.get(ref); !apierrors.IsNotFound(err) {
			t.Fatalf("rejected %s %s exists anyway (get: %v)", ref.Kind, ref.Name, err)
		}
	}
	if before != nil {
		after, err := r.get(objectRef{Kind: before.GetKind(), Name: before.GetName(), Namespace: before.GetNamespace()})
		if err != nil {
			t.Fatalf("reading %s after the rejection: %v", before.GetName(), err)
		}
		for _, path := range [][]string{{"spec"}, {"status", "approvals"}, {"status", "denial"}} {
			b, _, _ := unstructured.NestedFieldNoCopy(before.Object, path...)
			a, _, _ := unstructured.NestedFieldNoCopy(after.Object, path...)
			if !equality.Semantic.DeepEqual(a, b) {
				t.Fatalf("rejected action changed %s of %s: before %v, after %v", strings.Join(path, "."), before.GetName(), b, a)
			}
		}
	}
}

func (r *runner) expectCondition() {
	t, e := r.t, r.c.Expect
	t.Helper()
	ref := *e.Object
	if err := poll(func() error { return r.conditionIs(ref, e.Type, e.Status, e.Reason, e.Message) }); err != nil {
		t.Fatalf("%s %s: want %s=%s reason %s message containing %q: %v", ref.Kind, ref.Name, e.Type, e.Status, e.Reason, e.Message, err)
	}
	u, err := r.get(ref)
	if err != nil {
		t.Fatal(err)
	}
	if cond, err := findCondition(u, e.Type); err == nil {
		t.Logf("%s %s %s=%s %s: %s", ref.Kind, ref.Name, cond.Type, cond.Status, cond.Reason, cond.Message)
	}
	if e.Stalled == nil {
		return
	}
	stalled, err := findCondition(u, busv1.ConditionStalled)
	isStalled := err == nil && stalled.Status == metav1.ConditionTrue
	switch {
	case *e.Stalled && !isStalled:
		t.Fatalf("%s: want Stalled=True (%s), got %+v", ref.Name, e.Reason, stalled)
	case *e.Stalled && stalled.Reason != e.Reason:
		t.Fatalf("%s: Stalled reason %s, want %s", ref.Name, stalled.Reason, e.Reason)
	case !*e.Stalled && isStalled:
		t.Fatalf("%s: want no Stalled condition, got %s: %s", ref.Name, stalled.Reason, stalled.Message)
	}
}

func (r *runner) expectCLI() {
	t, e, res := r.t, r.c.Expect, r.cli
	t.Helper()
	out := res.stdout + res.stderr
	if strings.Contains(out, "panic:") || strings.Contains(out, "goroutine ") {
		t.Fatalf("hmsbus panicked:\n%s", out)
	}
	switch e.Outcome {
	case "exit-error":
		if res.exitCode == 0 {
			t.Fatalf("hmsbus exited 0; want an error containing %q\nstdout: %s\nstderr: %s", e.Message, res.stdout, res.stderr)
		}
		if !strings.Contains(res.stderr, e.Message) {
			t.Fatalf("hmsbus stderr %q does not contain %q", res.stderr, e.Message)
		}
	case "exit-ok":
		if res.exitCode != 0 {
			t.Fatalf("hmsbus exited %d; want success\nstdout: %s\nstderr: %s", res.exitCode, res.stdout, res.stderr)
		}
		if !strings.Contains(res.stdout, e.Message) {
			t.Fatalf("hmsbus stdout %q does not contain %q", res.stdout, e.Message)
		}
	}
	t.Logf("hmsbus exited %d: %s", res.exitCode, strings.TrimSpace(res.stderr))
}

// brokerName is a Topic's broker topic name, or "" if it has none a broker
// could hold (a non-string value, say).
func brokerName(u *unstructured.Unstructured) string {
	if name, found, err := unstructured.NestedString(u.Object, "spec", "topicName"); found {
		if err != nil {
			return ""
		}
		return name
	}
	return u.GetName()
}

// checkIsolation refuses a case that could create a broker topic without
// its namespace in the name: parallel cases share one broker, and a shared
// name would let one case's topic show up in another's broker check.
func (r *runner) checkIsolation() {
	c := r.c
	creates := []map[string]any{}
	for _, s := range c.Setup {
		if s.Create != nil {
			creates = append(creates, s.Create)
		}
	}
	if c.Expect.Outcome == "condition" && c.Action.Create != nil {
		creates = append(creates, c.Action.Create)
	}
	for _, obj := range creates {
		u := &unstructured.Unstructured{Object: obj}
		if u.GetKind() != "Topic" {
			continue
		}
		name := brokerName(u)
		if slices.Contains(c.Expect.Broker.Topics, name) || strings.Contains(name, r.data.NS) || (r.data.NS2 != "" && strings.Contains(name, r.data.NS2)) {
			continue
		}
		r.t.Fatalf("Topic %s may reach the broker as %q, which does not carry the case's namespace: use {{.NS}} in its topicName", u.GetName(), name)
	}
}

var legalTopic = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// checkBroker asserts the case left on the broker exactly what it
// expects: its topics and its Subscriptions' users and ACLs are absent
// unless listed.
func (r *runner) checkBroker() {
	t, want := r.t, r.c.Expect.Broker
	ctx := ctxT(t)
	names := slices.Clone(want.Topics)
	names = append(names, want.Absent...)
	names = append(names, r.renamed...)
	var users []string
	for _, u := range r.objects {
		switch u.GetKind() {
		case "Topic":
			names = append(names, brokerName(u))
		case "Subscription":
			users = append(users, u.GetNamespace()+"."+u.GetName())
		}
	}
	users = append(users, want.Users...)
	users = slices.AppendSeq(users, maps.Keys(want.ACLs))
	slices.Sort(names)
	slices.Sort(users)

	for _, name := range slices.Compact(names) {
		got, err := admin.DescribeTopics(ctx, name)
		if err != nil {
			// A name Kafka cannot hold cannot be on the broker; the broker
			// answers it with an error rather than "not found".
			if !legalTopic.MatchString(name) || name == "." || name == ".." {
				continue
			}
			t.Fatalf("describing broker topic %q: %v", name, err)
		}
		tp, exists := got[name]
		expected := slices.Contains(want.Topics, name)
		switch {
		case expected && !exists:
			t.Errorf("broker topic %q should exist but does not", name)
		case !expected && exists:
			t.Errorf("the case reached the broker: topic %q exists (%d partitions, configs %v)", name, tp.Partitions, tp.Configs)
		case exists && want.Partitions[name] != 0 && tp.Partitions != want.Partitions[name]:
			t.Errorf("broker topic %q has %d partitions, want %d", name, tp.Partitions, want.Partitions[name])
		}
	}
	users = slices.Compact(users)
	if len(users) == 0 {
		return
	}
	scram, err := admin.SCRAMMechanisms(ctx, users...)
	if err != nil {
		t.Fatalf("describing SCRAM users: %v", err)
	}
	for _, user := range users {
		expected := slices.Contains(want.Users, user)
		if _, exists := scram[user]; exists != expected {
			t.Errorf("SCRAM user %s: exists=%v, want %v", user, exists, expected)
		}
		acls, err := admin.DescribeACLs(ctx, "User:"+user)
		if err != nil {
			t.Fatalf("describing ACLs of %s: %v", user, err)
		}
		wantTopics, listed := want.ACLs[user]
		if !listed {
			if len(acls) > 0 {
				t.Errorf("the case reached the broker: User:%s has ACLs %v", user, acls)
			}
			continue
		}
		var gotTopics []string
		for _, a := range acls {
			if a.ResourceType == kafka.ResourceTopic {
				gotTopics = append(gotTopics, a.ResourceName)
			}
		}
		slices.Sort(gotTopics)
		gotTopics = slices.Compact(gotTopics)
		wantSorted := slices.Sorted(slices.Values(wantTopics))
		if !slices.Equal(gotTopics, wantSorted) {
			t.Errorf("User:%s has topic ACLs on %v, want exactly %v", user, gotTopics, wantSorted)
		}
	}
}

// logOperatorLines shows what the operator said about a failed case.
func logOperatorLines(t *testing.T, data templateData) {
	var lines []string
	for _, line := range strings.Split(opLogs.String(), "\n") {
		if strings.Contains(line, data.NS) || (data.NS2 != "" && strings.Contains(line, data.NS2)) {
			lines = append(lines, line)
		}
	}
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	t.Logf("operator log lines for this case:\n%s", strings.Join(lines, "\n"))
}
