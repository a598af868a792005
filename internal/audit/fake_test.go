package audit

import (
	"context"
	"fmt"
	"sync"

	"github.com/hms-platform/bus-operator/internal/kafka"
)

// fakeAdmin is an in-memory audit topic: one partition, appends answered in
// order like the idempotent producer does. The rest of kafka.Admin is not
// used by the recorder.
type fakeAdmin struct {
	kafka.Admin

	mu      sync.Mutex
	topics  map[string]kafka.Topic
	created []kafka.NewTopic
	// refuseCreate makes CreateTopic fail as the broker refusing it.
	refuseCreate bool
	log          []kafka.StoredRecord
	start        int64 // offset of log[0]
	next         int64
	failures     int // definitive failures for the next appends
	// lostAnswers: the next appends are stored, but answered with an
	// error, as when the acknowledgement is lost and the producer gives
	// up (delivery timeout, abandoned appends).
	lostAnswers int
	hold        chan struct{} // when set, appends wait for it to close before they are answered
	appends     int
	abandon     chan struct{}
	abandoned   int
}

func newFakeAdmin(topic string) *fakeAdmin {
	return &fakeAdmin{topics: map[string]kafka.Topic{topic: {Name: topic, Partitions: 1}}}
}

func (f *fakeAdmin) DescribeTopics(_ context.Context, names ...string) (map[string]kafka.Topic, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]kafka.Topic{}
	for _, n := range names {
		if t, ok := f.topics[n]; ok {
			out[n] = t
		}
	}
	return out, nil
}

func (f *fakeAdmin) CreateTopic(_ context.Context, t kafka.NewTopic) (kafka.Topic, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuseCreate {
		return kafka.Topic{}, &kafka.RejectedError{Op: "creating topic " + t.Name, Code: "TOPIC_AUTHORIZATION_FAILED"}
	}
	f.created = append(f.created, t)
	if f.topics == nil {
		f.topics = map[string]kafka.Topic{}
	}
	f.topics[t.Name] = kafka.Topic{Name: t.Name, Partitions: t.Partitions}
	return kafka.Topic{Name: t.Name}, nil
}

func (f *fakeAdmin) AppendAsync(_ context.Context, topic string, _, value []byte) <-chan kafka.AppendResult {
	ch := make(chan kafka.AppendResult, 1)
	f.mu.Lock()
	f.appends++
	hold := f.hold
	if f.failures > 0 {
		f.failures--
		f.mu.Unlock()
		ch <- kafka.AppendResult{Err: fmt.Errorf("appending to %s: %w", topic, kafka.ErrUnavailable)}
		return ch
	}
	if _, ok := f.topics[topic]; !ok {
		f.mu.Unlock()
		ch <- kafka.AppendResult{Err: fmt.Errorf("appending to %s: %w", topic, kafka.ErrTopicNotFound)}
		return ch
	}
	// The record is stored now (the broker has it) even if the answer is
	// held back: that is the lost-acknowledgement case.
	off := f.next
	f.next++
	f.log = append(f.log, kafka.StoredRecord{Offset: off, Value: append([]byte(nil), value...)})
	if f.lostAnswers > 0 {
		f.lostAnswers--
		f.mu.Unlock()
		ch <- kafka.AppendResult{Err: fmt.Errorf("appending to %s: %w", topic, kafka.ErrUnavailable)}
		return ch
	}
	f.mu.Unlock()
	if hold == nil {
		ch <- kafka.AppendResult{Offset: off}
		return ch
	}
	abandon := f.abandonCh()
	go func() {
		select {
		case <-hold:
			ch <- kafka.AppendResult{Offset: off}
		case <-abandon:
			ch <- kafka.AppendResult{Err: fmt.Errorf("appending to %s: aborted", topic)}
		}
	}()
	return ch
}

// abandonCh is closed by AbandonAppends; f.mu held.
func (f *fakeAdmin) abandonCh() chan struct{} {
	if f.abandon == nil {
		f.abandon = make(chan struct{})
	}
	return f.abandon
}

// AbandonAppends fails the held appends, as the producer does.
func (f *fakeAdmin) AbandonAppends(string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.abandoned++
	close(f.abandonCh())
	f.abandon = nil
}

func (f *fakeAdmin) Append(ctx context.Context, topic string, key, value []byte) error {
	return (<-f.AppendAsync(ctx, topic, key, value)).Err
}

func (f *fakeAdmin) PartitionOffsets(_ context.Context, _ string, _ int32) (kafka.Offsets, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return kafka.Offsets{Start: f.start, End: f.next}, nil
}

func (f *fakeAdmin) ReadRecords(_ context.Context, _ string, _ int32, from, to int64, max int) ([]kafka.StoredRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []kafka.StoredRecord
	for _, r := range f.log {
		if r.Offset >= from && r.Offset < to && (max <= 0 || len(out) < max) {
			out = append(out, r)
		}
	}
	return out, nil
}

// lose is the brokers losing their data: the topic and its log are gone.
func (f *fakeAdmin) lose(topic string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.topics, topic)
	f.log, f.start, f.next = nil, 0, 0
}

// stored returns the log as the verifier reads it.
func (f *fakeAdmin) stored() []StoredRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]StoredRecord, len(f.log))
	for i, r := range f.log {
		out[i] = StoredRecord{Offset: r.Offset, Value: r.Value}
	}
	return out
}

// records decodes the log.
func (f *fakeAdmin) records() []Record {
	var out []Record
	for _, r := range f.stored() {
		rec, err := ParseRecord(r.Value)
		if err != nil {
			panic(err)
		}
		out = append(out, rec)
	}
	return out
}

// memHeads is a HeadStore in memory that counts publications.
type memHeads struct {
	mu        sync.Mutex
	head      *Head
	published []Head
}

func (m *memHeads) LoadHead(context.Context) (*Head, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.head == nil {
		return nil, nil
	}
	h := *m.head
	return &h, nil
}

func (m *memHeads) PublishHead(_ context.Context, h Head) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.head = &h
	m.published = append(m.published, h)
	return nil
}

func (m *memHeads) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.published)
}

func (m *memHeads) last() *Head {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.head == nil {
		return nil
	}
	h := *m.head
	return &h
}
