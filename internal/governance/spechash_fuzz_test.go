package governance

import (
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
)

// specFrom builds a Topic and a Subscription spec from fuzz input; config
// and topic lists are "k=v;k=v" and "ns/name,name" texts, and order flips
// the insertion order of the config map.
func specFrom(name string, partitions int32, rf int32, hasRF bool, config, ticket, allowed, topics string, rate int64, order bool) (busv1.TopicSpec, busv1.SubscriptionSpec) {
	tp := busv1.TopicSpec{TopicName: name, Partitions: partitions, ChangeTicket: ticket, DeletionPolicy: busv1.DeletionRetain}
	if hasRF {
		tp.ReplicationFactor = &rf
	}
	pairs := strings.Split(config, ";")
	if order {
		for i, j := 0, len(pairs)-1; i < j; i, j = i+1, j-1 {
			pairs[i], pairs[j] = pairs[j], pairs[i]
		}
	}
	for _, kv := range pairs {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		if tp.Config == nil {
			tp.Config = map[string]busv1.ConfigValue{}
		}
		if _, seen := tp.Config[k]; !seen || !order {
			tp.Config[k] = busv1.ConfigValue(v)
		}
	}
	if allowed != "" {
		tp.AllowedNamespaces = strings.Split(allowed, ",")
	}
	sub := busv1.SubscriptionSpec{Role: busv1.RoleConsume, ConsumerGroup: name, ChangeTicket: ticket}
	for _, ref := range strings.Split(topics, ",") {
		ns, n, found := strings.Cut(ref, "/")
		if !found {
			ns, n = "", ref
		}
		sub.Topics = append(sub.Topics, busv1.TopicReference{Namespace: ns, Name: n})
	}
	if rate != 0 {
		sub.Quota = &busv1.QuotaSpec{ProducerByteRate: &rate}
	}
	return tp, sub
}

func mustHash(t *testing.T, spec any) string {
	t.Helper()
	h, err := SpecHash(spec)
	if err != nil {
		t.Fatalf("SpecHash: %v", err)
	}
	if !strings.HasPrefix(h, "sha256:") || len(h) != len("sha256:")+64 {
		t.Fatalf("hash %q is not sha256:<64 hex>", h)
	}
	if _, err := hex.DecodeString(strings.TrimPrefix(h, "sha256:")); err != nil {
		t.Fatalf("hash %q is not hex: %v", h, err)
	}
	return h
}

// jsonRoundTrip is what the spec looks like after the API server stored
// it and a client read it back (the CLI pins what it read; the operator
// hashes what its cache decoded).
func jsonRoundTrip[T any](t *testing.T, in T) T {
	t.Helper()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out T
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// FuzzSpecHash: equal specs hash equal (a deep copy, the same spec read
// back from JSON, a map built in another order) and a changed spec hashes
// differently.
func FuzzSpecHash(f *testing.F) {
	f.Add("FeeUpdated", int32(3), int32(3), true, "retention.ms=-1;cleanup.policy=delete", "chg-1042", "payments,sms", "fee-updated,audit/fee-audit", int64(0), false)
	f.Add("", int32(0), int32(0), false, "", "", "", "", int64(1048576), true)
	f.Add("<&>", int32(-1), int32(-5), true, "a=1;a=2;=;b", "t\u2028", "*", "/", int64(-1), true)
	f.Fuzz(func(t *testing.T, name string, partitions, rf int32, hasRF bool, config, ticket, allowed, topics string, rate int64, order bool) {
		for _, s := range []string{name, config, ticket, allowed, topics} {
			if !utf8.ValidString(s) {
				// The API server only ever holds valid UTF-8 (JSON), so no
				// spec that is hashed contains anything else; encoding/json
				// would store such bytes as U+FFFD and the hash of what was
				// read back would differ.
				t.Skip("invalid UTF-8")
			}
		}
		tp, sub := specFrom(name, partitions, rf, hasRF, config, ticket, allowed, topics, rate, order)
		tp2, sub2 := specFrom(name, partitions, rf, hasRF, config, ticket, allowed, topics, rate, order)
		for _, c := range []struct {
			name string
			a, b any
		}{
			{"topic rebuilt", tp, tp2},
			{"topic deep copy", tp, *tp.DeepCopy()},
			{"topic via JSON", tp, jsonRoundTrip(t, tp)},
			{"topic pointer", tp, &tp},
			{"subscription rebuilt", sub, sub2},
			{"subscription deep copy", sub, *sub.DeepCopy()},
			{"subscription via JSON", sub, jsonRoundTrip(t, sub)},
		} {
			if mustHash(t, c.a) != mustHash(t, c.b) {
				t.Fatalf("%s: equal specs hash differently", c.name)
			}
		}
		changed := tp.DeepCopy()
		changed.Partitions++
		if mustHash(t, tp) == mustHash(t, *changed) {
			t.Fatal("a partition change does not change the hash")
		}
		changed = tp.DeepCopy()
		changed.ChangeTicket += "x"
		if mustHash(t, tp) == mustHash(t, *changed) {
			t.Fatal("a ticket change does not change the hash")
		}
		subChanged := sub.DeepCopy()
		subChanged.Role = busv1.RoleProduce
		if mustHash(t, sub) == mustHash(t, *subChanged) {
			t.Fatal("a role change does not change the hash")
		}
	})
}
