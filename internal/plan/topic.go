// Package plan computes, as pure functions, what the operator must change on
// the broker: it compares desired state with observed state and returns the
// writes. Nothing here talks to the broker, so every branch has a table test.
package plan

import (
	"maps"
	"slices"

	"github.com/hms-platform/bus-operator/internal/kafka"
)

// TopicTarget is the state a topic should have on the broker.
type TopicTarget struct {
	Name       string
	Partitions int32
	// ReplicationFactor 0 means the broker default (checked only on create).
	ReplicationFactor int32
	Configs           map[string]string
}

// TopicPlan lists the writes that bring a topic to its target, and the
// differences no write can fix.
type TopicPlan struct {
	// Create is set when the topic does not exist.
	Create *kafka.NewTopic
	// Partitions is the new partition total, 0 when unchanged.
	Partitions int32
	// Alter is the incremental config change, nil when unchanged.
	Alter *kafka.ConfigAlter
	// ExtraPartitions counts partitions the broker has beyond the target;
	// Kafka cannot remove partitions, so this is reported, not fixed.
	ExtraPartitions int32
	// ReplicationMismatch is set when the broker's replication factor
	// differs from an explicit target; changing it needs reassignment.
	ReplicationMismatch bool
}

// Empty reports whether the plan makes no broker write.
func (p TopicPlan) Empty() bool {
	return p.Create == nil && p.Partitions == 0 && p.Alter == nil
}

// PlanTopic compares target with observed (nil when the topic is absent).
func PlanTopic(target TopicTarget, observed *kafka.Topic) TopicPlan {
	if observed == nil {
		rf := target.ReplicationFactor
		if rf == 0 {
			rf = -1
		}
		return TopicPlan{Create: &kafka.NewTopic{
			Name:              target.Name,
			Partitions:        target.Partitions,
			ReplicationFactor: rf,
			Configs:           maps.Clone(target.Configs),
		}}
	}
	var p TopicPlan
	switch {
	case observed.Partitions < target.Partitions:
		p.Partitions = target.Partitions
	case observed.Partitions > target.Partitions:
		p.ExtraPartitions = observed.Partitions - target.Partitions
	}
	p.ReplicationMismatch = target.ReplicationFactor != 0 && observed.ReplicationFactor != target.ReplicationFactor
	p.Alter = PlanConfigs(target.Configs, observed.Configs)
	return p
}

// PlanConfigs returns the incremental change from observed overrides to
// desired overrides: changed or new keys are set, keys no longer desired are
// deleted so they return to the broker default. nil means no change.
func PlanConfigs(desired, observed map[string]string) *kafka.ConfigAlter {
	alter := kafka.ConfigAlter{}
	for k, v := range desired {
		if ov, ok := observed[k]; !ok || ov != v {
			if alter.Set == nil {
				alter.Set = map[string]string{}
			}
			alter.Set[k] = v
		}
	}
	for k := range observed {
		if _, ok := desired[k]; !ok {
			alter.Delete = append(alter.Delete, k)
		}
	}
	if alter.Set == nil && alter.Delete == nil {
		return nil
	}
	slices.Sort(alter.Delete)
	return &alter
}
