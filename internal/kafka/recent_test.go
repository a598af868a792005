package kafka

import (
	"slices"
	"testing"
	"time"
)

func TestRecentWritesAreReadBackUntilTheyAge(t *testing.T) {
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	r := newRecentWrites(5 * time.Second)
	r.now = func() time.Time { return now }

	// SCRAM: a stale answer still lacking the credential just written, and
	// still showing the one just deleted.
	r.scramWritten("fees.payment", MechanismSCRAMSHA512, true)
	r.scramWritten("fees.sms", MechanismSCRAMSHA256, false)
	got := r.scramView([]string{"fees.payment", "fees.sms"}, map[string][]string{"fees.sms": {MechanismSCRAMSHA256}})
	if !slices.Equal(got["fees.payment"], []string{MechanismSCRAMSHA512}) || len(got["fees.sms"]) != 0 {
		t.Fatalf("SCRAM view %v", got)
	}

	// ACLs: created ones appear, deleted ones disappear, others stay.
	a := ACL{Principal: "User:fees.payment", Host: "*", ResourceType: ResourceTopic, ResourceName: "FeeUpdated", PatternType: PatternLiteral, Operation: OpRead, Permission: PermissionAllow}
	b, other := a, a
	b.Operation = OpDescribe
	other.ResourceName = "Other"
	r.aclsWritten([]ACL{a}, true)
	r.aclsWritten([]ACL{b}, false)
	acls := r.aclView("User:fees.payment", []ACL{b, other})
	if !slices.Contains(acls, a) || slices.Contains(acls, b) || !slices.Contains(acls, other) {
		t.Fatalf("ACL view %v", acls)
	}

	// Topics: a created topic, then altered and grown, is seen as written;
	// a deleted one is gone; a topic only altered is patched.
	r.topicWritten("FeeUpdated", &Topic{Name: "FeeUpdated", ID: "id1", Partitions: 3, Configs: map[string]string{"retention.ms": "1"}})
	r.topicChanged("FeeUpdated", func(t *Topic) { t.Configs["retention.ms"] = "2" })
	r.topicChanged("FeeUpdated", func(t *Topic) { t.Partitions = max(t.Partitions, 6) })
	r.topicWritten("Gone", nil)
	r.topicChanged("Known", func(t *Topic) { t.Partitions = max(t.Partitions, 4) })
	topics := r.topicView([]string{"FeeUpdated", "Gone", "Known"}, map[string]Topic{"Gone": {Name: "Gone"}, "Known": {Name: "Known", Partitions: 2}})
	if ft := topics["FeeUpdated"]; ft.ID != "id1" || ft.Partitions != 6 || ft.Configs["retention.ms"] != "2" {
		t.Fatalf("created topic %+v", ft)
	}
	if _, ok := topics["Gone"]; ok {
		t.Fatal("a deleted topic is still seen")
	}
	if topics["Known"].Partitions != 4 {
		t.Fatalf("patched topic %+v", topics["Known"])
	}

	// Quota.
	rate := int64(1024)
	r.quotaWritten("fees.payment", Quota{ConsumerByteRate: &rate})
	if q := r.quotaView("fees.payment", Quota{}); q.ConsumerByteRate == nil || *q.ConsumerByteRate != 1024 {
		t.Fatalf("quota view %+v", q)
	}

	// Once the window has passed, the broker's answer alone counts again,
	// so a change made out of band is seen.
	now = now.Add(6 * time.Second)
	if got := r.scramView([]string{"fees.payment"}, map[string][]string{}); len(got) != 0 {
		t.Fatalf("an aged write still overlays: %v", got)
	}
	if acls := r.aclView("User:fees.payment", nil); len(acls) != 0 {
		t.Fatalf("an aged ACL write still overlays: %v", acls)
	}
	if topics := r.topicView([]string{"FeeUpdated"}, map[string]Topic{}); len(topics) != 0 {
		t.Fatalf("an aged topic write still overlays: %v", topics)
	}
	r.scramWritten("x", MechanismSCRAMSHA512, true) // prunes
	if len(r.acls) != 0 || len(r.topics) != 0 || len(r.topicPatches) != 0 || len(r.quotas) != 0 {
		t.Fatalf("aged entries are not pruned: %d %d %d %d", len(r.acls), len(r.topics), len(r.topicPatches), len(r.quotas))
	}
}
