package plan

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/hms-platform/bus-operator/internal/kafka"
)

// configsFrom decodes "k=v;k=v" fuzz text into a config map (nil when
// empty, as the Topic API hands over "no overrides").
func configsFrom(s string) map[string]string {
	var m map[string]string
	for _, kv := range strings.Split(s, ";") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		if m == nil {
			m = map[string]string{}
		}
		m[k] = v
	}
	return m
}

// applyTopic plays a plan against the observed topic the way the broker
// would, returning the resulting topic.
func applyTopic(p TopicPlan, observed *kafka.Topic) kafka.Topic {
	if p.Create != nil {
		return kafka.Topic{Name: p.Create.Name, Partitions: p.Create.Partitions, ReplicationFactor: p.Create.ReplicationFactor, Configs: maps.Clone(p.Create.Configs)}
	}
	got := *observed
	got.Configs = maps.Clone(observed.Configs)
	if p.Partitions != 0 {
		got.Partitions = p.Partitions
	}
	if p.Alter != nil {
		if got.Configs == nil {
			got.Configs = map[string]string{}
		}
		maps.Copy(got.Configs, p.Alter.Set)
		for _, k := range p.Alter.Delete {
			delete(got.Configs, k)
		}
	}
	return got
}

func sameConfigs(a, b map[string]string) bool {
	return len(a) == len(b) && maps.Equal(a, b)
}

func FuzzPlanTopic(f *testing.F) {
	f.Add(int32(3), int32(3), true, int32(3), int32(3), "retention.ms=1000", "retention.ms=1000")
	f.Add(int32(3), int32(1), true, int32(0), int32(2), "retention.ms=1000;cleanup.policy=compact", "retention.ms=2000;segment.ms=10")
	f.Add(int32(1), int32(5), true, int32(3), int32(3), "", "a=b")
	f.Add(int32(6), int32(0), false, int32(0), int32(0), "k=", "")
	f.Add(int32(-1), int32(2147483647), true, int32(-1), int32(1), "=;==;a=b=c", "=x")
	f.Add(int32(0), int32(2147483647), true, int32(2147483647), int32(-2147483648), "a=b", "a=c")
	f.Fuzz(func(t *testing.T, targetParts, observedParts int32, exists bool, targetRF, observedRF int32, targetCfg, observedCfg string) {
		if targetParts < 1 || observedParts < 0 {
			// Outside what can reach PlanTopic: the Topic API admits 1..10000
			// partitions and a broker reports none below 0. There, a
			// target of 0 is the plan's "unchanged" and a negative one
			// makes ExtraPartitions overflow (seed 4).
			t.Skip("partition counts no API or broker produces")
		}
		target := TopicTarget{Name: "t", Partitions: targetParts, ReplicationFactor: targetRF, Configs: configsFrom(targetCfg)}
		var observed *kafka.Topic
		if exists {
			observed = &kafka.Topic{Name: "t", Partitions: observedParts, ReplicationFactor: observedRF, Configs: configsFrom(observedCfg)}
		}
		targetBefore := maps.Clone(target.Configs)
		p := PlanTopic(target, observed)

		if observed == nil {
			if p.Create == nil || p.Create.Partitions != targetParts {
				t.Fatalf("absent topic: plan %+v", p)
			}
			if targetRF == 0 && p.Create.ReplicationFactor != -1 || targetRF != 0 && p.Create.ReplicationFactor != targetRF {
				t.Fatalf("create with replication factor %d for target %d", p.Create.ReplicationFactor, targetRF)
			}
		} else {
			if p.Create != nil {
				t.Fatal("an existing topic is never created again")
			}
			// Kafka cannot remove partitions: a plan only ever raises them.
			if p.Partitions != 0 && (p.Partitions <= observed.Partitions || p.Partitions != targetParts) {
				t.Fatalf("partitions %d -> %d for target %d", observed.Partitions, p.Partitions, targetParts)
			}
			if want := max(0, observed.Partitions-targetParts); p.ExtraPartitions != want {
				t.Fatalf("extra partitions %d, want %d", p.ExtraPartitions, want)
			}
			if p.ReplicationMismatch != (targetRF != 0 && targetRF != observedRF) {
				t.Fatalf("replication mismatch %v for %d vs %d", p.ReplicationMismatch, targetRF, observedRF)
			}
			if a := p.Alter; a != nil {
				if len(a.Set) == 0 && len(a.Delete) == 0 {
					t.Fatal("an empty alter must be nil")
				}
				if !slices.IsSorted(a.Delete) {
					t.Fatalf("deletes not sorted: %v", a.Delete)
				}
				for _, k := range a.Delete {
					if _, both := a.Set[k]; both {
						t.Fatalf("key %q both set and deleted", k)
					}
					if _, wanted := target.Configs[k]; wanted {
						t.Fatalf("deletes desired key %q", k)
					}
				}
			} else if !sameConfigs(target.Configs, observed.Configs) {
				t.Fatalf("no alter, yet configs differ: %v vs %v", target.Configs, observed.Configs)
			}
		}

		// Applying the plan yields the target (partitions: the larger of
		// the two, since extra ones cannot be removed).
		got := applyTopic(p, observed)
		wantParts := targetParts
		if observed != nil {
			wantParts = max(targetParts, observed.Partitions)
		}
		if got.Partitions != wantParts || !sameConfigs(got.Configs, target.Configs) {
			t.Fatalf("applied plan gives %d partitions %v, want %d %v", got.Partitions, got.Configs, wantParts, target.Configs)
		}
		// Applying it again changes nothing.
		if again := PlanTopic(target, &got); !again.Empty() {
			t.Fatalf("second plan is not empty: %+v", again)
		}
		if !maps.Equal(targetBefore, target.Configs) {
			t.Fatal("planning changed the target")
		}
		if p.Create != nil && len(p.Create.Configs) > 0 {
			for k := range p.Create.Configs {
				p.Create.Configs[k] = "mutated"
			}
			if !maps.Equal(targetBefore, target.Configs) {
				t.Fatal("the create plan shares the target's config map")
			}
		}
	})
}

// aclsFrom decodes fuzz text into ACLs: records separated by "\n", fields
// by "\t" (principal, host, type, name, pattern, operation, permission).
// Empty fields take plausible values so most inputs make real ACLs; any
// character may appear in a field, including the "|" of ACL.Key.
func aclsFrom(s, principal string) []kafka.ACL {
	var out []kafka.ACL
	for _, line := range strings.Split(s, "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		for len(f) < 7 {
			f = append(f, "")
		}
		pick := func(v, def string) string {
			if v == "" {
				return def
			}
			return v
		}
		out = append(out, kafka.ACL{
			Principal: pick(f[0], principal), Host: pick(f[1], "*"), ResourceType: pick(f[2], kafka.ResourceTopic),
			ResourceName: pick(f[3], "FeeUpdated"), PatternType: pick(f[4], kafka.PatternLiteral),
			Operation: pick(f[5], kafka.OpRead), Permission: pick(f[6], kafka.PermissionAllow),
		})
	}
	return out
}

func FuzzDiffACLs(f *testing.F) {
	f.Add("\t\t\tA\n\t\t\tA\t\tDescribe", "\t\t\tA\n\t\t\tB", "\t\t\tB")
	f.Add("\t\t\tFeeUpdated", "\t\t\tFeeUpdated\n\t\t\tmanual", "")
	f.Add("", "\t\t\told\n\t\t\tmanual", "\t\t\told")
	f.Add("\t\t\tx\t\tWrite", "", "\t\t\tx\t\tWrite")
	// Fields holding the key separator "|".
	f.Add("\ta|Topic\tb\tc", "\ta\tTopic|b\tc", "\ta\tTopic|b\tc")
	f.Fuzz(func(t *testing.T, desiredText, observedText, ownedText string) {
		const p = "User:fees.payment"
		desired, observed, owned := aclsFrom(desiredText, p), aclsFrom(observedText, p), aclsFrom(ownedText, p)
		d := DiffACLs(desired, observed, owned)
		in := func(set []kafka.ACL, a kafka.ACL) bool { return slices.Contains(set, a) }

		for _, a := range d.Create {
			if !in(desired, a) {
				t.Fatalf("creates %v, which is not desired", a)
			}
			if in(observed, a) {
				t.Fatalf("creates %v, which the broker already has", a)
			}
		}
		for _, a := range d.Delete {
			if !in(owned, a) {
				t.Fatalf("deletes %v, which the operator did not record as its own", a)
			}
			if !in(observed, a) || in(desired, a) {
				t.Fatalf("deletes %v (observed %v, desired %v)", a, in(observed, a), in(desired, a))
			}
		}
		for _, a := range d.Unmanaged {
			if !in(observed, a) || in(desired, a) || in(owned, a) {
				t.Fatalf("reports %v as unmanaged", a)
			}
		}
		// Every observed ACL is kept (desired), deleted or reported.
		for _, a := range observed {
			n := 0
			if in(desired, a) {
				n++
			}
			if in(d.Delete, a) {
				n++
			}
			if in(d.Unmanaged, a) {
				n++
			}
			if n != 1 {
				t.Fatalf("observed %v is in %d of desired/delete/unmanaged, want exactly one", a, n)
			}
		}
		// Applying the diff yields every desired ACL, nothing owned and
		// undesired, and leaves everything not ours alone.
		after := slices.DeleteFunc(slices.Clone(observed), func(a kafka.ACL) bool { return in(d.Delete, a) })
		after = append(after, d.Create...)
		for _, a := range desired {
			if !in(after, a) {
				t.Fatalf("after applying, desired %v is missing", a)
			}
		}
		for _, a := range after {
			if in(owned, a) && !in(desired, a) {
				t.Fatalf("after applying, %v is still granted though owned and not desired", a)
			}
			if !in(desired, a) && !in(observed, a) {
				t.Fatalf("after applying, %v appeared from nowhere", a)
			}
		}
		for _, set := range [][]kafka.ACL{d.Create, d.Delete, d.Unmanaged} {
			if !slices.IsSortedFunc(set, compareACLs) {
				t.Fatalf("result not sorted: %v", set)
			}
		}
	})
}

func FuzzDesiredACLs(f *testing.F) {
	f.Add("User:fees.payment", RoleConsume, "FeeUpdated,Other", "fees.payment")
	f.Add("User:fees.fee-service", RoleProduce, "FeeUpdated", "")
	f.Add("User:x", "", "", "g")
	f.Fuzz(func(t *testing.T, principal, role, topicList, group string) {
		var topics []string
		if topicList != "" {
			topics = strings.Split(topicList, ",")
		}
		acls := DesiredACLs(principal, role, topics, group)
		if !slices.IsSortedFunc(acls, compareACLs) {
			t.Fatalf("not sorted: %v", acls)
		}
		for _, a := range acls {
			if a.Principal != principal || a.Permission != kafka.PermissionAllow || a.PatternType != kafka.PatternLiteral || a.Host != "*" {
				t.Fatalf("grant %v: only literal allows for the principal", a)
			}
			switch a.ResourceType {
			case kafka.ResourceTopic:
				if !slices.Contains(topics, a.ResourceName) {
					t.Fatalf("grant on topic %q not asked for", a.ResourceName)
				}
				want := []string{kafka.OpRead, kafka.OpDescribe}
				if role == RoleProduce {
					want = []string{kafka.OpWrite, kafka.OpDescribe}
				}
				if !slices.Contains(want, a.Operation) {
					t.Fatalf("role %q gets %s on a topic", role, a.Operation)
				}
			case kafka.ResourceGroup:
				if role == RoleProduce || a.ResourceName != group || a.Operation != kafka.OpRead {
					t.Fatalf("group grant %v for role %q group %q", a, role, group)
				}
			case kafka.ResourceCluster:
				if role != RoleProduce || a.Operation != kafka.OpIdempotentWrite {
					t.Fatalf("cluster grant %v for role %q", a, role)
				}
			default:
				t.Fatalf("unexpected resource type in %v", a)
			}
		}
		if len(topics) == 0 && len(acls) != 0 {
			t.Fatalf("no topics, yet grants %v", acls)
		}
	})
}
