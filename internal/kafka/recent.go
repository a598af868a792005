package kafka

import (
	"maps"
	"slices"
	"sync"
	"time"
)

// Apache Kafka answers describes (metadata, configs, SCRAM users, ACLs,
// quotas) from state that may lag the client's own writes by a moment: a
// topic just created can be missing from Metadata, a SCRAM credential just
// written can be missing from DescribeUserSCRAMCredentials. A reconcile
// running right after a write would then make the write again (harmless on
// the broker, but a second change in the audit trail) or fail to revoke what
// it does not see. So the client remembers the effect of its own successful
// writes for a few seconds and applies it to what describes return: its
// callers read their writes. After the window the broker's answer alone
// counts again, so a change made out of band is seen (and repaired) at most
// a few seconds late.

// recentWritesTTL is how long a write's effect is overlaid: far longer than
// the broker's propagation delay, far shorter than any resync.
const recentWritesTTL = 5 * time.Second

type recentWrites struct {
	ttl time.Duration
	now func() time.Time

	mu     sync.Mutex
	scram  map[string]map[string]mark[bool] // user -> mechanism -> present
	acls   map[string]map[ACL]mark[bool]    // principal -> ACL -> present
	quotas map[string]mark[Quota]
	topics map[string]mark[*Topic] // nil: deleted
	// topicPatches are alters and partition increases of topics whose
	// whole state the client does not hold: applied to what the broker
	// answers.
	topicPatches map[string][]mark[func(*Topic)]
}

// mark is one remembered effect and when it was made.
type mark[T any] struct {
	value T
	at    time.Time
}

func newRecentWrites(ttl time.Duration) *recentWrites {
	return &recentWrites{ttl: ttl, now: time.Now,
		scram: map[string]map[string]mark[bool]{}, acls: map[string]map[ACL]mark[bool]{},
		quotas: map[string]mark[Quota]{}, topics: map[string]mark[*Topic]{}, topicPatches: map[string][]mark[func(*Topic)]{}}
}

func (r *recentWrites) fresh(at time.Time) bool { return r.now().Sub(at) < r.ttl }

// prune drops what has aged out, so the maps stay as small as the writes
// of the last few seconds.
func (r *recentWrites) prune() {
	for user, ms := range r.scram {
		maps.DeleteFunc(ms, func(_ string, m mark[bool]) bool { return !r.fresh(m.at) })
		if len(ms) == 0 {
			delete(r.scram, user)
		}
	}
	for p, as := range r.acls {
		maps.DeleteFunc(as, func(_ ACL, m mark[bool]) bool { return !r.fresh(m.at) })
		if len(as) == 0 {
			delete(r.acls, p)
		}
	}
	maps.DeleteFunc(r.quotas, func(_ string, m mark[Quota]) bool { return !r.fresh(m.at) })
	maps.DeleteFunc(r.topics, func(_ string, m mark[*Topic]) bool { return !r.fresh(m.at) })
	for name, ps := range r.topicPatches {
		ps = slices.DeleteFunc(ps, func(m mark[func(*Topic)]) bool { return !r.fresh(m.at) })
		if len(ps) == 0 {
			delete(r.topicPatches, name)
		} else {
			r.topicPatches[name] = ps
		}
	}
}

func (r *recentWrites) scramWritten(user, mechanism string, present bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.prune()
	if r.scram[user] == nil {
		r.scram[user] = map[string]mark[bool]{}
	}
	r.scram[user][mechanism] = mark[bool]{present, r.now()}
}

// scramView overlays recent SCRAM writes on a describe answer.
func (r *recentWrites) scramView(users []string, got map[string][]string) map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, user := range users {
		for mech, m := range r.scram[user] {
			if !r.fresh(m.at) {
				continue
			}
			have := got[user]
			switch {
			case m.value && !slices.Contains(have, mech):
				have = append(slices.Clone(have), mech)
				slices.Sort(have)
			case !m.value && slices.Contains(have, mech):
				have = slices.DeleteFunc(slices.Clone(have), func(s string) bool { return s == mech })
			}
			if len(have) == 0 {
				delete(got, user)
			} else {
				got[user] = have
			}
		}
	}
	return got
}

func (r *recentWrites) aclsWritten(acls []ACL, present bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.prune()
	for _, a := range acls {
		if r.acls[a.Principal] == nil {
			r.acls[a.Principal] = map[ACL]mark[bool]{}
		}
		r.acls[a.Principal][a] = mark[bool]{present, r.now()}
	}
}

// aclView overlays recent ACL writes on a describe answer.
func (r *recentWrites) aclView(principal string, got []ACL) []ACL {
	r.mu.Lock()
	defer r.mu.Unlock()
	ms := r.acls[principal]
	if len(ms) == 0 {
		return got
	}
	out := slices.DeleteFunc(slices.Clone(got), func(a ACL) bool {
		m, ok := ms[a]
		return ok && r.fresh(m.at) && !m.value
	})
	for a, m := range ms {
		if m.value && r.fresh(m.at) && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return sortedACLs(out)
}

func (r *recentWrites) quotaWritten(user string, q Quota) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.prune()
	r.quotas[user] = mark[Quota]{q, r.now()}
}

func (r *recentWrites) quotaView(user string, got Quota) Quota {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m, ok := r.quotas[user]; ok && r.fresh(m.at) {
		return m.value
	}
	return got
}

// topicWritten records a topic as it stands after a write of this client
// (nil: deleted).
func (r *recentWrites) topicWritten(name string, t *Topic) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.prune()
	r.topics[name] = mark[*Topic]{t, r.now()}
	delete(r.topicPatches, name)
}

// topicChanged applies change to the remembered state of a topic after an
// alter or a partition increase, or, without one, remembers the change to
// apply to what the broker answers.
func (r *recentWrites) topicChanged(name string, change func(*Topic)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.prune()
	if m, ok := r.topics[name]; ok && m.value != nil {
		t := *m.value
		t.Configs = maps.Clone(m.value.Configs)
		change(&t)
		r.topics[name] = mark[*Topic]{&t, r.now()}
		return
	}
	r.topicPatches[name] = append(r.topicPatches[name], mark[func(*Topic)]{change, r.now()})
}

// topicView overlays recent topic writes on a describe answer.
func (r *recentWrites) topicView(names []string, got map[string]Topic) map[string]Topic {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, name := range names {
		if m, ok := r.topics[name]; ok && r.fresh(m.at) {
			if m.value == nil {
				delete(got, name)
			} else {
				t := *m.value
				t.Configs = maps.Clone(m.value.Configs)
				got[name] = t
			}
			continue
		}
		if ps := r.topicPatches[name]; len(ps) > 0 {
			t, ok := got[name]
			if !ok {
				continue
			}
			t.Configs = maps.Clone(t.Configs)
			for _, p := range ps {
				if r.fresh(p.at) {
					p.value(&t)
				}
			}
			got[name] = t
		}
	}
	return got
}
