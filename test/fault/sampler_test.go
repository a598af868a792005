package fault

import (
	"context"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/kafka"
	"github.com/hms-platform/bus-operator/test/harness/brokers"
)

// samplePeriod is how often the sampler compares status with the broker.
const samplePeriod = time.Second

// lieWindow is how long the broker must contradict a Ready object, sample
// after sample, before the sampler counts a lie: the object is listed
// before the broker is read, and Kafka's metadata trails its controller
// (a topic the controller has created is missing from the topics a broker
// lists for a moment, for seconds when a restarted broker is still loading
// its metadata or when a paused network releases hundreds of writes at
// once). kfake answers from the state it changed, so a short window is
// enough there. A real lie, status Ready for something the broker never got
// or lost, lasts until the operator looks again: far longer.
func lieWindow() time.Duration {
	if broker.Kind() == brokers.Kafka {
		return 10 * time.Second
	}
	return 2 * time.Second
}

// sampler checks, every samplePeriod while a case runs, that status tells
// the truth: no Topic is Ready while the broker lacks its topic, no
// Subscription is Ready while the broker lacks its user or a granted ACL.
// It also keeps what the case's triggers and the denial checks need: which
// objects are Ready now, and when an object was first seen refused by an
// ended ticket.
type sampler struct {
	ns   string
	stop chan struct{}
	done chan struct{}

	mu sync.Mutex
	// suspects are the contradictions seen at the last sample, with when
	// each was first seen and why.
	suspects   map[string]suspect
	ticks      int
	skipped    int
	violations []string
	// exempt are windows in which the broker is known to have lost state
	// the operator cannot know about yet (see the data loss case).
	exempt []window
	ready  map[string]bool
	// readyEver are objects seen Ready at least once.
	readyEver map[string]bool
	// firstEnded is when each object was first seen with reason
	// TicketDenied or TicketExpired.
	firstEnded map[string]time.Time
}

type window struct{ from, to time.Time }

type suspect struct {
	since    time.Time
	why      string
	reported bool
}

func startSampler(ns string) *sampler {
	s := &sampler{ns: ns, stop: make(chan struct{}), done: make(chan struct{}), suspects: map[string]suspect{},
		ready: map[string]bool{}, readyEver: map[string]bool{}, firstEnded: map[string]time.Time{}}
	go s.loop()
	return s
}

func (s *sampler) loop() {
	defer close(s.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	t := time.NewTicker(samplePeriod)
	defer t.Stop()
	for {
		s.tick(ctx)
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

// Stop ends sampling and returns the confirmed lies.
func (s *sampler) Stop() []string {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}

// Exempt excludes [from, to) from the truth check.
func (s *sampler) Exempt(from, to time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.exempt = append(s.exempt, window{from, to})
}

// Ready reports how many objects are Ready now, and whether each named one
// is.
func (s *sampler) Ready(keys ...string) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := true
	for _, k := range keys {
		all = all && s.ready[k]
	}
	return len(s.ready), all
}

// Stats are the number of samples taken and skipped (the API server or the
// broker could not be read: an outage).
func (s *sampler) Stats() (int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ticks, s.skipped
}

// FirstEnded is when an object was first seen refused by its ended ticket.
func (s *sampler) FirstEnded(key string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.firstEnded[key]
	return t, ok
}

// ReadyEver reports whether an object was ever seen Ready.
func (s *sampler) ReadyEver(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.readyEver[key]
}

// caseObjects are the case's Topics and Subscriptions as listed at once.
type caseObjects struct {
	topics []busv1.Topic
	subs   []busv1.Subscription
}

func listCase(ctx context.Context, ns string) (*caseObjects, error) {
	var topics busv1.TopicList
	var subs busv1.SubscriptionList
	if err := stack.Env.Client.List(ctx, &topics, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing Topics: %w", err)
	}
	if err := stack.Env.Client.List(ctx, &subs, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing Subscriptions: %w", err)
	}
	return &caseObjects{topics: topics.Items, subs: subs.Items}, nil
}

func (s *sampler) tick(ctx context.Context) {
	now := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	objs, err := listCase(cctx, s.ns)
	if err != nil {
		s.count(true)
		return
	}
	s.observe(objs, now)
	st, err := direct.snapshot(cctx)
	if err != nil {
		s.count(true)
		return
	}
	s.count(false)
	if s.exempted(now) {
		s.mu.Lock()
		s.suspects = map[string]suspect{}
		s.mu.Unlock()
		return
	}
	found := lies(objs, st)
	s.mu.Lock()
	defer s.mu.Unlock()
	for key := range s.suspects {
		if _, still := found[key]; !still {
			delete(s.suspects, key) // the broker caught up: not a lie
		}
	}
	for key, why := range found {
		sp, seen := s.suspects[key]
		if !seen {
			s.suspects[key] = suspect{since: now, why: why}
			continue
		}
		if !sp.reported && now.Sub(sp.since) >= lieWindow() && len(s.violations) < 50 {
			s.violations = append(s.violations, fmt.Sprintf("%s: %s (from %s to %s at least; the broker listed %d topics, %d ACLs, %d users)",
				key, why, sp.since.Format(clock), now.Format(clock), len(st.topics), len(st.acls), len(st.users)))
			sp.reported = true
			s.suspects[key] = sp
		}
	}
}

func (s *sampler) count(skipped bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ticks++
	if skipped {
		s.skipped++
	}
}

func (s *sampler) exempted(t time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.exempt {
		if !t.Before(w.from) && t.Before(w.to) {
			return true
		}
	}
	return false
}

// observe records which objects are Ready, and when objects were first
// refused by an ended ticket.
func (s *sampler) observe(objs *caseObjects, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ready = map[string]bool{}
	note := func(key string, conds []metav1.Condition, gen, observed int64) {
		if readyNow(conds, gen, observed) {
			s.ready[key], s.readyEver[key] = true, true
		}
		if r := readyCond(conds).Reason; r == busv1.ReasonTicketDenied || r == busv1.ReasonTicketExpired {
			if _, seen := s.firstEnded[key]; !seen {
				s.firstEnded[key] = at
			}
		}
	}
	for i := range objs.topics {
		t := &objs.topics[i]
		note("Topic/"+t.Name, t.Status.Conditions, t.Generation, t.Status.ObservedGeneration)
	}
	for i := range objs.subs {
		sub := &objs.subs[i]
		note("Subscription/"+sub.Name, sub.Status.Conditions, sub.Generation, sub.Status.ObservedGeneration)
	}
}

// lies lists the objects whose Ready=True the broker contradicts, with why.
func lies(objs *caseObjects, st *brokerState) map[string]string {
	out := map[string]string{}
	for i := range objs.topics {
		t := &objs.topics[i]
		if readyCond(t.Status.Conditions).Status != metav1.ConditionTrue {
			continue
		}
		bt, ok := st.topics[t.Status.TopicName]
		switch {
		case t.Status.TopicName == "":
			out["Topic/"+t.Name] = "Ready with no broker topic in its status"
		case !ok:
			out["Topic/"+t.Name] = fmt.Sprintf("Ready, but broker topic %s does not exist", t.Status.TopicName)
		case bt.ID != t.Status.TopicID:
			out["Topic/"+t.Name] = fmt.Sprintf("Ready with topic ID %s, but broker topic %s has ID %s", t.Status.TopicID, t.Status.TopicName, bt.ID)
		case bt.Partitions < t.Status.Partitions:
			out["Topic/"+t.Name] = fmt.Sprintf("Ready with %d partitions, but broker topic %s has %d", t.Status.Partitions, t.Status.TopicName, bt.Partitions)
		}
	}
	for i := range objs.subs {
		sub := &objs.subs[i]
		if readyCond(sub.Status.Conditions).Status != metav1.ConditionTrue {
			continue
		}
		key := "Subscription/" + sub.Name
		if _, ok := st.users[sub.Status.Username]; !ok {
			out[key] = fmt.Sprintf("Ready, but SCRAM user %q does not exist", sub.Status.Username)
			continue
		}
		have := st.aclsOf(sub.Status.Principal)
		for _, e := range sub.Status.GrantedACLs {
			a := kafka.ACL{Principal: sub.Status.Principal, Host: "*", ResourceType: e.ResourceType, ResourceName: e.ResourceName,
				PatternType: e.PatternType, Operation: e.Operation, Permission: kafka.PermissionAllow}
			if _, ok := have[a.Key()]; !ok {
				out[key] = fmt.Sprintf("Ready with granted ACL %q, which the broker does not have", a.String())
				break
			}
		}
	}
	return out
}
