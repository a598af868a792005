package bus

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Kafka header names of the CloudEvents Kafka protocol binding, binary
// content mode: attributes travel in headers, the record value is the data.
const (
	HeaderSpecVersion = "ce_specversion"
	HeaderID          = "ce_id"
	HeaderSource      = "ce_source"
	HeaderType        = "ce_type"
	HeaderTime        = "ce_time"
	HeaderSubject     = "ce_subject"
	HeaderContentType = "content-type"

	// SpecVersion is the CloudEvents version written.
	SpecVersion = "1.0"
	// ContentTypeJSON is the only data content type this package writes.
	ContentTypeJSON = "application/json"
)

// Event is one CloudEvent on the bus. Topic, Partition and Offset are set on
// events read from the bus and ignored when publishing.
type Event struct {
	// ID is unique per source; Publish fills a random UUID when empty.
	ID string `json:"id"`
	// Source identifies who emitted the event, e.g. /fees/fee-service.
	Source string `json:"source"`
	// Type says what happened, e.g. hms.fees.FeeUpdated.
	Type string `json:"type"`
	// Time the event happened; Publish fills the current time when zero.
	Time time.Time `json:"time"`
	// Subject, optional, names what the event is about. It is also the
	// record key, so events about one subject stay in order on one
	// partition.
	Subject string `json:"subject,omitempty"`
	// Data is the JSON payload.
	Data json.RawMessage `json:"data,omitempty"`

	Topic     string `json:"topic,omitempty"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// toRecord encodes e for topic, filling ID and Time when unset.
func (e Event) toRecord(topic string, now time.Time) (*kgo.Record, Event, error) {
	if e.Type == "" {
		return nil, e, fmt.Errorf("event has no type")
	}
	if e.Source == "" {
		return nil, e, fmt.Errorf("event has no source")
	}
	if len(e.Data) > 0 && !json.Valid(e.Data) {
		return nil, e, fmt.Errorf("event data is not valid JSON")
	}
	if e.ID == "" {
		e.ID = uuid.NewString()
	}
	if e.Time.IsZero() {
		e.Time = now
	}
	e.Time = e.Time.UTC()
	// ce_time is an RFC 3339 timestamp, which has four-digit years: a time
	// outside them would be written but never read back (found by
	// FuzzEventRecordRoundTrip).
	if y := e.Time.Year(); y < 0 || y > 9999 {
		return nil, e, fmt.Errorf("event time %s is outside the years 0 to 9999 that CloudEvents (RFC 3339) can carry", e.Time)
	}
	e.Topic = topic
	r := &kgo.Record{Topic: topic, Value: e.Data}
	if e.Subject != "" {
		r.Key = []byte(e.Subject)
	}
	hdr := func(k, v string) {
		if v != "" {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
	}
	hdr(HeaderSpecVersion, SpecVersion)
	hdr(HeaderID, e.ID)
	hdr(HeaderSource, e.Source)
	hdr(HeaderType, e.Type)
	hdr(HeaderTime, e.Time.Format(time.RFC3339Nano))
	hdr(HeaderSubject, e.Subject)
	hdr(HeaderContentType, ContentTypeJSON)
	return r, e, nil
}

// eventFromRecord decodes a record. It never fails: a record written by a
// client that does not speak CloudEvents still reaches the handler, with its
// value as Data (a JSON string if the value is not JSON) and the record
// timestamp as Time, so nothing is skipped silently.
func eventFromRecord(r *kgo.Record) Event {
	e := Event{
		Data:      json.RawMessage(r.Value),
		Time:      r.Timestamp.UTC(),
		Topic:     r.Topic,
		Partition: r.Partition,
		Offset:    r.Offset,
	}
	switch {
	case len(r.Value) == 0:
		e.Data = nil
	case !json.Valid(r.Value):
		// Keep Event marshalable: a non-JSON value becomes a JSON string.
		quoted, _ := json.Marshal(string(r.Value))
		e.Data = quoted
	}
	for _, h := range r.Headers {
		v := string(h.Value)
		switch h.Key {
		case HeaderID:
			e.ID = v
		case HeaderSource:
			e.Source = v
		case HeaderType:
			e.Type = v
		case HeaderSubject:
			e.Subject = v
		case HeaderTime:
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				e.Time = t.UTC()
			}
		}
	}
	if e.Subject == "" && len(r.Key) > 0 {
		e.Subject = string(r.Key)
	}
	return e
}
