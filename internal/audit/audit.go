// Package audit records every broker mutation twice: as a Kubernetes Event on
// the object that caused it (what `kubectl describe` shows) and on the
// broker's audit topic (what an Inspector General replays from the earliest
// offset). Records never hold a secret: credentials appear only as the fact
// that they changed.
//
// # Complete by construction: intent, then outcome
//
// A reconciler calls Begin before a broker write and Done after it. Begin
// appends an intent record and returns only once the broker has stored it;
// if it cannot, the reconciler must not make the write (it retries later,
// as for any transient error). Done appends the outcome with a context
// detached from the caller's cancellation, so a graceful shutdown still
// records the result of a write already sent. A process killed between the
// two leaves an intent without outcome; the next leader's Keeper closes it
// (result "interrupted") unless a retried write adopts it first (see
// Record.Key). So every broker change the operator makes has:
//
//   - exactly one intent record, stored before the write was sent, with a
//     unique ID, the operation, resource, object, ticket, cause and the
//     before/after state;
//   - at most one outcome record with the same ID: "succeeded", "failed"
//     (with the error text), "interrupted" (the operator stopped before it
//     learned the result: the write may or may not have happened; the next
//     reconcile re-reads the broker and records any change it makes as a
//     change of its own) or "abandoned" (the intent was stored after its
//     caller had given up waiting, so no write was made for it).
//
// A write that failed without an answer from the broker (a lost
// connection, a timeout) may have been made all the same: its intent stays
// open until a reconcile reads the broker, which confirms it (succeeded) if
// the broker shows its effect; otherwise it is closed "failed" with the
// error. Intents left by a stopped process are settled the same way (see
// Confirm) before the Keeper would close them as interrupted.
//
// Grouping records by ID yields one change per ID. An intent without an
// outcome means the write is in flight, or the operator stopped and the next
// leader has not handed over yet.
//
// # Tamper evidence: a hash chain
//
// Every record carries seq (1, 2, 3, ... on the topic's single partition)
// and prevHash (hex SHA-256 of the previous record's stored value bytes;
// GenesisHash for the first). The operator periodically publishes the chain
// head (seq, offset, hash) outside the broker, in a ConfigMap. VerifyChain
// replays the topic and reports what was changed, removed or inserted. See
// verify.go for what this detects and what it cannot.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/flowcontrol"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/kafka"
)

// DefaultTopic is the audit topic's default name.
const DefaultTopic = "hms.audit"

// Operations recorded.
const (
	OpCreateTopic      = "CreateTopic"
	OpAlterTopicConfig = "AlterTopicConfig"
	OpAddPartitions    = "AddPartitions"
	OpDeleteTopic      = "DeleteTopic"
	OpCreateACL        = "CreateACL"
	OpDeleteACL        = "DeleteACL"
	OpUpsertCredential = "UpsertCredential"
	OpDeleteCredential = "DeleteCredential"
	OpSetQuota         = "SetQuota"
)

// Phases of a change: the intent is stored before the broker write, the
// outcome after it.
const (
	PhaseIntent  = "intent"
	PhaseOutcome = "outcome"
)

// Results an outcome record carries.
const (
	ResultSucceeded = "succeeded"
	ResultFailed    = "failed"
	// ResultInterrupted closes an intent whose process stopped before it
	// learned the write's result.
	ResultInterrupted = "interrupted"
	// ResultAbandoned closes an intent that was stored only after its
	// caller had stopped waiting for it: no write was made for it.
	ResultAbandoned = "abandoned"
)

// Texts of the outcomes the operator writes itself.
const (
	interruptedText    = "interrupted: the operator stopped before it learned the result of this write, which may or may not have reached the broker; the next reconcile re-reads the broker and records any change it makes as a change of its own"
	abandonedText      = "abandoned: this intent was stored only after its caller had stopped waiting for it, so the broker write was never made"
	intentRepeatedNote = "the audit trail was read again after this change's intent was stored (its topic was lost or unanswered), so the intent may be missing: this outcome repeats it"
	confirmedNote      = "confirmed: the operator stopped before it learned the result of this write; a later reconcile of the object found its effect on the broker and made no write of its own"
)

// ObjectRef names the Kubernetes object behind a change.
type ObjectRef struct {
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	UID        string `json:"uid"`
	Generation int64  `json:"generation"`
}

// Record is one audit entry: what callers pass to Begin, and what a reader
// decodes from the audit topic (intent and outcome records both decode into
// it; an outcome has only the chain fields, ID, Phase, Time, Result, Error
// and, if DoneWith gave it, After).
type Record struct {
	// Seq and PrevHash link the record into the hash chain; the writer
	// sets them.
	Seq      int64  `json:"seq,omitempty"`
	PrevHash string `json:"prevHash,omitempty"`
	// ID is unique per change; the intent and its outcome share it.
	ID    string    `json:"id"`
	Phase string    `json:"phase,omitempty"`
	Time  time.Time `json:"time"`
	// Key is the caller's idempotency key (see IdempotencyKey). An intent
	// left without outcome by a stopped process is adopted by the next
	// Begin with the same Key, Operation, Resource and After, so a write
	// retried after a crash reuses its intent instead of appearing as two
	// changes. Empty means IdempotencyKey(obj, Operation, Resource).
	Key       string `json:"key,omitempty"`
	Operation string `json:"operation,omitempty"`
	// Resource is the broker resource changed: a topic name or a principal.
	Resource string    `json:"resource,omitempty"`
	Object   ObjectRef `json:"object"`
	// Ticket authorised the change. For a drift repair, which restores
	// an earlier approved state and needs no new ticket, it is the ticket
	// that approved that state; nil only for revocations.
	Ticket *busv1.AppliedTicket `json:"ticket,omitempty"`
	// Cause says why: "approved change", "drift repair", "deletion".
	Cause  string `json:"cause,omitempty"`
	Before any    `json:"before,omitempty"`
	After  any    `json:"after,omitempty"`
	// Result and Error are set on outcome records; Note says how an
	// outcome written by a later process was learned (see Confirm).
	Result string `json:"result,omitempty"`
	Error  string `json:"error,omitempty"`
	Note   string `json:"note,omitempty"`
}

// wireRecord is the stored form: Record with the object optional, so an
// outcome record carries nothing but what it adds.
type wireRecord struct {
	Seq       int64                `json:"seq"`
	PrevHash  string               `json:"prevHash"`
	ID        string               `json:"id"`
	Phase     string               `json:"phase"`
	Time      time.Time            `json:"time"`
	Key       string               `json:"key,omitempty"`
	Operation string               `json:"operation,omitempty"`
	Resource  string               `json:"resource,omitempty"`
	Object    *ObjectRef           `json:"object,omitempty"`
	Ticket    *busv1.AppliedTicket `json:"ticket,omitempty"`
	Cause     string               `json:"cause,omitempty"`
	Before    any                  `json:"before,omitempty"`
	After     any                  `json:"after,omitempty"`
	Result    string               `json:"result,omitempty"`
	Error     string               `json:"error,omitempty"`
	Note      string               `json:"note,omitempty"`
}

// Causes of a change.
const (
	CauseApproved   = "approved change"
	CauseDrift      = "drift repair"
	CauseDeletion   = "deletion"
	CauseRevocation = "revocation"
	CauseRotation   = "credential rotation"
)

// Default Event budget: about what a person reading `kubectl describe` could
// follow, far below what a bulk change produces.
const (
	DefaultEventRate  = 10
	DefaultEventBurst = 100
)

// normalEvent emits a Normal Event if the budget allows it.
func (r *Recorder) normalEvent(obj client.Object, reason, note string) {
	r.eventsOnce.Do(func() {
		rate, burst := r.EventRate, r.EventBurst
		if rate == 0 {
			rate = DefaultEventRate
		}
		if burst <= 0 {
			burst = DefaultEventBurst
		}
		if rate > 0 {
			r.eventBudget = flowcontrol.NewTokenBucketRateLimiter(rate, burst)
		}
	})
	if r.eventBudget != nil && !r.eventBudget.TryAccept() {
		suppressedEvents.Inc()
		return
	}
	r.Events.Eventf(obj, nil, corev1.EventTypeNormal, reason, "BrokerChange", "%s", note)
}

// DefaultOutcomeTimeout bounds how long Done tries to store an outcome
// before it hands the record to the Keeper to retry.
const DefaultOutcomeTimeout = 10 * time.Second

// DefaultIntentTimeout bounds how long Begin waits for its intent to be
// stored (Recorder.IntentTimeout).
const DefaultIntentTimeout = 10 * time.Second

// ErrAuditUnavailable is what every failure to store an intent matches: the
// broker write it would have recorded must not be made. It wraps
// kafka.ErrUnavailable, so reconcilers that back off on an unreachable
// broker treat it the same way.
var ErrAuditUnavailable = fmt.Errorf("audit trail unavailable: %w", kafka.ErrUnavailable)

// IntentError is Begin failing to store an intent. It matches only
// ErrAuditUnavailable (and so kafka.ErrUnavailable), never the adapter
// error that caused it: a reconciler must not take a missing audit topic
// for a missing topic of its own, or an audit refusal for a refusal of its
// change. Cause holds that error for logs.
type IntentError struct {
	Operation, Resource string
	Cause               error
}

func (e *IntentError) Error() string {
	return fmt.Sprintf("%v: storing the intent of %s %s: %v", ErrAuditUnavailable, e.Operation, e.Resource, e.Cause)
}

// Unwrap exposes ErrAuditUnavailable only (see the type's comment).
func (e *IntentError) Unwrap() error { return ErrAuditUnavailable }

// Recorder writes audit records. Build it with a struct literal; it is safe
// for concurrent use. Only the leader may use it: the hash chain needs one
// writer.
type Recorder struct {
	Admin  kafka.Admin
	Topic  string
	Events events.EventRecorder
	// Heads, if set, is where the chain head is published; the writer
	// also reads it on start (checkpoint, and a floor the chain never
	// goes back below).
	Heads HeadStore
	// OutcomeTimeout bounds Done; default DefaultOutcomeTimeout.
	OutcomeTimeout time.Duration
	// IntentTimeout bounds Begin's wait for its intent to be stored;
	// default DefaultIntentTimeout.
	IntentTimeout time.Duration
	// EventRate and EventBurst bound the Normal "BrokerChange" Events, one
	// API write each: a bulk change of thousands of objects would
	// otherwise spend as many writes on Events as on the objects
	// themselves. Beyond the budget an Event is left out (the audit topic
	// has every change, and hmsbus_broker_change_events_suppressed_total
	// counts them); Warning Events are never limited. Zero values take
	// DefaultEventRate and DefaultEventBurst; a negative rate disables the
	// limit.
	EventRate  float32
	EventBurst int

	eventsOnce  sync.Once
	eventBudget flowcontrol.RateLimiter

	once sync.Once
	c    *chain
}

func (r *Recorder) chain() *chain {
	r.once.Do(func() { r.c = newChain(r.Admin, r.Topic, r.Heads) })
	return r.c
}

// IdempotencyKey is the default Record.Key: the object's UID and
// resourceVersion, the operation and the resource. Reconcilers should pass
// the resourceVersion the object had when the reconcile started, so every
// attempt of one reconcile of one object version gets the same key.
func IdempotencyKey(uid, resourceVersion, operation, resource string) string {
	return uid + "/" + resourceVersion + "/" + operation + "/" + resource
}

// Unfinished is an intent a stopped process left without outcome, as
// Confirm shows it: the operation, resource and the before/after state it
// recorded (JSON, nil when absent).
type Unfinished struct {
	Operation, Resource string
	Before, After       json.RawMessage
}

// Confirm settles intents that a stopped process (a killed operator, a
// replaced leader) left without outcome for obj, using what a reconcile of
// obj has just read from the broker: holds reports whether the broker's
// state shows the write of an intent took effect. Each intent it holds for
// gets the outcome "succeeded" with a note saying it was confirmed later,
// so the change that reached the broker has one complete record instead
// of an "interrupted" one that leaves a reader guessing. Reconcilers call
// it after reading the broker and before deciding on writes; an intent a
// write of this process has superseded (see Begin) is never confirmed. It
// returns how many it settled; the rest wait for a retried write to adopt
// them, or for the Keeper to close them as interrupted. Cheap when there
// is nothing to settle.
func (r *Recorder) Confirm(ctx context.Context, obj client.Object, holds func(Unfinished) bool) (int, error) {
	c := r.chain()
	// The intents left open are known once the trail is loaded; a new
	// leader's first reconciles are exactly the ones that find them.
	if err := c.ensureLoaded(ctx); err != nil {
		return 0, fmt.Errorf("loading the audit trail to settle interrupted writes: %w", err)
	}
	if !c.hasOrphans() {
		return 0, nil
	}
	settled := 0
	for _, o := range c.confirmable(string(obj.GetUID()), holds) {
		out := &wireRecord{ID: o.id, Phase: PhaseOutcome, Time: time.Now().UTC(), Result: ResultSucceeded, Note: confirmedNote}
		if err := c.closeOrphan(ctx, o, out, "confirmed"); err != nil {
			return settled, err
		}
		settled++
		log.FromContext(ctx).Info("audit intent of an interrupted write confirmed from the broker's state", "id", o.id, "operation", o.op, "resource", o.resource)
	}
	return settled, nil
}

// Pending is a change whose intent is stored and whose outcome is not yet.
type Pending struct {
	r      *Recorder
	obj    client.Object
	kind   string
	intent wireRecord
	done   atomic.Bool
	epoch  int64 // the chain's load when the intent was stored
}

// ID is the change's ID, shared by its intent and outcome records.
func (p *Pending) ID() string { return p.intent.ID }

// Begin stores the intent of a broker change before it is made. It returns
// only once the broker has stored the intent. On error (an *IntentError,
// which matches ErrAuditUnavailable and kafka.ErrUnavailable) the caller
// must not make the broker write, and retries later as for any transient
// error. On success the caller makes the write and then calls Done with its
// result, also when the write failed.
func (r *Recorder) Begin(ctx context.Context, obj client.Object, kind string, rec Record) (*Pending, error) {
	c := r.chain()
	rec.Object = ObjectRef{Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName(), UID: string(obj.GetUID()), Generation: obj.GetGeneration()}
	if rec.Key == "" {
		rec.Key = IdempotencyKey(string(obj.GetUID()), obj.GetResourceVersion(), rec.Operation, rec.Resource)
	}
	w := wireRecord{
		ID: uuid.NewString(), Phase: PhaseIntent, Time: time.Now().UTC(), Key: rec.Key,
		Operation: rec.Operation, Resource: rec.Resource, Object: &rec.Object, Ticket: rec.Ticket,
		Cause: rec.Cause, Before: rec.Before, After: rec.After,
	}
	if _, err := json.Marshal(&w); err != nil {
		return nil, fmt.Errorf("encoding audit record %s %s: %w", rec.Operation, rec.Resource, err)
	}
	if err := c.ensureLoaded(ctx); err != nil {
		return nil, &IntentError{Operation: rec.Operation, Resource: rec.Resource, Cause: err}
	}
	p := &Pending{r: r, obj: obj, kind: kind, intent: w, epoch: c.epoch.Load()}
	// A write retried after a crash carries the key of the intent its
	// first attempt left open: reuse that intent, so the trail shows one
	// change, closed by this attempt's outcome.
	if o := c.adopt(rec.Key, rec.Operation, rec.Resource, canonicalJSON(rec.After)); o != nil {
		p.intent.ID = o.id
		log.FromContext(ctx).Info("audit intent adopted from an earlier attempt", "id", o.id, "operation", rec.Operation, "resource", rec.Resource)
		return p, nil
	}
	// This write is needed now, so whatever an earlier, interrupted
	// attempt of it did, the broker does not show it: that attempt can no
	// longer be confirmed from the broker's state (see Confirm).
	c.supersede(rec.Object.UID, rec.Operation, rec.Resource)
	// A reconcile waits for its intent only so long: while the trail
	// cannot be written it reports AuditUnavailable and backs off rather
	// than hold its object's status at what it was.
	actx, cancel := context.WithTimeout(ctx, orDefault(r.IntentTimeout, DefaultIntentTimeout))
	defer cancel()
	res, err := c.append(actx, &w, recordKey(rec.Object), func(res appendResult) {
		// The caller gave up before the intent was stored; if it was
		// stored anyway, no write was made for it: close it, unless a
		// retry adopts it first.
		if res.err == nil {
			c.addOrphan(orphanFrom(&w, res.offset, ResultAbandoned))
		}
	})
	if err != nil {
		return nil, &IntentError{Operation: rec.Operation, Resource: rec.Resource, Cause: err}
	}
	c.markOpen(w.ID, res.offset)
	return p, nil
}

// Done stores the outcome of the change: succeeded when err is nil, failed
// with err's text otherwise (err must not carry a secret; the adapter's
// errors never do). It uses a context detached from ctx's cancellation and
// bounded by OutcomeTimeout, so a shutdown that cancels ctx still records a
// write already sent. An outcome that cannot be stored in time is kept in a
// Warning event and retried by the Keeper. Calling Done again does nothing.
func (p *Pending) Done(ctx context.Context, err error) { p.DoneWith(ctx, err, nil) }

// DoneWith is Done with what the broker reported after the write (for
// example the created topic with its ID, unknown when the intent was
// stored), recorded in the outcome's "after".
func (p *Pending) DoneWith(ctx context.Context, err error, after any) {
	if p == nil || !p.done.CompareAndSwap(false, true) {
		return
	}
	r := p.r
	c := r.chain()
	if err != nil && kafka.NoAnswer(err) {
		// The broker may have made the write: the next reconcile, which
		// reads the broker, settles it (see holdUnknown, Confirm).
		c.holdUnknown(&p.intent, err)
		log.FromContext(ctx).Info("audit intent of a write without an answer kept open until the broker is read again", "id", p.intent.ID, "operation", p.intent.Operation, "resource", p.intent.Resource)
		return
	}
	out := wireRecord{ID: p.intent.ID, Phase: PhaseOutcome, Time: time.Now().UTC(), Result: ResultSucceeded, After: after}
	if err != nil {
		out.Result, out.Error = ResultFailed, err.Error()
	}
	// If the trail is read again before the outcome is stored, because
	// its topic was gone or unanswered, the intent may be lost with it:
	// the outcome then says in full what changed (see storeOutcome), so a
	// reader of what is left does not find a result without a change.
	if err == nil {
		note := fmt.Sprintf("%s %s (%s)", p.intent.Operation, p.intent.Resource, p.intent.Cause)
		if p.intent.Ticket != nil {
			note += fmt.Sprintf(" under %s", p.intent.Ticket.Reference)
		}
		r.normalEvent(p.obj, p.intent.Operation, note)
		brokerChanges.WithLabelValues(p.kind, p.intent.Operation, p.intent.Cause).Inc()
	}

	timeout := r.OutcomeTimeout
	if timeout <= 0 {
		timeout = DefaultOutcomeTimeout
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if stored := c.storeOutcome(actx, &out, *p.intent.Object, &p.intent, p.epoch); stored {
		return
	}
	auditWriteFailures.Inc()
	value, _ := json.Marshal(out)
	intent, _ := json.Marshal(p.intent)
	log.FromContext(ctx).Error(errors.New("audit outcome not stored in time"), "audit outcome kept in a Warning event and retried in the background",
		"id", out.ID, "operation", p.intent.Operation, "resource", p.intent.Resource)
	r.Events.Eventf(p.obj, nil, corev1.EventTypeWarning, "AuditWriteFailed", "BrokerChange", "audit topic %s unavailable; retrying in the background; intent: %s; outcome: %s", r.Topic, string(intent), string(value))
}

// Record stores a change that has already been made: Begin and Done(nil)
// in one call. It is for callers not yet moved to Begin/Done; since the
// write already happened, an intent that cannot be stored is kept in a
// Warning event rather than lost.
func (r *Recorder) Record(ctx context.Context, obj client.Object, kind string, rec Record) {
	p, err := r.Begin(ctx, obj, kind, rec)
	if err == nil {
		p.Done(ctx, nil)
		return
	}
	note := fmt.Sprintf("%s %s (%s)", rec.Operation, rec.Resource, rec.Cause)
	if rec.Ticket != nil {
		note += fmt.Sprintf(" under %s", rec.Ticket.Reference)
	}
	r.normalEvent(obj, rec.Operation, note)
	brokerChanges.WithLabelValues(kind, rec.Operation, rec.Cause).Inc()
	auditWriteFailures.Inc()
	rec.Object = ObjectRef{Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName(), UID: string(obj.GetUID()), Generation: obj.GetGeneration()}
	rec.Time = time.Now().UTC()
	value, _ := json.Marshal(rec)
	log.FromContext(ctx).Error(err, "appending audit record failed; kept in a Warning event", "operation", rec.Operation, "resource", rec.Resource)
	r.Events.Eventf(obj, nil, corev1.EventTypeWarning, "AuditWriteFailed", "BrokerChange", "audit topic %s unavailable; record: %s", r.Topic, string(value))
}

// recordKey is the Kafka record key: the object, for readers that filter.
func recordKey(o ObjectRef) []byte {
	return []byte(o.Kind + "/" + o.Namespace + "/" + o.Name)
}

// EnsureTopic creates the audit topic if it is missing. Only the operator's
// superuser may write to it: no Subscription can be granted on it, because
// the Topic controller refuses to manage the audit topic's name.
func EnsureTopic(ctx context.Context, admin kafka.Admin, topic string) error {
	existing, err := admin.DescribeTopics(ctx, topic)
	if err != nil {
		return fmt.Errorf("describing audit topic %s: %w", topic, err)
	}
	if _, ok := existing[topic]; ok {
		return nil
	}
	// Audit records are kept forever: cleanup by deletion would lose the
	// trail, so retention is unlimited. One partition: the hash chain is
	// one sequence, written by the single leader.
	_, err = admin.CreateTopic(ctx, kafka.NewTopic{Name: topic, Partitions: 1, ReplicationFactor: -1, Configs: map[string]string{"retention.ms": "-1"}})
	if err != nil && !errors.Is(err, kafka.ErrTopicExists) {
		return fmt.Errorf("creating audit topic %s: %w", topic, err)
	}
	return nil
}
