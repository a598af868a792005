package fault

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/kafka"
	"github.com/hms-platform/bus-operator/internal/review"
)

// The batch: the minimum the issue asks for (500 Topics, 200
// Subscriptions), filed as tickets of at most 100 objects, each covering
// its Topics and the Subscriptions to them.
const (
	ticketsPerBatch = 8
	topicsPerTicket = 63 // 504 Topics
	subsPerTicket   = 25 // 200 Subscriptions
)

// The edits made to the first ticket's objects while the rest of the batch
// is applied, so every case also drives partition increases, config
// changes, ACL revocations and credential deletions through its fault.
var (
	editedTopicIdx = []int{30, 31, 32, 33, 34, 35, 36, 37, 38, 39} // partitions +1, new retention
	editedSubIdx   = []int{10, 12, 14, 16, 18, 20}                 // drop their second topic
	deletedSubIdx  = []int{1, 3, 5, 7, 9}                          // deleted: credentials and ACLs revoked
	recordTopicIdx = []int{40, 41, 43, 44, 45, 46, 47, 48, 50, 51} // one partition each: records must survive
)

const (
	editTicket      = "chg-edit"
	editedRetention = "86400000"
	recordsPerTopic = 5
)

// wantTopic is a Topic of the batch and what its approved state is.
type wantTopic struct {
	Name, Ticket, Broker string
	Partitions           int32
	Retention            string
	Edited               bool
}

// wantSub is a Subscription of the batch and what its approved state is.
type wantSub struct {
	Name, Ticket string
	Role         busv1.Role
	Topics       []string // Topic object names
	Edited       bool
	Deleted      bool
}

// batch is one case's objects and their approved end state.
type batch struct {
	ns      string
	tickets []string
	topics  map[string]*wantTopic
	subs    map[string]*wantSub
	// byTicket lists each ticket's objects in creation order.
	byTicket map[string][]busv1.CoveredObject
	// recordTopics are broker topic names produced to before the fault.
	recordTopics []string
}

func ticketName(k int) string              { return fmt.Sprintf("chg-%d", k) }
func topicObj(k, j int) string             { return fmt.Sprintf("t%d-%02d", k, j) }
func subObj(k, j int) string               { return fmt.Sprintf("s%d-%02d", k, j) }
func (b *batch) principal(s string) string { return "User:" + b.user(s) }
func (b *batch) user(s string) string      { return b.ns + "." + s }

func newBatch(ns string) *batch {
	b := &batch{ns: ns, topics: map[string]*wantTopic{}, subs: map[string]*wantSub{}, byTicket: map[string][]busv1.CoveredObject{}}
	for k := 1; k <= ticketsPerBatch; k++ {
		tk := ticketName(k)
		b.tickets = append(b.tickets, tk)
		for j := range topicsPerTicket {
			name := topicObj(k, j)
			parts := int32(1)
			if j%7 == 0 {
				parts = 2
			}
			b.topics[name] = &wantTopic{Name: name, Ticket: tk, Broker: ns + "." + name, Partitions: parts, Retention: fmt.Sprint(3600000 * (1 + j%3))}
			b.byTicket[tk] = append(b.byTicket[tk], busv1.CoveredObject{Kind: busv1.KindTopic, Name: name})
		}
		for j := range subsPerTicket {
			name := subObj(k, j)
			role := busv1.RoleConsume
			if j%3 == 0 {
				role = busv1.RoleProduce
			}
			topics := []string{topicObj(k, j)}
			if j%2 == 0 {
				topics = append(topics, topicObj(k, j+25))
			}
			b.subs[name] = &wantSub{Name: name, Ticket: tk, Role: role, Topics: topics}
			b.byTicket[tk] = append(b.byTicket[tk], busv1.CoveredObject{Kind: busv1.KindSubscription, Name: name})
		}
	}
	for _, j := range recordTopicIdx {
		b.recordTopics = append(b.recordTopics, b.topics[topicObj(1, j)].Broker)
	}
	b.markEdits()
	return b
}

// topicObject renders a Topic as first declared.
func (b *batch) topicObject(w *wantTopic) *busv1.Topic {
	parts, retention := w.Partitions, w.Retention
	if w.Edited {
		// First declared as before the edit.
		parts, retention = parts-1, fmt.Sprint(3600000*(1+topicIndex(w.Name)%3))
	}
	return &busv1.Topic{
		ObjectMeta: metav1.ObjectMeta{Namespace: b.ns, Name: w.Name},
		Spec: busv1.TopicSpec{
			TopicName: w.Broker, Partitions: parts, ChangeTicket: w.Ticket,
			Config: map[string]busv1.ConfigValue{"retention.ms": busv1.ConfigValue(retention)},
		},
	}
}

func (b *batch) subObject(w *wantSub, topics []string, ticket string) *busv1.Subscription {
	refs := make([]busv1.TopicReference, 0, len(topics))
	for _, t := range topics {
		refs = append(refs, busv1.TopicReference{Name: t})
	}
	return &busv1.Subscription{
		ObjectMeta: metav1.ObjectMeta{Namespace: b.ns, Name: w.Name},
		Spec:       busv1.SubscriptionSpec{Role: w.Role, Topics: refs, ChangeTicket: ticket},
	}
}

func topicIndex(name string) int {
	var k, j int
	_, _ = fmt.Sscanf(name, "t%d-%d", &k, &j)
	return j
}

// wantACLs is the least-privilege ACL set of a Subscription's approved
// spec, computed here from the README's rules rather than read from the
// operator: Consume is Read and Describe on each topic and Read on its
// group; Produce is Write and Describe on each topic and IdempotentWrite on
// the cluster.
func (b *batch) wantACLs(w *wantSub) map[string]kafka.ACL {
	p := b.principal(w.Name)
	out := map[string]kafka.ACL{}
	add := func(rt, rn, op string) {
		a := kafka.ACL{Principal: p, Host: "*", ResourceType: rt, ResourceName: rn, PatternType: kafka.PatternLiteral, Operation: op, Permission: kafka.PermissionAllow}
		out[a.Key()] = a
	}
	for _, t := range w.Topics {
		name := b.topics[t].Broker
		if w.Role == busv1.RoleProduce {
			add(kafka.ResourceTopic, name, kafka.OpWrite)
		} else {
			add(kafka.ResourceTopic, name, kafka.OpRead)
		}
		add(kafka.ResourceTopic, name, kafka.OpDescribe)
	}
	if w.Role == busv1.RoleProduce {
		add(kafka.ResourceCluster, kafka.ClusterResourceName, kafka.OpIdempotentWrite)
	} else {
		add(kafka.ResourceGroup, b.ns+"."+w.Name, kafka.OpRead)
	}
	return out
}

// driver applies the batch as teams and a reviewer would, retrying through
// API server and etcd outages, and records when each ticket was approved.
type driver struct {
	b *batch
	// faultStarted is closed when the case injects its fault: the edits
	// wait for it, so they meet the fault.
	faultStarted chan struct{}
	// deny and expire, when set, are tickets the denial case ends while
	// their objects are being applied.
	deny, expire string

	mu       sync.Mutex
	approved map[string]time.Time
	// ended is when the denial was stored, and the expiry instant.
	ended map[string]time.Time
}

func newDriver(b *batch) *driver {
	return &driver{b: b, faultStarted: make(chan struct{}), approved: map[string]time.Time{}, ended: map[string]time.Time{}}
}

func (d *driver) markApproved(ticket string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.approved[ticket] = time.Now()
}

func (d *driver) endedAt(ticket string) (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.ended[ticket]
	return t, ok
}

// expiryLead is how far ahead the expiring ticket's window ends when it is
// filed, and approveBeforeExpiry how long before that end it is approved:
// its objects are then being applied when the window closes.
const (
	expiryLead          = 15 * time.Second
	approveBeforeExpiry = time.Second
)

// run files, creates and approves every ticket in turn, then (once the
// fault has started and the first ticket is applied) makes the edits.
func (d *driver) run(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	wg.Go(func() {
		if err := d.edits(ctx); err != nil {
			errs <- fmt.Errorf("edits: %w", err)
		}
	})
	for _, tk := range d.b.tickets {
		notAfter := time.Now().Add(time.Hour)
		if tk == d.expire {
			notAfter = time.Now().Add(expiryLead).Truncate(time.Second).Add(time.Second)
		}
		if err := d.fileTicket(ctx, tk, d.b.byTicket[tk], notAfter); err != nil {
			return err
		}
		if err := d.createObjects(ctx, tk); err != nil {
			return err
		}
		switch tk {
		case d.expire:
			// Approved shortly before its window closes, in the
			// background: the rest of the batch goes on meanwhile.
			wg.Go(func() {
				if !sleepUntil(ctx, notAfter.Add(-approveBeforeExpiry)) {
					errs <- ctx.Err()
					return
				}
				if err := d.approve(ctx, tk); err != nil {
					errs <- err
					return
				}
				d.mu.Lock()
				d.ended[tk] = notAfter
				d.mu.Unlock()
			})
		case d.deny:
			if err := d.approve(ctx, tk); err != nil {
				return err
			}
			wg.Go(func() {
				if err := d.denyWhenApplying(ctx, tk); err != nil {
					errs <- err
				}
			})
		default:
			if err := d.approve(ctx, tk); err != nil {
				return err
			}
		}
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// denyWhenApplying denies ticket once the first of its topics is on the
// broker: the operator is then in the middle of applying it.
func (d *driver) denyWhenApplying(ctx context.Context, ticket string) error {
	var names []string
	for _, o := range d.b.byTicket[ticket] {
		if o.Kind == busv1.KindTopic {
			names = append(names, d.b.topics[o.Name].Broker)
		}
	}
	for {
		got, err := direct.k.DescribeTopics(ctx, names...)
		if err == nil && len(got) > 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for ticket %s to be applied: %w", ticket, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	key := client.ObjectKey{Namespace: d.b.ns, Name: ticket}
	err := retryAPI(ctx, "denying "+ticket, func() error {
		var t busv1.ChangeTicket
		if err := reviewer.Get(ctx, key, &t); err != nil {
			return err
		}
		if t.Status.Denial != nil {
			return nil // an earlier attempt went through
		}
		_, err := review.Deny(ctx, reviewer, key, busv1.Review{Reviewer: reviewerUser, Time: metav1.Now(), Comment: "denied by the fault suite while it is applied"})
		return err
	})
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.ended[ticket] = time.Now()
	d.mu.Unlock()
	return nil
}

func (d *driver) fileTicket(ctx context.Context, name string, covers []busv1.CoveredObject, notAfter time.Time) error {
	t := &busv1.ChangeTicket{
		ObjectMeta: metav1.ObjectMeta{Namespace: d.b.ns, Name: name},
		Spec: busv1.ChangeTicketSpec{
			Reference: "CHG-" + name, Summary: "fault suite batch " + name,
			RequestedBy: requesterUser, Covers: covers, NotAfter: metav1.NewTime(notAfter),
		},
	}
	return retryAPI(ctx, "filing ticket "+name, func() error {
		return ignoreExists(requester.Create(ctx, t.DeepCopy()))
	})
}

// createObjects creates a ticket's Topics, then its Subscriptions, 16 at a
// time.
func (d *driver) createObjects(ctx context.Context, ticket string) error {
	var objs []client.Object
	for _, o := range d.b.byTicket[ticket] {
		switch o.Kind {
		case busv1.KindTopic:
			objs = append(objs, d.b.topicObject(d.b.topics[o.Name]))
		case busv1.KindSubscription:
			w := d.b.subs[o.Name]
			topics := w.Topics
			if w.Edited {
				topics = append([]string(nil), w.Topics...)
				topics = append(topics, topicObj(1, topicIndex(topics[0])+25))
			}
			objs = append(objs, d.b.subObject(w, topics, w.Ticket))
		}
	}
	return parallel(ctx, 16, len(objs), func(i int) error {
		obj := objs[i]
		return retryAPI(ctx, "creating "+obj.GetName(), func() error {
			return ignoreExists(requester.Create(ctx, obj.DeepCopyObject().(client.Object)))
		})
	})
}

// approve records the reviewer's approval, which pins the specs as they
// are (env.Approve's way, with the reviewer's own client).
func (d *driver) approve(ctx context.Context, ticket string) error {
	key := client.ObjectKey{Namespace: d.b.ns, Name: ticket}
	err := retryAPI(ctx, "approving "+ticket, func() error {
		// Approve does nothing when the reviewer's approval is there
		// already, so a retry after an answer lost in an outage is safe.
		_, err := review.Approve(ctx, reviewer, key, busv1.Review{Reviewer: reviewerUser, Time: metav1.Now(), Comment: "approved by the fault suite"})
		return err
	})
	if err == nil {
		d.markApproved(ticket)
	}
	return err
}

// edits waits until the fault has started and the first ticket's objects
// are Ready, then files the edit ticket, edits the covered objects and
// approves it, and deletes some Subscriptions (which needs no ticket).
func (d *driver) edits(ctx context.Context) error {
	select {
	case <-d.faultStarted:
	case <-ctx.Done():
		return ctx.Err()
	}
	first := d.b.byTicket[ticketName(1)]
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := waitObjectsReady(wctx, d.b.ns, first); err != nil {
		return fmt.Errorf("before editing: %w", err)
	}
	var covers []busv1.CoveredObject
	for _, j := range editedTopicIdx {
		covers = append(covers, busv1.CoveredObject{Kind: busv1.KindTopic, Name: topicObj(1, j)})
	}
	for _, j := range editedSubIdx {
		covers = append(covers, busv1.CoveredObject{Kind: busv1.KindSubscription, Name: subObj(1, j)})
	}
	if err := d.fileTicket(ctx, editTicket, covers, time.Now().Add(time.Hour)); err != nil {
		return err
	}
	for _, c := range covers {
		key := client.ObjectKey{Namespace: d.b.ns, Name: c.Name}
		var err error
		if c.Kind == busv1.KindTopic {
			w := d.b.topics[c.Name]
			err = retryAPI(ctx, "editing "+c.Name, func() error {
				var tp busv1.Topic
				if err := requester.Get(ctx, key, &tp); err != nil {
					return err
				}
				tp.Spec.Partitions, tp.Spec.ChangeTicket = w.Partitions, editTicket
				tp.Spec.Config = map[string]busv1.ConfigValue{"retention.ms": busv1.ConfigValue(w.Retention)}
				return requester.Update(ctx, &tp)
			})
		} else {
			w := d.b.subs[c.Name]
			err = retryAPI(ctx, "editing "+c.Name, func() error {
				var sub busv1.Subscription
				if err := requester.Get(ctx, key, &sub); err != nil {
					return err
				}
				sub.Spec = d.b.subObject(w, w.Topics, editTicket).Spec
				return requester.Update(ctx, &sub)
			})
		}
		if err != nil {
			return err
		}
	}
	if err := d.approve(ctx, editTicket); err != nil {
		return err
	}
	for _, j := range deletedSubIdx {
		sub := &busv1.Subscription{ObjectMeta: metav1.ObjectMeta{Namespace: d.b.ns, Name: subObj(1, j)}}
		if err := retryAPI(ctx, "deleting "+sub.Name, func() error {
			return client.IgnoreNotFound(requester.Delete(ctx, sub))
		}); err != nil {
			return err
		}
	}
	return nil
}

// markEdits records the edits and deletions in the batch's end state; the
// driver creates the objects as they were before.
func (b *batch) markEdits() {
	for _, j := range editedTopicIdx {
		w := b.topics[topicObj(1, j)]
		w.Edited, w.Partitions, w.Retention = true, w.Partitions+1, editedRetention
	}
	for _, j := range editedSubIdx {
		w := b.subs[subObj(1, j)]
		w.Edited, w.Topics = true, w.Topics[:1]
	}
	for _, j := range deletedSubIdx {
		b.subs[subObj(1, j)].Deleted = true
	}
}

// waitObjectsReady waits until the listed objects are Ready for their
// current generation.
func waitObjectsReady(ctx context.Context, ns string, objs []busv1.CoveredObject) error {
	for {
		var topics busv1.TopicList
		var subs busv1.SubscriptionList
		err := errors.Join(stack.Env.Client.List(ctx, &topics, client.InNamespace(ns)), stack.Env.Client.List(ctx, &subs, client.InNamespace(ns)))
		if err == nil {
			ready := map[string]bool{}
			for i := range topics.Items {
				ready["Topic/"+topics.Items[i].Name] = readyNow(topics.Items[i].Status.Conditions, topics.Items[i].Generation, topics.Items[i].Status.ObservedGeneration)
			}
			for i := range subs.Items {
				ready["Subscription/"+subs.Items[i].Name] = readyNow(subs.Items[i].Status.Conditions, subs.Items[i].Generation, subs.Items[i].Status.ObservedGeneration)
			}
			if !slices.ContainsFunc(objs, func(o busv1.CoveredObject) bool { return !ready[string(o.Kind)+"/"+o.Name] }) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d objects to be Ready: %w", len(objs), ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// readyNow: Ready=True for the current generation.
func readyNow(conds []metav1.Condition, gen, observed int64) bool {
	for _, c := range conds {
		if c.Type == busv1.ConditionReady {
			return c.Status == metav1.ConditionTrue && c.ObservedGeneration == gen && observed == gen
		}
	}
	return false
}

// condition returns the Ready condition ("" status when missing).
func readyCond(conds []metav1.Condition) metav1.Condition {
	for _, c := range conds {
		if c.Type == busv1.ConditionReady {
			return c
		}
	}
	return metav1.Condition{}
}

// retryAPI retries an API call until it succeeds or the call has failed
// for a minute: during an API server or etcd restart every call fails for
// a while, in ways (connection refused, 503, etcd timeouts, and admission
// policies not loaded yet) that all end once the control plane is back.
func retryAPI(ctx context.Context, what string, call func() error) error {
	deadline := time.Now().Add(time.Minute)
	delay := 100 * time.Millisecond
	for {
		err := call()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last error: %w)", what, ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
}

func ignoreExists(err error) error {
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// parallel runs fn(0..n-1) with at most workers at once and returns the
// first error.
func parallel(ctx context.Context, workers, n int, fn func(i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		})
	}
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	return first
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// sortedKeys returns a map's keys in order, for stable messages.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
