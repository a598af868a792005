package bench

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"

	"github.com/hms-platform/bus-operator/test/harness/embedded"
)

const (
	// fleetSize is the number of Topics BenchmarkCreateTopics declares.
	fleetSize = 500
	// noOpResync is the resync period of BenchmarkNoOpResync: short, so a
	// window of a few seconds holds several full passes.
	noOpResync = 2 * time.Second
	// noOpWindow is how long BenchmarkNoOpResync counts.
	noOpWindow = 5 * noOpResync
	// idleResync keeps resyncs out of the other benchmarks' figures.
	idleResync = time.Hour
	// pollEvery is how often the benchmarks poll the broker or the API.
	pollEvery = 5 * time.Millisecond
)

// fleet is the namespace of the last fleet BenchmarkCreateTopics made
// Ready; BenchmarkNoOpResync resyncs it (or makes its own).
var fleet struct {
	ns    string
	names []string
}

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkApprovalToBroker: a Topic waits for its ChangeTicket; the time
// from the reviewer's approval (the status write included) until the topic
// exists on the broker, polled every 5ms with the broker adapter.
func BenchmarkApprovalToBroker(b *testing.B) {
	s := getStack(b)
	s.startOperator(b, idleResync)
	ns := s.namespace(b, "bench-approval")
	ctx := benchCtx(b, 30*time.Minute)
	var toBroker, toReady []time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		name := fmt.Sprintf("approve-%d", i)
		ticket := "chg-" + name
		must(b, s.fileTicket(ctx, ns, ticket, busv1.KindTopic, []string{name}))
		tp := newTopic(ns, name, ticket)
		must(b, s.requester.Create(ctx, tp))
		// The operator has seen the Topic and holds it back: what follows
		// measures the approval, not the Topic's creation.
		must(b, s.waitTopic(ctx, tp, func(t *busv1.Topic) bool { return readyReason(t) == busv1.ReasonAwaitingApproval }))
		if exists, err := s.brokerHas(ctx, brokerName(ns, name)); err != nil || exists {
			b.Fatalf("topic %s on the broker before approval: exists=%v err=%v", name, exists, err)
		}
		b.StartTimer()

		start := time.Now()
		must(b, s.env.Approve(ctx, ns, ticket, reviewer))
		must(b, s.waitBroker(ctx, brokerName(ns, name), 20*time.Second))
		toBroker = append(toBroker, time.Since(start))

		b.StopTimer()
		must(b, s.waitTopic(ctx, tp, isReady))
		toReady = append(toReady, time.Since(start))
		b.StartTimer()
	}
	p50 := percentile(toBroker, 50)
	b.ReportMetric(ms(p50), "ms/approval")
	b.ReportMetric(ms(percentile(toBroker, 100)), "max-ms/approval")
	b.ReportMetric(ms(percentile(toReady, 50)), "ms/approval-to-ready")
	b.Logf("approval to broker topic: p50 %s, max %s over %d approvals (target < 1s: %s); to Ready=True: p50 %s",
		p50.Round(time.Millisecond), percentile(toBroker, 100).Round(time.Millisecond), len(toBroker),
		verdict(p50 < time.Second), percentile(toReady, 50).Round(time.Millisecond))
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// waitTopic polls tp until cond holds.
func (s *stack) waitTopic(ctx context.Context, tp *busv1.Topic, cond func(*busv1.Topic) bool) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := s.env.Client.Get(ctx, client.ObjectKeyFromObject(tp), tp); err != nil {
			return fmt.Errorf("reading Topic %s: %w", tp.Name, err)
		}
		if cond(tp) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("topic %s: condition not met after 20s (Ready reason %q)", tp.Name, readyReason(tp))
		}
		time.Sleep(pollEvery)
	}
}

func (s *stack) brokerHas(ctx context.Context, name string) (bool, error) {
	got, err := s.admin.DescribeTopics(ctx, name)
	if err != nil {
		return false, fmt.Errorf("describing %s: %w", name, err)
	}
	_, ok := got[name]
	return ok, nil
}

func (s *stack) waitBroker(ctx context.Context, name string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ok, err := s.brokerHas(ctx, name)
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("topic %s not on the broker after %s", name, limit)
		}
		time.Sleep(pollEvery)
	}
}

// fleetRun is what one BenchmarkCreateTopics iteration observed.
type fleetRun struct {
	elapsed, creating time.Duration
	requests          embedded.Counts
	apiWrites         int // the operator's writes to the Topics (finalizer, status)
	heapBefore, heap  uint64
}

// BenchmarkCreateTopics: 500 Topics are declared at once under five filed
// tickets of 100, which the reviewer then approves; the time from the first
// create until all are Ready (the approvals included), the broker requests it
// took (batching shows as far fewer requests than topics) and the heap.
func BenchmarkCreateTopics(b *testing.B) {
	s := getStack(b)
	s.startOperator(b, idleResync)
	s.waitQuiet(b, 500*time.Millisecond, time.Minute)
	ctx := benchCtx(b, 60*time.Minute)
	var runs []fleetRun
	for b.Loop() {
		b.StopTimer()
		runs = append(runs, s.createFleet(b, ctx, true))
		b.StartTimer()
	}
	reportFleet(b, runs)
}

// createFleet declares fleetSize approved Topics in a new namespace and
// waits until all are Ready. With settle it also waits for the broker to go
// quiet, so the requests counted are all the fleet's (that needs a long
// resync period).
func (s *stack) createFleet(b *testing.B, ctx context.Context, settle bool) fleetRun {
	ns := s.namespace(b, "bench-fleet")
	names := make([]string, fleetSize)
	for i := range names {
		names[i] = fmt.Sprintf("t-%04d", i)
	}
	ticketOf, tickets, err := s.fileTickets(ctx, ns, busv1.KindTopic, names)
	must(b, err)
	w, err := s.watch(ctx, &busv1.TopicList{}, ns, "")
	must(b, err)
	var r fleetRun
	r.heapBefore = heapInUse()
	before := s.requests.Snapshot()

	b.StartTimer()
	start := time.Now()
	must(b, s.createTopics(ctx, ns, ticketOf, names))
	r.creating = time.Since(start)
	must(b, s.approveAll(ctx, ns, tickets))
	last, err := w.waitReady(names, 10*time.Minute)
	must(b, err)
	r.elapsed = last.Sub(start)
	b.StopTimer()

	// Requests still in flight for the last Topics belong to this run.
	if settle {
		s.waitQuiet(b, 500*time.Millisecond, time.Minute)
	}
	r.requests = s.requests.Snapshot().Minus(before)
	r.apiWrites = int(w.events.Load()) - fleetSize // less the creations
	must(b, w.stop())
	r.heap = heapInUse()
	s.checkBroker(b, ctx, ns, names)
	fleet.ns, fleet.names = ns, names
	return r
}

// checkBroker: every Topic Ready means its broker topic exists as declared.
func (s *stack) checkBroker(b *testing.B, ctx context.Context, ns string, names []string) {
	b.Helper()
	want := make([]string, len(names))
	for i, n := range names {
		want[i] = brokerName(ns, n)
	}
	got, err := s.admin.DescribeTopics(ctx, want...)
	must(b, err)
	for _, n := range want {
		t, ok := got[n]
		if !ok || t.Partitions != 3 || t.ReplicationFactor != 3 || t.Configs["retention.ms"] != "604800000" {
			b.Fatalf("broker topic %s is not as declared: exists=%v %+v", n, ok, t)
		}
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func mb(n uint64) float64 { return float64(n) / (1 << 20) }

func reportFleet(b *testing.B, runs []fleetRun) {
	var elapsed, creating time.Duration
	total := embedded.Counts{}
	apiWrites := 0
	for _, r := range runs {
		elapsed += r.elapsed
		creating += r.creating
		apiWrites += r.apiWrites
		for k, v := range r.requests {
			total[k] += v
		}
	}
	n := float64(len(runs))
	topics := n * fleetSize
	last := runs[len(runs)-1]
	admin := total.Of(kmsg.CreateTopics, kmsg.Metadata, kmsg.DescribeConfigs)
	b.ReportMetric(topics/elapsed.Seconds(), "topics/s")
	b.ReportMetric(ms(elapsed)/topics, "ms/topic")
	b.ReportMetric(float64(admin)/topics, "broker-req/topic")
	b.ReportMetric(float64(total.Of(kmsg.CreateTopics))/n, "createtopics-req")
	b.ReportMetric(float64(total.Of(kmsg.Metadata))/n, "metadata-req")
	b.ReportMetric(float64(total.Of(kmsg.DescribeConfigs))/n, "describeconfigs-req")
	b.ReportMetric(float64(total.Of(kmsg.Produce))/n, "produce-req")
	b.ReportMetric(float64(apiWrites)/topics, "api-writes/topic")
	b.ReportMetric(mb(last.heap), "heap-MB")
	b.ReportMetric(mb(last.heap)-mb(last.heapBefore), "heap-delta-MB")
	b.Logf("%d Topics Ready in %s (%.0f topics/s, %.1f ms/topic; the creates themselves took %s); broker: %d CreateTopics + %d Metadata + %d DescribeConfigs = %.3f admin requests per topic, %d Produce (audit); all requests: %s; operator API writes %.1f per topic; heap in use %.1f MB (+%.1f MB for the fleet, broker included)",
		int(topics), elapsed.Round(time.Millisecond), topics/elapsed.Seconds(), ms(elapsed)/topics, creating.Round(time.Millisecond),
		total.Of(kmsg.CreateTopics), total.Of(kmsg.Metadata), total.Of(kmsg.DescribeConfigs), float64(admin)/topics,
		total.Of(kmsg.Produce), total, float64(apiWrites)/topics, mb(last.heap), mb(last.heap)-mb(last.heapBefore))
}

// BenchmarkNoOpResync: with a fleet of Ready Topics and a 2s resync, a
// window of resyncs must cost broker reads only: no broker writes, no
// status writes. A fresh manager's first pass over the existing fleet (an
// operator restart) is reported too.
func BenchmarkNoOpResync(b *testing.B) {
	s := getStack(b)
	ctx := benchCtx(b, 30*time.Minute)
	restart := fleet.ns != ""
	var startup window
	if restart {
		startup = s.openWindow(b, ctx)
	}
	s.startOperator(b, noOpResync)
	if !restart {
		s.createFleet(b, ctx, false)
		b.StartTimer() // createFleet leaves it stopped; b.Loop needs it running
	}
	topics := s.countTopics(b, ctx)
	if restart {
		// The first pass is over when every Topic was reconciled once.
		s.waitReconciles(b, startup.reconciles+topics, time.Minute)
		startup.close(b, ctx, s)
	} else {
		// Let one full resync pass finish what the creation left behind,
		// so the window sees only no-op resyncs.
		base, err := reconciles("topic")
		must(b, err)
		s.waitReconciles(b, base+topics, time.Minute)
	}

	var steady window
	for b.Loop() {
		steady = s.openWindow(b, ctx)
		time.Sleep(noOpWindow)
		steady.close(b, ctx, s)
	}
	passes := float64(steady.reconcileCount) / float64(topics)
	if passes < 2 {
		b.Fatalf("only %.1f resync passes over %d Topics in %s: the window shows nothing", passes, topics, noOpWindow)
	}
	b.ReportMetric(float64(steady.brokerWrites()), "broker-writes")
	b.ReportMetric(float64(steady.statusWrites()), "status-writes")
	b.ReportMetric(float64(steady.requests.Reads())/passes, "broker-reads/resync")
	b.ReportMetric(float64(steady.requests.Reads())/float64(steady.reconcileCount), "broker-reads/reconcile")
	b.ReportMetric(float64(steady.reconcileCount)/noOpWindow.Seconds(), "reconciles/s")
	b.ReportMetric(mb(heapInUse()), "heap-MB")
	if restart {
		b.ReportMetric(float64(startup.brokerWrites()), "restart-broker-writes")
		b.ReportMetric(float64(startup.statusWrites()), "restart-status-writes")
		b.Logf("operator restart over %d Topics: %d broker writes, %d Topic writes, %d ChangeTicket writes, broker requests %s",
			topics, startup.brokerWrites(), startup.topicWrites, startup.ticketWrites, startup.requests)
	}
	b.Logf("%s of resyncs every %s: %d reconciles (%.1f passes over %d Topics), broker writes %d, Topic writes %d, ChangeTicket writes %d, broker reads %d (%.1f per pass, %.3f per reconcile): %s",
		noOpWindow, noOpResync, steady.reconcileCount, passes, topics, steady.brokerWrites(), steady.topicWrites, steady.ticketWrites,
		steady.requests.Reads(), float64(steady.requests.Reads())/passes, float64(steady.requests.Reads())/float64(steady.reconcileCount), steady.requests)
	if steady.brokerWrites() != 0 || steady.statusWrites() != 0 {
		b.Errorf("a no-op resync wrote: %d broker writes (%s), %d Topic and %d ChangeTicket writes", steady.brokerWrites(), steady.requests, steady.topicWrites, steady.ticketWrites)
	}
}

// window embedded.Counts, between open and close, broker requests, writes to Topics
// and ChangeTickets, and Topic reconciles.
type window struct {
	before         embedded.Counts
	reconciles     int
	watches        []*topicWatch
	requests       embedded.Counts
	topicWrites    int // writes to Topics (status, finalizers, anything)
	ticketWrites   int // writes to ChangeTickets
	reconcileCount int
}

func (w window) statusWrites() int { return w.topicWrites + w.ticketWrites }

func (s *stack) openWindow(b *testing.B, ctx context.Context) window {
	b.Helper()
	w := window{before: s.requests.Snapshot()}
	var err error
	if w.reconciles, err = reconciles("topic"); err != nil {
		b.Fatal(err)
	}
	// Topics, then ChangeTickets: close reads them in this order.
	for _, list := range []client.ObjectList{&busv1.TopicList{}, &busv1.ChangeTicketList{}} {
		rv, err := s.listRV(ctx, list)
		must(b, err)
		tw, err := s.watch(ctx, list, "", rv)
		must(b, err)
		w.watches = append(w.watches, tw)
	}
	return w
}

func (w *window) close(b *testing.B, ctx context.Context, s *stack) {
	b.Helper()
	w.requests = s.requests.Snapshot().Minus(w.before)
	now, err := reconciles("topic")
	must(b, err)
	w.reconcileCount = now - w.reconciles
	w.topicWrites = int(w.watches[0].events.Load())
	w.ticketWrites = int(w.watches[1].events.Load())
	for _, tw := range w.watches {
		must(b, tw.stop())
	}
}

func (w window) brokerWrites() int { return w.requests.Writes() }

func (s *stack) countTopics(b *testing.B, ctx context.Context) int {
	b.Helper()
	var list busv1.TopicList
	must(b, s.env.Client.List(ctx, &list))
	return len(list.Items)
}

func (s *stack) waitReconciles(b *testing.B, target int, limit time.Duration) {
	b.Helper()
	deadline := time.Now().Add(limit)
	for {
		n, err := reconciles("topic")
		must(b, err)
		if n >= target {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d Topic reconciles after %s, want %d", n, limit, target)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
