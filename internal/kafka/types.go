// Package kafka is the broker adapter: the only package that speaks the Kafka
// admin protocol (kadm, kmsg). Reconcilers see the Admin interface and the
// domain types below, never wire-level types, so they can be tested with a
// fake of this interface and the adapter can batch requests across objects.
package kafka

import (
	"context"
	"errors"
	"fmt"
)

// Topic is a topic as the broker reports it.
type Topic struct {
	Name              string
	ID                string
	Partitions        int32
	ReplicationFactor int32
	// Configs holds only the topic-level overrides (DYNAMIC_TOPIC_CONFIG);
	// broker defaults are left out so a diff sees only what was set.
	Configs map[string]string
}

// NewTopic is a topic to create.
type NewTopic struct {
	Name       string
	Partitions int32
	// ReplicationFactor -1 takes the broker default.
	ReplicationFactor int32
	Configs           map[string]string
}

// ConfigAlter is an incremental config change on one topic: keys in Set are
// set, keys in Delete return to the broker default. Keys not named keep
// their value, so nothing set out of band by an unrelated key is lost.
type ConfigAlter struct {
	Set    map[string]string
	Delete []string
}

// Resource types, pattern types, operations and permissions of ACLs, as
// Kafka names them.
const (
	ResourceTopic   = "Topic"
	ResourceGroup   = "Group"
	ResourceCluster = "Cluster"

	PatternLiteral  = "Literal"
	PatternPrefixed = "Prefixed"

	OpRead            = "Read"
	OpWrite           = "Write"
	OpDescribe        = "Describe"
	OpIdempotentWrite = "IdempotentWrite"

	PermissionAllow = "Allow"
	PermissionDeny  = "Deny"

	// ClusterResourceName is the only name a Cluster resource has.
	ClusterResourceName = "kafka-cluster"
)

// ACL is one access control entry.
type ACL struct {
	Principal    string // User:<name>
	Host         string // "*" for any host
	ResourceType string
	ResourceName string
	PatternType  string
	Operation    string
	Permission   string
}

// Key identifies an ACL; two ACLs with the same key are the same grant.
func (a ACL) Key() string {
	return fmt.Sprintf("%s|%s|%s|%s|%s|%s|%s", a.Principal, a.Host, a.ResourceType, a.ResourceName, a.PatternType, a.Operation, a.Permission)
}

// String renders an ACL for humans, events and audit records.
func (a ACL) String() string {
	return fmt.Sprintf("%s %s %s on %s %s:%s from %s", a.Permission, a.Principal, a.Operation, a.ResourceType, a.PatternType, a.ResourceName, a.Host)
}

// Quota is a client quota for one SCRAM user. A nil rate means no quota.
type Quota struct {
	ProducerByteRate *int64
	ConsumerByteRate *int64
}

// Admin is what reconcilers need from the broker. Implementations batch
// concurrent calls into as few admin requests as they can, so a reconcile
// of many objects costs a handful of round trips, not one per object.
type Admin interface {
	// DescribeTopics returns the named topics that exist; absent topics
	// are absent from the map (no error).
	DescribeTopics(ctx context.Context, names ...string) (map[string]Topic, error)
	// CreateTopic creates a topic and returns what the broker created.
	CreateTopic(ctx context.Context, t NewTopic) (Topic, error)
	// AlterTopicConfig applies an incremental config change.
	AlterTopicConfig(ctx context.Context, topic string, alter ConfigAlter) error
	// SetPartitions raises the partition count to total.
	SetPartitions(ctx context.Context, topic string, total int32) error
	// DeleteTopic deletes a topic and its data. A missing topic is no error.
	DeleteTopic(ctx context.Context, topic string) error

	// DescribeACLs lists every ACL whose principal is principal.
	DescribeACLs(ctx context.Context, principal string) ([]ACL, error)
	// CreateACLs creates ACLs; existing ones are left as they are.
	CreateACLs(ctx context.Context, acls []ACL) error
	// DeleteACLs deletes exactly the given ACLs (no wildcard matching).
	DeleteACLs(ctx context.Context, acls []ACL) error

	// SCRAMMechanisms returns, per user that exists, its SCRAM mechanisms.
	SCRAMMechanisms(ctx context.Context, users ...string) (map[string][]string, error)
	// UpsertSCRAM creates or replaces a user's SCRAM credential.
	UpsertSCRAM(ctx context.Context, user, mechanism, password string) error
	// DeleteSCRAM deletes a user's SCRAM credential; a missing one is no error.
	DeleteSCRAM(ctx context.Context, user, mechanism string) error

	// DescribeQuota returns a user's client quota.
	DescribeQuota(ctx context.Context, user string) (Quota, error)
	// SetQuota sets a user's client quota; nil rates are removed.
	SetQuota(ctx context.Context, user string, q Quota) error

	// Append produces one record to a topic and waits for the broker's ack.
	Append(ctx context.Context, topic string, key, value []byte) error
	// AppendAsync produces one record and returns a channel that receives
	// the broker's definitive answer (stored at an offset, or not stored)
	// exactly once, even after ctx ends; see records.go.
	AppendAsync(ctx context.Context, topic string, key, value []byte) <-chan AppendResult
	// AbandonAppends fails every record still waiting for an answer (the
	// brokers lost it, or never answer) and forgets what the producer knew
	// of topic, so the next append starts afresh on a recreated topic.
	AbandonAppends(topic string)
	// PartitionOffsets returns a partition's start and end offsets.
	PartitionOffsets(ctx context.Context, topic string, partition int32) (Offsets, error)
	// ReadRecords returns a partition's records in [from, to), at most max
	// (max <= 0: all), with their stored bytes.
	ReadRecords(ctx context.Context, topic string, partition int32, from, to int64, max int) ([]StoredRecord, error)
	// Ping checks the broker answers and our credentials work.
	Ping(ctx context.Context) error
}

// ErrUnavailable wraps failures to reach the broker: transient, retried with
// back-off.
var ErrUnavailable = errors.New("broker unavailable")

// RejectedError is the broker refusing a request for a reason retrying will
// not fix (invalid config, replication factor larger than the cluster, ...).
// Message carries the broker's own text so users see what it said.
type RejectedError struct {
	Op      string // what was asked, e.g. "creating topic FeeUpdated"
	Code    string // Kafka error name, e.g. INVALID_CONFIG
	Message string // broker's message, possibly empty
	// DependsOnCluster: the same request may succeed once the cluster
	// changes (brokers join, or stop being fenced after a restart), so
	// it is worth asking again now and then although the spec is the same.
	DependsOnCluster bool
}

func (e *RejectedError) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("%s: broker rejected it: %s: %s", e.Op, e.Code, e.Message)
	}
	return fmt.Sprintf("%s: broker rejected it: %s", e.Op, e.Code)
}

// DependsOnCluster reports whether err is a rejection the cluster's
// current state decides (see RejectedError.DependsOnCluster).
func DependsOnCluster(err error) bool {
	var r *RejectedError
	return errors.As(err, &r) && r.DependsOnCluster
}

// IsRejected reports whether err is a terminal broker rejection.
func IsRejected(err error) bool {
	var r *RejectedError
	return errors.As(err, &r)
}

// ErrTopicExists is returned by CreateTopic when the topic is already there
// (created out of band, or by an earlier attempt whose answer was lost).
var ErrTopicExists = errors.New("topic already exists")

// ErrTopicNotFound is an operation on a topic the broker does not know. Right
// after a create it can be transient while metadata propagates.
var ErrTopicNotFound = errors.New("topic not found")

// ErrAuthentication is the broker refusing the operator's own credentials.
// It always comes wrapped together with ErrUnavailable, since the operator
// cannot reach the broker as itself until the secret is fixed, and retrying
// picks the fix up.
var ErrAuthentication = errors.New("broker authentication failed")
