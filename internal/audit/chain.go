package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/hms-platform/bus-operator/internal/kafka"
)

// maxGroup bounds how many records one group commit sends: appends are
// serialised to keep the chain linear, but records queued meanwhile are
// chained in memory one after another and sent together, so concurrent
// reconcilers do not pay one broker round trip each.
const maxGroup = 256

// loadTimeout bounds the writer's start-up read of the audit topic.
const loadTimeout = 2 * time.Minute

// defaultAnswerTimeout is how long the writer waits for the brokers to
// answer a group before it abandons it (see AbandonAppends): far longer
// than any healthy answer or retry, short enough that a broker that lost
// its data does not stop the audit trail, and every broker write behind
// it, for good.
const defaultAnswerTimeout = 30 * time.Second

// unknownResultWait bounds how long a write that failed without an answer
// waits for a reconcile to look at the broker before it is recorded failed.
const unknownResultWait = 5 * time.Minute

// holdUnknown keeps the intent of a write that failed without an answer
// from the broker open, as an orphan to be settled: a retry of the same
// write adopts it, a reconcile that finds its effect confirms it
// (succeeded), otherwise the Keeper closes it failed with err's text.
func (c *chain) holdUnknown(w *wireRecord, err error) {
	o := orphanFrom(w, 0, ResultFailed)
	o.errText, o.unknown = err.Error(), true
	c.mu.Lock()
	defer c.mu.Unlock()
	o.offset = c.open[w.ID]
	delete(c.open, w.ID)
	c.orphans[o.id] = &o
}

// abandonWait bounds the wait for the producer to fail what it abandoned.
const abandonWait = 10 * time.Second

// errNotLinear is an audit topic the chain cannot live on.
var errNotLinear = errors.New("audit topic is not a single partition")

// errNotSent is an append its caller withdrew before a writer took it: the
// record is certainly not stored.
var errNotSent = errors.New("audit append not sent")

// errResultUnknown is an append whose caller stopped waiting after it was
// sent: the writer hands the broker's answer to the request's late func.
var errResultUnknown = errors.New("audit append sent, result unknown when the caller gave up")

// chainHead is the last record of the chain as the writer knows it.
type chainHead struct {
	Seq    int64
	Hash   string
	Offset int64 // -1 when the head is not a stored record (genesis)
	Time   time.Time
}

// appendResult is where one record landed.
type appendResult struct {
	seq    int64
	offset int64
	err    error
}

// Request states: a waiting request is resolved by the writer or
// abandoned by its caller, whichever comes first.
const (
	reqWaiting int32 = iota
	reqResolved
	reqAbandoned
)

type appendReq struct {
	rec   *wireRecord
	key   []byte
	done  chan appendResult // buffered: the writer never blocks on it
	state atomic.Int32
	// late runs, in the writer, with the definitive result of a request
	// whose caller stopped waiting. It must not append.
	late func(appendResult)
}

// orphan is an intent without outcome that this process did not open, or
// whose caller gave up before it was stored.
type orphan struct {
	id, key, op, resource, after string
	before                       string
	objectUID                    string
	recordKey                    []byte
	offset                       int64
	result                       string // outcome written if nobody adopts it
	since                        time.Time
	// superseded: a later intent of the same object, operation and
	// resource was stored without adopting this one, so the state that
	// intent found says this write did not take effect (or was undone);
	// the broker's state can no longer confirm it.
	superseded bool
	// errText is the outcome's error when it is closed; set for a write
	// of this process that failed without an answer (see holdUnknown),
	// which waits until a reconcile has looked at the broker (checked).
	errText          string
	unknown, checked bool
}

func orphanFrom(w *wireRecord, offset int64, result string) orphan {
	o := orphan{id: w.ID, key: w.Key, op: w.Operation, resource: w.Resource, after: canonicalJSON(w.After), before: canonicalJSON(w.Before), offset: offset, result: result, since: time.Now()}
	if w.Object != nil {
		o.recordKey = recordKey(*w.Object)
		o.objectUID = w.Object.UID
	}
	return o
}

// canonicalJSON renders v the way it reads back from the topic (objects
// with sorted keys, numbers verbatim), so an intent built in memory compares
// equal to the same intent decoded from the log.
func canonicalJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var x any
	if err := d.Decode(&x); err != nil {
		return string(b)
	}
	if b, err = json.Marshal(x); err != nil {
		return ""
	}
	return string(b)
}

// queuedOutcome is an outcome Done could not store in time.
type queuedOutcome struct {
	rec *wireRecord
	obj ObjectRef
}

// chain is the single writer of the audit topic's hash chain. Appends go
// through one writer at a time (the holder of sem): it numbers the queued
// records, links each to the previous one's hash, sends them, and waits for
// the broker's definitive answer for each, so its idea of the head is
// always what the log holds.
type chain struct {
	admin kafka.Admin
	topic string
	heads HeadStore

	qmu   sync.Mutex
	queue []*appendReq

	sem    chan struct{} // the writer role
	loaded atomic.Bool
	head   chainHead // owned by the writer (sem)

	mu           sync.Mutex // guards what follows
	pubHead      chainHead  // copy of head for readers
	orphans      map[string]*orphan
	open         map[string]int64 // intents opened here, not yet closed: ID -> offset
	retry        []queuedOutcome
	sincePublish int
	kick         chan struct{}
	// epoch counts invalidations: an intent stored in an earlier epoch
	// may be gone from the log (the brokers lost their data, the topic
	// was recreated), so its outcome repeats it (see DoneWith).
	epoch atomic.Int64
	// answerWait overrides defaultAnswerTimeout (tests).
	answerWait time.Duration

	// Owned by the writer (sem), set by load: outcomes the log holds
	// since the checkpoint, by change ID, and the intents of Begin calls
	// that failed although their record may be stored. An append that
	// failed may have been stored all the same (the answer was lost, the
	// producer was abandoned), so a retried outcome is checked against
	// the log before it is sent again: one change, one outcome.
	storedOutcomes map[string]appendResult
	failedIntents  map[string]bool
}

func newChain(admin kafka.Admin, topic string, heads HeadStore) *chain {
	if topic == "" {
		topic = DefaultTopic
	}
	return &chain{
		admin: admin, topic: topic, heads: heads,
		sem:     make(chan struct{}, 1),
		orphans: map[string]*orphan{},
		open:    map[string]int64{},
		kick:    make(chan struct{}, 1),
	}
}

// append chains rec and stores it, returning once the broker has answered
// or ctx has ended. If ctx ends first the record may still be stored: the
// writer then hands the definitive result to late (which may be nil).
func (c *chain) append(ctx context.Context, rec *wireRecord, key []byte, late func(appendResult)) (appendResult, error) {
	req := &appendReq{rec: rec, key: key, done: make(chan appendResult, 1), late: late}
	c.qmu.Lock()
	c.queue = append(c.queue, req)
	c.qmu.Unlock()
	for {
		select {
		case res := <-req.done:
			return res, res.err
		case c.sem <- struct{}{}:
			// We hold the writer role: send the queued group. Nobody else
			// appends until it is answered, so the chain stays linear. The
			// group runs on its own so that we can still honour ctx: a
			// record the broker may have is waited for whoever gave up.
			go func() {
				defer func() { <-c.sem }()
				c.writeGroup()
			}()
		case <-ctx.Done():
			if c.withdraw(req) {
				return appendResult{}, fmt.Errorf("%w: %w", errNotSent, ctx.Err())
			}
			if req.state.CompareAndSwap(reqWaiting, reqAbandoned) {
				return appendResult{}, fmt.Errorf("%w: %w", errResultUnknown, ctx.Err())
			}
			res := <-req.done // resolved just now
			return res, res.err
		}
	}
}

// withdraw takes a request out of the queue if no writer took it yet.
func (c *chain) withdraw(req *appendReq) bool {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	for i, q := range c.queue {
		if q == req {
			c.queue = append(c.queue[:i], c.queue[i+1:]...)
			return true
		}
	}
	return false
}

func (c *chain) resolve(req *appendReq, res appendResult) {
	if req.state.CompareAndSwap(reqWaiting, reqResolved) {
		req.done <- res
		return
	}
	if req.late != nil {
		req.late(res)
	}
}

// writeGroup sends the queued records as one group. Only the writer calls
// it.
func (c *chain) writeGroup() {
	c.qmu.Lock()
	n := min(len(c.queue), maxGroup)
	reqs := append([]*appendReq(nil), c.queue[:n]...)
	c.queue = c.queue[n:]
	c.qmu.Unlock()
	if len(reqs) == 0 {
		return
	}
	if !c.loaded.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), loadTimeout)
		err := c.load(ctx)
		cancel()
		if err != nil {
			for _, r := range reqs {
				c.resolve(r, appendResult{err: err})
			}
			return
		}
	}

	// Chain the group in memory, then send it: the producer keeps the
	// records in order on the partition.
	h := c.head
	heads := make([]chainHead, len(reqs))
	results := make([]<-chan kafka.AppendResult, len(reqs))
	for i, r := range reqs {
		if r.rec.Phase == PhaseOutcome {
			if res, stored := c.storedOutcomes[r.rec.ID]; stored {
				// An earlier attempt was stored although it failed:
				// that record is the outcome, a second would make the
				// change look as if it happened twice.
				c.resolve(r, res)
				continue
			}
		}
		r.rec.Seq, r.rec.PrevHash = h.Seq+1, h.Hash
		value, err := json.Marshal(r.rec)
		if err != nil {
			c.resolve(r, appendResult{err: fmt.Errorf("encoding audit record: %w", err)})
			continue
		}
		h = chainHead{Seq: r.rec.Seq, Hash: HashRecord(value), Time: r.rec.Time}
		heads[i] = h
		// Background: a record the broker may have must be waited for
		// whatever its caller does (the producer's delivery timeout still
		// fails a record never sent).
		results[i] = c.admin.AppendAsync(context.Background(), c.topic, r.key, value)
	}
	// Collect every answer, move the head, then answer the callers: one
	// whose append returned sees the head past its record.
	answers := make([]appendResult, len(reqs))
	landed, failed, gap := -1, false, false
	abandoned := false
	watchdog := time.NewTimer(c.answerTimeout())
	defer watchdog.Stop()
	for i := range reqs {
		if results[i] == nil {
			continue // not encodable: already answered
		}
		var res kafka.AppendResult
		select {
		case res = <-results[i]:
		case <-abandonedC(abandoned):
			res = c.awaitAbandoned(results[i])
		case <-watchdog.C:
			// No answer in all this time: brokers that lost their data
			// never answer a request sent before. Give the records up,
			// and read the log before the next append to learn which of
			// them are stored.
			log.Log.WithName("audit").Error(errors.New("no answer from the brokers"), "audit records abandoned; the chain is read again before the next append", "timeout", c.answerTimeout().String(), "records", len(reqs)-i)
			c.admin.AbandonAppends(c.topic)
			abandoned = true
			c.invalidate()
			res = c.awaitAbandoned(results[i])
		}
		if abandoned && res.Err == nil {
			// Stored after all (answered as it was abandoned): the log
			// is read again anyway before the next append.
			c.invalidate()
		}
		if res.Err == nil && res.Partition != 0 {
			res.Err = fmt.Errorf("%w: record went to partition %d", errNotLinear, res.Partition)
			c.invalidate() // re-check the topic before the next append
		}
		if res.Err != nil {
			// A failed append may be stored all the same (the answer
			// was lost on the way back): read the log before the next
			// append, to chain after what it holds and to know which
			// outcomes are stored (see storedOutcomes).
			c.invalidate()
			if errors.Is(res.Err, kafka.ErrTopicNotFound) && !abandoned {
				// The audit topic is gone (deleted, or the brokers lost
				// their data): load again, which recreates it and goes on
				// from the published head, so the loss stays visible. The
				// producer forgets the old topic's partitions.
				c.admin.AbandonAppends(c.topic)
				abandoned = true
				c.invalidate()
			}
			if reqs[i].rec.Phase == PhaseIntent {
				if c.failedIntents == nil {
					c.failedIntents = map[string]bool{}
				}
				c.failedIntents[reqs[i].rec.ID] = true
			}
			failed = true
			answers[i] = appendResult{err: res.Err}
			continue
		}
		if failed {
			gap = true
		}
		heads[i].Offset = res.Offset
		landed = i
		answers[i] = appendResult{seq: heads[i].Seq, offset: res.Offset}
	}
	if landed >= 0 {
		c.head = heads[landed]
		c.mu.Lock()
		c.pubHead = c.head
		c.sincePublish += landed + 1
		c.mu.Unlock()
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	if gap {
		// A record failed while a later one of its group was stored: the
		// log now has a hole the verifier will report as removed. The
		// idempotent producer should never do this; say so loudly.
		log.Log.WithName("audit").Error(errors.New("audit chain gap"), "an audit record failed while a later one was stored; the trail shows a missing record", "headSeq", c.head.Seq)
	}
	for i, r := range reqs {
		if results[i] != nil {
			c.resolve(r, answers[i])
		}
	}
}

// ensureLoaded learns the chain head and the open intents, once.
func (c *chain) ensureLoaded(ctx context.Context) error {
	if c.loaded.Load() {
		return nil
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("waiting for the audit writer: %w", ctx.Err())
	}
	defer func() { <-c.sem }()
	if c.loaded.Load() {
		return nil
	}
	lctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	return c.load(lctx)
}

// load reads the audit topic from the last checkpoint: the last chained
// record is the head the next record links to, and intents without an
// outcome are orphans (their process stopped). Only the writer calls it.
func (c *chain) load(ctx context.Context) error {
	topics, err := c.admin.DescribeTopics(ctx, c.topic)
	if err != nil {
		return fmt.Errorf("describing audit topic %s: %w", c.topic, err)
	}
	t, ok := topics[c.topic]
	if !ok {
		// The first change of a new install must not wait for (or race
		// with) another runnable creating the topic: create it here. A
		// topic deleted by someone is recreated too; the chain then goes
		// on from the published head, so a verifier reports the loss.
		if err := EnsureTopic(ctx, c.admin, c.topic); err != nil {
			return err
		}
		t = kafka.Topic{Name: c.topic, Partitions: 1}
	}
	if t.Partitions != 1 {
		// Fail closed: records spread over partitions cannot form one
		// chain, and a trail that cannot be verified is not a trail.
		return fmt.Errorf("%w: %s has %d partitions, the hash chain needs exactly one", errNotLinear, c.topic, t.Partitions)
	}
	offs, err := c.admin.PartitionOffsets(ctx, c.topic, 0)
	for delay := 50 * time.Millisecond; errors.Is(err, kafka.ErrTopicNotFound) && !ok && delay < 5*time.Second; delay *= 2 {
		// Just created: its metadata may take a moment to spread.
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the new audit topic: %w", ctx.Err())
		case <-time.After(delay):
		}
		offs, err = c.admin.PartitionOffsets(ctx, c.topic, 0)
	}
	if err != nil {
		return fmt.Errorf("reading audit topic offsets: %w", err)
	}
	var pub *Head
	if c.heads != nil {
		if pub, err = c.heads.LoadHead(ctx); err != nil {
			return fmt.Errorf("reading the published audit head: %w", err)
		}
		if pub != nil && pub.Topic != "" && pub.Topic != c.topic {
			pub = nil // published for another topic: no checkpoint here
		}
	}
	from := offs.Start
	if pub != nil {
		// The checkpoint: every intent before it has its outcome. Read
		// from the head record too, to continue the chain from it.
		from = max(offs.Start, min(pub.Checkpoint, pub.Offset, offs.End))
	}
	records, err := c.admin.ReadRecords(ctx, c.topic, 0, from, offs.End, 0)
	if err != nil {
		return fmt.Errorf("reading audit topic from offset %d: %w", from, err)
	}
	if from > offs.Start && !hasChained(records) && offs.End > offs.Start {
		// Nothing chained since the checkpoint (written by an older
		// operator, or garbage): read the whole log to find the head.
		if records, err = c.admin.ReadRecords(ctx, c.topic, 0, offs.Start, offs.End, 0); err != nil {
			return fmt.Errorf("reading audit topic: %w", err)
		}
	}

	head := chainHead{Seq: 0, Hash: GenesisHash, Offset: -1}
	open := map[string]*orphan{}
	outcomes := map[string]appendResult{}
	for _, r := range records {
		l, ok := parseChained(r.Value)
		if !ok {
			continue
		}
		// The rest of the record, for its time and, on an intent, what a
		// retry must match to adopt it. A record that decodes only partly
		// still counts: an intent of it is closed, just never adopted.
		var w wireRecord
		d := json.NewDecoder(bytes.NewReader(r.Value))
		d.UseNumber()
		_ = d.Decode(&w)
		w.ID, w.Phase = l.ID, l.Phase
		head = chainHead{Seq: l.Seq, Hash: HashRecord(r.Value), Offset: r.Offset, Time: w.Time}
		switch l.Phase {
		case PhaseIntent:
			result := ResultInterrupted
			if c.failedIntents[l.ID] {
				// Its Begin failed, so no write was made for it.
				result = ResultAbandoned
			}
			o := orphanFrom(&w, r.Offset, result)
			open[l.ID] = &o
		case PhaseOutcome:
			delete(open, l.ID)
			outcomes[l.ID] = appendResult{seq: l.Seq, offset: r.Offset}
		}
	}
	if head.Seq == 0 && len(records) > 0 {
		// Only records written before the chain existed: the first
		// chained record links to the last of them.
		head.Hash = HashRecord(records[len(records)-1].Value)
	}
	lg := log.FromContext(ctx).WithName("audit")
	if pub != nil && head.Seq < pub.Seq {
		// The log ends before what the operator published: records were
		// removed from the tail (or the log rolled back). Continue after
		// the published head so the gap stays visible to a verifier
		// instead of being papered over by new records.
		lg.Error(errors.New("audit trail shorter than its published head"), "records were removed from the end of the audit topic; continuing after the published head",
			"storedSeq", head.Seq, "publishedSeq", pub.Seq, "publishedOffset", pub.Offset)
		head = chainHead{Seq: pub.Seq, Hash: pub.Hash, Offset: pub.Offset, Time: pub.Time}
	}
	c.head = head
	c.storedOutcomes, c.failedIntents = outcomes, nil
	c.mu.Lock()
	c.pubHead = head
	for id, o := range open {
		if _, mine := c.open[id]; !mine {
			c.orphans[id] = o
		}
	}
	for id := range outcomes {
		// Closed by an outcome whose append failed but was stored: an
		// orphan put back for another try is closed already.
		delete(c.orphans, id)
	}
	c.mu.Unlock()
	c.loaded.Store(true)
	lg.Info("audit chain loaded", "topic", c.topic, "headSeq", head.Seq, "headOffset", head.Offset, "openIntents", len(open), "readFrom", from)
	return nil
}

func hasChained(records []kafka.StoredRecord) bool {
	for _, r := range records {
		if _, ok := parseChained(r.Value); ok {
			return true
		}
	}
	return false
}

// adopt hands the orphan intent with this key and content to a retried
// write, or returns nil.
func (c *chain) adopt(key, op, resource, after string) *orphan {
	if key == "" {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, o := range c.orphans {
		if o.key == key && o.op == op && o.resource == resource && o.after == after {
			delete(c.orphans, id)
			c.open[id] = o.offset
			return o
		}
	}
	return nil
}

// supersede marks the orphans of an object's operation on a resource as
// no longer confirmable: a new intent for the same write was just stored.
func (c *chain) supersede(objectUID, op, resource string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, o := range c.orphans {
		if o.objectUID == objectUID && o.op == op && o.resource == resource {
			o.superseded = true
		}
	}
}

// confirmable takes out of the orphans, for closing as succeeded, the
// interrupted intents of the object whose effect holds says the broker
// shows. A taken orphan is put back by the caller if its outcome cannot
// be stored.
func (c *chain) confirmable(objectUID string, holds func(Unfinished) bool) []*orphan {
	c.mu.Lock()
	var candidates []*orphan
	for _, o := range c.orphans {
		if o.objectUID == objectUID && o.result != ResultAbandoned && !o.superseded {
			candidates = append(candidates, o)
		}
	}
	c.mu.Unlock()
	var out []*orphan
	for _, o := range candidates {
		u := Unfinished{Operation: o.op, Resource: o.resource, Before: rawJSON(o.before), After: rawJSON(o.after)}
		if !holds(u) {
			c.mu.Lock()
			o.checked = true
			c.mu.Unlock()
			continue
		}
		c.mu.Lock()
		if cur, still := c.orphans[o.id]; still && !cur.superseded {
			delete(c.orphans, o.id)
			c.open[o.id] = o.offset
			out = append(out, o)
		}
		c.mu.Unlock()
	}
	return out
}

func rawJSON(s string) json.RawMessage {
	if s == "" || s == "null" {
		return nil
	}
	return json.RawMessage(s)
}

func (c *chain) addOrphan(o orphan) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.orphans[o.id] = &o
}

func (c *chain) markOpen(id string, offset int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open[id] = offset
}

// abandonedC is a closed channel once the group was abandoned (its answers
// are then waited for only briefly), nil (never ready) before.
func abandonedC(abandoned bool) <-chan time.Time {
	if !abandoned {
		return nil
	}
	ch := make(chan time.Time)
	close(ch)
	return ch
}

// awaitAbandoned waits briefly for the producer to fail an abandoned record.
func (c *chain) awaitAbandoned(result <-chan kafka.AppendResult) kafka.AppendResult {
	select {
	case res := <-result:
		return res
	case <-time.After(abandonWait):
		return kafka.AppendResult{Err: fmt.Errorf("%w: no answer to the audit append after %s", kafka.ErrUnavailable, c.answerTimeout())}
	}
}

// invalidate makes the next append read the log again first.
func (c *chain) invalidate() {
	c.epoch.Add(1)
	c.loaded.Store(false)
}

func (c *chain) answerTimeout() time.Duration {
	if c.answerWait > 0 {
		return c.answerWait
	}
	return defaultAnswerTimeout
}

func (c *chain) hasOrphans() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.orphans) > 0
}

func (c *chain) markClosed(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.open, id)
}

// storeOutcome appends an outcome, retrying until ctx ends. If it is not
// stored by then it is queued for the Keeper, unless it turns out stored.
func (c *chain) storeOutcome(ctx context.Context, out *wireRecord, obj ObjectRef, intent *wireRecord, epoch int64) bool {
	// The trail may be read again between attempts (its topic lost): from
	// then on the outcome repeats its intent, which may be gone.
	repeat := func() {
		if intent != nil && c.epoch.Load() != epoch {
			repeatIntent(out, intent)
		}
	}
	// An outcome that waits in the retry queue is stored later, perhaps
	// after the trail was lost: it always repeats its intent.
	queue := func() {
		if intent != nil {
			repeatIntent(out, intent)
		}
		c.queueOutcome(out, obj)
	}
	late := func(res appendResult) {
		if res.err == nil {
			c.markClosed(out.ID)
			return
		}
		queue()
	}
	delay := 100 * time.Millisecond
	for {
		repeat()
		_, err := c.append(ctx, out, recordKey(obj), late)
		if err == nil {
			c.markClosed(out.ID)
			return true
		}
		if errors.Is(err, errResultUnknown) {
			return false // late decides once the broker answers
		}
		if ctx.Err() != nil {
			queue()
			return false
		}
		select {
		case <-ctx.Done():
			queue()
			return false
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
}

// repeatIntent copies into an outcome what its intent says of the change,
// for a trail that may have lost the intent.
func repeatIntent(out, in *wireRecord) {
	if out.Operation != "" {
		return
	}
	out.Key, out.Operation, out.Resource, out.Object = in.Key, in.Operation, in.Resource, in.Object
	out.Ticket, out.Cause, out.Before = in.Ticket, in.Cause, in.Before
	if out.After == nil {
		out.After = in.After
	}
	out.Note = intentRepeatedNote
}

func (c *chain) queueOutcome(out *wireRecord, obj ObjectRef) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, q := range c.retry {
		if q.rec.ID == out.ID {
			return
		}
	}
	c.retry = append(c.retry, queuedOutcome{rec: out, obj: obj})
}

// flushRetries stores queued outcomes; it stops at the first failure.
func (c *chain) flushRetries(ctx context.Context) error {
	c.mu.Lock()
	queued := append([]queuedOutcome(nil), c.retry...)
	c.mu.Unlock()
	for _, q := range queued {
		if !c.claimRetry(q.rec.ID) {
			continue
		}
		rec := *q.rec // a fresh copy: the writer numbers it anew
		rec.Seq, rec.PrevHash = 0, ""
		late := func(res appendResult) {
			if res.err == nil {
				c.markClosed(q.rec.ID)
				return
			}
			c.queueOutcome(q.rec, q.obj)
		}
		if _, err := c.append(ctx, &rec, recordKey(q.obj), late); err != nil {
			if !errors.Is(err, errResultUnknown) {
				c.queueOutcome(q.rec, q.obj)
			}
			return err
		}
		c.markClosed(q.rec.ID)
	}
	return nil
}

// claimRetry takes an outcome off the retry queue for one attempt.
func (c *chain) claimRetry(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, r := range c.retry {
		if r.rec.ID == id {
			c.retry = append(c.retry[:i], c.retry[i+1:]...)
			return true
		}
	}
	return false
}

// closeOrphans writes the outcome of every orphan older than window, and
// returns how many it closed.
func (c *chain) closeOrphans(ctx context.Context, window time.Duration) (int, error) {
	c.mu.Lock()
	var due []*orphan
	for _, o := range c.orphans {
		age := time.Since(o.since)
		// A write that failed here without an answer waits until a
		// reconcile has read the broker since (it may yet be
		// confirmed), however long the broker stays away, up to a
		// bound.
		waiting := o.unknown && !o.checked && !o.superseded && age < unknownResultWait
		if age >= window && !waiting {
			due = append(due, o)
		}
	}
	c.mu.Unlock()
	closed := 0
	for _, o := range due {
		c.mu.Lock()
		_, still := c.orphans[o.id]
		if still {
			// Claimed for closing: a Begin can no longer adopt it.
			delete(c.orphans, o.id)
			c.open[o.id] = o.offset
		}
		c.mu.Unlock()
		if !still {
			continue
		}
		text := interruptedText
		switch {
		case o.result == ResultAbandoned:
			text = abandonedText
		case o.errText != "":
			text = o.errText
		}
		out := &wireRecord{ID: o.id, Phase: PhaseOutcome, Time: time.Now().UTC(), Result: o.result, Error: text}
		if err := c.closeOrphan(ctx, o, out, o.result); err != nil {
			return closed, err
		}
		closed++
	}
	return closed, nil
}

// closeOrphan appends out, the outcome of an orphan already taken out of
// c.orphans; if it cannot be stored, the orphan goes back for the next
// round. label is the metric's result.
func (c *chain) closeOrphan(ctx context.Context, o *orphan, out *wireRecord, label string) error {
	putBack := func() {
		c.mu.Lock()
		delete(c.open, o.id)
		c.orphans[o.id] = o
		c.mu.Unlock()
	}
	late := func(res appendResult) {
		if res.err != nil {
			putBack()
			return
		}
		c.markClosed(o.id)
		interruptedIntents.WithLabelValues(label).Inc()
	}
	if _, err := c.append(ctx, out, o.recordKey, late); err != nil {
		if !errors.Is(err, errResultUnknown) {
			putBack()
		}
		return fmt.Errorf("closing audit intent %s: %w", o.id, err)
	}
	c.markClosed(o.id)
	interruptedIntents.WithLabelValues(label).Inc()
	return nil
}

// snapshot returns the head and the checkpoint: the lowest offset of an
// intent still without outcome, or the offset after the head.
func (c *chain) snapshot() (chainHead, int64, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.pubHead
	cp := h.Offset + 1
	for _, off := range c.open {
		cp = min(cp, off)
	}
	for _, o := range c.orphans {
		cp = min(cp, o.offset)
	}
	return h, max(cp, 0), c.sincePublish
}

func (c *chain) published(seq int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sincePublish = int(max(0, c.pubHead.Seq-seq))
}
