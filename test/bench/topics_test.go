package bench

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
)

// maxCovers is the most objects one ChangeTicket may cover (CRD MaxItems).
const maxCovers = 100

func benchCtx(b *testing.B, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	b.Cleanup(cancel)
	return ctx
}

// fileTicket files a ChangeTicket as the requester covering the named
// objects of kind, valid for an hour.
func (s *stack) fileTicket(ctx context.Context, ns, name string, kind busv1.CoveredKind, objects []string) error {
	tk := &busv1.ChangeTicket{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: busv1.ChangeTicketSpec{
			Reference: strings.ToUpper(name), Summary: "benchmark " + name, RequestedBy: requester,
			NotAfter: metav1.NewTime(time.Now().Add(time.Hour)),
		},
	}
	for _, o := range objects {
		tk.Spec.Covers = append(tk.Spec.Covers, busv1.CoveredObject{Kind: kind, Name: o})
	}
	if err := s.requester.Create(ctx, tk); err != nil {
		return fmt.Errorf("filing ticket %s/%s: %w", ns, name, err)
	}
	return nil
}

// fileTickets files as many tickets as it takes to cover the named objects
// of kind, and returns the ticket name of each object and the tickets in
// order. Nothing is approved yet: a reviewer approves objects that exist
// (the approval pins their specs), so approveAll comes after the creates.
func (s *stack) fileTickets(ctx context.Context, ns string, kind busv1.CoveredKind, names []string) (map[string]string, []string, error) {
	ticketOf := make(map[string]string, len(names))
	var tickets []string
	for i := 0; i < len(names); i += maxCovers {
		chunk := names[i:min(i+maxCovers, len(names))]
		ticket := fmt.Sprintf("chg-%s-%d", strings.ToLower(string(kind)), i/maxCovers)
		if err := s.fileTicket(ctx, ns, ticket, kind, chunk); err != nil {
			return nil, nil, err
		}
		for _, n := range chunk {
			ticketOf[n] = ticket
		}
		tickets = append(tickets, ticket)
	}
	return ticketOf, tickets, nil
}

// approveAll approves the tickets as the reviewer, the way `hmsbus approve`
// does: each approval pins the specs of the covered objects as they are.
func (s *stack) approveAll(ctx context.Context, ns string, tickets []string) error {
	for _, t := range tickets {
		if err := s.env.Approve(ctx, ns, t, reviewer); err != nil {
			return err
		}
	}
	return nil
}

// brokerName gives every Topic its own broker topic: the broker is shared
// by all benchmarks and iterations.
func brokerName(ns, name string) string { return name + "." + ns }

func newTopic(ns, name, ticket string) *busv1.Topic {
	return &busv1.Topic{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: busv1.TopicSpec{
			TopicName: brokerName(ns, name), Partitions: 3, ReplicationFactor: ptr.To[int32](3),
			Config:       map[string]busv1.ConfigValue{"retention.ms": "604800000", "cleanup.policy": "delete"},
			ChangeTicket: ticket,
		},
	}
}

// createTopics creates the Topics with a few concurrent writers, as a
// GitOps tool applying a directory would.
func (s *stack) createTopics(ctx context.Context, ns string, ticketOf map[string]string, names []string) error {
	return s.createAll(ctx, names, func(n string) client.Object { return newTopic(ns, n, ticketOf[n]) })
}

// createAll creates one object per name with a few concurrent writers.
func (s *stack) createAll(ctx context.Context, names []string, object func(name string) client.Object) error {
	const writers = 8
	work := make(chan string)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range writers {
		wg.Go(func() {
			for n := range work {
				obj := object(n)
				if err := s.requester.Create(ctx, obj); err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, fmt.Errorf("creating %T %s/%s: %w", obj, obj.GetNamespace(), n, err))
					mu.Unlock()
				}
			}
		})
	}
	for _, n := range names {
		work <- n
	}
	close(work)
	wg.Wait()
	return firstErr
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func isReady(t *busv1.Topic) bool {
	c := meta.FindStatusCondition(t.Status.Conditions, busv1.ConditionReady)
	return c != nil && c.Status == metav1.ConditionTrue && t.Status.ObservedGeneration == t.Generation
}

func readyReason(t *busv1.Topic) string {
	if c := meta.FindStatusCondition(t.Status.Conditions, busv1.ConditionReady); c != nil {
		return c.Reason
	}
	return ""
}

// topicWatch follows objects of one kind in one namespace (all namespaces
// if ns is empty) from resourceVersion rv, counts every write to them and,
// for Topics and Subscriptions, records when each became Ready. Like an informer it resumes
// from the last resourceVersion it saw when the API server ends the watch
// (it drops watchers that fall behind while it is busy), so no event is
// lost or counted twice.
type topicWatch struct {
	watcher client.WithWatch
	ctx     context.Context
	cancel  context.CancelFunc
	list    client.ObjectList
	ns      string
	events  atomic.Int64 // every Added, Modified and Deleted event
	closed  chan struct{}

	mu      sync.Mutex
	rv      string               // last resourceVersion seen
	resumed int                  // times the watch was resumed
	readyAt map[string]time.Time // first time each Topic was Ready
	err     error                // the watch failed: the embedded.Counts are incomplete
}

func (s *stack) watch(ctx context.Context, list client.ObjectList, ns, rv string) (*topicWatch, error) {
	ctx, cancel := context.WithCancel(ctx)
	tw := &topicWatch{watcher: s.watcher, ctx: ctx, cancel: cancel, list: list, ns: ns, rv: rv, readyAt: map[string]time.Time{}, closed: make(chan struct{})}
	w, err := tw.open()
	if err != nil {
		cancel()
		return nil, err
	}
	go tw.run(w)
	return tw, nil
}

func (tw *topicWatch) open() (watch.Interface, error) {
	tw.mu.Lock()
	rv := tw.rv
	tw.mu.Unlock()
	opts := []client.ListOption{&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}}}
	if tw.ns != "" {
		opts = append(opts, client.InNamespace(tw.ns))
	}
	w, err := tw.watcher.Watch(tw.ctx, tw.list, opts...)
	if err != nil {
		return nil, fmt.Errorf("watching %T from resourceVersion %q: %w", tw.list, rv, err)
	}
	return w, nil
}

func (tw *topicWatch) run(w watch.Interface) {
	defer close(tw.closed)
	for {
		tw.consume(w)
		w.Stop()
		if tw.ctx.Err() != nil {
			return
		}
		var err error
		if w, err = tw.open(); err != nil {
			tw.fail(err)
			return
		}
		tw.mu.Lock()
		tw.resumed++
		tw.mu.Unlock()
	}
}

func (tw *topicWatch) fail(err error) {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	tw.err = cmpErr(tw.err, err)
}

func (tw *topicWatch) consume(w watch.Interface) {
	for ev := range w.ResultChan() {
		if ev.Type == watch.Error {
			if tw.ctx.Err() != nil {
				return // our own stop: the client reports it as an error event
			}
			// Typically 410 Gone: resuming cannot be lossless any more.
			tw.fail(fmt.Errorf("watch of %T reported an error: %v", tw.list, ev.Object))
			tw.cancel()
			return
		}
		o, ok := ev.Object.(client.Object)
		if !ok {
			continue
		}
		tw.mu.Lock()
		tw.rv = o.GetResourceVersion()
		tw.mu.Unlock()
		if ev.Type == watch.Bookmark {
			continue
		}
		tw.events.Add(1)
		ready := false
		switch t := o.(type) {
		case *busv1.Topic:
			ready = isReady(t)
		case *busv1.Subscription:
			ready = subscriptionReady(t)
		}
		if ready {
			tw.mu.Lock()
			if _, seen := tw.readyAt[o.GetName()]; !seen {
				tw.readyAt[o.GetName()] = time.Now()
			}
			tw.mu.Unlock()
		}
	}
}

// stop ends the watch and reports whether it saw everything.
func (tw *topicWatch) stop() error {
	tw.cancel()
	<-tw.closed
	tw.mu.Lock()
	defer tw.mu.Unlock()
	return tw.err
}

// waitReady waits until every named Topic was seen Ready and returns the
// time the last one became Ready.
func (tw *topicWatch) waitReady(names []string, limit time.Duration) (time.Time, error) {
	deadline := time.Now().Add(limit)
	for {
		tw.mu.Lock()
		var last time.Time
		missing := 0
		for _, n := range names {
			at, ok := tw.readyAt[n]
			if !ok {
				missing++
			}
			last = latest(last, at)
		}
		tw.mu.Unlock()
		if missing == 0 {
			return last, nil
		}
		select {
		case <-tw.closed:
			tw.mu.Lock()
			defer tw.mu.Unlock()
			return time.Time{}, fmt.Errorf("topic watch ended with %d of %d Topics not Ready: %w", missing, len(names), tw.err)
		default:
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%d of %d Topics not Ready after %s", missing, len(names), limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// listRV returns the resourceVersion to start a watch of all Topics from.
func (s *stack) listRV(ctx context.Context, list client.ObjectList) (string, error) {
	if err := s.env.Client.List(ctx, list); err != nil {
		return "", fmt.Errorf("listing %T: %w", list, err)
	}
	return list.(metav1.ListInterface).GetResourceVersion(), nil
}

// reconciles returns controller-runtime's count of finished reconciles of a
// controller, all results together. Managers in this process share it, so
// take differences.
func reconciles(controller string) (int, error) {
	families, err := metrics.Registry.Gather()
	if err != nil {
		return 0, fmt.Errorf("reading controller metrics: %w", err)
	}
	total := 0.0
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == controller {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return int(total), nil
}

// percentile returns the p-th percentile (0-100) of ds, nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
