package bus

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestParseOffset(t *testing.T) {
	cases := []struct {
		in      string
		want    Offset
		wantErr bool
	}{
		{"earliest", Earliest, false},
		{"EARLIEST", Earliest, false},
		{"latest", Latest, false},
		{" 0 ", At(0), false},
		{"42", At(42), false},
		{"-1", 0, true},
		{"-2", 0, true},
		{"soon", 0, true},
		{"", 0, true},
	}
	for _, tc := range cases {
		got, err := ParseOffset(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseOffset(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
		if err == nil {
			back, err := ParseOffset(got.String())
			if err != nil || back != got {
				t.Errorf("ParseOffset(%v.String()) = %v, %v", got, back, err)
			}
		}
	}
}

func TestEventToRecordValidates(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	cases := map[string]Event{
		"no type":      {Source: "/s"},
		"no source":    {Type: "t"},
		"invalid JSON": {Type: "t", Source: "/s", Data: json.RawMessage(`{"a":`)},
	}
	for name, e := range cases {
		if _, _, err := e.toRecord("topic", now); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	r, e, err := Event{Type: "t", Source: "/s"}.toRecord("topic", now)
	if err != nil {
		t.Fatal(err)
	}
	if e.ID == "" || !e.Time.Equal(now) || r.Key != nil || r.Value != nil {
		t.Fatalf("event %+v, record key %q value %q", e, r.Key, r.Value)
	}
}

func TestEventFromForeignRecord(t *testing.T) {
	ts := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	e := eventFromRecord(&kgo.Record{Topic: "t", Partition: 2, Offset: 7, Key: []byte("k"), Value: []byte("plain text"), Timestamp: ts})
	if string(e.Data) != `"plain text"` || e.Subject != "k" || !e.Time.Equal(ts) || e.Partition != 2 || e.Offset != 7 || e.Topic != "t" {
		t.Fatalf("got %+v", e)
	}
	if _, err := json.Marshal(e); err != nil {
		t.Fatalf("event of a non-JSON record does not marshal: %v", err)
	}
}

func TestEventRecordRoundTrip(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.FixedZone("EAT", 3*3600))
	in := Event{Type: "hms.fees.FeeUpdated", Source: "/fees", Subject: "fee-9", Data: json.RawMessage(`{"fee":9}`)}
	r, sent, err := in.toRecord("fees", now)
	if err != nil {
		t.Fatal(err)
	}
	r.Partition, r.Offset = 1, 5
	got := eventFromRecord(r)
	if got.ID != sent.ID || got.Type != in.Type || got.Source != in.Source || got.Subject != in.Subject ||
		string(got.Data) != string(in.Data) || !got.Time.Equal(now) || got.Time.Location() != time.UTC ||
		got.Topic != "fees" || got.Partition != 1 || got.Offset != 5 {
		t.Fatalf("got %+v, sent %+v", got, sent)
	}
	if string(r.Key) != "fee-9" {
		t.Fatalf("record key = %q, want the subject", r.Key)
	}
}
