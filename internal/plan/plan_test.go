package plan

import (
	"reflect"
	"testing"

	"github.com/hms-platform/bus-operator/internal/kafka"
)

func TestPlanTopic(t *testing.T) {
	target := TopicTarget{Name: "FeeUpdated", Partitions: 3, ReplicationFactor: 3, Configs: map[string]string{"retention.ms": "86400000"}}
	tests := []struct {
		name     string
		target   TopicTarget
		observed *kafka.Topic
		want     TopicPlan
	}{
		{
			name:     "absent topic is created with its configs",
			target:   target,
			observed: nil,
			want:     TopicPlan{Create: &kafka.NewTopic{Name: "FeeUpdated", Partitions: 3, ReplicationFactor: 3, Configs: map[string]string{"retention.ms": "86400000"}}},
		},
		{
			name:     "absent topic without replication factor takes broker default",
			target:   TopicTarget{Name: "t", Partitions: 1},
			observed: nil,
			want:     TopicPlan{Create: &kafka.NewTopic{Name: "t", Partitions: 1, ReplicationFactor: -1}},
		},
		{
			name:     "matching topic needs nothing",
			target:   target,
			observed: &kafka.Topic{Name: "FeeUpdated", Partitions: 3, ReplicationFactor: 3, Configs: map[string]string{"retention.ms": "86400000"}},
			want:     TopicPlan{},
		},
		{
			name:     "partitions grow",
			target:   target,
			observed: &kafka.Topic{Partitions: 1, ReplicationFactor: 3, Configs: map[string]string{"retention.ms": "86400000"}},
			want:     TopicPlan{Partitions: 3},
		},
		{
			name:     "extra partitions are reported, never removed",
			target:   target,
			observed: &kafka.Topic{Partitions: 5, ReplicationFactor: 3, Configs: map[string]string{"retention.ms": "86400000"}},
			want:     TopicPlan{ExtraPartitions: 2},
		},
		{
			name:     "changed and removed configs alter only those keys",
			target:   TopicTarget{Name: "t", Partitions: 3, Configs: map[string]string{"retention.ms": "1000", "cleanup.policy": "compact"}},
			observed: &kafka.Topic{Partitions: 3, ReplicationFactor: 1, Configs: map[string]string{"retention.ms": "2000", "cleanup.policy": "compact", "segment.ms": "10", "max.message.bytes": "5"}},
			want:     TopicPlan{Alter: &kafka.ConfigAlter{Set: map[string]string{"retention.ms": "1000"}, Delete: []string{"max.message.bytes", "segment.ms"}}},
		},
		{
			name:     "broker default replication factor is not a mismatch",
			target:   TopicTarget{Name: "t", Partitions: 3},
			observed: &kafka.Topic{Partitions: 3, ReplicationFactor: 2},
			want:     TopicPlan{},
		},
		{
			name:     "explicit replication factor mismatch is reported",
			target:   TopicTarget{Name: "t", Partitions: 3, ReplicationFactor: 3},
			observed: &kafka.Topic{Partitions: 3, ReplicationFactor: 1},
			want:     TopicPlan{ReplicationMismatch: true},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := PlanTopic(tc.target, tc.observed)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v (create %+v alter %+v), want %+v", got, got.Create, got.Alter, tc.want)
			}
			if got.Empty() != (tc.want.Create == nil && tc.want.Partitions == 0 && tc.want.Alter == nil) {
				t.Fatalf("Empty() = %v disagrees with plan", got.Empty())
			}
		})
	}
}

func TestPlanConfigsNilWhenEqual(t *testing.T) {
	if a := PlanConfigs(nil, map[string]string{}); a != nil {
		t.Fatalf("nil vs empty must need no change, got %+v", a)
	}
	if a := PlanConfigs(map[string]string{"a": "1"}, nil); a == nil || a.Set["a"] != "1" {
		t.Fatalf("new key must be set, got %+v", a)
	}
}

func acl(principal, resType, name, op string) kafka.ACL {
	return kafka.ACL{Principal: principal, Host: "*", ResourceType: resType, ResourceName: name, PatternType: kafka.PatternLiteral, Operation: op, Permission: kafka.PermissionAllow}
}

func TestDesiredACLs(t *testing.T) {
	p := "User:payments.payment"
	tests := []struct {
		name   string
		role   string
		topics []string
		group  string
		want   []kafka.ACL
	}{
		{
			name: "consumer reads and describes topics and reads its group", role: RoleConsume, topics: []string{"FeeUpdated"}, group: "payments.payment",
			want: []kafka.ACL{acl(p, kafka.ResourceGroup, "payments.payment", kafka.OpRead), acl(p, kafka.ResourceTopic, "FeeUpdated", kafka.OpDescribe), acl(p, kafka.ResourceTopic, "FeeUpdated", kafka.OpRead)},
		},
		{
			name: "producer writes and describes topics and writes idempotently", role: RoleProduce, topics: []string{"A", "B"},
			want: []kafka.ACL{
				acl(p, kafka.ResourceCluster, kafka.ClusterResourceName, kafka.OpIdempotentWrite),
				acl(p, kafka.ResourceTopic, "A", kafka.OpDescribe), acl(p, kafka.ResourceTopic, "A", kafka.OpWrite),
				acl(p, kafka.ResourceTopic, "B", kafka.OpDescribe), acl(p, kafka.ResourceTopic, "B", kafka.OpWrite),
			},
		},
		{name: "no topics grant nothing", role: RoleConsume, group: "g", want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := DesiredACLs(p, tc.role, tc.topics, tc.group)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v\nwant %v", got, tc.want)
			}
			for _, a := range got {
				if a.PatternType != kafka.PatternLiteral || a.Permission != kafka.PermissionAllow || a.Principal != p {
					t.Fatalf("grant %v is broader than a literal allow for the principal", a)
				}
			}
		})
	}
}

func TestDiffACLs(t *testing.T) {
	p := "User:ns.sub"
	readA := acl(p, kafka.ResourceTopic, "A", kafka.OpRead)
	readB := acl(p, kafka.ResourceTopic, "B", kafka.OpRead)
	writeA := acl(p, kafka.ResourceTopic, "A", kafka.OpWrite)
	tests := []struct {
		name                     string
		desired, observed, owned []kafka.ACL
		want                     ACLDiff
	}{
		{name: "nothing on broker: create all", desired: []kafka.ACL{readA, readB}, want: ACLDiff{Create: []kafka.ACL{readA, readB}}},
		{name: "in sync", desired: []kafka.ACL{readA}, observed: []kafka.ACL{readA}, owned: []kafka.ACL{readA}, want: ACLDiff{}},
		{name: "topic removed from list: revoke what we granted", desired: []kafka.ACL{readA}, observed: []kafka.ACL{readA, readB}, owned: []kafka.ACL{readA, readB}, want: ACLDiff{Delete: []kafka.ACL{readB}}},
		{name: "acl removed out of band is restored", desired: []kafka.ACL{readA, readB}, observed: []kafka.ACL{readA}, owned: []kafka.ACL{readA, readB}, want: ACLDiff{Create: []kafka.ACL{readB}}},
		{name: "acl added by hand is reported, not deleted", desired: []kafka.ACL{readA}, observed: []kafka.ACL{readA, writeA}, owned: []kafka.ACL{readA}, want: ACLDiff{Unmanaged: []kafka.ACL{writeA}}},
		{name: "subscription deleted: revoke only owned", desired: nil, observed: []kafka.ACL{readA, writeA}, owned: []kafka.ACL{readA}, want: ACLDiff{Delete: []kafka.ACL{readA}, Unmanaged: []kafka.ACL{writeA}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := DiffACLs(tc.desired, tc.observed, tc.owned)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
