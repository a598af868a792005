package fault

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/test/harness/brokers"
	"github.com/hms-platform/bus-operator/test/harness/faultstack"
	"github.com/hms-platform/bus-operator/test/harness/localstack"
	"github.com/hms-platform/bus-operator/test/harness/testenv"
)

// faultCase is one fault, injected while a batch is applied.
type faultCase struct {
	name string
	// on are the brokers whose pass runs the case: the faults that need
	// kfake's request hooks exist only there, the ones that need a JVM to
	// kill or a proxy to pause only on Kafka; the rest run on the embedded
	// broker, the faster of the two, since the broker plays no part in
	// them.
	on []brokers.Kind
	// injects says what the case does, for the log.
	injects string
	// resync is the operator's --resync-period (0: its default, 5m).
	resync time.Duration
	// replicas > 1 runs that many operators with leader election.
	replicas int
	// dataLoss: the broker loses its data (records and audit trail
	// included); denyExpire: tickets end while applied.
	dataLoss, denyExpire bool
	inject               func(ctx context.Context, r *caseRun) error
}

var (
	both         = []brokers.Kind{brokers.Embedded, brokers.Kafka}
	embeddedOnly = []brokers.Kind{brokers.Embedded}
	kafkaOnly    = []brokers.Kind{brokers.Kafka}
)

// clock formats the times in the log, to compare with the operator's.
const clock = "15:04:05.000"

// outage is how long the broker stays unreachable, slowDelay and slowFor
// how slow it answers and for how long.
const (
	outage    = time.Minute
	slowDelay = 2500 * time.Millisecond
	slowFor   = 30 * time.Second
)

// maxTakeover is the generous bound on a standby taking over from a killed
// leader: controller-runtime's lease lasts 15 s and is retried every 2 s.
const maxTakeover = time.Minute

// The cases, in the order each pass runs them. The data loss comes last:
// it empties the broker, audit trail included.
var cases = []faultCase{
	{name: "broker-killed", on: kafkaOnly, injects: "SIGKILL to the Kafka JVM, then a restart with its data",
		inject: func(_ context.Context, r *caseRun) error {
			broker.Kill()
			return broker.Start()
		}},
	{name: "broker-unreachable", on: both, injects: "the broker unreachable for a minute (Kafka: the proxy stops forwarding; embedded: the broker is stopped), then back",
		inject: func(ctx context.Context, r *caseRun) error {
			if p := broker.Proxy(); p != nil {
				p.Pause()
				defer p.Resume()
				return hold(ctx, outage)
			}
			if err := broker.Stop(); err != nil {
				return err
			}
			if err := hold(ctx, outage); err != nil {
				return err
			}
			return broker.Start()
		}},
	{name: "broker-slow", on: kafkaOnly, injects: "every request delayed 2.5 s by the proxy for 30 s",
		inject: func(ctx context.Context, r *caseRun) error {
			broker.Proxy().SetDelay(slowDelay)
			defer broker.Proxy().SetDelay(0)
			return hold(ctx, slowFor)
		}},
	{name: "admin-calls-fail-once", on: embeddedOnly, injects: "CreateTopics, IncrementalAlterConfigs, CreatePartitions, CreateACLs, DeleteACLs and AlterUserSCRAMCredentials (upsert, delete) each answered once with UNKNOWN_SERVER_ERROR",
		inject: func(ctx context.Context, r *caseRun) error {
			hooks, err := armFailOnce(broker, r.ns)
			if err != nil {
				return err
			}
			r.hooks = hooks
			// Removed as they fire (a hook that answers is dropped).
			return poll(ctx, 3*time.Minute, "every admin call hook to fire", func() (bool, string) {
				c := hooks.counts()
				var missing []string
				for _, h := range allHooks {
					if c[h] == 0 {
						missing = append(missing, h)
					}
				}
				return len(missing) == 0, fmt.Sprintf("not fired yet: %v", missing)
			})
		}},
	{name: "operator-killed", on: embeddedOnly, injects: "SIGKILL to the operator, then a new operator process",
		inject: func(ctx context.Context, r *caseRun) error {
			if err := r.ops[0].Kill(); err != nil {
				return err
			}
			op, err := r.startOperator(ctx, "restarted")
			r.ops = []*faultstack.Operator{op}
			return err
		}},
	{name: "leader-killed", on: embeddedOnly, replicas: 2, injects: "two replicas with leader election; SIGKILL to the leader",
		inject: func(ctx context.Context, r *caseRun) error { return r.killLeader(ctx) }},
	{name: "apiserver-restarted", on: embeddedOnly, injects: "kube-apiserver stopped and started again, etcd kept",
		inject: func(_ context.Context, r *caseRun) error { return stack.RestartAPIServer() }},
	{name: "etcd-restarted", on: embeddedOnly, injects: "etcd stopped and started again with its data",
		inject: func(_ context.Context, r *caseRun) error {
			if err := stack.StopEtcd(); err != nil {
				return err
			}
			return stack.StartEtcd()
		}},
	{name: "ticket-denied-and-expiring", on: embeddedOnly, denyExpire: true,
		injects: "ticket chg-4 denied once its first topic is on the broker; ticket chg-6 approved 1 s before its window closes",
		inject: func(ctx context.Context, r *caseRun) error {
			return poll(ctx, 3*time.Minute, "both tickets to end", func() (bool, string) {
				_, denied := r.drv.endedAt(r.drv.deny)
				exp, approved := r.drv.endedAt(r.drv.expire)
				return denied && approved && time.Now().After(exp), fmt.Sprintf("denied %t, expiring approved %t", denied, approved)
			})
		}},
	{name: "broker-data-lost", on: both, dataLoss: true, resync: 20 * time.Second,
		injects: "the broker restarted with its data lost (Kafka: storage formatted again; embedded: an empty data directory)",
		inject: func(_ context.Context, r *caseRun) error {
			r.readyAtLoss = r.sampler.ReadySet()
			r.lossAt = time.Now()
			// The operator learns of the loss at its next resync; until
			// then Ready objects are out of date through no fault of its
			// own, and the truth check looks away.
			r.sampler.Exempt(r.lossAt, r.lossAt.Add(r.fc.resync*11/10+30*time.Second))
			err := broker.RestartEmpty()
			r.backAt = time.Now()
			return err
		}},
}

// TestFaults runs every case that applies to the broker under test.
// Cases staged only on the other broker are not registered at all (never
// skipped): the pass that can stage them runs them.
func TestFaults(t *testing.T) {
	ran := 0
	for _, fc := range cases {
		if !slices.Contains(fc.on, broker.Kind()) {
			continue
		}
		ran++
		t.Run(fc.name, func(t *testing.T) { runCase(t, fc) })
	}
	if ran < 4 {
		t.Fatalf("only %d cases apply to the %s broker", ran, broker.Kind())
	}
}

// caseRun is one case in progress.
type caseRun struct {
	t       *testing.T
	fc      faultCase
	ns      string
	b       *batch
	drv     *driver
	sampler *sampler
	lies    []string
	opArgs  []string
	// ops are the operators that should be running; allOps every one
	// started (their logs are checked).
	ops, allOps []*faultstack.Operator
	hooks       *failOnce
	// records are the values produced before the fault, by topic, and
	// recordIDs those topics' IDs then.
	records   map[string][]string
	recordIDs map[string]string
	// readyAtLoss are the objects Ready when the broker lost its data.
	readyAtLoss map[string]bool
	// lossAt and backAt: when the broker lost its data and when it was
	// back, empty. Writes begun in between may have landed on either.
	lossAt, backAt time.Time
	timings        []string
}

func runCase(t *testing.T, fc faultCase) {
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	broker.LogOnFailure(t)
	ns := stack.Env.NamespaceT(t, "fault")
	r := &caseRun{t: t, fc: fc, ns: ns, b: newBatch(ns)}
	names.add(r.b)
	r.drv = newDriver(r.b)
	if fc.denyExpire {
		r.drv.deny, r.drv.expire = ticketName(4), ticketName(6)
	}
	t.Logf("case %s in namespace %s on %s: %s", fc.name, ns, broker.Name(), fc.injects)
	r.opArgs = []string{"--watch-namespaces", ns}
	if fc.resync > 0 {
		r.opArgs = append(r.opArgs, "--resync-period", fc.resync.String())
	}
	if fc.replicas > 1 {
		r.opArgs = append(r.opArgs, "--leader-elect", "--leader-election-namespace", testenv.SystemNamespace)
	}
	t.Cleanup(func() { r.stopOperators() })
	for i := range max(fc.replicas, 1) {
		op, err := r.startOperator(ctx, fmt.Sprintf("replica-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		r.ops = append(r.ops, op)
	}

	r.sampler = startSampler(ns)
	stopSampler := func() { r.lies = r.sampler.Stop() }
	sampled := false
	defer func() {
		if !sampled {
			stopSampler()
		}
	}()
	applied := make(chan error, 1)
	go func() { applied <- r.drv.run(ctx) }()

	if err := r.produceRecords(ctx); err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, 3*time.Minute, "100 objects of the batch to be Ready", func() (bool, string) {
		n, _ := r.sampler.Ready()
		return n >= 100, fmt.Sprintf("%d Ready", n)
	}); err != nil {
		t.Fatal(err)
	}
	// The fault must meet work in flight, or the case proves nothing.
	n, _ := r.sampler.Ready()
	total := len(r.b.topics) + len(r.b.subs)
	if n >= total {
		t.Fatalf("the batch was fully applied (%d of %d Ready) before the fault: it hit nothing in flight", n, total)
	}
	r.mark("to the fault", began)
	close(r.drv.faultStarted)
	faultAt := time.Now()
	t.Logf("injecting at %s with %d of %d objects Ready", faultAt.Format(clock), n, total)
	if err := r.fc.inject(ctx, r); err != nil {
		t.Fatalf("injecting the fault: %v", err)
	}
	t.Logf("fault removed at %s", time.Now().Format(clock))
	r.mark("fault (injected and removed)", faultAt)

	recovery := time.Now()
	if fc.dataLoss {
		// Objects Ready before the loss look converged until the
		// operator's next resync finds their broker state gone; only
		// after it does convergence mean anything.
		if !sleepUntil(ctx, r.lossAt.Add(r.fc.resync*11/10+5*time.Second)) {
			t.Fatal(ctx.Err())
		}
	}
	if err := <-applied; err != nil {
		t.Fatalf("applying the batch: %v (%s)", err, r.pending(ctx))
	}
	if err := r.waitConverged(ctx, 3*time.Minute); err != nil {
		// The invariants still run: they say what the objects that did
		// not converge left on the broker and in the trail.
		t.Error(err)
	}
	r.mark("convergence after the fault", recovery)
	settle := time.Now()
	if err := waitAuditSettled(ctx, ns, 2*time.Minute); err != nil {
		t.Error(err)
	}
	r.mark("audit trail settled", settle)
	stopSampler()
	sampled = true
	ticks, skipped := r.sampler.Stats()
	t.Logf("status sampled %d times (%d skipped while the API server or broker could not be read)", ticks, skipped)

	checks := time.Now()
	r.checkInvariants(ctx)
	r.mark("invariant checks", checks)
	if fc.denyExpire {
		r.reportEnded(ctx)
	}
	r.mark("case total", began)
	t.Logf("timings: %s", strings.Join(r.timings, "; "))
}

func (r *caseRun) mark(what string, since time.Time) {
	r.timings = append(r.timings, fmt.Sprintf("%s %s", what, time.Since(since).Round(100*time.Millisecond)))
}

func (r *caseRun) startOperator(ctx context.Context, name string) (*faultstack.Operator, error) {
	op, err := stack.StartOperator(ctx, r.fc.name+"-"+name, r.opArgs...)
	if op != nil {
		r.allOps = append(r.allOps, op)
	}
	if err != nil {
		return nil, fmt.Errorf("starting operator %s: %w", name, err)
	}
	return op, nil
}

// stopOperators stops the case's operators cleanly (a clean shutdown must
// finish or hand over what it started), and shows their logs' ends if the
// case failed.
func (r *caseRun) stopOperators() {
	for _, op := range r.ops {
		if err := op.Stop(45 * time.Second); err != nil {
			r.t.Errorf("stopping the operator: %v", err)
		}
	}
	if r.t.Failed() {
		for _, op := range r.allOps {
			r.t.Logf("--- last lines of %s ---\n%s", op.LogPath, localstack.TailFile(op.LogPath, 40))
		}
	}
}

// produceRecords writes records, as the admin, to some of the first
// ticket's topics once they exist: they must survive the fault.
func (r *caseRun) produceRecords(ctx context.Context) error {
	var keys []string
	for _, j := range recordTopicIdx {
		keys = append(keys, "Topic/"+topicObj(1, j))
	}
	err := poll(ctx, 3*time.Minute, "the record topics to be Ready and visible", func() (bool, string) {
		if _, all := r.sampler.Ready(keys...); !all {
			return false, "not all Ready"
		}
		got, err := direct.k.DescribeTopics(ctx, r.b.recordTopics...)
		if err != nil {
			return false, err.Error()
		}
		return len(got) == len(r.b.recordTopics), fmt.Sprintf("%d of %d visible", len(got), len(r.b.recordTopics))
	})
	if err != nil {
		return err
	}
	ids, err := direct.k.DescribeTopics(ctx, r.b.recordTopics...)
	if err != nil {
		return err
	}
	r.records, r.recordIDs = map[string][]string{}, map[string]string{}
	for _, topic := range r.b.recordTopics {
		values, err := direct.produce(ctx, topic, r.fc.name, recordsPerTopic)
		if err != nil {
			return err
		}
		r.records[topic], r.recordIDs[topic] = values, ids[topic].ID
	}
	return nil
}

// waitConverged waits until every object is in its approved state (or, for
// an ended ticket's objects, refused with its reason unless applied before
// the end), and every deleted Subscription is gone.
func (r *caseRun) waitConverged(ctx context.Context, timeout time.Duration) error {
	return poll(ctx, timeout, "every object to converge", func() (bool, string) {
		saw := r.pending(ctx)
		return saw == "", saw
	})
}

// pending says which objects have not converged yet, by reason ("" when
// all have).
func (r *caseRun) pending(ctx context.Context) string {
	objs, err := listCase(ctx, r.ns)
	if err != nil {
		return err.Error()
	}
	var pending []string
	reasons := map[string]int{}
	note := func(what, reason string) {
		pending = append(pending, what)
		reasons[reason]++
	}
	seen := map[string]bool{}
	for i := range objs.topics {
		tp := &objs.topics[i]
		seen["Topic/"+tp.Name] = true
		w := r.b.topics[tp.Name]
		if w == nil {
			continue
		}
		c := readyCond(tp.Status.Conditions)
		if tk := r.endedTicket(busv1.KindTopic, tp.Name); tk != "" {
			if !r.endedRight(tk, c) {
				note("Topic/"+tp.Name+": "+c.Reason+": "+c.Message, c.Reason)
			}
			continue
		}
		if !readyNow(tp.Status.Conditions, tp.Generation, tp.Status.ObservedGeneration) || tp.Status.Partitions != w.Partitions {
			note("Topic/"+tp.Name+": "+c.Reason+": "+c.Message, c.Reason)
		}
	}
	for i := range objs.subs {
		sub := &objs.subs[i]
		seen["Subscription/"+sub.Name] = true
		w := r.b.subs[sub.Name]
		if w == nil {
			continue
		}
		c := readyCond(sub.Status.Conditions)
		switch tk := r.endedTicket(busv1.KindSubscription, sub.Name); {
		case w.Deleted:
			note("Subscription/"+sub.Name+": deleted, still there", "Deleting")
		case tk != "":
			if !r.endedRight(tk, c) {
				note("Subscription/"+sub.Name+": "+c.Reason+": "+c.Message, c.Reason)
			}
		case !readyNow(sub.Status.Conditions, sub.Generation, sub.Status.ObservedGeneration):
			note("Subscription/"+sub.Name+": "+c.Reason+": "+c.Message, c.Reason)
		}
	}
	for name := range r.b.topics {
		if !seen["Topic/"+name] {
			note("Topic/"+name+": missing", "Missing")
		}
	}
	for name, w := range r.b.subs {
		if !w.Deleted && !seen["Subscription/"+name] {
			note("Subscription/"+name+": missing", "Missing")
		}
	}
	if len(pending) == 0 {
		return ""
	}
	slices.Sort(pending)
	return fmt.Sprintf("%d objects not converged, by reason %v; e.g. %s", len(pending), reasons, strings.Join(pending[:min(6, len(pending))], " | "))
}

// killLeader finds the leading replica, kills it, measures how long the
// standby takes to lead, and starts a new standby.
func (r *caseRun) killLeader(ctx context.Context) error {
	var leader, standby *faultstack.Operator
	err := poll(ctx, time.Minute, "one replica to lead", func() (bool, string) {
		leader, standby = nil, nil
		leading := 0
		for _, op := range r.ops {
			if op.Leading() {
				leader, leading = op, leading+1
			} else {
				standby = op
			}
		}
		return leading == 1 && standby != nil, fmt.Sprintf("%d replicas lead", leading)
	})
	if err != nil {
		return err
	}
	holder, err := stack.LeaseHolder(ctx)
	if err != nil || holder == "" {
		return fmt.Errorf("the lease has no holder while %s leads: %q, %w", leader.Name, holder, err)
	}
	killed := time.Now()
	if err := leader.Kill(); err != nil {
		return err
	}
	err = poll(ctx, 2*maxTakeover, "the standby to take over", func() (bool, string) {
		return standby.Leading(), "standby not leading yet"
	})
	if err != nil {
		return err
	}
	takeover := time.Since(killed)
	newHolder, err := stack.LeaseHolder(ctx)
	if err != nil {
		return err
	}
	r.t.Logf("leader %s killed; standby %s took over the lease in %s (holder %s -> %s)", leader.Name, standby.Name, takeover.Round(100*time.Millisecond), holder, newHolder)
	r.timings = append(r.timings, fmt.Sprintf("leader takeover %s", takeover.Round(100*time.Millisecond)))
	if takeover > maxTakeover {
		r.t.Errorf("the standby took %s to take over; want within %s (lease 15 s, retry 2 s)", takeover, maxTakeover)
	}
	if newHolder == holder {
		r.t.Errorf("the lease holder is still %s after the takeover", holder)
	}
	op, err := r.startOperator(ctx, "replica-2")
	if err != nil {
		return err
	}
	r.ops = []*faultstack.Operator{standby, op}
	return nil
}

// reportEnded logs how far the ended tickets got before they ended.
func (r *caseRun) reportEnded(ctx context.Context) {
	objs, err := listCase(ctx, r.ns)
	if err != nil {
		return
	}
	for _, tk := range []string{r.drv.deny, r.drv.expire} {
		applied, refused, total := 0, 0, 0
		for i := range objs.topics {
			tp := &objs.topics[i]
			if r.b.topics[tp.Name].Ticket != tk {
				continue
			}
			total++
			if tp.Status.TopicID != "" {
				applied++
			}
			if readyCond(tp.Status.Conditions).Reason == r.endedReason(tk) {
				refused++
			}
		}
		r.t.Logf("ticket %s: %d of its %d topics were applied before it ended; %d are refused with %s", tk, applied, total, refused, r.endedReason(tk))
		if applied == total {
			r.t.Logf("note: every topic of %s was applied before it ended", tk)
		}
	}
}

// ReadySet copies the set of objects Ready at the last sample.
func (s *sampler) ReadySet() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.ready)
}

// hold keeps a fault in place for d (the fault's own duration, not a wait
// for anything to happen).
func hold(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// poll checks cond every 100 ms until it holds or timeout passes; cond's
// text says what it saw, for the error.
func poll(ctx context.Context, timeout time.Duration, what string, cond func() (bool, string)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ok, saw := cond()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %s)", what, ctx.Err(), saw)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
