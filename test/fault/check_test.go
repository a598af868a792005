package fault

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/controllers"
	"github.com/hms-platform/bus-operator/internal/audit"
	"github.com/hms-platform/bus-operator/internal/kafka"
	"github.com/hms-platform/bus-operator/pkg/bus"
)

// endGrace bounds how long after a ticket ended (denial stored, window
// closed) a reconcile that decided while the ticket was still valid may
// begin its broker write. A write begun later than that was decided after
// the end; the per-object check (no write after the object itself was
// marked refused) needs no grace at all.
const endGrace = 10 * time.Second

// findings collects the failures of one invariant and reports them in one
// error, with the first few examples.
type findings struct {
	t     *testing.T
	name  string
	items []string
}

func (f *findings) add(format string, args ...any) {
	f.items = append(f.items, fmt.Sprintf(format, args...))
}

func (f *findings) report() {
	f.t.Helper()
	if len(f.items) == 0 {
		return
	}
	shown := f.items
	if len(shown) > 12 {
		shown = shown[:12]
	}
	f.t.Errorf("invariant %q broken %d time(s):\n  %s", f.name, len(f.items), strings.Join(shown, "\n  "))
}

func check(t *testing.T, name string) *findings { return &findings{t: t, name: name} }

// checkInvariants is the one invariant checker every case runs after
// convergence (see the package doc).
func (r *caseRun) checkInvariants(ctx context.Context) {
	t := r.t
	t.Helper()
	objs, err := listCase(ctx, r.ns)
	if err != nil {
		t.Fatalf("listing the case's objects: %v", err)
	}
	// Kafka's describes trail its writes by a moment: the broker-facing
	// checks take the state once it has stopped changing.
	st, err := r.stableSnapshot(ctx)
	if err != nil {
		t.Fatalf("reading the broker: %v", err)
	}
	r.checkObjects(objs)
	r.checkBroker(ctx, objs, st)
	r.checkSecrets(ctx, objs, st)
	r.checkTierWide(st)
	r.checkRecords(ctx)
	r.checkAudit(ctx, objs, st)
	r.checkStatusTruth()
	r.checkOperatorLogs()
}

// stableSnapshot reads the broker until two reads a second apart agree.
func (r *caseRun) stableSnapshot(ctx context.Context) (*brokerState, error) {
	prev, err := direct.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	for range 15 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
		cur, err := direct.snapshot(ctx)
		if err != nil {
			return nil, err
		}
		if sameState(prev, cur) {
			return cur, nil
		}
		prev = cur
	}
	return prev, nil
}

func sameState(a, b *brokerState) bool {
	if len(a.topics) != len(b.topics) || len(a.acls) != len(b.acls) || len(a.users) != len(b.users) {
		return false
	}
	for k, v := range a.topics {
		if b.topics[k] != v {
			return false
		}
	}
	for k, v := range a.aclCount {
		if b.aclCount[k] != v {
			return false
		}
	}
	return true
}

// endedTicket returns the ended ticket an object belongs to ("" if none).
func (r *caseRun) endedTicket(kind busv1.CoveredKind, name string) string {
	var tk string
	if kind == busv1.KindTopic {
		if w := r.b.topics[name]; w != nil {
			tk = w.Ticket
		}
	} else if w := r.b.subs[name]; w != nil {
		tk = w.Ticket
	}
	if tk != "" && (tk == r.drv.deny || tk == r.drv.expire) {
		return tk
	}
	return ""
}

func (r *caseRun) endedReason(ticket string) string {
	if ticket == r.drv.deny {
		return busv1.ReasonTicketDenied
	}
	return busv1.ReasonTicketExpired
}

// endedRight reports whether an ended ticket's object that is not Ready
// says why: the ended reason itself, or another reason (a grant that needs
// a valid ticket) whose message names the ticket and that it ended. A
// reason that blames something else ("not created on the broker yet") for
// what the ticket's end prevents is not right: the wait will never end.
func (r *caseRun) endedRight(ticket string, c metav1.Condition) bool {
	if c.Status == metav1.ConditionTrue || c.Reason == r.endedReason(ticket) {
		return true
	}
	word := "denied"
	if ticket == r.drv.expire {
		word = "expired"
	}
	return strings.Contains(c.Message, "ChangeTicket "+ticket+" ") && strings.Contains(c.Message, word)
}

// checkObjects: every object converged to its approved state; the objects
// of an ended ticket that were not applied are refused with its reason.
func (r *caseRun) checkObjects(objs *caseObjects) {
	f := check(r.t, "every object converges to its approved state")
	topics := map[string]*busv1.Topic{}
	for i := range objs.topics {
		topics[objs.topics[i].Name] = &objs.topics[i]
	}
	subs := map[string]*busv1.Subscription{}
	for i := range objs.subs {
		subs[objs.subs[i].Name] = &objs.subs[i]
	}
	for _, name := range sortedKeys(r.b.topics) {
		w := r.b.topics[name]
		tp := topics[name]
		if tp == nil {
			f.add("Topic %s does not exist", name)
			continue
		}
		ready := readyCond(tp.Status.Conditions)
		if tk := r.endedTicket(busv1.KindTopic, name); tk != "" {
			if !r.endedRight(tk, ready) {
				f.add("Topic %s of ended ticket %s: Ready=%s reason %s (%s); want reason %s or a message naming the ticket's end", name, tk, ready.Status, ready.Reason, ready.Message, r.endedReason(tk))
			}
			continue
		}
		wantTicket := w.Ticket
		if w.Edited {
			wantTicket = editTicket
		}
		switch {
		case !readyNow(tp.Status.Conditions, tp.Generation, tp.Status.ObservedGeneration):
			f.add("Topic %s not Ready for generation %d (observed %d): %s %s", name, tp.Generation, tp.Status.ObservedGeneration, ready.Reason, ready.Message)
		case tp.Status.TopicName != w.Broker || tp.Status.Partitions != w.Partitions || tp.Status.Config["retention.ms"] != w.Retention:
			f.add("Topic %s status says %s, %d partitions, retention %s; approved: %s, %d, %s", name, tp.Status.TopicName, tp.Status.Partitions, tp.Status.Config["retention.ms"], w.Broker, w.Partitions, w.Retention)
		case tp.Status.AppliedTicket == nil || tp.Status.AppliedTicket.Name != wantTicket:
			f.add("Topic %s applied ticket %+v; want %s", name, tp.Status.AppliedTicket, wantTicket)
		}
	}
	for _, name := range sortedKeys(r.b.subs) {
		w := r.b.subs[name]
		sub := subs[name]
		if w.Deleted {
			if sub != nil {
				f.add("Subscription %s was deleted but still exists (finalizers %v, Ready %s)", name, sub.Finalizers, readyCond(sub.Status.Conditions).Message)
			}
			continue
		}
		if sub == nil {
			f.add("Subscription %s does not exist", name)
			continue
		}
		ready := readyCond(sub.Status.Conditions)
		if tk := r.endedTicket(busv1.KindSubscription, name); tk != "" {
			if !r.endedRight(tk, ready) {
				f.add("Subscription %s of ended ticket %s: Ready=%s reason %s (%s); want reason %s or a message naming the ticket's end", name, tk, ready.Status, ready.Reason, ready.Message, r.endedReason(tk))
			}
			continue
		}
		if !readyNow(sub.Status.Conditions, sub.Generation, sub.Status.ObservedGeneration) {
			f.add("Subscription %s not Ready for generation %d (observed %d): %s %s", name, sub.Generation, sub.Status.ObservedGeneration, ready.Reason, ready.Message)
			continue
		}
		if sub.Status.Principal != r.b.principal(name) || sub.Status.Username != r.b.user(name) {
			f.add("Subscription %s has principal %s, user %s", name, sub.Status.Principal, sub.Status.Username)
		}
		got := statusACLs(sub)
		if diff := aclDiff(r.b.wantACLs(w), got); diff != "" {
			f.add("Subscription %s status.grantedACLs differ from its approved spec: %s", name, diff)
		}
	}
	f.report()
}

// statusACLs are a Subscription's status.grantedACLs as broker ACLs.
func statusACLs(sub *busv1.Subscription) map[string]kafka.ACL {
	out := map[string]kafka.ACL{}
	for _, e := range sub.Status.GrantedACLs {
		a := kafka.ACL{Principal: sub.Status.Principal, Host: "*", ResourceType: e.ResourceType, ResourceName: e.ResourceName,
			PatternType: e.PatternType, Operation: e.Operation, Permission: kafka.PermissionAllow}
		out[a.Key()] = a
	}
	return out
}

// aclDiff describes what want has that got lacks and the reverse.
func aclDiff(want, got map[string]kafka.ACL) string {
	var missing, extra []string
	for k, a := range want {
		if _, ok := got[k]; !ok {
			missing = append(missing, a.String())
		}
	}
	for k, a := range got {
		if _, ok := want[k]; !ok {
			extra = append(extra, a.String())
		}
	}
	if len(missing) == 0 && len(extra) == 0 {
		return ""
	}
	slices.Sort(missing)
	slices.Sort(extra)
	return fmt.Sprintf("missing %v, extra %v", missing, extra)
}

// checkBroker: the broker holds exactly the approved state of the case,
// and nothing no approval covered; no duplicate or orphan ACL or user.
func (r *caseRun) checkBroker(ctx context.Context, objs *caseObjects, st *brokerState) {
	f := check(r.t, "the broker holds exactly what was approved, nothing else")
	topics := map[string]*busv1.Topic{}
	for i := range objs.topics {
		topics[objs.topics[i].Status.TopicName] = &objs.topics[i]
	}
	var want []string
	for _, name := range sortedKeys(r.b.topics) {
		w := r.b.topics[name]
		bt, ok := st.topics[w.Broker]
		if r.endedTicket(busv1.KindTopic, name) != "" {
			continue // checked below against what its Topic recorded
		}
		want = append(want, w.Broker)
		switch {
		case !ok:
			f.add("approved topic %s is not on the broker", w.Broker)
		case bt.Partitions != w.Partitions:
			f.add("topic %s has %d partitions; approved %d", w.Broker, bt.Partitions, w.Partitions)
		}
	}
	for name, bt := range st.topics {
		if !strings.HasPrefix(name, r.ns+".") {
			continue
		}
		tp := topics[name]
		switch {
		case tp == nil:
			f.add("broker topic %s is named by no Topic's status: no approval covers it", name)
		case tp.Status.TopicID != bt.ID:
			f.add("broker topic %s has ID %s; Topic %s recorded %s", name, bt.ID, tp.Name, tp.Status.TopicID)
		case r.endedTicket(busv1.KindTopic, tp.Name) == "" && !readyNow(tp.Status.Conditions, tp.Generation, tp.Status.ObservedGeneration):
			f.add("broker topic %s belongs to Topic %s, which is not Ready", name, tp.Name)
		}
	}
	if len(want) > 0 {
		retention, err := direct.retention(ctx, want)
		if err != nil {
			f.add("reading topic configs: %v", err)
		}
		for _, name := range sortedKeys(r.b.topics) {
			w := r.b.topics[name]
			if err == nil && r.endedTicket(busv1.KindTopic, name) == "" && retention[w.Broker] != w.Retention {
				f.add("topic %s has retention.ms %q; approved %q", w.Broker, retention[w.Broker], w.Retention)
			}
		}
	}

	subsByPrincipal := map[string]*busv1.Subscription{}
	subsByUser := map[string]*busv1.Subscription{}
	for i := range objs.subs {
		s := &objs.subs[i]
		subsByPrincipal[r.b.principal(s.Name)] = s
		subsByUser[r.b.user(s.Name)] = s
	}
	principals := map[string]bool{}
	for _, a := range st.acls {
		if strings.HasPrefix(a.Principal, "User:"+r.ns+".") {
			principals[a.Principal] = true
		}
	}
	for key, n := range st.aclCount {
		if n > 1 && strings.HasPrefix(key, "User:"+r.ns+".") {
			f.add("ACL %s is on the broker %d times", key, n)
		}
	}
	for _, name := range sortedKeys(r.b.subs) {
		w := r.b.subs[name]
		p := r.b.principal(name)
		have := st.aclsOf(p)
		_, user := st.users[r.b.user(name)]
		sub := subsByPrincipal[p]
		switch {
		case w.Deleted:
			if len(have) > 0 || user {
				f.add("deleted Subscription %s left %d ACLs and user=%t on the broker", name, len(have), user)
			}
		case sub == nil:
		case r.endedTicket(busv1.KindSubscription, name) != "":
			if diff := aclDiff(statusACLs(sub), have); diff != "" {
				f.add("Subscription %s of an ended ticket: broker ACLs differ from status.grantedACLs: %s", name, diff)
			}
		default:
			if diff := aclDiff(r.b.wantACLs(w), have); diff != "" {
				f.add("Subscription %s: broker ACLs differ from its approved spec: %s", name, diff)
			}
			if diff := aclDiff(statusACLs(sub), have); diff != "" {
				f.add("Subscription %s: broker ACLs differ from status.grantedACLs: %s", name, diff)
			}
			if !user {
				f.add("Subscription %s: SCRAM user %s is not on the broker", name, r.b.user(name))
			}
		}
	}
	for p := range principals {
		if subsByPrincipal[p] == nil {
			f.add("ACLs for principal %s, which no Subscription owns", p)
		}
	}
	for u, mechs := range st.users {
		if !strings.HasPrefix(u, r.ns+".") {
			continue
		}
		sub := subsByUser[u]
		switch {
		case sub == nil:
			f.add("SCRAM user %s, which no Subscription owns", u)
		case len(mechs) != 1 || mechs[0] != string(busv1.MechanismSCRAMSHA512):
			f.add("SCRAM user %s has mechanisms %v; want exactly %s", u, mechs, busv1.MechanismSCRAMSHA512)
		case sub.Status.Username != u:
			f.add("SCRAM user %s exists, but Subscription %s records user %q", u, sub.Name, sub.Status.Username)
		}
	}
	f.report()
}

// checkSecrets: one Secret per Subscription that holds a credential,
// written by the operator, recorded in status, and its password is the
// one the broker knows.
func (r *caseRun) checkSecrets(ctx context.Context, objs *caseObjects, st *brokerState) {
	f := check(r.t, "no duplicate or orphan Secret; each Secret's credential works")
	var secrets corev1.SecretList
	if err := stack.Env.Client.List(ctx, &secrets, client.InNamespace(r.ns), client.MatchingLabels{controllers.LabelManagedBy: controllers.ManagedByValue}); err != nil {
		r.t.Fatalf("listing Secrets: %v", err)
	}
	byName := map[string]*corev1.Secret{}
	for i := range secrets.Items {
		byName[secrets.Items[i].Name] = &secrets.Items[i]
	}
	owned := map[string]bool{}
	var ready []*busv1.Subscription
	for i := range objs.subs {
		sub := &objs.subs[i]
		sec := byName[sub.SecretName()]
		_, user := st.users[r.b.user(sub.Name)]
		switch {
		case sec == nil && user:
			f.add("Subscription %s has SCRAM user %s but no Secret %s", sub.Name, r.b.user(sub.Name), sub.SecretName())
		case sec == nil:
		case !metav1.IsControlledBy(sec, sub):
			f.add("Secret %s is not controlled by Subscription %s (%s)", sec.Name, sub.Name, sub.UID)
		case string(sec.UID) != sub.Status.SecretUID:
			f.add("Secret %s has UID %s; Subscription %s records %q", sec.Name, sec.UID, sub.Name, sub.Status.SecretUID)
		case !user:
			f.add("Secret %s holds a credential the broker does not have (no user %s)", sec.Name, r.b.user(sub.Name))
		default:
			owned[sec.Name] = true
			if readyCond(sub.Status.Conditions).Status == metav1.ConditionTrue {
				ready = append(ready, sub)
			}
		}
	}
	for name := range byName {
		if !owned[name] && !slices.ContainsFunc(objs.subs, func(s busv1.Subscription) bool { return s.SecretName() == name }) {
			f.add("Secret %s belongs to no Subscription", name)
		}
	}
	// Every Ready Subscription's Secret logs in: a Secret written before a
	// crash and a credential upserted after it must agree.
	var mu sync.Mutex
	_ = parallel(ctx, 8, len(ready), func(i int) error {
		sub := ready[i]
		d := byName[sub.SecretName()].Data
		err := login(ctx, strings.Split(string(d[bus.SecretKeyBootstrap]), ","), string(d[bus.SecretKeyUsername]), string(d[bus.SecretKeyPassword]), string(d[bus.SecretKeyMechanism]))
		if err != nil {
			mu.Lock()
			f.add("Subscription %s: its Secret's credential does not log in: %v", sub.Name, err)
			mu.Unlock()
		}
		return nil
	})
	f.report()
}

// checkTierWide: whatever any case left, the broker holds nothing that no
// case's objects account for.
func (r *caseRun) checkTierWide(st *brokerState) {
	f := check(r.t, "nothing on the broker that no case's approval covers")
	for name := range st.topics {
		if !names.topic(name) {
			f.add("broker topic %s belongs to no case", name)
		}
	}
	for u := range st.users {
		if !names.user(u) {
			f.add("SCRAM user %s belongs to no case", u)
		}
	}
	for _, a := range st.acls {
		if !names.principal(a.Principal) {
			f.add("ACL %s belongs to no case", a.String())
		}
	}
	f.report()
}

// checkRecords: records produced before the fault are still there, byte
// for byte; after a data loss, the topics were recreated empty instead.
func (r *caseRun) checkRecords(ctx context.Context) {
	f := check(r.t, "no topic or data is deleted that should not be")
	if len(r.records) == 0 {
		f.add("no records were produced before the fault")
	}
	for _, topic := range sortedKeys(r.records) {
		got, err := direct.readAll(ctx, topic)
		if err != nil {
			f.add("reading %s: %v", topic, err)
			continue
		}
		if r.fc.dataLoss {
			// The broker lost everything: the topic is back (recreated),
			// and what was produced before is gone with the old topic.
			ids, err := direct.k.DescribeTopics(ctx, topic)
			switch {
			case err != nil:
				f.add("describing %s: %v", topic, err)
			case ids[topic].ID == r.recordIDs[topic]:
				f.add("topic %s still has ID %s after the broker lost its data: the loss did not happen", topic, r.recordIDs[topic])
			case len(got) != 0:
				f.add("topic %s holds %d records after the broker lost its data", topic, len(got))
			}
			continue
		}
		if !slices.Equal(got, r.records[topic]) {
			f.add("topic %s holds %q; produced before the fault: %q", topic, got, r.records[topic])
		}
	}
	f.report()
}

// checkStatusTruth: the sampler never confirmed a Ready object the broker
// contradicted.
func (r *caseRun) checkStatusTruth() {
	f := check(r.t, "status told the truth throughout")
	for _, v := range r.lies {
		f.add("%s", v)
	}
	ticks, skipped := r.sampler.Stats()
	if ticks-skipped < 5 {
		f.add("only %d of %d samples could be taken: the check saw too little", ticks-skipped, ticks)
	}
	f.report()
}

// checkOperatorLogs: no operator panicked, and those meant to run still do.
func (r *caseRun) checkOperatorLogs() {
	f := check(r.t, "the operator did not crash")
	for _, op := range r.allOps {
		b, err := op.Log()
		if err != nil {
			f.add("%v", err)
			continue
		}
		for _, marker := range []string{"panic:", `"level":"panic"`, `"level":"fatal"`, "DATA RACE"} {
			if bytes.Contains(b, []byte(marker)) {
				f.add("operator %s logged %q (log %s)", op.Name, marker, op.LogPath)
			}
		}
	}
	for _, op := range r.ops {
		if err := op.Exited(); err != nil {
			f.add("%v", err)
		}
	}
	f.report()
}

// checkAudit: every broker change of the case has exactly one audit record
// (an intent with exactly one outcome), every piece of broker state traces
// to a succeeded intent under a valid approval, no change is recorded
// twice, and the hash chain has no break.
func (r *caseRun) checkAudit(ctx context.Context, objs *caseObjects, st *brokerState) {
	recs, err := trail.refresh(ctx)
	if err != nil {
		r.t.Fatalf("reading the audit trail: %v", err)
	}
	head, err := publishedHead(ctx)
	if err != nil {
		r.t.Fatalf("%v", err)
	}
	v := groupTrail(recs)
	mine := v.of(r.ns)
	r.t.Logf("audit: %d records in the trail, %d changes of this case: %s", len(recs), len(mine), resultCounts(mine))

	one := check(r.t, "every intent has exactly one outcome")
	for _, off := range v.unparsable {
		one.add("record at offset %d does not decode as an audit record", off)
	}
	for _, id := range v.intentsTwice {
		one.add("change %s has more than one intent record", id)
	}
	for _, c := range mine {
		if len(c.Outcomes) != 1 {
			one.add("%s %s (object %s, offset %d): %d outcomes %s", c.Intent.Operation, c.Intent.Resource, c.Intent.Object.Name, c.Offset, len(c.Outcomes), outcomeList(c))
		}
	}
	orphans := 0
	for _, c := range v.changes {
		if c.Intent == nil {
			orphans++
			if !r.fc.dataLoss {
				one.add("outcome %s at offset %d has no intent", c.ID, c.Offset)
			}
		}
	}
	if orphans > 0 && r.fc.dataLoss {
		r.t.Logf("audit: %d outcomes whose intents were lost with the broker's data", orphans)
	}
	one.report()

	r.checkTrailCoversBroker(objs, st, mine)
	r.checkTrailApprovals(objs, mine)

	chain := check(r.t, "the audit hash chain has no break")
	var breaks []audit.Finding
	for _, fd := range audit.VerifyChain(recs, head) {
		if fd.Break() {
			breaks = append(breaks, fd)
		}
	}
	if r.fc.dataLoss {
		// The broker lost the audit topic with everything else: the trail
		// now starts after the published head of the lost one, which a
		// verifier must report as a truncated start, and nothing more.
		if len(breaks) != 1 || breaks[0].Kind != audit.FindingTruncated || len(recs) == 0 || breaks[0].Offset != recs[0].Offset {
			chain.add("after the data loss the chain should show exactly one break, the truncated start; got %v", breaks)
		}
	} else {
		for _, fd := range breaks {
			chain.add("%s", fd.String())
		}
	}
	if head == nil {
		chain.add("no audit head was published")
	}
	chain.report()
}

// changeKey identifies a change for the duplicate check.
func changeKey(rec *audit.Record) string {
	after, _ := json.Marshal(rec.After)
	return rec.Operation + "|" + rec.Resource + "|" + string(after)
}

// checkTrailCoversBroker: each topic, ACL and user of the case on the
// broker traces to exactly one succeeded change, and the succeeded changes
// of each grant alternate (create, delete, create...) to what the broker
// holds now.
func (r *caseRun) checkTrailCoversBroker(objs *caseObjects, st *brokerState, mine []*change) {
	f := check(r.t, "every broker change has exactly one audit record")
	uids := map[string]string{}
	for i := range objs.topics {
		uids["Topic/"+objs.topics[i].Name] = string(objs.topics[i].UID)
	}
	for i := range objs.subs {
		uids["Subscription/"+objs.subs[i].Name] = string(objs.subs[i].UID)
	}
	creates := map[string][]*change{}
	seen := map[string]int{}
	// grants are the succeeded create/delete steps of each ACL and user,
	// in trail order: "+" created, "-" deleted.
	grants := map[string]string{}
	// steps keeps the changes behind each grant's steps, for the message.
	steps := map[string][]string{}
	// preLoss counts, per grant, the steps begun before the broker was back
	// from a data loss: they may have landed on the lost broker or the new
	// one, and their records may come after later steps in the trail (an
	// outcome repeating its lost intent), so they are kept out of signs.
	preLoss := map[string]int{}
	step := func(key, sign string, c *change) {
		steps[key] = append(steps[key], sign+describeChange(c))
		if r.straddledLoss(c) {
			preLoss[key]++
			return
		}
		grants[key] += sign
	}
	for _, c := range mine {
		in := c.Intent
		if c.Result() != audit.ResultSucceeded {
			// Not a step, but evidence when a grant does not add up:
			// a write recorded as failed or interrupted may have
			// reached the broker all the same.
			note := "!" + c.Result() + " "
			switch in.Operation {
			case audit.OpCreateACL:
				for _, a := range stringList(in.After) {
					steps["acl "+a] = append(steps["acl "+a], note+describeChange(c))
				}
			case audit.OpDeleteACL:
				for _, a := range stringList(in.Before) {
					steps["acl "+a] = append(steps["acl "+a], note+describeChange(c))
				}
			case audit.OpUpsertCredential, audit.OpDeleteCredential:
				steps["user "+in.Resource] = append(steps["user "+in.Resource], note+describeChange(c))
			}
			continue
		}
		if uid := uids[in.Object.Kind+"/"+in.Object.Name]; uid != "" && uid != in.Object.UID {
			f.add("%s %s was recorded for %s %s with UID %s; the object has UID %s", in.Operation, in.Resource, in.Object.Kind, in.Object.Name, in.Object.UID, uid)
		}
		switch in.Operation {
		case audit.OpCreateTopic:
			creates[in.Resource] = append(creates[in.Resource], c)
		case audit.OpCreateACL:
			for _, a := range stringList(in.After) {
				step("acl "+a, "+", c)
			}
		case audit.OpDeleteACL:
			for _, a := range stringList(in.Before) {
				step("acl "+a, "-", c)
			}
		case audit.OpUpsertCredential:
			step("user "+in.Resource, "+", c)
		case audit.OpDeleteCredential:
			step("user "+in.Resource, "-", c)
		}
		if in.Operation != audit.OpCreateACL && in.Operation != audit.OpDeleteACL &&
			in.Operation != audit.OpUpsertCredential && in.Operation != audit.OpDeleteCredential {
			seen[changeKey(in)]++
		}
	}
	for k, n := range seen {
		if n > 1 {
			f.add("the same change succeeded %d times: %s", n, k)
		}
	}
	for name := range st.topics {
		if !strings.HasPrefix(name, r.ns+".") {
			continue
		}
		cs := creates[name]
		if r.fc.dataLoss && len(cs) == 2 && ((r.straddledLoss(cs[0]) && cs[1].Intent.Cause == audit.CauseDrift) ||
			(r.straddledLoss(cs[1]) && cs[0].Intent.Cause == audit.CauseDrift)) {
			// Created as the broker lost its data (the intent went with
			// it, the outcome repeats it), then created again when the
			// operator found it gone: two real creations.
			continue
		}
		if n := len(cs); n != 1 {
			f.add("broker topic %s has %d succeeded CreateTopic records; want exactly 1: %s", name, n, describeChanges(cs))
		}
	}
	for name, cs := range creates {
		if _, ok := st.topics[name]; !ok {
			f.add("CreateTopic %s succeeded %d time(s), but the topic is not on the broker", name, len(cs))
		}
		// A topic Ready when the broker lost it is re-created as a drift
		// repair, unless an edit was approved since: its creation then
		// carries out that approval.
		if obj := strings.TrimPrefix(name, r.ns+"."); r.fc.dataLoss && r.readyAtLoss["Topic/"+obj] && (r.b.topics[obj] == nil || !r.b.topics[obj].Edited) {
			for _, c := range cs {
				if c.Intent.Cause != audit.CauseDrift {
					f.add("topic %s was Ready when the broker lost it; its re-creation is recorded as %q, not %q", name, c.Intent.Cause, audit.CauseDrift)
				}
			}
		}
	}
	present := map[string]bool{}
	for _, a := range st.acls {
		if strings.HasPrefix(a.Principal, "User:"+r.ns+".") {
			present["acl "+a.String()] = true
		}
	}
	for u := range st.users {
		if strings.HasPrefix(u, r.ns+".") {
			present["user "+u] = true
		}
	}
	for k := range present {
		if _, ok := grants[k]; !ok {
			grants[k] = ""
		}
	}
	for k, signs := range grants {
		if r.fc.dataLoss {
			// A grant created in the trail the broker lost (or by a step
			// that straddled the loss) may be removed since; a grant
			// with only straddling steps is left to the check of what
			// the broker must hold.
			signs = strings.TrimPrefix(signs, "-")
			if signs == "" && (preLoss[k] > 0 || !present[k]) {
				continue
			}
		}
		if strings.HasPrefix(k, "user ") {
			// Setting a SCRAM credential is an upsert: a second one is a
			// real write (a rotation, or the retry of a reconcile killed
			// after its write succeeded but before it marked the Secret
			// synced), recorded as a change of its own. Only creating
			// and deleting have to alternate.
			for strings.Contains(signs, "++") {
				signs = strings.ReplaceAll(signs, "++", "+")
			}
		}
		alternating := !strings.Contains(signs, "++") && !strings.Contains(signs, "--") && !strings.HasPrefix(signs, "-")
		last := ""
		if signs != "" {
			last = signs[len(signs)-1:]
		}
		switch {
		case !alternating:
			f.add("%s: succeeded changes %q do not alternate create/delete (a change recorded twice, or one never recorded): %s", k, signs, strings.Join(steps[k], " "))
		case present[k] && last != "+":
			f.add("%s is on the broker, but no succeeded change created it: %s", k, strings.Join(steps[k], " "))
		case !present[k] && last == "+":
			f.add("%s was created but is not on the broker: %s", k, strings.Join(steps[k], " "))
		}
	}
	if r.hooks != nil {
		for _, h := range allHooks {
			op := hookAuditOps[h]
			if !slices.ContainsFunc(mine, func(c *change) bool {
				return c.Intent.Operation == op && c.Result() == audit.ResultFailed && strings.Contains(c.Outcomes[0].Error, injectedText)
			}) {
				f.add("the injected %s failure has no failed %s outcome in the trail", h, op)
			}
		}
	}
	f.report()
}

// checkTrailApprovals: every change the case's approvals authorised names
// the approving ticket and reviewer; changes of an ended ticket's objects
// began before it ended.
func (r *caseRun) checkTrailApprovals(objs *caseObjects, mine []*change) {
	f := check(r.t, "no broker change that no valid approval covered")
	for _, c := range mine {
		in := c.Intent
		if in.Cause != audit.CauseApproved && in.Cause != audit.CauseDrift {
			continue // revocations and deletions take access away: no ticket needed
		}
		kind := busv1.CoveredKind(in.Object.Kind)
		var tickets []string
		if kind == busv1.KindTopic {
			if w := r.b.topics[in.Object.Name]; w != nil {
				tickets = []string{w.Ticket}
				if w.Edited {
					tickets = append(tickets, editTicket)
				}
			}
		} else if w := r.b.subs[in.Object.Name]; w != nil {
			tickets = []string{w.Ticket}
			if w.Edited {
				tickets = append(tickets, editTicket)
			}
		}
		switch {
		case in.Ticket == nil:
			f.add("%s %s (%s) names no ticket", in.Operation, in.Resource, in.Cause)
		case !slices.Contains(tickets, in.Ticket.Name):
			f.add("%s %s (%s) names ticket %s; the object's tickets are %v", in.Operation, in.Resource, in.Cause, in.Ticket.Name, tickets)
		case !slices.Contains(in.Ticket.ApprovedBy, reviewerUser):
			f.add("%s %s names ticket %s approved by %v, not by the reviewer", in.Operation, in.Resource, in.Ticket.Name, in.Ticket.ApprovedBy)
		}
		if tk := r.endedTicket(kind, in.Object.Name); tk != "" {
			end, ok := r.drv.endedAt(tk)
			switch {
			case !ok:
				f.add("ticket %s never ended", tk)
			case in.Time.After(end.Add(endGrace)):
				f.add("%s %s of %s %s began at %s, %s after ticket %s ended", in.Operation, in.Resource, kind, in.Object.Name, in.Time.Format(time.RFC3339Nano), in.Time.Sub(end).Round(time.Millisecond), tk)
			}
			if refused, ok := r.sampler.FirstEnded(string(kind) + "/" + in.Object.Name); ok && in.Time.After(refused) {
				f.add("%s %s of %s %s began at %s, after the object was already shown refused (%s) at %s", in.Operation, in.Resource, kind, in.Object.Name, in.Time.Format(time.RFC3339Nano), r.endedReason(tk), refused.Format(time.RFC3339Nano))
			}
		}
	}
	f.report()
}

// straddledLoss: the change began before the broker was back from losing
// its data (its intent may be lost, its outcome repeats it; its write may
// have reached the old broker or the new one).
func (r *caseRun) straddledLoss(c *change) bool {
	return r.fc.dataLoss && (c.IntentRepeated || c.Intent.Time.Before(r.backAt))
}

func describeChanges(cs []*change) string {
	var out []string
	for _, c := range cs {
		out = append(out, describeChange(c))
	}
	return strings.Join(out, " ")
}

// describeChange renders a change for a failure message: operation,
// intent offset, cause, time, object generation, idempotency key, object,
// and the outcome's error if any.
func describeChange(c *change) string {
	in := c.Intent
	out := fmt.Sprintf("%s@%d(%s, %s, gen %d, key %s, %s/%s", in.Operation, c.Offset, in.Cause, in.Time.Format("15:04:05.000"), in.Object.Generation, in.Key, in.Object.Kind, in.Object.Name)
	if len(c.Outcomes) > 0 && c.Outcomes[0].Error != "" {
		out += ", outcome error: " + c.Outcomes[0].Error
	}
	return out + ")"
}

// stringList reads an audit record's before/after that holds a list of
// strings (the ACLs of CreateACL and DeleteACL).
func stringList(v any) []string {
	items, _ := v.([]any)
	out := make([]string, 0, len(items))
	for _, it := range items {
		if s, ok := it.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func resultCounts(cs []*change) string {
	counts := map[string]int{}
	for _, c := range cs {
		r := c.Result()
		if r == "" {
			r = "open"
		}
		counts[r]++
	}
	var parts []string
	for _, k := range sortedKeys(counts) {
		parts = append(parts, fmt.Sprintf("%s %d", k, counts[k]))
	}
	return strings.Join(parts, ", ")
}

func outcomeList(c *change) string {
	var out []string
	for _, o := range c.Outcomes {
		out = append(out, o.Result)
	}
	return fmt.Sprint(out)
}

// nameRegistry is what all cases together may leave on the broker.
type nameRegistry struct {
	mu         sync.Mutex
	topics     map[string]bool
	users      map[string]bool
	principals map[string]bool
}

func newNameRegistry() *nameRegistry {
	return &nameRegistry{topics: map[string]bool{}, users: map[string]bool{}, principals: map[string]bool{}}
}

// baseline records what is on the broker before any case: its internal
// topics and the admin.
func (n *nameRegistry) baseline(ctx context.Context) error {
	st, err := direct.snapshot(ctx)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for name := range st.topics {
		n.topics[name] = true
	}
	for u := range st.users {
		n.users[u] = true
	}
	for _, a := range st.acls {
		n.principals[a.Principal] = true
	}
	n.topics[audit.DefaultTopic] = true
	n.users[broker.AdminUser] = true
	return nil
}

// add records a case's batch.
func (n *nameRegistry) add(b *batch) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, w := range b.topics {
		n.topics[w.Broker] = true
	}
	for name := range b.subs {
		n.users[b.user(name)] = true
		n.principals[b.principal(name)] = true
	}
}

func (n *nameRegistry) topic(s string) bool { n.mu.Lock(); defer n.mu.Unlock(); return n.topics[s] }
func (n *nameRegistry) user(s string) bool  { n.mu.Lock(); defer n.mu.Unlock(); return n.users[s] }
func (n *nameRegistry) principal(s string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.principals[s]
}
