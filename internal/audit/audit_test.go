package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/kafka"
)

type event struct{ eventtype, reason, note string }

type fakeEvents struct {
	mu     sync.Mutex
	events []event
}

func (f *fakeEvents) Eventf(_ runtime.Object, _ runtime.Object, eventtype, reason, _ string, note string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, event{eventtype, reason, fmt.Sprintf(note, args...)})
}

func (f *fakeEvents) list() []event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]event(nil), f.events...)
}

func topicObj() *busv1.Topic {
	return &busv1.Topic{ObjectMeta: metav1.ObjectMeta{Namespace: "fees", Name: "fee-updated", UID: "uid-1", Generation: 3, ResourceVersion: "41"}}
}

func newRecorder(admin *fakeAdmin, heads HeadStore) (*Recorder, *fakeEvents) {
	ev := &fakeEvents{}
	return &Recorder{Admin: admin, Topic: DefaultTopic, Events: ev, Heads: heads}, ev
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var ticket = &busv1.AppliedTicket{Name: "chg-1042", Reference: "CHG-1042", ApprovedBy: []string{"rita"}}

func TestBeginStoresIntentBeforeDoneStoresOutcome(t *testing.T) {
	admin := newFakeAdmin(DefaultTopic)
	r, ev := newRecorder(admin, nil)
	created := testutil.ToFloat64(brokerChanges.WithLabelValues("Topic", OpCreateTopic, CauseApproved))

	p, err := r.Begin(ctxT(t), topicObj(), "Topic", Record{Operation: OpCreateTopic, Resource: "FeeUpdated", Cause: CauseApproved, Ticket: ticket, After: map[string]int{"partitions": 3}})
	if err != nil {
		t.Fatal(err)
	}
	recs := admin.records()
	if len(recs) != 1 || len(ev.list()) != 0 {
		t.Fatalf("after Begin: %d records, events %+v; want the intent alone and no event yet", len(recs), ev.list())
	}
	in := recs[0]
	if in.Phase != PhaseIntent || in.Seq != 1 || in.PrevHash != GenesisHash || in.ID != p.ID() || in.Object.UID != "uid-1" ||
		in.Object.Generation != 3 || in.Ticket.ApprovedBy[0] != "rita" || in.Key != IdempotencyKey("uid-1", "41", OpCreateTopic, "FeeUpdated") {
		t.Fatalf("intent %+v", in)
	}

	p.Done(ctxT(t), nil)
	p.Done(ctxT(t), nil) // a second Done does nothing
	recs = admin.records()
	if len(recs) != 2 {
		t.Fatalf("want intent and outcome, got %d records", len(recs))
	}
	out := recs[1]
	if out.Phase != PhaseOutcome || out.ID != in.ID || out.Result != ResultSucceeded || out.Seq != 2 || out.PrevHash != HashRecord(admin.stored()[0].Value) || out.Operation != "" {
		t.Fatalf("outcome %+v", out)
	}
	if evs := ev.list(); len(evs) != 1 || evs[0].reason != OpCreateTopic || !strings.Contains(evs[0].note, "under CHG-1042") {
		t.Fatalf("events %+v", evs)
	}
	if got := testutil.ToFloat64(brokerChanges.WithLabelValues("Topic", OpCreateTopic, CauseApproved)); got != created+1 {
		t.Fatalf("hmsbus_broker_changes_total went from %v to %v, want +1", created, got)
	}
	if f := VerifyChain(admin.stored(), nil); len(f) != 0 {
		t.Fatalf("findings %v", f)
	}
}

func TestDoneRecordsAFailedWrite(t *testing.T) {
	admin := newFakeAdmin(DefaultTopic)
	r, ev := newRecorder(admin, nil)
	p, err := r.Begin(ctxT(t), topicObj(), "Topic", Record{Operation: OpAddPartitions, Resource: "FeeUpdated", Cause: CauseApproved})
	if err != nil {
		t.Fatal(err)
	}
	p.DoneWith(ctxT(t), &kafka.RejectedError{Op: "setting partitions", Code: "INVALID_PARTITIONS"}, map[string]int{"partitions": 3})
	out := admin.records()[1]
	if out.Result != ResultFailed || !strings.Contains(out.Error, "INVALID_PARTITIONS") || out.After == nil {
		t.Fatalf("outcome %+v", out)
	}
	if len(ev.list()) != 0 {
		t.Fatalf("a failed write is no completed change, yet events %+v", ev.list())
	}
}

func TestBeginRefusesWhenTheIntentCannotBeStored(t *testing.T) {
	admin := newFakeAdmin(DefaultTopic)
	admin.failures = 1
	r, _ := newRecorder(admin, nil)
	_, err := r.Begin(ctxT(t), topicObj(), "Topic", Record{Operation: OpDeleteTopic, Resource: "FeeUpdated", Cause: CauseDeletion})
	if !errors.Is(err, ErrAuditUnavailable) || !errors.Is(err, kafka.ErrUnavailable) {
		t.Fatalf("Begin with the audit topic failing: %v, want ErrAuditUnavailable (a transient error)", err)
	}
	if len(admin.records()) != 0 {
		t.Fatal("a failed intent must leave nothing stored")
	}
	// The next attempt chains from where the log really is.
	p, err := r.Begin(ctxT(t), topicObj(), "Topic", Record{Operation: OpDeleteTopic, Resource: "FeeUpdated", Cause: CauseDeletion})
	if err != nil {
		t.Fatal(err)
	}
	p.Done(ctxT(t), nil)
	if f := VerifyChain(admin.stored(), nil); len(f) != 0 {
		t.Fatalf("findings %v", f)
	}

	// No audit topic, and the broker refuses to create it: nothing can be
	// recorded, so nothing may be changed.
	r, _ = newRecorder(&fakeAdmin{topics: map[string]kafka.Topic{}, refuseCreate: true}, nil)
	_, err = r.Begin(ctxT(t), topicObj(), "Topic", Record{Operation: OpCreateTopic, Resource: "x"})
	var ie *IntentError
	if !errors.Is(err, ErrAuditUnavailable) || !errors.As(err, &ie) || !kafka.IsRejected(ie.Cause) {
		t.Fatalf("Begin without audit topic: %v", err)
	}
	// A reconciler must not take the audit topic's refusal for its own.
	if kafka.IsRejected(err) || errors.Is(err, kafka.ErrTopicNotFound) {
		t.Fatalf("Begin's error matches the adapter's kinds: %v", err)
	}
	// A missing topic is created by the first Begin, with one partition.
	missing := &fakeAdmin{topics: map[string]kafka.Topic{}}
	r, _ = newRecorder(missing, nil)
	r.Record(ctxT(t), topicObj(), "Topic", Record{Operation: OpCreateTopic, Resource: "x"})
	if recs := missing.records(); len(missing.created) != 1 || missing.created[0].Partitions != 1 || len(recs) != 2 || recs[0].PrevHash != GenesisHash {
		t.Fatalf("created %+v, records %+v", missing.created, recs)
	}
	// Several partitions cannot hold one chain: fail closed.
	many := newFakeAdmin(DefaultTopic)
	many.topics[DefaultTopic] = kafka.Topic{Name: DefaultTopic, Partitions: 3}
	r, _ = newRecorder(many, nil)
	if _, err := r.Begin(ctxT(t), topicObj(), "Topic", Record{Operation: OpCreateTopic, Resource: "x"}); !errors.As(err, &ie) || !errors.Is(ie.Cause, errNotLinear) {
		t.Fatalf("Begin on a 3-partition audit topic: %v", err)
	}
}

func TestDoneStoresTheOutcomeAfterTheCallerIsCancelled(t *testing.T) {
	admin := newFakeAdmin(DefaultTopic)
	r, _ := newRecorder(admin, nil)
	ctx, cancel := context.WithCancel(context.Background())
	p, err := r.Begin(ctx, topicObj(), "Topic", Record{Operation: OpAlterTopicConfig, Resource: "FeeUpdated", Cause: CauseDrift})
	if err != nil {
		t.Fatal(err)
	}
	cancel() // graceful shutdown, after the broker write was sent
	p.Done(ctx, nil)
	recs := admin.records()
	if len(recs) != 2 || recs[1].Result != ResultSucceeded {
		t.Fatalf("records %+v", recs)
	}
}

func TestDoneThatCannotStoreKeepsTheOutcomeAndTheKeeperRetries(t *testing.T) {
	admin := newFakeAdmin(DefaultTopic)
	heads := &memHeads{}
	r, ev := newRecorder(admin, heads)
	r.OutcomeTimeout = 300 * time.Millisecond
	p, err := r.Begin(ctxT(t), topicObj(), "Topic", Record{Operation: OpCreateTopic, Resource: "FeeUpdated", Cause: CauseApproved})
	if err != nil {
		t.Fatal(err)
	}
	failed := testutil.ToFloat64(auditWriteFailures)
	admin.mu.Lock()
	admin.failures = 1000
	admin.mu.Unlock()
	p.Done(ctxT(t), nil)
	if got := testutil.ToFloat64(auditWriteFailures); got != failed+1 {
		t.Fatalf("hmsbus_audit_write_failures_total went from %v to %v, want +1", failed, got)
	}
	evs := ev.list()
	if len(evs) != 2 || evs[1].reason != "AuditWriteFailed" || !strings.Contains(evs[1].note, `"result":"succeeded"`) || !strings.Contains(evs[1].note, `"operation":"CreateTopic"`) {
		t.Fatalf("an outcome not stored must be kept in a Warning event, got %+v", evs)
	}
	admin.mu.Lock()
	admin.failures = 0
	admin.mu.Unlock()

	stop := runKeeper(t, r, time.Nanosecond)
	waitFor(t, func() bool { return len(admin.records()) == 2 })
	stop()
	recs := admin.records()
	if recs[1].ID != p.ID() || recs[1].Result != ResultSucceeded {
		t.Fatalf("retried outcome %+v", recs[1])
	}
	if h := heads.last(); h == nil || h.Seq != 2 || h.Checkpoint != 2 {
		t.Fatalf("published head %+v, want seq 2 with every intent closed", h)
	}
}

// runKeeper starts a Keeper and returns a func that stops it and waits.
func runKeeper(t *testing.T, r *Recorder, adopt time.Duration) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	k := &Keeper{Recorder: r, AdoptWindow: adopt, PublishInterval: 20 * time.Millisecond}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := k.Start(ctx); err != nil {
			t.Errorf("Keeper: %v", err)
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func outcomesFor(recs []Record, id string) []Record {
	var out []Record
	for _, r := range recs {
		if r.ID == id && r.Phase == PhaseOutcome {
			out = append(out, r)
		}
	}
	return out
}

func TestKeeperClosesIntentsLeftByAStoppedProcessExactlyOnce(t *testing.T) {
	admin := newFakeAdmin(DefaultTopic)
	heads := &memHeads{}
	// The first process stores an intent and dies before the outcome.
	r1, _ := newRecorder(admin, heads)
	p, err := r1.Begin(ctxT(t), topicObj(), "Topic", Record{Operation: OpCreateTopic, Resource: "FeeUpdated", Cause: CauseApproved})
	if err != nil {
		t.Fatal(err)
	}
	// The next leader hands over.
	r2, _ := newRecorder(admin, heads)
	stop := runKeeper(t, r2, time.Nanosecond)
	waitFor(t, func() bool { return len(outcomesFor(admin.records(), p.ID())) == 1 })
	waitFor(t, func() bool { h := heads.last(); return h != nil && h.Seq == 2 })
	stop()
	// And the one after it finds nothing left to close.
	r3, _ := newRecorder(admin, heads)
	stop = runKeeper(t, r3, time.Nanosecond)
	time.Sleep(200 * time.Millisecond)
	stop()
	// Nor does one without a published head, reading the whole log.
	r4, _ := newRecorder(admin, nil)
	stop = runKeeper(t, r4, time.Nanosecond)
	time.Sleep(200 * time.Millisecond)
	stop()

	outs := outcomesFor(admin.records(), p.ID())
	if len(outs) != 1 || outs[0].Result != ResultInterrupted || !strings.Contains(outs[0].Error, "next reconcile") {
		t.Fatalf("outcomes of the dangling intent: %+v", outs)
	}
	if len(admin.records()) != 2 {
		t.Fatalf("log has %d records, want the intent and one outcome", len(admin.records()))
	}
	if f := VerifyChain(admin.stored(), heads.last()); len(f) != 0 {
		t.Fatalf("findings %v", f)
	}
}

func TestRetryAfterACrashAdoptsTheOpenIntent(t *testing.T) {
	admin := newFakeAdmin(DefaultTopic)
	rec := Record{Operation: OpAddPartitions, Resource: "FeeUpdated", Cause: CauseApproved, After: map[string]int32{"partitions": 6}}
	r1, _ := newRecorder(admin, nil)
	p1, err := r1.Begin(ctxT(t), topicObj(), "Topic", rec)
	if err != nil {
		t.Fatal(err)
	}
	// Restart: the reconcile retries the same write of the same object
	// version; the Keeper waits for it to adopt the intent.
	r2, _ := newRecorder(admin, nil)
	stop := runKeeper(t, r2, time.Hour)
	p2, err := r2.Begin(ctxT(t), topicObj(), "Topic", rec)
	if err != nil {
		t.Fatal(err)
	}
	if p2.ID() != p1.ID() {
		t.Fatalf("retry got a new intent %s, want the open one %s", p2.ID(), p1.ID())
	}
	p2.Done(ctxT(t), nil)
	stop()
	recs := admin.records()
	if len(recs) != 2 || recs[1].ID != p1.ID() || recs[1].Result != ResultSucceeded {
		t.Fatalf("records %+v", recs)
	}

	// A different write (other target) of the same object gets its own.
	p3, err := r2.Begin(ctxT(t), topicObj(), "Topic", Record{Operation: OpAddPartitions, Resource: "FeeUpdated", After: map[string]int32{"partitions": 9}})
	if err != nil || p3.ID() == p1.ID() {
		t.Fatalf("new write: %v, id %s", err, p3.ID())
	}
}

func TestIntentStoredAfterItsCallerGaveUpIsClosedAsAbandoned(t *testing.T) {
	admin := newFakeAdmin(DefaultTopic)
	r, _ := newRecorder(admin, nil)
	if err := r.chain().ensureLoaded(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	admin.mu.Lock()
	admin.hold = hold
	admin.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := r.Begin(ctx, topicObj(), "Topic", Record{Operation: OpDeleteTopic, Resource: "FeeUpdated", Cause: CauseDeletion})
	if !errors.Is(err, ErrAuditUnavailable) {
		t.Fatalf("Begin with the broker slow to answer: %v", err)
	}
	admin.mu.Lock()
	admin.hold = nil
	admin.mu.Unlock()
	close(hold) // the broker had it after all

	stop := runKeeper(t, r, time.Nanosecond)
	waitFor(t, func() bool { return len(admin.records()) == 2 })
	stop()
	recs := admin.records()
	if recs[1].ID != recs[0].ID || recs[1].Result != ResultAbandoned {
		t.Fatalf("records %+v", recs)
	}
	if f := VerifyChain(admin.stored(), nil); len(f) != 0 {
		t.Fatalf("findings %v", f)
	}
}

func TestConcurrentChangesFormOneChain(t *testing.T) {
	admin := newFakeAdmin(DefaultTopic)
	heads := &memHeads{}
	r, _ := newRecorder(admin, heads)
	stop := runKeeper(t, r, time.Nanosecond)
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			obj := topicObj()
			obj.UID = types.UID(fmt.Sprint("uid-", i))
			p, err := r.Begin(context.Background(), obj, "Topic", Record{Operation: OpCreateTopic, Resource: fmt.Sprint("t", i), Cause: CauseApproved})
			if err != nil {
				t.Error(err)
				return
			}
			p.Done(context.Background(), nil)
		})
	}
	wg.Wait()
	stop()
	stored := admin.stored()
	if len(stored) != 128 {
		t.Fatalf("%d records, want 128", len(stored))
	}
	if f := VerifyChain(stored, heads.last()); len(f) != 0 {
		t.Fatalf("findings %v", f)
	}
	s := Summarize(stored)
	if s.Intents != 64 || s.Outcomes != 64 || len(s.Open) != 0 || s.FirstSeq != 1 || s.LastSeq != 128 {
		t.Fatalf("summary %+v", s)
	}
	if h := heads.last(); h == nil || h.Seq != 128 || h.Offset != 127 || h.Hash != HashRecord(stored[127].Value) {
		t.Fatalf("final head %+v", h)
	}
}

func TestHeadIsPublishedByTimeNotPerRecord(t *testing.T) {
	admin := newFakeAdmin(DefaultTopic)
	heads := &memHeads{}
	r, _ := newRecorder(admin, heads)
	ctx, cancel := context.WithCancel(context.Background())
	k := &Keeper{Recorder: r, AdoptWindow: time.Nanosecond, PublishInterval: 200 * time.Millisecond, PublishEvery: 10000}
	done := make(chan struct{})
	go func() { defer close(done); _ = k.Start(ctx) }()
	for range 300 {
		r.Record(context.Background(), topicObj(), "Topic", Record{Operation: OpAlterTopicConfig, Resource: "FeeUpdated", Cause: CauseDrift})
	}
	cancel()
	<-done
	if n := heads.count(); n < 1 || n > 10 {
		t.Fatalf("%d publications for 600 records, want a handful", n)
	}
	if h := heads.last(); h.Seq != 600 {
		t.Fatalf("the last publication (on stop) must be the final head, got %+v", h)
	}
}

func TestWriterNeverGoesBehindThePublishedHead(t *testing.T) {
	admin := newFakeAdmin(DefaultTopic)
	heads := &memHeads{}
	r, _ := newRecorder(admin, heads)
	for range 5 {
		r.Record(ctxT(t), topicObj(), "Topic", Record{Operation: OpAlterTopicConfig, Resource: "FeeUpdated"})
	}
	stored := admin.stored()
	if err := heads.PublishHead(ctxT(t), Head{Topic: DefaultTopic, Seq: 10, Offset: 9, Hash: HashRecord(stored[9].Value), Checkpoint: 10}); err != nil {
		t.Fatal(err)
	}
	// Someone removes the last four records from the log files.
	admin.mu.Lock()
	admin.log = admin.log[:6]
	admin.next = 6
	admin.mu.Unlock()
	r2, _ := newRecorder(admin, heads)
	r2.Record(ctxT(t), topicObj(), "Topic", Record{Operation: OpAlterTopicConfig, Resource: "FeeUpdated"})
	if got := admin.records()[6]; got.Seq != 11 {
		t.Fatalf("the writer continued at seq %d, want 11 (after the published head)", got.Seq)
	}
	f := VerifyChain(admin.stored(), heads.last())
	if len(f) == 0 || f[0].Kind != FindingRemoved || f[0].Seq != 7 {
		t.Fatalf("findings %v, want seq 7.. removed", f)
	}
}

func TestRecordWrapperKeepsALostRecordInAWarningEvent(t *testing.T) {
	admin := newFakeAdmin(DefaultTopic)
	admin.failures = 1
	r, ev := newRecorder(admin, nil)
	failed := testutil.ToFloat64(auditWriteFailures)
	r.Record(ctxT(t), topicObj(), "Topic", Record{Operation: OpDeleteTopic, Resource: "FeeUpdated", Cause: CauseDeletion})
	if got := testutil.ToFloat64(auditWriteFailures); got != failed+1 {
		t.Fatalf("hmsbus_audit_write_failures_total went from %v to %v, want +1", failed, got)
	}
	evs := ev.list()
	if len(evs) != 2 || evs[0].reason != OpDeleteTopic || evs[1].reason != "AuditWriteFailed" || !strings.Contains(evs[1].note, `"operation":"DeleteTopic"`) {
		t.Fatalf("a lost audit record must be kept in a Warning event, got %+v", evs)
	}
	r.Record(ctxT(t), topicObj(), "Topic", Record{Operation: OpDeleteTopic, Resource: "FeeUpdated", Cause: CauseDeletion})
	if recs := admin.records(); len(recs) != 2 || recs[0].Phase != PhaseIntent || recs[1].Result != ResultSucceeded {
		t.Fatalf("records %+v", recs)
	}
}

func TestNoSecretInAnyRecord(t *testing.T) {
	const password = "s3cr3t-PASSWORD-value"
	admin := newFakeAdmin(DefaultTopic)
	r, ev := newRecorder(admin, nil)
	sub := &busv1.Subscription{ObjectMeta: metav1.ObjectMeta{Namespace: "fees", Name: "payment", UID: "uid-s"}}
	// What the Subscription controller records for a credential: the
	// mechanism and the Secret name, never the password.
	p, err := r.Begin(ctxT(t), sub, "Subscription", Record{Operation: OpUpsertCredential, Resource: "fees.payment", Cause: CauseRotation,
		After: map[string]any{"mechanism": "SCRAM-SHA-512", "secret": "payment-bus-credentials"}})
	if err != nil {
		t.Fatal(err)
	}
	// The adapter's errors name the user, not the password.
	p.Done(ctxT(t), fmt.Errorf("upserting SCRAM credential for fees.payment: %w", kafka.ErrUnavailable))
	for _, rec := range admin.stored() {
		if strings.Contains(string(rec.Value), password) {
			t.Fatalf("a password appears in record %s", rec.Value)
		}
	}
	for _, e := range ev.list() {
		if strings.Contains(e.note, password) {
			t.Fatalf("a password appears in event %+v", e)
		}
	}
}

func TestEnsureTopic(t *testing.T) {
	admin := &fakeAdmin{topics: map[string]kafka.Topic{}}
	if err := EnsureTopic(context.Background(), admin, "hms.audit"); err != nil {
		t.Fatal(err)
	}
	if len(admin.created) != 1 || admin.created[0].Configs["retention.ms"] != "-1" || admin.created[0].Partitions != 1 {
		t.Fatalf("audit topic must be created with one partition and unlimited retention, got %+v", admin.created)
	}
	admin = &fakeAdmin{topics: map[string]kafka.Topic{"hms.audit": {Name: "hms.audit"}}}
	if err := EnsureTopic(context.Background(), admin, "hms.audit"); err != nil || len(admin.created) != 0 {
		t.Fatalf("existing audit topic must be left alone: %v %+v", err, admin.created)
	}
}

func TestKeeperRetriesTheAuditTopicWithoutBlockingShutdown(t *testing.T) {
	admin := &fakeAdmin{topics: map[string]kafka.Topic{}, refuseCreate: true}
	r, _ := newRecorder(admin, &memHeads{})
	stop := runKeeper(t, r, time.Nanosecond)
	time.Sleep(50 * time.Millisecond)
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the Keeper did not stop while the audit topic was missing")
	}
	// Once the broker allows it, the Keeper creates the topic and the
	// chain starts from genesis.
	admin.mu.Lock()
	admin.refuseCreate = false
	admin.mu.Unlock()
	k := &Keeper{Recorder: r}
	ctx, cancel := context.WithCancel(context.Background())
	kdone := make(chan struct{})
	go func() { defer close(kdone); _ = k.Start(ctx) }()
	waitFor(t, func() bool { return r.chain().loaded.Load() })
	cancel()
	<-kdone
	if len(admin.created) != 1 || admin.created[0].Partitions != 1 {
		t.Fatalf("created %+v", admin.created)
	}
	r.Record(ctxT(t), topicObj(), "Topic", Record{Operation: OpCreateTopic, Resource: "x"})
	if recs := admin.records(); len(recs) != 2 || recs[0].Seq != 1 || recs[0].PrevHash != GenesisHash {
		t.Fatalf("records %+v", recs)
	}
}

func TestConfirmSettlesAnInterruptedWriteTheBrokerShows(t *testing.T) {
	admin := newFakeAdmin(DefaultTopic)
	heads := &memHeads{}
	create := Record{Operation: OpCreateTopic, Resource: "FeeUpdated", Cause: CauseApproved, After: map[string]any{"partitions": 3}}
	grow := Record{Operation: OpAddPartitions, Resource: "FeeUpdated", Cause: CauseApproved, After: map[string]int32{"partitions": 6}}
	other := topicObj()
	other.UID = "uid-2"
	// A process stores three intents and is killed before any outcome:
	// a create the broker shows, a growth it does not, and a write of
	// another object.
	r1, _ := newRecorder(admin, heads)
	var ids []string
	for _, w := range []struct {
		obj *busv1.Topic
		rec Record
	}{{topicObj(), create}, {topicObj(), grow}, {other, create}} {
		p, err := r1.Begin(ctxT(t), w.obj, "Topic", w.rec)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, p.ID())
	}

	r2, _ := newRecorder(admin, heads)
	var seen []string
	n, err := r2.Confirm(ctxT(t), topicObj(), func(u Unfinished) bool {
		seen = append(seen, u.Operation)
		if u.Operation == OpCreateTopic && string(u.After) != `{"partitions":3}` {
			t.Errorf("the intent's after reads %s", u.After)
		}
		return u.Operation == OpCreateTopic
	})
	if err != nil || n != 1 {
		t.Fatalf("Confirm settled %d, err %v; want 1", n, err)
	}
	slices.Sort(seen)
	if !slices.Equal(seen, []string{OpAddPartitions, OpCreateTopic}) {
		t.Fatalf("Confirm showed %v; want only the object's own two intents", seen)
	}
	outs := outcomesFor(admin.records(), ids[0])
	if len(outs) != 1 || outs[0].Result != ResultSucceeded || !strings.Contains(outs[0].Note, "confirmed") || outs[0].Error != "" {
		t.Fatalf("outcome of the confirmed create: %+v", outs)
	}
	// A confirmed intent is settled once: asked again, nothing is left.
	if n, _ := r2.Confirm(ctxT(t), topicObj(), func(Unfinished) bool { return true }); n != 1 {
		t.Fatalf("second Confirm settled %d; want only the growth (the create is done)", n)
	}
	if outs := outcomesFor(admin.records(), ids[0]); len(outs) != 1 {
		t.Fatalf("the create has %d outcomes", len(outs))
	}
	// The Keeper closes what nobody confirmed as interrupted.
	stop := runKeeper(t, r2, time.Nanosecond)
	waitFor(t, func() bool { return len(outcomesFor(admin.records(), ids[2])) == 1 })
	stop()
	if outs := outcomesFor(admin.records(), ids[2]); outs[0].Result != ResultInterrupted {
		t.Fatalf("the other object's intent: %+v", outs)
	}
	if f := VerifyChain(admin.stored(), heads.last()); len(f) != 0 {
		t.Fatalf("findings %v", f)
	}
}

func TestConfirmNeverSettlesAnIntentASecondWriteSuperseded(t *testing.T) {
	admin := newFakeAdmin(DefaultTopic)
	rec := Record{Operation: OpCreateACL, Resource: "User:fees.payment", Cause: CauseApproved, After: []string{"acl-a"}}
	r1, _ := newRecorder(admin, nil)
	p1, err := r1.Begin(ctxT(t), topicObj(), "Subscription", rec)
	if err != nil {
		t.Fatal(err)
	}
	// After the restart the object changed (new resourceVersion), so the
	// retried create does not adopt the old intent: the broker lacked the
	// ACL, the first write never took effect. The second write then puts
	// it there, and must not make the first one look confirmed.
	r2, _ := newRecorder(admin, nil)
	moved := topicObj()
	moved.ResourceVersion = "42"
	p2, err := r2.Begin(ctxT(t), moved, "Subscription", rec)
	if err != nil || p2.ID() == p1.ID() {
		t.Fatalf("second write: %v, id %s", err, p2.ID())
	}
	p2.Done(ctxT(t), nil)
	if n, err := r2.Confirm(ctxT(t), moved, func(Unfinished) bool { return true }); n != 0 || err != nil {
		t.Fatalf("Confirm settled %d (err %v) superseded intents; want none", n, err)
	}
	if outs := outcomesFor(admin.records(), p1.ID()); len(outs) != 0 {
		t.Fatalf("the superseded intent got %+v", outs)
	}
}

func TestConfirmNeverSettlesAnAbandonedIntent(t *testing.T) {
	admin := newFakeAdmin(DefaultTopic)
	r, _ := newRecorder(admin, nil)
	if err := r.chain().ensureLoaded(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	admin.mu.Lock()
	admin.hold = hold
	admin.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := r.Begin(ctx, topicObj(), "Topic", Record{Operation: OpDeleteTopic, Resource: "FeeUpdated"}); !errors.Is(err, ErrAuditUnavailable) {
		t.Fatalf("Begin: %v", err)
	}
	admin.mu.Lock()
	admin.hold = nil
	admin.mu.Unlock()
	close(hold)
	waitFor(t, func() bool { return len(admin.records()) == 1 && r.chain().hasOrphans() })
	// No write was made for it, whatever the broker shows.
	if n, _ := r.Confirm(ctxT(t), topicObj(), func(Unfinished) bool { return true }); n != 0 {
		t.Fatalf("Confirm settled %d abandoned intents", n)
	}
}

func TestTrailLostWithTheBrokersDataGoesOnFromThePublishedHead(t *testing.T) {
	admin := newFakeAdmin(DefaultTopic)
	heads := &memHeads{}
	r, _ := newRecorder(admin, heads)
	for range 4 {
		r.Record(ctxT(t), topicObj(), "Topic", Record{Operation: OpAlterTopicConfig, Resource: "FeeUpdated"})
	}
	stored := admin.stored()
	if err := heads.PublishHead(ctxT(t), Head{Topic: DefaultTopic, Seq: 8, Offset: 7, Hash: HashRecord(stored[7].Value), Checkpoint: 8}); err != nil {
		t.Fatal(err)
	}
	// The brokers come back empty while this process keeps running: the
	// first append finds no topic and fails; the writer must not stay
	// stuck on a topic that is gone.
	admin.lose(DefaultTopic)
	if _, err := r.Begin(ctxT(t), topicObj(), "Topic", Record{Operation: OpCreateTopic, Resource: "FeeUpdated"}); !errors.Is(err, ErrAuditUnavailable) {
		t.Fatalf("Begin on a lost audit topic: %v", err)
	}
	p, err := r.Begin(ctxT(t), topicObj(), "Topic", Record{Operation: OpCreateTopic, Resource: "FeeUpdated"})
	if err != nil {
		t.Fatalf("Begin after the loss: %v", err)
	}
	p.Done(ctxT(t), nil)
	if outs := outcomesFor(admin.records(), p.ID()); len(outs) != 1 || outs[0].Operation != "" {
		t.Fatalf("an outcome in the intent's own trail repeats it: %+v", outs)
	}
	// A change whose intent is stored before the loss and whose outcome
	// comes after it: the outcome says what changed.
	lost, err := r.Begin(ctxT(t), topicObj(), "Topic", Record{Operation: OpAddPartitions, Resource: "FeeUpdated", Cause: CauseApproved, Ticket: ticket, After: map[string]int32{"partitions": 6}})
	if err != nil {
		t.Fatal(err)
	}
	admin.lose(DefaultTopic)
	if _, err := r.Begin(ctxT(t), topicObj(), "Topic", Record{Operation: OpDeleteTopic, Resource: "FeeUpdated"}); err == nil {
		t.Fatal("Begin on the lost topic succeeded")
	}
	lost.Done(ctxT(t), nil)
	outs := outcomesFor(admin.records(), lost.ID())
	if len(outs) != 1 || outs[0].Operation != OpAddPartitions || outs[0].Resource != "FeeUpdated" || outs[0].Object.UID != "uid-1" ||
		outs[0].Ticket == nil || outs[0].Cause != CauseApproved || !strings.Contains(outs[0].Note, "repeats it") {
		t.Fatalf("the outcome of a change whose intent was lost: %+v", outs)
	}
	if _, ok := admin.topics[DefaultTopic]; !ok {
		t.Fatal("the audit topic was not created again")
	}
	recs := admin.records()
	if len(recs) == 0 || recs[0].Seq <= 8 {
		t.Fatalf("records after the loss %+v; want them after the published head", recs)
	}
	f := VerifyChain(admin.stored(), heads.last())
	if len(f) == 0 || f[0].Kind != FindingTruncated || f[0].Seq != 9 {
		t.Fatalf("findings %v; want seq 1 to 8 reported gone", f)
	}
}

func TestWriterAbandonsAGroupTheBrokersNeverAnswer(t *testing.T) {
	admin := newFakeAdmin(DefaultTopic)
	r, _ := newRecorder(admin, nil)
	c := r.chain()
	c.answerWait = 50 * time.Millisecond
	r.Record(ctxT(t), topicObj(), "Topic", Record{Operation: OpAlterTopicConfig, Resource: "FeeUpdated"})
	// The brokers store the next intent but never answer (they restarted
	// and forgot the request): the writer must not wait for ever, which
	// would hold every later broker write behind it.
	admin.mu.Lock()
	admin.hold = make(chan struct{})
	admin.mu.Unlock()
	_, err := r.Begin(ctxT(t), topicObj(), "Topic", Record{Operation: OpCreateTopic, Resource: "FeeUpdated"})
	if !errors.Is(err, ErrAuditUnavailable) {
		t.Fatalf("Begin with no answer: %v", err)
	}
	if admin.abandoned != 1 {
		t.Fatalf("the writer abandoned %d times; want once", admin.abandoned)
	}
	admin.mu.Lock()
	admin.hold = nil
	admin.mu.Unlock()
	// The next append reads the log first: the unanswered intent is
	// stored, so the chain goes on after it, and the retried write adopts
	// it (same object version, same write).
	p, err := r.Begin(ctxT(t), topicObj(), "Topic", Record{Operation: OpCreateTopic, Resource: "FeeUpdated"})
	if err != nil {
		t.Fatal(err)
	}
	p.Done(ctxT(t), nil)
	recs := admin.records()
	if len(recs) != 4 || recs[2].ID != p.ID() || recs[3].Seq != 4 || recs[3].ID != p.ID() || recs[3].Result != ResultSucceeded {
		t.Fatalf("records %+v; want the unanswered intent at seq 3 closed by the retry at seq 4", recs)
	}
	// A different write after it chains on.
	r.Record(ctxT(t), topicObj(), "Topic", Record{Operation: OpAddPartitions, Resource: "FeeUpdated"})
	if recs := admin.records(); len(recs) != 6 || recs[4].Seq != 5 {
		t.Fatalf("records after: %d", len(recs))
	}
	if f := VerifyChain(admin.stored(), nil); len(f) != 0 {
		t.Fatalf("findings %v", f)
	}
}

func TestWriteWithoutAnAnswerIsSettledByWhatTheBrokerShows(t *testing.T) {
	admin := newFakeAdmin(DefaultTopic)
	r, _ := newRecorder(admin, nil)
	noAnswer := fmt.Errorf("creating topic FeeUpdated: %w", context.DeadlineExceeded)

	// The broker made the write, but its answer never came: the next
	// reconcile finds the topic and confirms the change.
	p, err := r.Begin(ctxT(t), topicObj(), "Topic", Record{Operation: OpCreateTopic, Resource: "FeeUpdated"})
	if err != nil {
		t.Fatal(err)
	}
	p.Done(ctxT(t), noAnswer)
	if outs := outcomesFor(admin.records(), p.ID()); len(outs) != 0 {
		t.Fatalf("a write without an answer got an outcome at once: %+v", outs)
	}
	if n, err := r.Confirm(ctxT(t), topicObj(), func(u Unfinished) bool { return u.Operation == OpCreateTopic }); n != 1 || err != nil {
		t.Fatalf("Confirm settled %d (%v)", n, err)
	}
	if outs := outcomesFor(admin.records(), p.ID()); len(outs) != 1 || outs[0].Result != ResultSucceeded {
		t.Fatalf("outcome %+v; want succeeded", outs)
	}

	// It did not: once a reconcile has looked, the Keeper records the
	// failure with the write's own error.
	other := topicObj()
	other.UID = "uid-2"
	p2, err := r.Begin(ctxT(t), other, "Topic", Record{Operation: OpCreateTopic, Resource: "Other"})
	if err != nil {
		t.Fatal(err)
	}
	p2.Done(ctxT(t), noAnswer)
	stop := runKeeper(t, r, time.Nanosecond)
	time.Sleep(100 * time.Millisecond)
	if outs := outcomesFor(admin.records(), p2.ID()); len(outs) != 0 {
		t.Fatalf("closed before any reconcile looked at the broker: %+v", outs)
	}
	if n, _ := r.Confirm(ctxT(t), other, func(Unfinished) bool { return false }); n != 0 {
		t.Fatal("confirmed what the broker does not show")
	}
	waitFor(t, func() bool { return len(outcomesFor(admin.records(), p2.ID())) == 1 })
	stop()
	if outs := outcomesFor(admin.records(), p2.ID()); outs[0].Result != ResultFailed || !strings.Contains(outs[0].Error, "deadline exceeded") {
		t.Fatalf("outcome %+v; want failed with the write's error", outs)
	}

	// A broker's answer is definitive: failed at once.
	p3, err := r.Begin(ctxT(t), topicObj(), "Topic", Record{Operation: OpDeleteTopic, Resource: "FeeUpdated"})
	if err != nil {
		t.Fatal(err)
	}
	p3.Done(ctxT(t), &kafka.RejectedError{Op: "deleting topic FeeUpdated", Code: "TOPIC_AUTHORIZATION_FAILED"})
	if outs := outcomesFor(admin.records(), p3.ID()); len(outs) != 1 || outs[0].Result != ResultFailed {
		t.Fatalf("outcome of a refused write %+v", outs)
	}
	if f := VerifyChain(admin.stored(), nil); len(f) != 0 {
		t.Fatalf("findings %v", f)
	}
}

// An append whose answer was lost may be stored all the same. Whatever
// record it was, the trail must come out as if it had been answered: one
// outcome per change, and a chain that goes on after the stored record
// instead of forking beside it.
func TestAppendStoredButAnsweredWithAnErrorIsNotRepeated(t *testing.T) {
	cases := []struct {
		name string
		// lose is how many of the next appends, from the point chosen
		// by run, are stored but answered with an error.
		run func(t *testing.T, r *Recorder, admin *fakeAdmin) (id string)
	}{
		{"outcome retried by Done", func(t *testing.T, r *Recorder, admin *fakeAdmin) string {
			p, err := r.Begin(ctxT(t), topicObj(), "Topic", Record{Operation: OpCreateTopic, Resource: "FeeUpdated", Cause: CauseApproved})
			if err != nil {
				t.Fatal(err)
			}
			admin.mu.Lock()
			admin.lostAnswers = 1
			admin.mu.Unlock()
			p.Done(ctxT(t), nil)
			return p.ID()
		}},
		{"outcome retried by the Keeper", func(t *testing.T, r *Recorder, admin *fakeAdmin) string {
			r.OutcomeTimeout = 200 * time.Millisecond
			p, err := r.Begin(ctxT(t), topicObj(), "Topic", Record{Operation: OpCreateTopic, Resource: "FeeUpdated", Cause: CauseApproved})
			if err != nil {
				t.Fatal(err)
			}
			// Stored but unanswered, then definitive refusals until Done
			// gives up: the Keeper's retry must find the stored one.
			admin.mu.Lock()
			admin.lostAnswers, admin.failures = 1, 1000
			admin.mu.Unlock()
			p.Done(ctxT(t), nil)
			admin.mu.Lock()
			admin.failures = 0
			admin.mu.Unlock()
			stop := runKeeper(t, r, time.Hour)
			waitFor(t, func() bool {
				r.chain().mu.Lock()
				defer r.chain().mu.Unlock()
				return len(r.chain().retry) == 0 && len(r.chain().open) == 0
			})
			stop()
			return p.ID()
		}},
		{"intent of a Begin that failed", func(t *testing.T, r *Recorder, admin *fakeAdmin) string {
			admin.mu.Lock()
			admin.lostAnswers = 1
			admin.mu.Unlock()
			if _, err := r.Begin(ctxT(t), topicObj(), "Topic", Record{Operation: OpCreateTopic, Resource: "FeeUpdated", Cause: CauseApproved}); !errors.Is(err, ErrAuditUnavailable) {
				t.Fatalf("Begin: %v", err)
			}
			recs := admin.records()
			id := recs[len(recs)-1].ID
			// Nothing retries it: the Keeper closes it, as abandoned,
			// since its Begin failed and no write was made.
			stop := runKeeper(t, r, time.Nanosecond)
			waitFor(t, func() bool { return len(outcomesFor(admin.records(), id)) > 0 })
			stop()
			if outs := outcomesFor(admin.records(), id); outs[0].Result != ResultAbandoned {
				t.Fatalf("outcome %+v; want abandoned", outs[0])
			}
			return id
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			admin := newFakeAdmin(DefaultTopic)
			r, _ := newRecorder(admin, &memHeads{})
			r.Record(ctxT(t), topicObj(), "Topic", Record{Operation: OpAlterTopicConfig, Resource: "Before"})
			id := tc.run(t, r, admin)
			// Later changes chain on after everything stored.
			r.Record(ctxT(t), topicObj(), "Topic", Record{Operation: OpAddPartitions, Resource: "After"})
			recs := admin.records()
			if outs := outcomesFor(recs, id); len(outs) != 1 {
				t.Fatalf("change %s has %d outcomes, want exactly one: %+v", id, len(outs), outs)
			}
			if last := recs[len(recs)-1]; last.Seq != int64(len(recs)) {
				t.Fatalf("last record has seq %d, want %d (one chain, no fork)", last.Seq, len(recs))
			}
			if f := VerifyChain(admin.stored(), nil); len(f) != 0 {
				t.Fatalf("findings %v", f)
			}
		})
	}
}
