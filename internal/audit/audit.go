// Package audit records every broker mutation twice: as a Kubernetes Event on
// the object that caused it (what `kubectl describe` shows) and as one JSON
// record on the broker's audit topic (what an Inspector General replays from
// the earliest offset). Records never hold a secret: credentials appear only
// as the fact that they changed.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/kafka"
)

// DefaultTopic is the audit topic's default name.
const DefaultTopic = "hms.audit"

// Operations recorded.
const (
	OpCreateTopic      = "CreateTopic"
	OpAlterTopicConfig = "AlterTopicConfig"
	OpAddPartitions    = "AddPartitions"
	OpDeleteTopic      = "DeleteTopic"
	OpCreateACL        = "CreateACL"
	OpDeleteACL        = "DeleteACL"
	OpUpsertCredential = "UpsertCredential"
	OpDeleteCredential = "DeleteCredential"
	OpSetQuota         = "SetQuota"
)

// ObjectRef names the Kubernetes object behind a change.
type ObjectRef struct {
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	UID        string `json:"uid"`
	Generation int64  `json:"generation"`
}

// Record is one audit entry.
type Record struct {
	// ID is unique per record. A retried append after a lost broker answer
	// can store a record twice; readers drop repeats by ID.
	ID        string    `json:"id"`
	Time      time.Time `json:"time"`
	Operation string    `json:"operation"`
	// Resource is the broker resource changed: a topic name or a principal.
	Resource string    `json:"resource"`
	Object   ObjectRef `json:"object"`
	// Ticket authorised the change. For a drift repair, which restores
	// an earlier approved state and needs no new ticket, it is the ticket
	// that approved that state; nil only for revocations.
	Ticket *busv1.AppliedTicket `json:"ticket,omitempty"`
	// Cause says why: "approved change", "drift repair", "deletion".
	Cause  string `json:"cause"`
	Before any    `json:"before,omitempty"`
	After  any    `json:"after,omitempty"`
}

// Causes of a change.
const (
	CauseApproved   = "approved change"
	CauseDrift      = "drift repair"
	CauseDeletion   = "deletion"
	CauseRevocation = "revocation"
	CauseRotation   = "credential rotation"
)

// Recorder writes audit records.
type Recorder struct {
	Admin  kafka.Admin
	Topic  string
	Events events.EventRecorder
}

// Record emits an Event on obj and appends the record to the audit topic.
// The broker change has already happened when this runs, so a failure to
// append is retried a few times and then surfaced as a Warning event that
// carries the full record: the trail is never silently lost.
func (r *Recorder) Record(ctx context.Context, obj client.Object, kind string, rec Record) {
	rec.ID = uuid.NewString()
	rec.Time = time.Now().UTC()
	rec.Object = ObjectRef{Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName(), UID: string(obj.GetUID()), Generation: obj.GetGeneration()}
	note := fmt.Sprintf("%s %s (%s)", rec.Operation, rec.Resource, rec.Cause)
	if rec.Ticket != nil {
		note += fmt.Sprintf(" under %s", rec.Ticket.Reference)
	}
	r.Events.Eventf(obj, nil, corev1.EventTypeNormal, rec.Operation, "BrokerChange", "%s", note)
	brokerChanges.WithLabelValues(kind, rec.Operation, rec.Cause).Inc()

	value, err := json.Marshal(rec)
	if err != nil {
		log.FromContext(ctx).Error(err, "encoding audit record", "operation", rec.Operation)
		return
	}
	key := []byte(kind + "/" + rec.Object.Namespace + "/" + rec.Object.Name)
	for attempt := range 3 {
		if err = r.Admin.Append(ctx, r.Topic, key, value); err == nil {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
	auditWriteFailures.Inc()
	log.FromContext(ctx).Error(err, "appending audit record failed; kept in a Warning event", "operation", rec.Operation, "resource", rec.Resource)
	r.Events.Eventf(obj, nil, corev1.EventTypeWarning, "AuditWriteFailed", "BrokerChange", "audit topic %s unavailable; record: %s", r.Topic, string(value))
}

// EnsureTopic creates the audit topic if it is missing. Only the operator's
// superuser may write to it: no Subscription can be granted on it, because
// the Topic controller refuses to manage the audit topic's name.
func EnsureTopic(ctx context.Context, admin kafka.Admin, topic string) error {
	existing, err := admin.DescribeTopics(ctx, topic)
	if err != nil {
		return fmt.Errorf("describing audit topic %s: %w", topic, err)
	}
	if _, ok := existing[topic]; ok {
		return nil
	}
	// Audit records are kept forever: cleanup by deletion would lose the
	// trail, so retention is unlimited.
	_, err = admin.CreateTopic(ctx, kafka.NewTopic{Name: topic, Partitions: 1, ReplicationFactor: -1, Configs: map[string]string{"retention.ms": "-1"}})
	if err != nil && !errors.Is(err, kafka.ErrTopicExists) {
		return fmt.Errorf("creating audit topic %s: %w", topic, err)
	}
	return nil
}
