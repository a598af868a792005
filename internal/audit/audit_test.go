package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/kafka"
)

// fakeAdmin records appends and fails the first failures of them; the
// rest of kafka.Admin is not used by the recorder.
type fakeAdmin struct {
	kafka.Admin
	failures int
	appended [][]byte
	keys     []string
	topics   map[string]kafka.Topic
	created  []kafka.NewTopic
}

func (f *fakeAdmin) Append(_ context.Context, topic string, key, value []byte) error {
	if f.failures > 0 {
		f.failures--
		return fmt.Errorf("appending to %s: %w", topic, kafka.ErrUnavailable)
	}
	f.keys = append(f.keys, string(key))
	f.appended = append(f.appended, value)
	return nil
}

func (f *fakeAdmin) DescribeTopics(_ context.Context, names ...string) (map[string]kafka.Topic, error) {
	out := map[string]kafka.Topic{}
	for _, n := range names {
		if t, ok := f.topics[n]; ok {
			out[n] = t
		}
	}
	return out, nil
}

func (f *fakeAdmin) CreateTopic(_ context.Context, t kafka.NewTopic) (kafka.Topic, error) {
	f.created = append(f.created, t)
	return kafka.Topic{Name: t.Name}, nil
}

type event struct{ eventtype, reason, note string }

type fakeEvents struct{ events []event }

func (f *fakeEvents) Eventf(_ runtime.Object, _ runtime.Object, eventtype, reason, _ string, note string, args ...any) {
	f.events = append(f.events, event{eventtype, reason, fmt.Sprintf(note, args...)})
}

func topicObj() *busv1.Topic {
	return &busv1.Topic{ObjectMeta: metav1.ObjectMeta{Namespace: "fees", Name: "fee-updated", UID: "uid-1", Generation: 3}}
}

func TestRecordWritesEventAndJSON(t *testing.T) {
	admin, ev := &fakeAdmin{}, &fakeEvents{}
	r := &Recorder{Admin: admin, Topic: DefaultTopic, Events: ev}
	created := testutil.ToFloat64(brokerChanges.WithLabelValues("Topic", OpCreateTopic, CauseApproved))
	ticket := &busv1.AppliedTicket{Name: "chg-1042", Reference: "CHG-1042", ApprovedBy: []string{"rita"}}
	r.Record(context.Background(), topicObj(), "Topic", Record{Operation: OpCreateTopic, Resource: "FeeUpdated", Cause: CauseApproved, Ticket: ticket, After: map[string]int{"partitions": 3}})

	if len(ev.events) != 1 || ev.events[0].reason != OpCreateTopic || !strings.Contains(ev.events[0].note, "under CHG-1042") {
		t.Fatalf("events %+v", ev.events)
	}
	if got := testutil.ToFloat64(brokerChanges.WithLabelValues("Topic", OpCreateTopic, CauseApproved)); got != created+1 {
		t.Fatalf("hmsbus_broker_changes_total went from %v to %v, want +1", created, got)
	}
	if len(admin.appended) != 1 || admin.keys[0] != "Topic/fees/fee-updated" {
		t.Fatalf("appended %d records with keys %v", len(admin.appended), admin.keys)
	}
	var got Record
	if err := json.Unmarshal(admin.appended[0], &got); err != nil {
		t.Fatal(err)
	}
	if got.ID == "" || got.Time.IsZero() || got.Object.UID != "uid-1" || got.Object.Generation != 3 || got.Ticket.ApprovedBy[0] != "rita" || got.Operation != OpCreateTopic {
		t.Fatalf("record %+v", got)
	}
}

func TestRecordRetriesThenKeepsRecordInWarningEvent(t *testing.T) {
	admin, ev := &fakeAdmin{failures: 2}, &fakeEvents{}
	r := &Recorder{Admin: admin, Topic: DefaultTopic, Events: ev}
	r.Record(context.Background(), topicObj(), "Topic", Record{Operation: OpAlterTopicConfig, Resource: "FeeUpdated", Cause: CauseDrift})
	if len(admin.appended) != 1 {
		t.Fatalf("two failures then success must append once, got %d", len(admin.appended))
	}

	failed := testutil.ToFloat64(auditWriteFailures)
	admin, ev = &fakeAdmin{failures: 10}, &fakeEvents{}
	r = &Recorder{Admin: admin, Topic: DefaultTopic, Events: ev}
	r.Record(context.Background(), topicObj(), "Topic", Record{Operation: OpDeleteTopic, Resource: "FeeUpdated", Cause: CauseDeletion})
	if got := testutil.ToFloat64(auditWriteFailures); got != failed+1 {
		t.Fatalf("hmsbus_audit_write_failures_total went from %v to %v, want +1", failed, got)
	}
	if len(ev.events) != 2 || ev.events[1].reason != "AuditWriteFailed" || !strings.Contains(ev.events[1].note, `"operation":"DeleteTopic"`) {
		t.Fatalf("a lost audit record must be kept in a Warning event, got %+v", ev.events)
	}
}

func TestEnsureTopic(t *testing.T) {
	admin := &fakeAdmin{topics: map[string]kafka.Topic{}}
	if err := EnsureTopic(context.Background(), admin, "hms.audit"); err != nil {
		t.Fatal(err)
	}
	if len(admin.created) != 1 || admin.created[0].Configs["retention.ms"] != "-1" {
		t.Fatalf("audit topic must be created with unlimited retention, got %+v", admin.created)
	}
	admin = &fakeAdmin{topics: map[string]kafka.Topic{"hms.audit": {Name: "hms.audit"}}}
	if err := EnsureTopic(context.Background(), admin, "hms.audit"); err != nil || len(admin.created) != 0 {
		t.Fatalf("existing audit topic must be left alone: %v %+v", err, admin.created)
	}
}
