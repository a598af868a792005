package controllers_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/audit"
	"github.com/hms-platform/bus-operator/internal/governance"
	"github.com/hms-platform/bus-operator/internal/kafka"
	"github.com/hms-platform/bus-operator/internal/plan"
)

// TestPropertyNoBrokerStateWithoutApproval drives the operator with random
// sequences of edits, approvals, denials, expiries, deletions, recreations
// and out-of-band broker changes, while the operator works concurrently,
// and then judges the audit trail with an oracle that knows only what the
// test did (its own log of every action, with wall-clock times) and what the
// API server and the broker hold at the end: the broker must never have
// received a grant or topic state that no valid approval covered when it was
// written. Examples of the rules are in grants_test.go and names_test.go;
// this test looks for the cases nobody thought of.
//
// HMSBUS_PROPERTY_SEED=<n> replays a run: sequence i uses seed n+i. The
// operator's timing differs between runs, so a replay repeats the actions,
// not necessarily every interleaving. HMSBUS_PROPERTY_JOURNAL=1 prints the
// journal of every sequence, not only of those that fail.
func TestPropertyNoBrokerStateWithoutApproval(t *testing.T) {
	seed := propertySeed(t)
	t.Logf("property seed %d (replay with HMSBUS_PROPERTY_SEED=%d)", seed, seed)
	began := time.Now()

	claims := watchClaims(t)
	defer claims.halt()
	var worlds []*world
	for i := range propSequences {
		worlds = append(worlds, runSequence(t, i, seed+int64(i)))
	}
	generated := time.Since(began)
	quiet := waitForQuiet(t, worlds)
	claims.halt()
	for _, w := range worlds {
		w.collectFinals(t)
	}
	inUniverse := map[string]*world{}
	for _, w := range worlds {
		for _, ns := range w.namespaces {
			inUniverse[ns] = w
		}
	}
	records := map[*world][]audit.Record{}
	for _, r := range readAudit(t, func(r audit.Record) bool { return inUniverse[r.Object.Namespace] != nil }) {
		w := inUniverse[r.Object.Namespace]
		records[w] = append(records[w], r)
	}

	failed := false
	var oracles []*oracle
	for _, w := range worlds {
		o := &oracle{w: w, claims: claims, records: records[w], tol: decisionTolerance, claimTol: claimTolerance}
		oracles = append(oracles, o)
		var vs []violation
		for i, r := range o.records {
			vs = append(vs, o.checkRecord(i, r)...)
		}
		vs = append(vs, o.finalChecks(snapshotBroker(t, w))...)
		for _, v := range vs {
			t.Errorf("seed %d, sequence %d: %s", w.seed, w.index, o.format(v))
		}
		// The oracle must have teeth in every run: forged records that
		// break each rule are fed to it and must all be refused.
		forged := o.forgeries()
		if len(forged) < 4 {
			t.Errorf("sequence %d: only %d forgeries could be built from its trail: the bootstrap steps did not reach the broker", w.index, len(forged))
		}
		for _, f := range forged {
			if len(o.checkRecord(len(o.records), f.record)) == 0 {
				t.Errorf("sequence %d: the oracle accepted a forged record (%s): %s", w.index, f.what, o.describe(f.record))
			}
		}
		// A run in which nothing reached the broker under an approval
		// would prove nothing.
		counts := causeCounts(o.records)
		if counts[audit.CauseApproved+"/"+audit.OpCreateTopic] == 0 || counts[audit.CauseApproved+"/"+audit.OpCreateACL] == 0 {
			t.Errorf("sequence %d made no approved CreateTopic or CreateACL: the property was not exercised (%v)", w.index, counts)
		}
		t.Logf("sequence %d (seed %d, namespaces %v): %d steps, %d tickets, %d objects, %d out-of-band changes; %d broker changes audited %v; %d violations",
			w.index, w.seed, w.namespaces, w.steps, len(w.tickets), len(w.lives), len(w.oob), len(o.records), counts, len(vs))
		if len(vs) > 0 || os.Getenv("HMSBUS_PROPERTY_JOURNAL") != "" {
			failed = failed || len(vs) > 0
			t.Logf("journal of sequence %d (seed %d), with the audit trail:\n%s", w.index, w.seed, o.journal())
		}
	}
	if !quiet && !failed {
		for _, o := range oracles {
			t.Logf("journal of sequence %d (seed %d), with the audit trail:\n%s", o.w.index, o.w.seed, o.journal())
		}
	}
	t.Logf("generated in %s, whole test %s", generated.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

const (
	propSequences = 3
	propMinSteps  = 28
	propMaxSteps  = 38
	// decisionTolerance allows for a decision made just before a denial,
	// an expiry or a ticket deletion reached the operator's cache, and
	// written (intent first) a moment later.
	decisionTolerance = 2 * time.Second
	// claimTolerance allows for the claim watch's lag and a cache read
	// just before a claim changed hands; it is kept short so a Topic
	// recreated within seconds still counts as another object.
	claimTolerance = time.Second
	// quietFor is longer than the adapter's read-your-writes window (5s:
	// for that long after its own write the operator sees what it wrote,
	// not an out-of-band change made since) plus a jittered resync period
	// (2s + 10%), so a resync that would repair something has had its
	// chance to write.
	quietFor = 8 * time.Second
	// oobRetention is the value out-of-band config changes use: no spec
	// ever asks for it, so a broker topic holding it at the end was not
	// repaired.
	oobRetention = "4242"
	// identicalRecreatePercent of recreations reuse the deleted object's
	// exact spec and its old ticket, with no new review: the approval
	// pinned a spec of another object (another UID), which existed when it
	// was recorded; this one did not.
	identicalRecreatePercent = 20
)

// propReviewers are the governance reviewers; requester (alice) is not one.
var propReviewers = []string{reviewer, "raj"}

func propertySeed(t *testing.T) int64 {
	if s := os.Getenv("HMSBUS_PROPERTY_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("HMSBUS_PROPERTY_SEED=%q: %v", s, err)
		}
		return v
	}
	return time.Now().UnixNano()
}

// ---- the test's own log of what it did ----

type objKey struct {
	kind     busv1.CoveredKind
	ns, name string
}

func (k objKey) String() string { return fmt.Sprintf("%s %s/%s", k.kind, k.ns, k.name) }

// genLog is one generation of an object's spec, as the API server stored it.
type genLog struct {
	gen   int64
	at    time.Time // start of the write that made it
	topic *busv1.TopicSpec
	sub   *busv1.SubscriptionSpec
	hash  string
}

func (g *genLog) ticket() string {
	if g.topic != nil {
		return g.topic.ChangeTicket
	}
	return g.sub.ChangeTicket
}

// objLife is one object (one UID) from its creation to its disappearance.
// Times are taken around the test's own calls, so the spans are a little
// wider than the truth: the oracle gives the operator the benefit of the
// doubt, and misses only violations within that margin.
type objLife struct {
	key      objKey
	uid      string
	created  time.Time // start of the create call
	deleteAt time.Time // start of the delete call
	goneAt   time.Time // first time the test saw it gone
	gens     map[int64]*genLog
	last     int64
	final    client.Object // as it is at the end; nil when gone
}

func (l *objLife) cur() *genLog { return l.gens[l.last] }

// brokerName is the Topic's broker name: spec.topicName is immutable.
func (l *objLife) brokerName() string { return l.gens[1].topic.TopicName }

func (l *objLife) alive() bool { return l.deleteAt.IsZero() && l.goneAt.IsZero() }

// existedDuring reports whether the object existed at some moment of
// [from, to].
func (l *objLife) existedDuring(from, to time.Time) bool {
	return !to.Before(l.created) && (l.goneAt.IsZero() || !from.After(l.goneAt))
}

func (l *objLife) record(obj client.Object, at time.Time) *genLog {
	gen := obj.GetGeneration()
	if _, ok := l.gens[gen]; ok {
		return nil
	}
	g := &genLog{gen: gen, at: at}
	var spec any
	switch o := obj.(type) {
	case *busv1.Topic:
		g.topic = o.Spec.DeepCopy()
		spec = *g.topic
	case *busv1.Subscription:
		g.sub = o.Spec.DeepCopy()
		spec = *g.sub
	}
	// The same hash the operator and the reviewers' pins use.
	h, err := governance.SpecHash(spec)
	if err != nil {
		panic(err)
	}
	g.hash = h
	l.gens[gen] = g
	l.last = max(l.last, gen)
	return g
}

type reviewLog struct {
	reviewer   string
	deny       bool
	unpinned   bool
	start, end time.Time
	err        error
}

type ticketLife struct {
	ns, name  string
	covers    []busv1.CoveredObject
	created   time.Time
	notAfter  time.Time // as stored (the API server keeps seconds)
	reviews   []reviewLog
	deletedAt time.Time
	final     *busv1.ChangeTicket // status at the end (or just before deletion)
}

// attempt is the test's record of reviewer's approval (or denial): the
// successful call if there was one, else the last try (a call may fail after
// its write landed).
func (tl *ticketLife) attempt(reviewer string, deny bool) *reviewLog {
	var last *reviewLog
	for i := range tl.reviews {
		r := &tl.reviews[i]
		if r.reviewer != reviewer || r.deny != deny {
			continue
		}
		if r.err == nil {
			return r
		}
		last = r
	}
	return last
}

func (tl *ticketLife) approved() bool {
	return slices.ContainsFunc(tl.reviews, func(r reviewLog) bool { return !r.deny && r.err == nil && r.reviewer != requester })
}

func (tl *ticketLife) denied() bool {
	return slices.ContainsFunc(tl.reviews, func(r reviewLog) bool { return r.deny && r.err == nil })
}

// oobLog is a change the test made on the broker behind the operator's back.
type oobLog struct {
	start, end time.Time
	op         string // audit.OpDeleteTopic, audit.OpAlterTopicConfig or audit.OpDeleteACL
	resource   string // topic name, or principal
	acl        string // the ACL deleted
}

// world is one sequence: its universe, and everything the test did in it.
type world struct {
	index      int
	seed       int64
	start      time.Time
	steps      int
	namespaces []string
	pool       []string // broker topic names
	principals []string
	lives      []*objLife
	byUID      map[string]*objLife
	tickets    map[string]*ticketLife // by namespace/name
	oob        []oobLog
	journal    []string
}

func (w *world) rel(at time.Time) string {
	return fmt.Sprintf("+%.3fs (%s)", at.Sub(w.start).Seconds(), at.Format("15:04:05.000"))
}

func (w *world) ticket(ns, name string) *ticketLife { return w.tickets[ns+"/"+name] }

func (w *world) livesOf(k objKey) []*objLife {
	var out []*objLife
	for _, l := range w.lives {
		if l.key == k {
			out = append(out, l)
		}
	}
	return out
}

// collectFinals reads the end state of every ticket and object: approvals
// and pins are append-only, so the final ticket holds every review ever
// recorded.
func (w *world) collectFinals(t *testing.T) {
	for _, tl := range w.tickets {
		if !tl.deletedAt.IsZero() {
			continue
		}
		tk := &busv1.ChangeTicket{}
		if err := env.Client.Get(ctxT(t), client.ObjectKey{Namespace: tl.ns, Name: tl.name}, tk); err != nil {
			t.Fatalf("reading ticket %s/%s: %v", tl.ns, tl.name, err)
		}
		tl.final = tk
	}
	for _, l := range w.lives {
		if !l.goneAt.IsZero() {
			continue
		}
		obj := newObject(l.key)
		err := env.Client.Get(ctxT(t), client.ObjectKey{Namespace: l.key.ns, Name: l.key.name}, obj)
		switch {
		case apierrors.IsNotFound(err) || (err == nil && string(obj.GetUID()) != l.uid):
			l.goneAt = time.Now()
		case err != nil:
			t.Fatalf("reading %s: %v", l.key, err)
		default:
			l.final = obj
		}
	}
}

func newObject(k objKey) client.Object {
	if k.kind == busv1.KindTopic {
		return &busv1.Topic{ObjectMeta: metav1.ObjectMeta{Namespace: k.ns, Name: k.name}}
	}
	return &busv1.Subscription{ObjectMeta: metav1.ObjectMeta{Namespace: k.ns, Name: k.name}}
}

// ---- who holds which name, over time ----

// claimSpan is one NameClaim object: seen from `from` until `to` (zero
// while it exists).
type claimSpan struct {
	kind     busv1.ClaimKind
	key      string // busv1.ClaimKey: "a.b" and "a_b" are one name
	owner    string // UID
	from, to time.Time
}

// claimWatch follows the NameClaims: they say which Topic object holds a
// broker topic name, which the audit trail alone cannot say (adopting a
// topic needs no write). A watch, on a client of its own (the shared one is
// rate-limited), sees even a claim that lives for a moment; the times are
// when the events arrived, within claimTolerance of the truth.
type claimWatch struct {
	mu     sync.Mutex
	spans  map[string]*claimSpan // by NameClaim UID
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

func watchClaims(t *testing.T) *claimWatch {
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = 200, 400
	wc, err := client.NewWithWatch(cfg, client.Options{Scheme: env.Client.Scheme()})
	if err != nil {
		t.Fatalf("client for watching NameClaims: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cw := &claimWatch{spans: map[string]*claimSpan{}, cancel: cancel, done: make(chan struct{})}
	ready := make(chan struct{})
	var readyOnce sync.Once
	go func() {
		defer close(cw.done)
		defer readyOnce.Do(func() { close(ready) })
		known := time.Now() // until when the spans are known to be complete
		for ctx.Err() == nil {
			var list busv1.NameClaimList
			if err := wc.List(ctx, &list); err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			cw.relist(list.Items, known, time.Now())
			w, err := wc.Watch(ctx, &busv1.NameClaimList{}, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
			if err != nil {
				continue
			}
			readyOnce.Do(func() { close(ready) })
			for ev := range w.ResultChan() {
				nc, ok := ev.Object.(*busv1.NameClaim)
				if !ok {
					continue
				}
				switch ev.Type {
				case watch.Added, watch.Modified:
					cw.add(nc, time.Now())
				case watch.Deleted:
					cw.remove(nc, time.Now())
				}
			}
			w.Stop()
			// Events may have been missed from here to the next list.
			known = time.Now()
		}
	}()
	// The sequences start only once every claim change is seen: a claim
	// taken and released before the watch began would be missing.
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("the NameClaim watch did not start within 30s")
	}
	return cw
}

func (cw *claimWatch) halt() {
	cw.once.Do(func() { cw.cancel(); <-cw.done })
}

func (cw *claimWatch) add(nc *busv1.NameClaim, at time.Time) {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	if _, ok := cw.spans[string(nc.UID)]; !ok {
		cw.spans[string(nc.UID)] = &claimSpan{kind: nc.Spec.Kind, key: busv1.ClaimKey(nc.Spec.Kind, nc.Spec.Name), owner: nc.Spec.Owner.UID, from: at}
	}
}

func (cw *claimWatch) remove(nc *busv1.NameClaim, at time.Time) {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	if s, ok := cw.spans[string(nc.UID)]; ok && s.to.IsZero() {
		s.to = at
	}
}

// relist catches up after a (re)started watch: a claim first seen now may
// have been created any time since known; one missing now was deleted
// before now.
func (cw *claimWatch) relist(items []busv1.NameClaim, known, now time.Time) {
	seen := map[string]bool{}
	for i := range items {
		seen[string(items[i].UID)] = true
		cw.add(&items[i], known)
	}
	cw.mu.Lock()
	defer cw.mu.Unlock()
	for uid, s := range cw.spans {
		if !seen[uid] && s.to.IsZero() {
			s.to = now
		}
	}
}

// holders lists the owners of name's claim at some moment within tol of at.
func (cw *claimWatch) holders(kind busv1.ClaimKind, name string, at time.Time, tol time.Duration) []string {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	key := busv1.ClaimKey(kind, name)
	var out []string
	for _, s := range cw.spans {
		if s.kind == kind && s.key == key && !s.from.After(at.Add(tol)) && (s.to.IsZero() || !s.to.Before(at.Add(-tol))) {
			out = append(out, s.owner)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// holderNow is the owner of name's claim when polling stopped, or "".
func (cw *claimWatch) holderNow(kind busv1.ClaimKind, name string) string {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	key := busv1.ClaimKey(kind, name)
	for _, s := range cw.spans {
		if s.kind == kind && s.key == key && s.to.IsZero() {
			return s.owner
		}
	}
	return ""
}

// ---- the generator ----

type disposition int

const (
	dispApprove         disposition = iota // approved at once, pinned (hmsbus approve)
	dispApproveUnpinned                    // approved at once with plain kubectl semantics
	dispPending                            // left pending; a later step may review it
	dispDeny                               // denied before any approval
	dispApproveThenDeny                    // approved, denied at a later step
	dispShortWindow                        // a window of 2-3.5 s, approved at once: expires after approval
	dispShortLate                          // a window of 1.5 s, reviewed at a later step: expires before approval
	dispReused                             // an existing ticket: its reviews are whatever they were
)

var dispositionNames = [...]string{"approve", "approve unpinned", "pending", "deny", "approve then deny later", "short window", "short window, reviewed late", "reused ticket"}

type generator struct {
	t       *testing.T
	w       *world
	rng     *rand.Rand
	c       client.Client // the requester
	topics  []objKey
	subs    []objKey
	current map[objKey]*objLife // the object of each slot: alive or being deleted
	later   []*ticketLife       // tickets to review at a later step
	toDeny  []*ticketLife
	order   []*ticketLife
	n       int
	forced  *disposition
}

func (g *generator) note(format string, args ...any) {
	g.w.journal = append(g.w.journal, fmt.Sprintf("%s %s", g.w.rel(time.Now()), fmt.Sprintf(format, args...)))
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return "refused: " + err.Error()
}

func runSequence(t *testing.T, index int, seed int64) *world {
	nsA := env.NamespaceT(t, "prop-a")
	nsB := env.NamespaceT(t, "prop-b")
	w := &world{
		index: index, seed: seed, start: time.Now(), namespaces: []string{nsA, nsB},
		// P1.x and P1_x are one name to Kafka and to claims: two
		// spellings in the pool make collisions across namespaces.
		pool:    []string{uniqueName(nsA, "P0"), uniqueName(nsA, "P1"), "P1_" + nsA, uniqueName(nsA, "P2")},
		byUID:   map[string]*objLife{},
		tickets: map[string]*ticketLife{},
	}
	g := &generator{
		t: t, w: w, rng: rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15)), c: requesterClient(t),
		topics:  []objKey{{busv1.KindTopic, nsA, "t0"}, {busv1.KindTopic, nsA, "t1"}, {busv1.KindTopic, nsB, "t2"}, {busv1.KindTopic, nsB, "t0"}},
		subs:    []objKey{{busv1.KindSubscription, nsA, "s0"}, {busv1.KindSubscription, nsA, "s1"}, {busv1.KindSubscription, nsB, "s2"}},
		current: map[objKey]*objLife{},
	}
	for _, s := range g.subs {
		w.principals = append(w.principals, "User:"+s.ns+"."+s.name)
	}
	g.note("sequence %d, seed %d, namespaces %s and %s, broker names %v", index, seed, nsA, nsB, w.pool)

	// Something approved reaches the broker in every sequence, so the
	// oracle always has approved records to judge and forge.
	approveNow := dispApprove
	g.forced = &approveNow
	g.createTopic(g.topics[0])
	g.createSub(g.subs[0], []objKey{g.topics[0]})
	g.forced = nil

	w.steps = propMinSteps + g.rng.IntN(propMaxSteps-propMinSteps+1)
	for range w.steps {
		g.refreshGone()
		g.step()
		time.Sleep(time.Duration(g.rng.IntN(300)) * time.Millisecond)
	}
	g.refreshGone()
	g.note("sequence %d done", index)
	return w
}

type candidate struct {
	weight int
	run    func()
}

// step runs one operation, chosen by weight among those possible now.
func (g *generator) step() {
	var cs []candidate
	add := func(weight int, run func()) { cs = append(cs, candidate{weight, run}) }
	for _, k := range g.topics {
		l := g.current[k]
		switch {
		case l == nil:
			add(6, func() { g.createTopic(k) })
		case l.alive():
			add(5, func() { g.editTopic(l) })
			add(2, func() { g.deleteTopic(l) })
			add(3, func() { g.recreateTopic(l) })
		case l.cur().topic.DeletionPolicy == busv1.DeletionDelete && time.Since(l.deleteAt) > 1500*time.Millisecond:
			add(3, func() { g.releaseTopic(l) })
		}
	}
	for _, k := range g.subs {
		l := g.current[k]
		switch {
		case l == nil:
			add(6, func() { g.createSub(k, nil) })
		case l.alive():
			add(5, func() { g.editSub(l) })
			add(2, func() { g.deleteSub(l) })
			add(2, func() { g.recreateSub(l) })
		}
	}
	if len(g.later) > 0 {
		add(8, g.reviewLater)
	}
	add(4, g.grantChurn)
	if g.deniable() != nil {
		add(5, g.denyLater)
	}
	if g.secondApprovable() != nil {
		add(2, g.secondApproval)
	}
	if len(g.order) > 0 {
		add(1, g.selfApproval)
		add(1, g.deleteTicket)
	}
	add(3, g.oobDeleteTopic)
	add(3, g.oobAlterConfig)
	add(4, g.oobDeleteACL)

	total := 0
	for _, c := range cs {
		total += c.weight
	}
	n := g.rng.IntN(total)
	for _, c := range cs {
		if n < c.weight {
			c.run()
			return
		}
		n -= c.weight
	}
}

func (g *generator) reviewer() string { return propReviewers[g.rng.IntN(len(propReviewers))] }

func (g *generator) otherNS(ns string) string {
	if ns == g.w.namespaces[0] {
		return g.w.namespaces[1]
	}
	return g.w.namespaces[0]
}

// ticketFor picks the ticket for a write of k: usually a new one covering
// it (sometimes with another object too), sometimes an existing ticket of
// the namespace, which may not cover k or may predate the new spec.
func (g *generator) ticketFor(k objKey, ops ...busv1.Operation) (*ticketLife, disposition) {
	if g.forced == nil && g.rng.IntN(100) < 12 {
		var same []*ticketLife
		for _, tl := range g.order {
			if tl.ns == k.ns && tl.deletedAt.IsZero() {
				same = append(same, tl)
			}
		}
		if len(same) > 0 {
			return same[g.rng.IntN(len(same))], dispReused
		}
	}
	covered := []busv1.CoveredObject{covers(k.kind, k.name, ops...)}
	if g.forced == nil && g.rng.IntN(100) < 20 {
		var others []objKey
		for _, o := range slices.Concat(g.topics, g.subs) {
			if o.ns == k.ns && o != k && !slices.ContainsFunc(covered, func(c busv1.CoveredObject) bool { return c.Kind == o.kind && c.Name == o.name }) {
				others = append(others, o)
			}
		}
		if len(others) > 0 {
			o := others[g.rng.IntN(len(others))]
			covered = append(covered, covers(o.kind, o.name))
		}
	}
	d := g.disposition()
	window := time.Hour
	switch d {
	case dispShortWindow:
		window = time.Duration(2000+g.rng.IntN(1500)) * time.Millisecond
	case dispShortLate:
		window = 1500 * time.Millisecond
	}
	return g.fileTicket(k.ns, covered, window), d
}

func (g *generator) disposition() disposition {
	if g.forced != nil {
		return *g.forced
	}
	n := g.rng.IntN(100)
	for _, c := range []struct {
		d disposition
		w int
	}{{dispApprove, 34}, {dispApproveUnpinned, 16}, {dispPending, 14}, {dispDeny, 8}, {dispApproveThenDeny, 11}, {dispShortWindow, 10}, {dispShortLate, 7}} {
		if n < c.w {
			return c.d
		}
		n -= c.w
	}
	return dispApprove
}

func (g *generator) fileTicket(ns string, covered []busv1.CoveredObject, window time.Duration) *ticketLife {
	g.n++
	name := fmt.Sprintf("chg-%d", g.n)
	start := time.Now()
	tk := fileTicketSpec(g.t, ns, name, ticketSpec{covers: covered, notAfter: window})
	tl := &ticketLife{ns: ns, name: name, covers: tk.Spec.Covers, created: start, notAfter: tk.Spec.NotAfter.Time}
	g.w.tickets[ns+"/"+name] = tl
	g.order = append(g.order, tl)
	var cov []string
	for _, c := range tl.covers {
		cov = append(cov, fmt.Sprintf("%s %s %v", c.Kind, c.Name, c.Operations))
	}
	g.note("file ticket %s/%s covering [%s], notAfter %s", ns, name, strings.Join(cov, "; "), g.w.rel(tl.notAfter))
	return tl
}

// review carries out a new ticket's disposition once its objects exist: a
// reviewer approves what exists.
func (g *generator) review(tl *ticketLife, d disposition) {
	switch d {
	case dispApprove, dispShortWindow:
		g.approve(tl, g.reviewer(), false)
	case dispApproveUnpinned:
		g.approve(tl, g.reviewer(), true)
	case dispPending, dispShortLate:
		g.later = append(g.later, tl)
	case dispDeny:
		g.deny(tl, g.reviewer())
	case dispApproveThenDeny:
		g.approve(tl, g.reviewer(), false)
		g.toDeny = append(g.toDeny, tl)
	}
}

func (g *generator) approve(tl *ticketLife, who string, unpinned bool) {
	ctx := ctxT(g.t)
	start := time.Now()
	var err error
	if unpinned {
		err = env.ApproveUnpinned(ctx, tl.ns, tl.name, who)
	} else {
		err = env.Approve(ctx, tl.ns, tl.name, who)
	}
	tl.reviews = append(tl.reviews, reviewLog{reviewer: who, unpinned: unpinned, start: start, end: time.Now(), err: err})
	how := "pinned, as hmsbus approve"
	if unpinned {
		how = "unpinned, as plain kubectl"
	}
	g.note("%s approves %s/%s (%s): %s", who, tl.ns, tl.name, how, errText(err))
}

func (g *generator) deny(tl *ticketLife, who string) {
	start := time.Now()
	err := env.Deny(ctxT(g.t), tl.ns, tl.name, who)
	tl.reviews = append(tl.reviews, reviewLog{reviewer: who, deny: true, start: start, end: time.Now(), err: err})
	g.note("%s denies %s/%s: %s", who, tl.ns, tl.name, errText(err))
}

func (g *generator) create(obj client.Object) *objLife {
	k := objKey{kindOf(g.t, obj), obj.GetNamespace(), obj.GetName()}
	start := time.Now()
	if err := g.c.Create(ctxT(g.t), obj); err != nil {
		g.t.Fatalf("creating %s: %v", k, err)
	}
	l := &objLife{key: k, uid: string(obj.GetUID()), created: start, gens: map[int64]*genLog{}}
	l.record(obj, start)
	g.w.lives = append(g.w.lives, l)
	g.w.byUID[l.uid] = l
	g.current[k] = l
	return l
}

func (g *generator) delete(l *objLife) {
	uid := types.UID(l.uid)
	start := time.Now()
	err := g.c.Delete(ctxT(g.t), newObject(l.key), client.Preconditions{UID: &uid})
	if err != nil && !apierrors.IsNotFound(err) {
		g.t.Fatalf("deleting %s: %v", l.key, err)
	}
	l.deleteAt = start
	// Setting deletionTimestamp on an object with a finalizer bumps its
	// generation (same spec): the finalizer's records carry that one.
	obj := newObject(l.key)
	if err := env.Client.Get(ctxT(g.t), client.ObjectKey{Namespace: l.key.ns, Name: l.key.name}, obj); err == nil && string(obj.GetUID()) == l.uid {
		l.record(obj, start)
	}
}

// checkGone notes when an object being deleted has gone (finalizer done).
func (g *generator) checkGone(l *objLife) bool {
	obj := newObject(l.key)
	err := env.Client.Get(ctxT(g.t), client.ObjectKey{Namespace: l.key.ns, Name: l.key.name}, obj)
	if apierrors.IsNotFound(err) || (err == nil && string(obj.GetUID()) != l.uid) {
		l.goneAt = time.Now()
		if g.current[l.key] == l {
			delete(g.current, l.key)
		}
		g.note("%s uid %s is gone", l.key, l.uid)
		return true
	}
	return false
}

func (g *generator) refreshGone() {
	for _, l := range g.w.lives {
		if !l.deleteAt.IsZero() && l.goneAt.IsZero() {
			g.checkGone(l)
		}
	}
}

func (g *generator) waitGone(l *objLife, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if g.checkGone(l) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

var topicConfigs = []map[string]busv1.ConfigValue{
	nil,
	{"retention.ms": "3600000"},
	{"retention.ms": "7200000"},
	{"retention.ms": "3600000", "cleanup.policy": "compact"},
}

func (g *generator) topicSpec(k objKey, avoid string) busv1.TopicSpec {
	names := slices.DeleteFunc(slices.Clone(g.w.pool), func(n string) bool { return n == avoid })
	s := busv1.TopicSpec{
		TopicName:         names[g.rng.IntN(len(names))],
		Partitions:        int32(1 + g.rng.IntN(2)),
		ReplicationFactor: ptr.To(broker.rf()),
		Config:            maps.Clone(topicConfigs[g.rng.IntN(len(topicConfigs))]),
		DeletionPolicy:    busv1.DeletionRetain,
	}
	if g.rng.IntN(2) == 0 {
		s.AllowedNamespaces = []string{g.otherNS(k.ns)}
	}
	if g.forced == nil && g.rng.IntN(100) < 35 {
		s.DeletionPolicy = busv1.DeletionDelete
	}
	return s
}

// topicOps is what a Topic's ticket asks for: Delete, when the spec deletes
// broker data, most of the time (otherwise its deletion waits).
func (g *generator) topicOps(policy busv1.DeletionPolicy) []busv1.Operation {
	if policy == busv1.DeletionDelete && g.rng.IntN(100) < 80 {
		return []busv1.Operation{busv1.OperationApply, busv1.OperationDelete}
	}
	return nil
}

func (g *generator) createTopic(k objKey) { g.createTopicNamed(k, "") }

// createTopicNamed creates a Topic with broker name brokerName, or with a
// random one other than its previous object's when brokerName is "".
func (g *generator) createTopicNamed(k objKey, brokerName string) {
	avoid := ""
	if prev := g.w.livesOf(k); len(prev) > 0 {
		avoid = prev[len(prev)-1].brokerName()
	}
	s := g.topicSpec(k, avoid)
	if brokerName != "" {
		s.TopicName = brokerName
	}
	tl, d := g.ticketFor(k, g.topicOps(s.DeletionPolicy)...)
	s.ChangeTicket = tl.name
	l := g.create(&busv1.Topic{ObjectMeta: metav1.ObjectMeta{Namespace: k.ns, Name: k.name}, Spec: s})
	g.note("create %s uid %s: broker %s, %d partitions, config %v, allowed %v, %s, under %s (%s)",
		k, l.uid, s.TopicName, s.Partitions, s.Config, s.AllowedNamespaces, s.DeletionPolicy, tl.name, dispositionNames[d])
	g.review(tl, d)
}

func (g *generator) editTopic(l *objLife) {
	cur := l.cur().topic
	parts, cfg, allowed, policy := cur.Partitions, cur.Config, cur.AllowedNamespaces, cur.DeletionPolicy
	for range 1 + g.rng.IntN(2) {
		switch g.rng.IntN(4) {
		case 0:
			if parts < 4 {
				parts++
			}
		case 1:
			cfg = maps.Clone(topicConfigs[g.rng.IntN(len(topicConfigs))])
		case 2:
			if len(allowed) == 0 {
				allowed = []string{g.otherNS(l.key.ns)}
			} else {
				allowed = nil
			}
		case 3:
			if policy == busv1.DeletionDelete {
				policy = busv1.DeletionRetain
			} else {
				policy = busv1.DeletionDelete
			}
		}
	}
	tl, d := g.ticketFor(l.key, g.topicOps(policy)...)
	tp := &busv1.Topic{ObjectMeta: metav1.ObjectMeta{Namespace: l.key.ns, Name: l.key.name}}
	start := time.Now()
	update(g.t, tp, func(tp *busv1.Topic) {
		tp.Spec.Partitions, tp.Spec.Config, tp.Spec.AllowedNamespaces, tp.Spec.DeletionPolicy = parts, maps.Clone(cfg), slices.Clone(allowed), policy
		tp.Spec.ChangeTicket = tl.name
	})
	if string(tp.UID) != l.uid {
		g.t.Fatalf("%s changed UID under the test: %s, want %s", l.key, tp.UID, l.uid)
	}
	l.record(tp, start)
	g.note("edit %s uid %s -> gen %d: %d partitions, config %v, allowed %v, %s, under %s (%s)",
		l.key, l.uid, tp.Generation, parts, cfg, allowed, policy, tl.name, dispositionNames[d])
	g.review(tl, d)
}

func (g *generator) deleteTopic(l *objLife) {
	g.delete(l)
	g.note("delete %s uid %s (deletionPolicy %s, ticket %s)", l.key, l.uid, l.cur().topic.DeletionPolicy, l.cur().ticket())
}

// recreateTopic deletes a Topic and creates one of the same name: usually
// under another broker name and a new ticket, sometimes with the very same
// spec under the old ticket, whose approval never saw the new object.
func (g *generator) recreateTopic(l *objLife) { g.recreateTopicNamed(l, "") }

func (g *generator) recreateTopicNamed(l *objLife, brokerName string) {
	g.deleteTopic(l)
	if !g.waitGone(l, 4*time.Second) {
		g.note("%s uid %s is still being deleted: not recreated", l.key, l.uid)
		return
	}
	if g.rng.IntN(100) < identicalRecreatePercent {
		s := *l.cur().topic.DeepCopy()
		nl := g.create(&busv1.Topic{ObjectMeta: metav1.ObjectMeta{Namespace: l.key.ns, Name: l.key.name}, Spec: s})
		g.note("recreate %s uid %s with the same spec (broker %s) under the old ticket %s, no new review", l.key, nl.uid, s.TopicName, s.ChangeTicket)
		return
	}
	g.createTopicNamed(l.key, brokerName)
}

// grantChurn is issue 10's scenario: a Subscription's ticket stops
// authorising (denied), then a Topic it names is recreated (under the same
// broker name or another) or created, approved by the Topic's own ticket.
// What the Subscription may hold now needs a ticket valid now.
func (g *generator) grantChurn() {
	var subs []*objLife
	for _, k := range g.subs {
		if l := g.current[k]; l != nil && l.alive() {
			subs = append(subs, l)
		}
	}
	if len(subs) == 0 {
		return
	}
	l := subs[g.rng.IntN(len(subs))]
	g.note("grant churn around %s uid %s", l.key, l.uid)
	if tl := g.w.ticket(l.key.ns, l.cur().ticket()); tl != nil && tl.approved() && !tl.denied() && tl.deletedAt.IsZero() && g.rng.IntN(100) < 70 {
		g.deny(tl, g.reviewer())
	}
	refs := l.cur().sub.Topics
	ref := refs[g.rng.IntN(len(refs))]
	k := objKey{busv1.KindTopic, l.key.ns, ref.Name}
	if ref.Namespace != "" {
		k.ns = ref.Namespace
	}
	if !slices.Contains(g.topics, k) {
		return
	}
	approveNow := dispApprove
	g.forced = &approveNow
	defer func() { g.forced = nil }()
	switch t := g.current[k]; {
	case t == nil:
		g.createTopic(k)
	case t.alive() && g.rng.IntN(2) == 0:
		g.recreateTopicNamed(t, t.brokerName())
	case t.alive():
		g.recreateTopic(t)
	}
}

// releaseTopic lets a Topic stuck in deletion (Delete without a valid
// ticket) go by switching it to Retain, which needs no ticket.
func (g *generator) releaseTopic(l *objLife) {
	// Not the suite's update: the object may go at any moment (a pending
	// Delete ticket approved meanwhile), which is no failure here.
	start := time.Now()
	for range 20 {
		tp := &busv1.Topic{}
		err := g.c.Get(ctxT(g.t), client.ObjectKey{Namespace: l.key.ns, Name: l.key.name}, tp)
		if apierrors.IsNotFound(err) || (err == nil && string(tp.UID) != l.uid) {
			g.checkGone(l)
			return
		}
		if err != nil {
			g.t.Fatalf("reading %s: %v", l.key, err)
		}
		tp.Spec.DeletionPolicy = busv1.DeletionRetain
		err = g.c.Update(ctxT(g.t), tp, &client.UpdateOptions{})
		switch {
		case err == nil:
			l.record(tp, start)
			g.note("set deletionPolicy Retain on %s uid %s, stuck in deletion -> gen %d", l.key, l.uid, tp.Generation)
			return
		case apierrors.IsNotFound(err):
			g.checkGone(l)
			return
		case !apierrors.IsConflict(err):
			g.t.Fatalf("updating %s: %v", l.key, err)
		}
	}
	g.note("could not set deletionPolicy Retain on %s uid %s: too many conflicts", l.key, l.uid)
}

func (g *generator) subTopics(k objKey) []objKey {
	n := 1 + g.rng.IntN(2)
	idx := g.rng.Perm(len(g.topics))[:n]
	var out []objKey
	for _, i := range idx {
		out = append(out, g.topics[i])
	}
	return out
}

func refsTo(sub objKey, topics []objKey) []busv1.TopicReference {
	var out []busv1.TopicReference
	for _, tk := range topics {
		r := busv1.TopicReference{Name: tk.name}
		if tk.ns != sub.ns {
			r.Namespace = tk.ns
		}
		out = append(out, r)
	}
	return out
}

func (g *generator) createSub(k objKey, topics []objKey) {
	if topics == nil {
		topics = g.subTopics(k)
	}
	role := busv1.RoleConsume
	if g.forced == nil && g.rng.IntN(2) == 0 {
		role = busv1.RoleProduce
	}
	tl, d := g.ticketFor(k)
	sub := newSub(k.ns, k.name, tl.name, role, refsTo(k, topics)...)
	l := g.create(sub)
	g.note("create %s uid %s: %s %v, under %s (%s)", k, l.uid, role, sub.Spec.Topics, tl.name, dispositionNames[d])
	g.review(tl, d)
}

func (g *generator) editSub(l *objLife) {
	cur := l.cur().sub
	role, refs := cur.Role, slices.Clone(cur.Topics)
	switch g.rng.IntN(3) {
	case 0:
		if role == busv1.RoleProduce {
			role = busv1.RoleConsume
		} else {
			role = busv1.RoleProduce
		}
	default:
		refs = refsTo(l.key, g.subTopics(l.key))
	}
	tl, d := g.ticketFor(l.key)
	sub := &busv1.Subscription{ObjectMeta: metav1.ObjectMeta{Namespace: l.key.ns, Name: l.key.name}}
	start := time.Now()
	update(g.t, sub, func(s *busv1.Subscription) {
		s.Spec.Role, s.Spec.Topics, s.Spec.ChangeTicket = role, slices.Clone(refs), tl.name
	})
	if string(sub.UID) != l.uid {
		g.t.Fatalf("%s changed UID under the test: %s, want %s", l.key, sub.UID, l.uid)
	}
	l.record(sub, start)
	g.note("edit %s uid %s -> gen %d: %s %v, under %s (%s)", l.key, l.uid, sub.Generation, role, refs, tl.name, dispositionNames[d])
	g.review(tl, d)
}

func (g *generator) deleteSub(l *objLife) {
	g.delete(l)
	g.note("delete %s uid %s", l.key, l.uid)
}

// recreateSub is recreateTopic for Subscriptions.
func (g *generator) recreateSub(l *objLife) {
	g.deleteSub(l)
	if !g.waitGone(l, 4*time.Second) {
		g.note("%s uid %s is still being deleted: not recreated", l.key, l.uid)
		return
	}
	if g.rng.IntN(100) < identicalRecreatePercent {
		s := *l.cur().sub.DeepCopy()
		nl := g.create(&busv1.Subscription{ObjectMeta: metav1.ObjectMeta{Namespace: l.key.ns, Name: l.key.name}, Spec: s})
		g.note("recreate %s uid %s with the same spec under the old ticket %s, no new review", l.key, nl.uid, s.ChangeTicket)
		return
	}
	g.createSub(l.key, nil)
}

// reviewLater reviews a ticket left for later: approve (pinned or not) or
// deny; a short-window ticket has expired by now.
func (g *generator) reviewLater() {
	i := g.rng.IntN(len(g.later))
	tl := g.later[i]
	g.later = slices.Delete(g.later, i, i+1)
	switch n := g.rng.IntN(10); {
	case n < 4:
		g.approve(tl, g.reviewer(), false)
	case n < 7:
		g.approve(tl, g.reviewer(), true)
	default:
		g.deny(tl, g.reviewer())
	}
}

func (g *generator) deniable() []*ticketLife {
	var out []*ticketLife
	for _, tl := range g.order {
		if tl.approved() && !tl.denied() && tl.deletedAt.IsZero() {
			out = append(out, tl)
		}
	}
	return out
}

func (g *generator) denyLater() {
	if len(g.toDeny) > 0 && g.rng.IntN(3) > 0 {
		tl := g.toDeny[0]
		g.toDeny = g.toDeny[1:]
		g.deny(tl, g.reviewer())
		return
	}
	c := g.deniable()
	g.deny(c[g.rng.IntN(len(c))], g.reviewer())
}

func (g *generator) secondApprovable() []*ticketLife {
	var out []*ticketLife
	for _, tl := range g.order {
		if tl.approved() && !tl.denied() && tl.deletedAt.IsZero() && len(tl.reviews) < 3 {
			out = append(out, tl)
		}
	}
	return out
}

// secondApproval has the other reviewer approve too: its pins are what
// exists now, which may no longer be what the first approval saw.
func (g *generator) secondApproval() {
	c := g.secondApprovable()
	tl := c[g.rng.IntN(len(c))]
	who := propReviewers[0]
	if tl.attempt(who, false) != nil {
		who = propReviewers[1]
	}
	g.approve(tl, who, g.rng.IntN(2) == 0)
}

// selfApproval: the requester, also put in the reviewers group, approves
// her own ticket. Admission must refuse it, and the operator must not count
// it even if it were recorded.
func (g *generator) selfApproval() {
	tl := g.order[g.rng.IntN(len(g.order))]
	g.approve(tl, requester, false)
	if r := tl.reviews[len(tl.reviews)-1]; r.err == nil {
		g.t.Errorf("seed %d: the requester's approval of her own ticket %s/%s was accepted", g.w.seed, tl.ns, tl.name)
	}
}

// deleteTicket withdraws a ticket; its last state is kept for the oracle.
func (g *generator) deleteTicket() {
	var live []*ticketLife
	for _, tl := range g.order {
		if tl.deletedAt.IsZero() {
			live = append(live, tl)
		}
	}
	if len(live) == 0 {
		return
	}
	tl := live[g.rng.IntN(len(live))]
	tk := &busv1.ChangeTicket{}
	if err := env.Client.Get(ctxT(g.t), client.ObjectKey{Namespace: tl.ns, Name: tl.name}, tk); err != nil {
		g.t.Fatalf("reading ticket %s/%s: %v", tl.ns, tl.name, err)
	}
	tl.final = tk
	tl.deletedAt = time.Now()
	if err := g.c.Delete(ctxT(g.t), tk); err != nil {
		g.t.Fatalf("deleting ticket %s/%s: %v", tl.ns, tl.name, err)
	}
	g.note("delete ticket %s/%s", tl.ns, tl.name)
}

func (g *generator) existingPoolTopics() []string {
	var got map[string]kafka.Topic
	retryBroker(g.t, "describing pool topics", func() (err error) {
		got, err = admin.DescribeTopics(ctxT(g.t), g.w.pool...)
		return err
	})
	return slices.Sorted(maps.Keys(got))
}

// retryBroker retries a read the broker may answer with a transient error
// (a topic changing while it is described, for instance).
func retryBroker(t *testing.T, what string, read func() error) {
	t.Helper()
	var err error
	for range 20 {
		if err = read(); err == nil || !errors.Is(err, kafka.ErrUnavailable) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// oobDeleteTopic deletes a broker topic behind the operator's back: its
// owner repairs it (a drift repair), or nobody does if it has none.
func (g *generator) oobDeleteTopic() {
	names := g.existingPoolTopics()
	if len(names) == 0 {
		return
	}
	name := names[g.rng.IntN(len(names))]
	start := time.Now()
	retryBroker(g.t, "deleting "+name+" out of band", func() error { return admin.DeleteTopic(ctxT(g.t), name) })
	g.w.oob = append(g.w.oob, oobLog{start: start, end: time.Now(), op: audit.OpDeleteTopic, resource: name})
	g.note("out of band: delete broker topic %s", name)
}

func (g *generator) oobAlterConfig() {
	names := g.existingPoolTopics()
	if len(names) == 0 {
		return
	}
	name := names[g.rng.IntN(len(names))]
	start := time.Now()
	retryBroker(g.t, "altering "+name+" out of band", func() error {
		return admin.AlterTopicConfig(ctxT(g.t), name, kafka.ConfigAlter{Set: map[string]string{"retention.ms": oobRetention}})
	})
	g.w.oob = append(g.w.oob, oobLog{start: start, end: time.Now(), op: audit.OpAlterTopicConfig, resource: name})
	g.note("out of band: set retention.ms=%s on broker topic %s", oobRetention, name)
}

func (g *generator) oobDeleteACL() {
	var all []kafka.ACL
	for _, p := range g.w.principals {
		var acls []kafka.ACL
		retryBroker(g.t, "describing ACLs of "+p, func() (err error) {
			acls, err = admin.DescribeACLs(ctxT(g.t), p)
			return err
		})
		all = append(all, acls...)
	}
	if len(all) == 0 {
		return
	}
	a := all[g.rng.IntN(len(all))]
	start := time.Now()
	retryBroker(g.t, "deleting an ACL out of band", func() error { return admin.DeleteACLs(ctxT(g.t), []kafka.ACL{a}) })
	g.w.oob = append(g.w.oob, oobLog{start: start, end: time.Now(), op: audit.OpDeleteACL, resource: a.Principal, acl: a.String()})
	g.note("out of band: delete ACL %s", a)
}

// ---- convergence ----

// waitForQuiet waits until every short ticket window has closed and then
// until neither the audit topic nor any object of the universes changed for
// quietFor: the operator has done all it will do.
func waitForQuiet(t *testing.T, worlds []*world) bool {
	var lastWindow time.Time
	for _, w := range worlds {
		for _, tl := range w.tickets {
			if tl.notAfter.Sub(tl.created) < time.Minute && tl.notAfter.After(lastWindow) {
				lastWindow = tl.notAfter
			}
		}
	}
	time.Sleep(time.Until(lastWindow.Add(1500 * time.Millisecond)))
	deadline := time.Now().Add(60 * time.Second)
	last, since := "", time.Now()
	for time.Now().Before(deadline) {
		sig := universeSignature(t, worlds)
		switch {
		case sig != last:
			last, since = sig, time.Now()
		case time.Since(since) >= quietFor:
			return true
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Errorf("the operator did not settle within 60s: the audit trail or the objects kept changing")
	return false
}

func universeSignature(t *testing.T, worlds []*world) string {
	ctx := ctxT(t)
	var offs kafka.Offsets
	retryBroker(t, "reading the audit topic's offsets", func() (err error) {
		offs, err = admin.PartitionOffsets(ctx, audit.DefaultTopic, 0)
		return err
	})
	var b strings.Builder
	fmt.Fprintf(&b, "audit:%d", offs.End)
	for _, w := range worlds {
		for _, ns := range w.namespaces {
			var tps busv1.TopicList
			var subs busv1.SubscriptionList
			var tks busv1.ChangeTicketList
			for _, l := range []client.ObjectList{&tps, &subs, &tks} {
				if err := env.Client.List(ctx, l, client.InNamespace(ns)); err != nil {
					t.Fatalf("listing in %s: %v", ns, err)
				}
			}
			for _, o := range tps.Items {
				fmt.Fprintf(&b, " %s/%s", o.Name, o.ResourceVersion)
			}
			for _, o := range subs.Items {
				fmt.Fprintf(&b, " %s/%s", o.Name, o.ResourceVersion)
			}
			for _, o := range tks.Items {
				fmt.Fprintf(&b, " %s/%s", o.Name, o.ResourceVersion)
			}
		}
	}
	return b.String()
}

// brokerSnapshot is what the broker holds for a universe at the end.
type brokerSnapshot struct {
	topics map[string]kafka.Topic
	acls   map[string][]kafka.ACL // by principal
	users  map[string][]string    // SCRAM mechanisms by user
}

func snapshotBroker(t *testing.T, w *world) brokerSnapshot {
	ctx := ctxT(t)
	s := brokerSnapshot{acls: map[string][]kafka.ACL{}}
	retryBroker(t, "describing pool topics", func() (err error) {
		s.topics, err = admin.DescribeTopics(ctx, w.pool...)
		return err
	})
	var users []string
	for _, p := range w.principals {
		retryBroker(t, "describing ACLs of "+p, func() (err error) {
			s.acls[p], err = admin.DescribeACLs(ctx, p)
			return err
		})
		users = append(users, strings.TrimPrefix(p, "User:"))
	}
	retryBroker(t, "describing SCRAM users", func() (err error) {
		s.users, err = admin.SCRAMMechanisms(ctx, users...)
		return err
	})
	return s
}

// ---- the oracle ----

// oracle judges one universe's audit trail (succeeded intents, in order)
// against the test's log. Each rule is a small function of the log and the
// records; a violation names the rule and the record that broke it.
type oracle struct {
	w        *world
	claims   *claimWatch
	records  []audit.Record
	tol      time.Duration
	claimTol time.Duration
}

type violation struct {
	rule   string
	record *audit.Record
	msg    string
}

// The rules.
const (
	ruleKnown        = "R0 every change names an object and generation the test created"
	ruleApproved     = "R1 an approved change needs an approval, valid at the time, that pinned this object's spec while it existed"
	ruleGrantScope   = "R2 an approved grant stays within the approved spec and the topics its Topics held"
	ruleTopicDrift   = "R3 a Topic drift repair restores a state approved earlier for the same Topic object, under the ticket that approved it"
	ruleACLDrift     = "R4 an ACL drift repair restores only a grant approved earlier for the same Subscription object, on a topic still held by the same Topic object"
	ruleCredDrift    = "R5 a credential drift repair restores a credential approved earlier for the same Subscription object"
	ruleTakesAway    = "R6 revocations, deletions and rotations never add access"
	ruleDelete       = "R7 deleting broker data needs an approval, valid at the time, covering Delete"
	ruleClaimHolder  = "R8 only the Topic object holding a broker name's claim writes that topic"
	ruleTopicReplay  = "F1 the broker's topics are what the audit trail (and the test's out-of-band changes) made them"
	ruleACLReplay    = "F2 the broker's ACLs are what the audit trail (and the test's out-of-band changes) made them"
	ruleFinalGrants  = "F3 every ACL on the broker is a grant of a live Subscription, approved for it while the same Topic object held the topic"
	ruleFinalTopics  = "F4 every broker topic held by a live Topic is in a state approved for that Topic object"
	ruleFinalUsers   = "F5 SCRAM users exist only for live, approved Subscriptions"
	ruleFinalStatus  = "F6 status.observedGeneration and allowedNamespaces name an approved generation"
	deletedTicketWhy = "the ticket was deleted"
)

func (o *oracle) describe(r audit.Record) string {
	tk := "none"
	if r.Ticket != nil {
		tk = fmt.Sprintf("%s approved by %v", r.Ticket.Name, r.Ticket.ApprovedBy)
	}
	return fmt.Sprintf("record seq %d at %s: %s %s (cause %q, ticket %s) by %s %s/%s uid %s generation %d, after=%v before=%v",
		r.Seq, o.w.rel(r.Time), r.Operation, r.Resource, r.Cause, tk, r.Object.Kind, r.Object.Namespace, r.Object.Name, r.Object.UID, r.Object.Generation, r.After, r.Before)
}

func (o *oracle) format(v violation) string {
	if v.record == nil {
		return fmt.Sprintf("%s: %s", v.rule, v.msg)
	}
	return fmt.Sprintf("%s: %s\n\t%s", v.rule, o.describe(*v.record), v.msg)
}

func bad(rule string, r *audit.Record, format string, args ...any) []violation {
	return []violation{{rule: rule, record: r, msg: fmt.Sprintf(format, args...)}}
}

// checkRecord applies the rules to the i-th record; records before i are
// the earlier trail.
func (o *oracle) checkRecord(i int, r audit.Record) []violation {
	l := o.w.byUID[r.Object.UID]
	if l == nil || string(l.key.kind) != r.Object.Kind || l.key.ns != r.Object.Namespace || l.key.name != r.Object.Name {
		return bad(ruleKnown, &r, "the test never created this object")
	}
	g := l.gens[r.Object.Generation]
	if g == nil {
		return bad(ruleKnown, &r, "the test never wrote generation %d of it (known: %v)", r.Object.Generation, slices.Sorted(maps.Keys(l.gens)))
	}
	switch r.Cause {
	case audit.CauseApproved:
		switch r.Operation {
		case audit.OpCreateTopic, audit.OpAddPartitions, audit.OpAlterTopicConfig:
			return slices.Concat(o.approved(ruleApproved, i, r, l, g, busv1.OperationApply), o.claimHeld(r, l))
		case audit.OpCreateACL:
			return slices.Concat(o.approved(ruleApproved, i, r, l, g, busv1.OperationApply), o.grantScope(r, l, g))
		case audit.OpUpsertCredential, audit.OpSetQuota:
			return o.approved(ruleApproved, i, r, l, g, busv1.OperationApply)
		case audit.OpDeleteACL, audit.OpDeleteCredential:
			return nil // takes access away
		}
	case audit.CauseDrift:
		switch r.Operation {
		case audit.OpCreateTopic, audit.OpAddPartitions, audit.OpAlterTopicConfig:
			return slices.Concat(o.topicDrift(r, l), o.claimHeld(r, l))
		case audit.OpCreateACL:
			return o.aclDrift(i, r)
		case audit.OpUpsertCredential:
			return o.credentialDrift(i, r)
		case audit.OpDeleteACL, audit.OpDeleteCredential:
			return nil
		}
	case audit.CauseRevocation, audit.CauseDeletion:
		switch r.Operation {
		case audit.OpDeleteACL, audit.OpDeleteCredential:
			return nil
		case audit.OpSetQuota:
			if r.After == nil {
				return nil
			}
		case audit.OpDeleteTopic:
			return slices.Concat(o.approved(ruleDelete, i, r, l, g, busv1.OperationDelete), o.claimHeld(r, l))
		}
		return bad(ruleTakesAway, &r, "a %s may only take access away", r.Cause)
	case audit.CauseRotation:
		if r.Operation == audit.OpUpsertCredential {
			return o.credentialDrift(i, r)
		}
		return bad(ruleTakesAway, &r, "a rotation may only replace a credential")
	}
	return bad(ruleTakesAway, &r, "unexpected operation %s for cause %q", r.Operation, r.Cause)
}

// approvalWindow is one approval that pinned a given spec of an object:
// from when it could authorise (the reviewer's call began) until when
// (denial, expiry or deletion of the ticket).
type approvalWindow struct {
	reviewer    string
	unpinned    bool
	from, until time.Time
}

// approvalsFor lists the approvals of the ticket named by g's spec that
// approve exactly this spec of this object (UID) for op; rejected says why
// the ticket's other approvals do not.
func (o *oracle) approvalsFor(l *objLife, g *genLog, op busv1.Operation) (wins []approvalWindow, rejected []string) {
	tl := o.w.ticket(l.key.ns, g.ticket())
	if tl == nil {
		return nil, []string{fmt.Sprintf("ticket %s was never filed in %s", g.ticket(), l.key.ns)}
	}
	if !ticketCovers(tl.covers, l.key, op) {
		return nil, []string{fmt.Sprintf("ticket %s does not cover %s for %s", tl.name, l.key, op)}
	}
	if tl.final == nil {
		return nil, []string{fmt.Sprintf("ticket %s was never read back", tl.name)}
	}
	until, why := tl.notAfter, "its window closed"
	if d := tl.final.Status.Denial; d != nil {
		at := d.Time.Time
		if a := tl.attempt(d.Reviewer, true); a != nil {
			at = a.start
		}
		if at.Before(until) {
			until, why = at, "it was denied by "+d.Reviewer
		}
	}
	if !tl.deletedAt.IsZero() && tl.deletedAt.Before(until) {
		until, why = tl.deletedAt, deletedTicketWhy
	}
	for _, ap := range tl.final.Status.Approvals {
		if ap.Reviewer == requester || !slices.Contains(propReviewers, ap.Reviewer) {
			rejected = append(rejected, fmt.Sprintf("the approval by %s does not count: not a reviewer other than the requester", ap.Reviewer))
			continue
		}
		from, pinTo := ap.Time.Time, ap.Time.Add(time.Second)
		if a := tl.attempt(ap.Reviewer, false); a != nil {
			from, pinTo = a.start, a.end
		}
		pins, pinned := governance.PinsOf(tl.final, ap)
		if !pinned {
			rejected = append(rejected, fmt.Sprintf("the approval by %s was never pinned", ap.Reviewer))
			continue
		}
		unpinned := len(ap.Pinned) == 0
		if unpinned {
			// The operator pinned what existed when it first saw it.
			for _, p := range tl.final.Status.OperatorPins {
				if p.Reviewer == ap.Reviewer {
					pinTo = p.Time.Add(time.Second)
				}
			}
		}
		// A pin that names a UID is about that object only; either way the
		// object must have existed when the pin was taken (below).
		if !slices.ContainsFunc(pins, func(p busv1.PinnedSpec) bool {
			return p.Kind == l.key.kind && p.Name == l.key.name && p.SpecHash == g.hash && (p.UID == "" || p.UID == l.uid)
		}) {
			rejected = append(rejected, fmt.Sprintf("the approval by %s at %s pinned another spec of %s, or none (pins %v)", ap.Reviewer, o.w.rel(from), l.key, pins))
			continue
		}
		if !l.existedDuring(from, pinTo) {
			rejected = append(rejected, fmt.Sprintf("the approval by %s pinned %s between %s and %s, when object uid %s did not exist (created %s)", ap.Reviewer, l.key, o.w.rel(from), o.w.rel(pinTo), l.uid, o.w.rel(l.created)))
			continue
		}
		if !until.After(from) {
			rejected = append(rejected, fmt.Sprintf("the approval by %s at %s came when the ticket no longer authorised anything (%s at %s)", ap.Reviewer, o.w.rel(from), why, o.w.rel(until)))
			continue
		}
		wins = append(wins, approvalWindow{reviewer: ap.Reviewer, unpinned: unpinned, from: from, until: until})
	}
	if len(tl.final.Status.Approvals) == 0 {
		rejected = append(rejected, fmt.Sprintf("ticket %s was never approved", tl.name))
	}
	return wins, rejected
}

func ticketCovers(covered []busv1.CoveredObject, k objKey, op busv1.Operation) bool {
	for _, c := range covered {
		if c.Kind == k.kind && c.Name == k.name {
			ops := c.Operations
			if len(ops) == 0 {
				ops = []busv1.Operation{busv1.OperationApply}
			}
			return slices.Contains(ops, op)
		}
	}
	return false
}

// approvedGens lists the generations of l that some approval covered at
// some moment no later than at (zero: ever).
func (o *oracle) approvedGens(l *objLife, at time.Time) []*genLog {
	var out []*genLog
	for _, gen := range slices.Sorted(maps.Keys(l.gens)) {
		g := l.gens[gen]
		wins, _ := o.approvalsFor(l, g, busv1.OperationApply)
		if slices.ContainsFunc(wins, func(w approvalWindow) bool { return at.IsZero() || !w.from.After(at) }) {
			out = append(out, g)
		}
	}
	return out
}

// approved is R1 (and R7 for deletions).
func (o *oracle) approved(rule string, i int, r audit.Record, l *objLife, g *genLog, op busv1.Operation) []violation {
	if r.Ticket == nil {
		return bad(rule, &r, "it names no ticket")
	}
	if r.Ticket.Name != g.ticket() {
		return bad(rule, &r, "it names ticket %s, but generation %d of the object names %s", r.Ticket.Name, g.gen, g.ticket())
	}
	for _, who := range r.Ticket.ApprovedBy {
		if who == requester || !slices.Contains(propReviewers, who) {
			return bad(rule, &r, "it counts an approval by %s, who is not a reviewer other than the requester", who)
		}
	}
	wins, rejected := o.approvalsFor(l, g, op)
	earliest := o.earliestDecision(i, r, g)
	for _, w := range wins {
		if !r.Time.Before(w.from) && !earliest.After(w.until) {
			return nil
		}
	}
	var spans []string
	for _, w := range wins {
		spans = append(spans, fmt.Sprintf("%s's approval authorised it from %s until %s, and the decision cannot predate %s", w.reviewer, o.w.rel(w.from), o.w.rel(w.until), o.w.rel(earliest)))
	}
	return bad(rule, &r, "no approval authorised spec %s of generation %d then: %s", g.hash, g.gen, strings.Join(slices.Concat(spans, rejected), "; "))
}

// earliestDecision bounds from below when the operator decided the change
// the i-th record r records (its intent is written just after the
// decision). The bounds are causal, so they hold however slow the operator
// is, and they catch a decision made long after a denial even when the
// record follows the denial by less than tol:
//   - at most tol before the record;
//   - not before the spec generation it applies was written;
//   - not before an earlier record of the same object that came from an
//     earlier reconcile: controller-runtime never reconciles one object
//     twice at once, and one reconcile writes in a fixed order;
//   - for a grant, not before a Topic object the spec references, naming
//     the granted topic, existed, and not after it began to be deleted.
func (o *oracle) earliestDecision(i int, r audit.Record, g *genLog) time.Time {
	at := r.Time.Add(-o.tol)
	if g.at.After(at) {
		at = g.at
	}
	if prev := o.previousReconcile(i, r); prev.After(at) {
		at = prev
	}
	if r.Operation != audit.OpCreateACL || g.sub == nil {
		return at
	}
	l := o.w.byUID[r.Object.UID]
	for _, s := range aclList(r.After) {
		a, err := parseACL(s)
		if err != nil || a.ResourceType != kafka.ResourceTopic {
			continue
		}
		var best time.Time
		for _, h := range o.referencedTopics(l, g.sub) {
			if h.brokerName() != a.ResourceName {
				continue
			}
			lo, hi := at, r.Time
			if h.created.After(lo) {
				lo = h.created
			}
			if !h.deleteAt.IsZero() && h.deleteAt.Before(hi) {
				hi = h.deleteAt
			}
			if !lo.After(hi) && (best.IsZero() || lo.Before(best)) {
				best = lo
			}
		}
		// No candidate at all is R2's business; here it only tightens.
		if best.After(at) {
			at = best
		}
	}
	return at
}

// writeOrder is the order in which one reconcile writes: a record of the
// same object whose operation comes at or after r's in that order (or of
// another generation: a reconcile reads one version) is from an earlier
// reconcile.
var writeOrder = map[string]int{
	audit.OpCreateTopic: 1, audit.OpAddPartitions: 1, audit.OpAlterTopicConfig: 2, audit.OpDeleteTopic: 3,
	audit.OpUpsertCredential: 1, audit.OpDeleteCredential: 2, audit.OpCreateACL: 3, audit.OpDeleteACL: 4, audit.OpSetQuota: 5,
}

func (o *oracle) previousReconcile(i int, r audit.Record) time.Time {
	var at time.Time
	for _, e := range o.records[:min(i, len(o.records))] {
		if e.Object.UID != r.Object.UID || e.ID == r.ID {
			continue
		}
		order := writeOrder[e.Operation]
		if e.Operation == audit.OpDeleteACL && e.Resource != r.Resource {
			order = 0 // the old principal's grants go first when the identity changes
		}
		if (e.Object.Generation != r.Object.Generation || order >= writeOrder[r.Operation]) && e.Time.After(at) {
			at = e.Time
		}
	}
	return at
}

// referencedTopics lists every Topic object (all UIDs over time) that spec
// s of Subscription l references.
func (o *oracle) referencedTopics(l *objLife, s *busv1.SubscriptionSpec) []*objLife {
	var out []*objLife
	for _, ref := range s.Topics {
		ns := ref.Namespace
		if ns == "" {
			ns = l.key.ns
		}
		out = append(out, o.w.livesOf(objKey{busv1.KindTopic, ns, ref.Name})...)
	}
	return out
}

// claimHeld is R8.
func (o *oracle) claimHeld(r audit.Record, l *objLife) []violation {
	h := o.claims.holders(busv1.ClaimBrokerTopic, r.Resource, r.Time, o.claimTol)
	if !slices.Contains(h, l.uid) {
		return bad(ruleClaimHolder, &r, "the claim on %s was held by %v, not by this Topic (uid %s)", r.Resource, h, l.uid)
	}
	return nil
}

func roleOfSpec(s *busv1.SubscriptionSpec) busv1.Role {
	if s.Role == "" {
		return busv1.RoleConsume
	}
	return s.Role
}

func groupOf(k objKey, s *busv1.SubscriptionSpec) string {
	if roleOfSpec(s) != busv1.RoleConsume {
		return ""
	}
	if s.ConsumerGroup != "" {
		return s.ConsumerGroup
	}
	return k.ns + "." + k.name
}

// wants reports whether spec s of Subscription k would grant a for topic
// (the role's operations, its group, IdempotentWrite for producers).
func wants(k objKey, s *busv1.SubscriptionSpec, topic string, a kafka.ACL) bool {
	if topic == "" {
		topic = "any-topic" // group and cluster grants come with any topic
	}
	return slices.Contains(plan.DesiredACLs("User:"+k.ns+"."+k.name, string(roleOfSpec(s)), []string{topic}, groupOf(k, s)), a)
}

// grantScope is R2: each ACL of an approved CreateACL follows from the
// approved spec: the principal, the role's operations, the group, and
// topics held, when it was written, by a Topic the spec references that
// allowed the Subscription's namespace under an approved spec.
func (o *oracle) grantScope(r audit.Record, l *objLife, g *genLog) []violation {
	var vs []violation
	for _, s := range aclList(r.After) {
		a, err := parseACL(s)
		if err != nil {
			vs = append(vs, bad(ruleGrantScope, &r, "%v", err)...)
			continue
		}
		topic := ""
		if a.ResourceType == kafka.ResourceTopic {
			topic = a.ResourceName
		}
		if !wants(l.key, g.sub, topic, a) {
			vs = append(vs, bad(ruleGrantScope, &r, "%s is not what generation %d (%s, group %q) grants", s, g.gen, roleOfSpec(g.sub), groupOf(l.key, g.sub))...)
			continue
		}
		switch a.ResourceType {
		case kafka.ResourceTopic:
			if why := o.topicGrantable(l, g.sub, a.ResourceName, r.Time); why != "" {
				vs = append(vs, bad(ruleGrantScope, &r, "%s: %s", s, why)...)
			}
		case kafka.ResourceGroup:
			if h := o.claims.holders(busv1.ClaimConsumerGroup, a.ResourceName, r.Time, o.claimTol); !slices.Contains(h, l.uid) {
				vs = append(vs, bad(ruleGrantScope, &r, "%s: the group's claim was held by %v, not by this Subscription", s, h)...)
			}
		}
	}
	return vs
}

// topicGrantable says why brokerName may not be granted to sub with spec s
// at time at, or "" when it may.
func (o *oracle) topicGrantable(sub *objLife, s *busv1.SubscriptionSpec, brokerName string, at time.Time) string {
	holders := o.claims.holders(busv1.ClaimBrokerTopic, brokerName, at, o.claimTol)
	var why []string
	for _, ref := range s.Topics {
		ns := ref.Namespace
		if ns == "" {
			ns = sub.key.ns
		}
		for _, h := range o.w.livesOf(objKey{busv1.KindTopic, ns, ref.Name}) {
			switch {
			case h.brokerName() != brokerName:
			case !slices.Contains(holders, h.uid):
				why = append(why, fmt.Sprintf("Topic %s/%s uid %s names it but did not hold its claim (holders %v)", ns, ref.Name, h.uid, holders))
			case !o.allows(h, sub.key.ns, at):
				why = append(why, fmt.Sprintf("Topic %s/%s uid %s never allowed namespace %s under an approved spec", ns, ref.Name, h.uid, sub.key.ns))
			default:
				return ""
			}
		}
	}
	if len(why) == 0 {
		return fmt.Sprintf("no Topic the spec references names broker topic %s", brokerName)
	}
	return strings.Join(why, "; ")
}

// allows reports whether Topic h let namespace ns subscribe under a spec
// approved by time at. Narrowing is not tracked here (a late revocation is
// a liveness matter); F3 checks the grants left at the end.
func (o *oracle) allows(h *objLife, ns string, at time.Time) bool {
	if h.key.ns == ns {
		return true
	}
	for _, g := range o.approvedGens(h, at.Add(o.tol)) {
		if slices.Contains(g.topic.AllowedNamespaces, ns) || slices.Contains(g.topic.AllowedNamespaces, "*") {
			return true
		}
	}
	return false
}

type topicState struct {
	partitions int32
	config     map[string]string
}

func stateOf(s *busv1.TopicSpec) topicState {
	return topicState{partitions: s.Partitions, config: s.Configs()}
}

// topicDrift is R3.
func (o *oracle) topicDrift(r audit.Record, l *objLife) []violation {
	if r.Resource != l.brokerName() {
		return bad(ruleTopicDrift, &r, "the Topic's broker name is %s", l.brokerName())
	}
	after, _ := r.After.(map[string]any)
	var matching, approved []string
	for _, g := range o.approvedGens(l, r.Time) {
		st := stateOf(g.topic)
		approved = append(approved, fmt.Sprintf("gen %d %+v under %s", g.gen, st, g.ticket()))
		if !stateMatches(r.Operation, after, st) {
			continue
		}
		matching = append(matching, g.ticket())
	}
	switch {
	case len(matching) == 0:
		return bad(ruleTopicDrift, &r, "it restores a state no approval of this Topic object covered; approved so far: %v", approved)
	case r.Ticket == nil || !slices.Contains(matching, r.Ticket.Name):
		return bad(ruleTopicDrift, &r, "the restored state was approved under %v, not under the ticket the record names", matching)
	}
	return nil
}

func stateMatches(op string, after map[string]any, st topicState) bool {
	switch op {
	case audit.OpCreateTopic:
		cfg := map[string]string{}
		if m, ok := after["config"].(map[string]any); ok {
			for k, v := range m {
				cfg[k] = fmt.Sprint(v)
			}
		}
		return number(after["partitions"]) == int64(st.partitions) && maps.Equal(cfg, nonNil(st.config))
	case audit.OpAddPartitions:
		return number(after["partitions"]) == int64(st.partitions)
	case audit.OpAlterTopicConfig:
		for k, v := range after {
			have, ok := st.config[k]
			if (v == nil && ok) || (v != nil && (!ok || have != fmt.Sprint(v))) {
				return false
			}
		}
		return true
	}
	return false
}

// aclDrift is R4.
func (o *oracle) aclDrift(i int, r audit.Record) []violation {
	var vs []violation
	for _, s := range aclList(r.After) {
		a, err := parseACL(s)
		if err != nil {
			vs = append(vs, bad(ruleACLDrift, &r, "%v", err)...)
			continue
		}
		grants := o.approvedGrants(i, r.Object.UID, s)
		if len(grants) == 0 {
			vs = append(vs, bad(ruleACLDrift, &r, "%s was never granted to this Subscription object by an approved change", s)...)
			continue
		}
		if a.ResourceType != kafka.ResourceTopic {
			continue
		}
		now := o.claims.holders(busv1.ClaimBrokerTopic, a.ResourceName, r.Time, o.claimTol)
		var then []string
		held := false
		for _, gr := range grants {
			h := o.claims.holders(busv1.ClaimBrokerTopic, a.ResourceName, gr.Time, o.claimTol)
			then = append(then, fmt.Sprintf("%v at %s", h, o.w.rel(gr.Time)))
			held = held || slices.ContainsFunc(h, func(u string) bool { return slices.Contains(now, u) })
		}
		if !held {
			vs = append(vs, bad(ruleACLDrift, &r, "%s: when approved, topic %s was held by %v; at the repair by %v: another Topic object, whose grant needs a new approval", s, a.ResourceName, then, now)...)
		}
	}
	return vs
}

// approvedGrants lists the approved CreateACL records before the i-th that
// granted acl to the Subscription uid.
func (o *oracle) approvedGrants(i int, uid, acl string) []audit.Record {
	var out []audit.Record
	for _, r := range o.records[:min(i, len(o.records))] {
		if r.Object.UID == uid && r.Operation == audit.OpCreateACL && r.Cause == audit.CauseApproved && slices.Contains(aclList(r.After), acl) {
			out = append(out, r)
		}
	}
	return out
}

// credentialDrift is R5 (and R6 for rotations): the credential's mechanism
// was approved earlier for the same Subscription object.
func (o *oracle) credentialDrift(i int, r audit.Record) []violation {
	after, _ := r.After.(map[string]any)
	for _, e := range o.records[:min(i, len(o.records))] {
		if e.Object.UID == r.Object.UID && e.Operation == audit.OpUpsertCredential && e.Cause == audit.CauseApproved {
			if m, _ := e.After.(map[string]any); m != nil && m["mechanism"] == after["mechanism"] {
				return nil
			}
		}
	}
	return bad(ruleCredDrift, &r, "no approved change issued a %v credential to this Subscription object before", after["mechanism"])
}

// ---- final state ----

func (o *oracle) finalChecks(s brokerSnapshot) []violation {
	return slices.Concat(o.topicReplay(s), o.aclReplay(s), o.finalGrants(s), o.finalTopics(s), o.finalUsers(s), o.finalStatus())
}

// event is a record or an out-of-band change, in time order.
type event struct {
	at  time.Time
	rec *audit.Record
	oob *oobLog
}

// timeline merges the trail with the test's out-of-band changes, each
// placed at the start of its call: whatever the operator wrote after that
// may have seen it.
func (o *oracle) timeline() []event {
	var evs []event
	oob := slices.Clone(o.w.oob)
	j := 0
	for i := range o.records {
		r := &o.records[i]
		for j < len(oob) && oob[j].start.Before(r.Time) {
			evs = append(evs, event{at: oob[j].start, oob: &oob[j]})
			j++
		}
		evs = append(evs, event{at: r.Time, rec: r})
	}
	for ; j < len(oob); j++ {
		evs = append(evs, event{at: oob[j].start, oob: &oob[j]})
	}
	return evs
}

type replayedTopic struct {
	exists     bool
	partitions int32
	config     map[string]string
}

// topicReplay is F1: no topic write escaped the audit trail.
func (o *oracle) topicReplay(s brokerSnapshot) []violation {
	rep := map[string]*replayedTopic{}
	for _, n := range o.w.pool {
		rep[n] = &replayedTopic{config: map[string]string{}}
	}
	for _, e := range o.timeline() {
		switch {
		case e.oob != nil && rep[e.oob.resource] != nil:
			t := rep[e.oob.resource]
			switch e.oob.op {
			case audit.OpDeleteTopic:
				*t = replayedTopic{config: map[string]string{}}
			case audit.OpAlterTopicConfig:
				t.config["retention.ms"] = oobRetention
			}
		case e.rec != nil && rep[e.rec.Resource] != nil:
			t := rep[e.rec.Resource]
			after, _ := e.rec.After.(map[string]any)
			switch e.rec.Operation {
			case audit.OpCreateTopic:
				*t = replayedTopic{exists: true, partitions: int32(number(after["partitions"])), config: map[string]string{}}
				if m, ok := after["config"].(map[string]any); ok {
					for k, v := range m {
						t.config[k] = fmt.Sprint(v)
					}
				}
			case audit.OpAddPartitions:
				t.partitions = int32(number(after["partitions"]))
			case audit.OpAlterTopicConfig:
				for k, v := range after {
					if v == nil {
						delete(t.config, k)
					} else {
						t.config[k] = fmt.Sprint(v)
					}
				}
			case audit.OpDeleteTopic:
				*t = replayedTopic{config: map[string]string{}}
			}
		}
	}
	var vs []violation
	for _, n := range o.w.pool {
		got, ok := s.topics[n]
		want := rep[n]
		switch {
		case ok != want.exists:
			vs = append(vs, bad(ruleTopicReplay, nil, "broker topic %s exists=%v, the trail says %v", n, ok, want.exists)...)
		case ok && (got.Partitions != want.partitions || !maps.Equal(nonNil(got.Configs), want.config)):
			vs = append(vs, bad(ruleTopicReplay, nil, "broker topic %s has %d partitions and config %v; the trail says %d and %v", n, got.Partitions, got.Configs, want.partitions, want.config)...)
		}
	}
	return vs
}

// aclReplay is F2: no grant escaped the audit trail.
func (o *oracle) aclReplay(s brokerSnapshot) []violation {
	rep := map[string]map[string]bool{}
	for _, p := range o.w.principals {
		rep[p] = map[string]bool{}
	}
	for _, e := range o.timeline() {
		switch {
		case e.oob != nil && e.oob.op == audit.OpDeleteACL && rep[e.oob.resource] != nil:
			delete(rep[e.oob.resource], e.oob.acl)
		case e.rec != nil && rep[e.rec.Resource] != nil && e.rec.Operation == audit.OpCreateACL:
			for _, a := range aclList(e.rec.After) {
				rep[e.rec.Resource][a] = true
			}
		case e.rec != nil && rep[e.rec.Resource] != nil && e.rec.Operation == audit.OpDeleteACL:
			for _, a := range aclList(e.rec.Before) {
				delete(rep[e.rec.Resource], a)
			}
		}
	}
	var vs []violation
	for _, p := range o.w.principals {
		got := map[string]bool{}
		for _, a := range s.acls[p] {
			got[a.String()] = true
		}
		if !maps.Equal(got, rep[p]) {
			vs = append(vs, bad(ruleACLReplay, nil, "%s holds %v; the trail says %v", p, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(rep[p])))...)
		}
	}
	return vs
}

// liveSub is the live Subscription of a principal, or nil.
func (o *oracle) liveSub(principal string) *objLife {
	for _, l := range o.w.lives {
		if l.key.kind == busv1.KindSubscription && "User:"+l.key.ns+"."+l.key.name == principal && l.alive() && l.final != nil {
			return l
		}
	}
	return nil
}

// finalGrants is F3: the broker's grants are at most what the objects and
// their approvals give now.
func (o *oracle) finalGrants(s brokerSnapshot) []violation {
	var vs []violation
	for _, p := range o.w.principals {
		if len(s.acls[p]) == 0 {
			continue
		}
		l := o.liveSub(p)
		if l == nil {
			vs = append(vs, bad(ruleFinalGrants, nil, "%s holds %v, but no live Subscription is that principal", p, s.acls[p])...)
			continue
		}
		floor := l.final.(*busv1.Subscription).Status.ObservedGeneration
		var gens []*genLog
		for _, g := range o.approvedGens(l, time.Time{}) {
			if g.gen >= floor {
				gens = append(gens, g)
			}
		}
		for _, a := range s.acls[p] {
			if why := o.finalGrant(l, gens, a); why != "" {
				vs = append(vs, bad(ruleFinalGrants, nil, "%s of %s uid %s: %s", a, l.key, l.uid, why)...)
			}
		}
	}
	return vs
}

func (o *oracle) finalGrant(l *objLife, gens []*genLog, a kafka.ACL) string {
	if len(gens) == 0 {
		return "no approved generation at or after its observedGeneration"
	}
	if a.ResourceType != kafka.ResourceTopic {
		for _, g := range gens {
			if wants(l.key, g.sub, "", a) {
				return ""
			}
		}
		return "no approved generation grants it"
	}
	holder := o.claims.holderNow(busv1.ClaimBrokerTopic, a.ResourceName)
	h := o.w.byUID[holder]
	switch {
	case h == nil:
		return fmt.Sprintf("no Topic object of this universe holds %s now", a.ResourceName)
	case !h.alive() || h.final == nil:
		return fmt.Sprintf("%s is held by %s uid %s, which is being deleted or gone", a.ResourceName, h.key, h.uid)
	case h.brokerName() != a.ResourceName:
		return fmt.Sprintf("%s is held by %s, which manages %s", a.ResourceName, h.key, h.brokerName())
	}
	tp := h.final.(*busv1.Topic)
	if h.key.ns != l.key.ns && !slices.Contains(tp.Status.AllowedNamespaces, l.key.ns) && !slices.Contains(tp.Status.AllowedNamespaces, "*") {
		return fmt.Sprintf("%s no longer allows namespace %s (allowed: %v)", h.key, l.key.ns, tp.Status.AllowedNamespaces)
	}
	referenced := false
	for _, g := range gens {
		for _, ref := range g.sub.Topics {
			ns := ref.Namespace
			if ns == "" {
				ns = l.key.ns
			}
			if ns == h.key.ns && ref.Name == h.key.name && wants(l.key, g.sub, a.ResourceName, a) {
				referenced = true
			}
		}
	}
	if !referenced {
		return fmt.Sprintf("no approved generation of it references %s with this role", h.key)
	}
	for _, gr := range o.approvedGrants(len(o.records), l.uid, a.String()) {
		if slices.Contains(o.claims.holders(busv1.ClaimBrokerTopic, a.ResourceName, gr.Time, o.claimTol), h.uid) {
			return ""
		}
	}
	return fmt.Sprintf("no approved change granted it while %s uid %s held %s", h.key, h.uid, a.ResourceName)
}

// finalTopics is F4.
func (o *oracle) finalTopics(s brokerSnapshot) []violation {
	var vs []violation
	for _, n := range o.w.pool {
		got, ok := s.topics[n]
		if !ok {
			continue
		}
		h := o.w.byUID[o.claims.holderNow(busv1.ClaimBrokerTopic, n)]
		if h == nil || !h.alive() || h.brokerName() != n {
			continue // retained data nobody manages, or the other spelling
		}
		// Kafka cannot remove partitions: a topic adopted with more than
		// its new owner's spec keeps them, as long as this owner did not
		// add them itself (F1 and the record rules judge who did).
		extraAllowed := o.lastPartitionWriter(n) != h.uid
		var states []topicState
		match := false
		for _, g := range o.approvedGens(h, time.Time{}) {
			st := stateOf(g.topic)
			states = append(states, st)
			partitionsOK := st.partitions == got.Partitions || (extraAllowed && got.Partitions > st.partitions)
			match = match || (partitionsOK && maps.Equal(nonNil(st.config), nonNil(got.Configs)))
		}
		if !match {
			vs = append(vs, bad(ruleFinalTopics, nil, "broker topic %s (held by %s uid %s) has %d partitions and config %v; approved states: %+v", n, h.key, h.uid, got.Partitions, got.Configs, states)...)
		}
	}
	return vs
}

// lastPartitionWriter is the object whose record last set the partition
// count of broker topic n.
func (o *oracle) lastPartitionWriter(n string) string {
	uid := ""
	for _, r := range o.records {
		if r.Resource == n && (r.Operation == audit.OpCreateTopic || r.Operation == audit.OpAddPartitions) {
			uid = r.Object.UID
		}
	}
	return uid
}

// finalUsers is F5.
func (o *oracle) finalUsers(s brokerSnapshot) []violation {
	var vs []violation
	for user, mechs := range s.users {
		if len(mechs) == 0 {
			continue
		}
		l := o.liveSub("User:" + user)
		if l == nil || len(o.approvedGens(l, time.Time{})) == 0 {
			vs = append(vs, bad(ruleFinalUsers, nil, "SCRAM user %s (%v) exists without a live, approved Subscription", user, mechs)...)
		}
	}
	return vs
}

// finalStatus is F6: what the operator says it applied was approved.
func (o *oracle) finalStatus() []violation {
	var vs []violation
	for _, l := range o.w.lives {
		if !l.alive() || l.final == nil {
			continue
		}
		var obs int64
		var allowed []string
		isTopic := false
		switch f := l.final.(type) {
		case *busv1.Topic:
			obs, allowed, isTopic = f.Status.ObservedGeneration, f.Status.AllowedNamespaces, true
		case *busv1.Subscription:
			obs = f.Status.ObservedGeneration
		}
		gens := o.approvedGens(l, time.Time{})
		if obs > 0 && !slices.ContainsFunc(gens, func(g *genLog) bool { return g.gen == obs }) {
			vs = append(vs, bad(ruleFinalStatus, nil, "%s uid %s reports observedGeneration %d, which no approval covered", l.key, l.uid, obs)...)
		}
		if isTopic && len(allowed) > 0 && !slices.ContainsFunc(gens, func(g *genLog) bool {
			return slices.Equal(slices.Sorted(slices.Values(g.topic.AllowedNamespaces)), slices.Sorted(slices.Values(allowed)))
		}) {
			vs = append(vs, bad(ruleFinalStatus, nil, "%s uid %s applies allowedNamespaces %v, which no approval covered", l.key, l.uid, allowed)...)
		}
	}
	return vs
}

// journal is the test's log with the audit records merged in, by time.
func (o *oracle) journal() string {
	lines := slices.Clone(o.w.journal)
	for _, r := range o.records {
		tk := "-"
		if r.Ticket != nil {
			tk = r.Ticket.Name
		}
		lines = append(lines, fmt.Sprintf("%s     audit seq %d: %s %s (%s, ticket %s) by %s %s/%s uid %s gen %d: %v%v",
			o.w.rel(r.Time), r.Seq, r.Operation, r.Resource, r.Cause, tk, r.Object.Kind, r.Object.Namespace, r.Object.Name, r.Object.UID, r.Object.Generation, orEmpty(r.Before), orEmpty(r.After)))
	}
	// Every line starts with "+<seconds>s": sort on that number.
	at := func(l string) float64 {
		f, _ := strconv.ParseFloat(strings.TrimSuffix(strings.Fields(l)[0], "s"), 64)
		return f
	}
	sort.SliceStable(lines, func(i, j int) bool { return at(lines[i]) < at(lines[j]) })
	return strings.Join(lines, "\n")
}

func orEmpty(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// ---- self-check ----

type forgery struct {
	what   string
	record audit.Record
}

// forgeries builds, from the real trail, records that break one rule each.
func (o *oracle) forgeries() []forgery {
	var out []forgery
	var grant, create *audit.Record
	for i := range o.records {
		r := &o.records[i]
		if r.Cause != audit.CauseApproved {
			continue
		}
		if r.Operation == audit.OpCreateACL && grant == nil {
			grant = r
		}
		if r.Operation == audit.OpCreateTopic && create == nil {
			create = r
		}
	}
	if grant != nil {
		f := *grant
		f.Ticket = &busv1.AppliedTicket{Name: "chg-never-filed", Reference: "CHG-NEVER-FILED", ApprovedBy: []string{reviewer}}
		out = append(out, forgery{"an approved grant under a ticket nobody filed", f})

		f = *grant
		f.Cause = audit.CauseDrift
		f.After = []any{fmt.Sprintf("Allow %s Read on Topic Literal:never-granted.%s from *", f.Resource, o.w.namespaces[0])}
		out = append(out, forgery{"a drift repair granting a topic never approved for this Subscription", f})

		f = *grant
		f.Cause = audit.CauseRevocation
		out = append(out, forgery{"a revocation that grants", f})
	}
	if create != nil {
		f := *create
		f.Time = o.w.byUID[f.Object.UID].created.Add(-time.Second)
		out = append(out, forgery{"an approved topic created before its approval", f})

		f = *create
		f.Cause = audit.CauseDrift
		f.After = map[string]any{"partitions": float64(77), "replicationFactor": float64(broker.rf()), "config": nil}
		out = append(out, forgery{"a Topic drift repair to a state never approved", f})
	}
	return out
}

// ---- small helpers ----

func causeCounts(records []audit.Record) map[string]int {
	out := map[string]int{}
	for _, r := range records {
		out[r.Cause+"/"+r.Operation]++
	}
	return out
}

// aclList reads a record's list of ACL strings (After of CreateACL,
// Before of DeleteACL) as JSON decoded it.
func aclList(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, e := range l {
		out = append(out, fmt.Sprint(e))
	}
	return out
}

// parseACL reads kafka.ACL.String's format back:
// "Allow User:ns.s0 Read on Topic Literal:name from *".
func parseACL(s string) (kafka.ACL, error) {
	f := strings.Fields(s)
	if len(f) != 8 || f[3] != "on" || f[6] != "from" {
		return kafka.ACL{}, fmt.Errorf("unreadable ACL %q", s)
	}
	pattern, name, ok := strings.Cut(f[5], ":")
	if !ok {
		return kafka.ACL{}, fmt.Errorf("unreadable ACL resource in %q", s)
	}
	return kafka.ACL{Permission: f[0], Principal: f[1], Operation: f[2], ResourceType: f[4], PatternType: pattern, ResourceName: name, Host: f[7]}, nil
}

func number(v any) int64 {
	switch n := v.(type) {
	case float64:
		return int64(n)
	case int64:
		return n
	case int32:
		return int64(n)
	case int:
		return int64(n)
	}
	return -1
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
