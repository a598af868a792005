package controllers

import (
	"encoding/json"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/audit"
	"github.com/hms-platform/bus-operator/internal/kafka"
)

func raw(t *testing.T, v any) json.RawMessage {
	t.Helper()
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTopicWriteHolds(t *testing.T) {
	six := "604800000"
	topic := &kafka.Topic{Name: "fees.fee-updated", Partitions: 6, Configs: map[string]string{"retention.ms": six}}
	cases := []struct {
		name   string
		op     string
		res    string
		after  any
		cur    *kafka.Topic
		expect bool
	}{
		{"create shown by the topic", audit.OpCreateTopic, "fees.fee-updated", map[string]any{"partitions": 6}, topic, true},
		{"create not on the broker", audit.OpCreateTopic, "fees.fee-updated", map[string]any{"partitions": 6}, nil, false},
		{"another topic's create", audit.OpCreateTopic, "fees.other", nil, topic, false},
		{"delete: topic gone", audit.OpDeleteTopic, "fees.fee-updated", nil, nil, true},
		{"delete: topic still there", audit.OpDeleteTopic, "fees.fee-updated", nil, topic, false},
		{"growth reached", audit.OpAddPartitions, "fees.fee-updated", map[string]int32{"partitions": 6}, topic, true},
		{"growth not reached", audit.OpAddPartitions, "fees.fee-updated", map[string]int32{"partitions": 9}, topic, false},
		{"growth without a target", audit.OpAddPartitions, "fees.fee-updated", nil, topic, false},
		{"config set", audit.OpAlterTopicConfig, "fees.fee-updated", map[string]any{"retention.ms": six}, topic, true},
		{"config set to another value", audit.OpAlterTopicConfig, "fees.fee-updated", map[string]any{"retention.ms": "1"}, topic, false},
		{"config reset to default", audit.OpAlterTopicConfig, "fees.fee-updated", map[string]any{"cleanup.policy": nil}, topic, true},
		{"config reset not done", audit.OpAlterTopicConfig, "fees.fee-updated", map[string]any{"retention.ms": nil}, topic, false},
		{"config change on a missing topic", audit.OpAlterTopicConfig, "fees.fee-updated", map[string]any{"cleanup.policy": nil}, nil, false},
		{"an operation topics do not make", audit.OpCreateACL, "fees.fee-updated", nil, topic, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := audit.Unfinished{Operation: c.op, Resource: c.res, After: raw(t, c.after)}
			if got := topicWriteHolds(u, "fees.fee-updated", c.cur); got != c.expect {
				t.Fatalf("topicWriteHolds = %t, want %t", got, c.expect)
			}
		})
	}
}

func TestACLWriteHolds(t *testing.T) {
	p := "User:fees.payment"
	read := kafka.ACL{Principal: p, Host: "*", ResourceType: "Topic", ResourceName: "fees.fee-updated", PatternType: "Literal", Operation: "Read", Permission: "Allow"}
	describe := read
	describe.Operation = "Describe"
	both := []string{read.String(), describe.String()}
	cases := []struct {
		name          string
		op, principal string
		before, after any
		observed      []kafka.ACL
		expect        bool
	}{
		{"created, all there", audit.OpCreateACL, p, nil, both, []kafka.ACL{read, describe}, true},
		{"created, one missing", audit.OpCreateACL, p, nil, both, []kafka.ACL{read}, false},
		{"created, none there", audit.OpCreateACL, p, nil, both, nil, false},
		{"another principal's", audit.OpCreateACL, "User:fees.sms", nil, both, []kafka.ACL{read, describe}, false},
		{"deleted, all gone", audit.OpDeleteACL, p, both, nil, nil, true},
		{"deleted, one left", audit.OpDeleteACL, p, both, nil, []kafka.ACL{describe}, false},
		{"nothing recorded", audit.OpCreateACL, p, nil, []string{}, []kafka.ACL{read}, false},
		{"not an ACL write", audit.OpUpsertCredential, p, nil, both, []kafka.ACL{read, describe}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := audit.Unfinished{Operation: c.op, Resource: c.principal, Before: raw(t, c.before), After: raw(t, c.after)}
			if got := aclWriteHolds(u, p, c.observed); got != c.expect {
				t.Fatalf("aclWriteHolds = %t, want %t", got, c.expect)
			}
		})
	}
}

func TestCredentialAndQuotaWriteHolds(t *testing.T) {
	user := "fees.payment"
	sha512 := map[string]any{"mechanism": "SCRAM-SHA-512"}
	cases := []struct {
		name          string
		op, user      string
		before, after any
		mechanisms    []string
		pending       bool
		expect        bool
	}{
		{"upsert shown", audit.OpUpsertCredential, user, nil, sha512, []string{"SCRAM-SHA-512"}, false, true},
		{"upsert while the Secret waits for the broker", audit.OpUpsertCredential, user, nil, sha512, []string{"SCRAM-SHA-512"}, true, false},
		{"upsert of another mechanism", audit.OpUpsertCredential, user, nil, sha512, []string{"SCRAM-SHA-256"}, false, false},
		{"upsert of another user", audit.OpUpsertCredential, "fees.sms", nil, sha512, []string{"SCRAM-SHA-512"}, false, false},
		{"delete shown", audit.OpDeleteCredential, user, sha512, nil, []string{"SCRAM-SHA-256"}, false, true},
		{"delete not done", audit.OpDeleteCredential, user, sha512, nil, []string{"SCRAM-SHA-512"}, false, false},
		{"delete without a mechanism", audit.OpDeleteCredential, user, nil, nil, nil, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := audit.Unfinished{Operation: c.op, Resource: c.user, Before: raw(t, c.before), After: raw(t, c.after)}
			if got := credentialWriteHolds(u, user, c.mechanisms, c.pending); got != c.expect {
				t.Fatalf("credentialWriteHolds = %t, want %t", got, c.expect)
			}
		})
	}

	rate := int64(1 << 20)
	other := int64(1 << 10)
	set := kafka.Quota{ProducerByteRate: &rate}
	quotas := []struct {
		name   string
		after  any
		have   kafka.Quota
		expect bool
	}{
		{"quota set", set, kafka.Quota{ProducerByteRate: &rate}, true},
		{"quota not set yet", set, kafka.Quota{}, false},
		{"another rate", set, kafka.Quota{ProducerByteRate: &other}, false},
		{"quota removed", nil, kafka.Quota{}, true},
		{"quota not removed", nil, set, false},
	}
	for _, c := range quotas {
		t.Run(c.name, func(t *testing.T) {
			u := audit.Unfinished{Operation: audit.OpSetQuota, Resource: user, After: raw(t, c.after)}
			if got := quotaWriteHolds(u, user, c.have); got != c.expect {
				t.Fatalf("quotaWriteHolds = %t, want %t", got, c.expect)
			}
		})
	}
}

func TestStatusMemoTellsACacheBehindTheOperatorsOwnWrite(t *testing.T) {
	var memo statusMemo
	written := &busv1.Topic{ObjectMeta: metav1.ObjectMeta{Namespace: "fees", Name: "fee-updated", UID: "u1", ResourceVersion: "12"},
		Status: busv1.TopicStatus{ApprovedSpecHash: "sha256:new", TopicID: "id-1"}}
	memo.remember(written, written.Status)

	older := written.DeepCopy()
	older.ResourceVersion, older.Status.ApprovedSpecHash = "10", "sha256:old"
	sameWrite := written.DeepCopy()
	specEdited := written.DeepCopy()
	specEdited.ResourceVersion, specEdited.Generation = "14", 2
	recreated := older.DeepCopy()
	recreated.UID = "u2"
	otherKind := &busv1.Subscription{ObjectMeta: written.ObjectMeta}

	cases := []struct {
		name  string
		obj   client.Object
		state any
		stale bool
	}{
		{"the write itself", sameWrite, sameWrite.Status, false},
		{"an older copy", older, older.Status, true},
		{"a newer version with the status written", specEdited, specEdited.Status, false},
		{"another object of that name", recreated, recreated.Status, false},
		{"another kind of that name", otherKind, otherKind.Status, false},
	}
	for _, c := range cases {
		if got := memo.stale(c.obj, c.state); got != c.stale {
			t.Errorf("%s: stale = %t, want %t", c.name, got, c.stale)
		}
	}
	memo.forget(written, client.ObjectKeyFromObject(written))
	if memo.stale(older, older.Status) {
		t.Error("a forgotten object is still compared")
	}
}
