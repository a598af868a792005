package bus

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// FuzzEventRecordRoundTrip: an event that toRecord accepts reads back from
// its record as itself (CloudEvents attributes in headers, data as value).
func FuzzEventRecordRoundTrip(f *testing.F) {
	f.Add("id-1", "/fees", "hms.fees.FeeUpdated", "fee-9", int64(1893553445), int64(123456789), []byte(`{"fee":9}`))
	f.Add("", "/s", "t", "", int64(0), int64(0), []byte(nil))
	f.Add("ü\x00", "s", "t\nx", "subject with spaces", int64(-1), int64(-1), []byte(` [1, "x"] `))
	f.Add("x", "s", "t", "", int64(-62135596800), int64(0), []byte(`null`))        // year 1
	f.Add("x", "s", "t", "", int64(253402300799), int64(999999999), []byte(`"s"`)) // the last instant of 9999
	f.Fuzz(func(t *testing.T, id, source, typ, subject string, sec, nsec int64, data []byte) {
		in := Event{ID: id, Source: source, Type: typ, Subject: subject, Time: time.Unix(sec, nsec), Data: data}
		now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
		r, sent, err := in.toRecord("topic", now)
		if err != nil {
			inRange := in.Time.UTC().Year() >= 0 && in.Time.UTC().Year() <= 9999
			if typ != "" && source != "" && (len(data) == 0 || json.Valid(data)) && inRange {
				t.Fatalf("valid event refused: %v", err)
			}
			return
		}
		r.Partition, r.Offset, r.Timestamp = 3, 9, now.Add(time.Hour)
		got := eventFromRecord(r)
		if got.ID != sent.ID || got.Source != source || got.Type != typ || got.Subject != subject ||
			!bytes.Equal(got.Data, sent.Data) || !got.Time.Equal(sent.Time) || got.Time.Location() != time.UTC ||
			got.Topic != "topic" || got.Partition != 3 || got.Offset != 9 {
			t.Fatalf("read back %+v, sent %+v", got, sent)
		}
		if id != "" && sent.ID != id {
			t.Fatalf("ID %q replaced by %q", id, sent.ID)
		}
	})
}

// FuzzEventFromRecord: any record, CloudEvents or not, decodes without
// panicking into an event that still marshals to JSON.
func FuzzEventFromRecord(f *testing.F) {
	f.Add([]byte("k"), []byte("plain text"), "ce_id", []byte("1"), "ce_time", []byte("2030-01-02T03:04:05Z"))
	f.Add([]byte(nil), []byte(`{"a":1}`), "ce_time", []byte("not a time"), "content-type", []byte("application/json"))
	f.Add([]byte{0xff}, []byte{0xff, 0xfe, '"'}, "", []byte(nil), "ce_subject", []byte{0xc3})
	f.Add([]byte("k"), []byte(`"\ud800"`), "ce_type", []byte("t"), "ce_source", []byte("s"))
	f.Fuzz(func(t *testing.T, key, value []byte, h1 string, v1 []byte, h2 string, v2 []byte) {
		ts := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
		r := &kgo.Record{Topic: "t", Key: key, Value: value, Timestamp: ts, Headers: []kgo.RecordHeader{{Key: h1, Value: v1}, {Key: h2, Value: v2}}}
		e := eventFromRecord(r)
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("event does not marshal: %v", err)
		}
		var back Event
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("event JSON does not read back: %v", err)
		}
		if len(value) > 0 && len(e.Data) == 0 {
			t.Fatal("a record's value was dropped")
		}
		if e.Time.Location() != time.UTC {
			t.Fatalf("time %v not in UTC", e.Time)
		}
		if e.Subject == "" && len(key) > 0 {
			t.Fatalf("key %q lost: no subject", key)
		}
	})
}
