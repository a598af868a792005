package identity

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/audit"
)

// keyProbe is a distinctive piece of a PEM private key: the start of its
// base64 body (the armour lines are the same in every key).
func keyProbe(t *testing.T, keyPEM []byte) string {
	t.Helper()
	lines := slices.DeleteFunc(strings.Split(string(keyPEM), "\n"), func(l string) bool { return strings.HasPrefix(l, "-----") || l == "" })
	body := strings.Join(lines, "")
	if len(body) < 60 {
		t.Fatalf("implausible private key %q", keyPEM)
	}
	// Past the first 40 characters: PKCS#8 P-256 keys share their
	// algorithm header, which is not secret.
	return body[40:80]
}

// tokenProbes are the signature and the claims of a JWT: either alone
// would let someone recognise or (with the rest) replay the token.
func tokenProbes(t *testing.T, token string) []string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 || len(parts[1]) < 40 || len(parts[2]) < 40 {
		t.Fatalf("implausible JWT %q", token)
	}
	return []string{parts[1], parts[2]}
}

// assertNoSecret checks that none of probes appears in the operator's log,
// the namespace's Events, the Subscriptions' status or the audit trail, and
// that each of these holds something about the namespace (so the check is
// not vacuous).
func assertNoSecret(t *testing.T, ns string, probes []string, subs ...*busv1.Subscription) {
	t.Helper()
	if len(probes) == 0 {
		t.Fatal("no secrets to look for")
	}
	log := logs.String()
	if !strings.Contains(log, ns) {
		t.Fatalf("the operator logged nothing about namespace %s: is its log captured?", ns)
	}
	var evs eventsv1.EventList
	if err := env.Client.List(ctxT(t), &evs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(evs.Items) == 0 {
		t.Fatalf("no Events in %s", ns)
	}
	events, _ := json.Marshal(evs.Items)
	var statuses []byte
	for _, s := range subs {
		st, _ := json.Marshal(s.Status)
		statuses = append(statuses, st...)
	}
	records := auditRecords(t)
	mine := 0
	for _, r := range records {
		if strings.Contains(r, `"namespace":"`+ns+`"`) {
			mine++
		}
	}
	if mine == 0 {
		t.Fatalf("no audit records for namespace %s", ns)
	}
	trail := strings.Join(records, "\n")
	for i, p := range probes {
		for where, text := range map[string]string{"the operator's log": log, "Events": string(events), "Subscription status": string(statuses), "the audit trail": trail} {
			if strings.Contains(text, p) {
				t.Errorf("secret %d appears in %s", i, where)
			}
		}
	}
}

// auditRecords reads the whole audit topic, as an auditor would, up to
// its end at the time of the call.
func auditRecords(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := admin.ListEndOffsets(ctx, audit.DefaultTopic)
	if err != nil {
		t.Fatalf("listing the audit topic's end: %v", err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	if len(want) == 0 {
		t.Fatal("the audit topic is empty")
	}
	opts := append(broker.AdminOpts(), kgo.ConsumeTopics(audit.DefaultTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []string
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("reading the audit topic: %v (missing partitions %v)", err, want)
		}
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, string(r.Value))
			if end, ok := want[r.Partition]; ok && r.Offset+1 >= end {
				delete(want, r.Partition)
			}
		})
		for _, e := range fs.Errors() {
			t.Fatalf("reading the audit topic: %v", fmt.Errorf("partition %d: %w", e.Partition, e.Err))
		}
	}
	return out
}
