package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"
)

// genuineTrail is what the operator writes for n changes: 2n records.
func genuineTrail(t testing.TB, n int) []StoredRecord {
	t.Helper()
	admin := newFakeAdmin(DefaultTopic)
	r, _ := newRecorder(admin, nil)
	for i := range n {
		r.Record(context.Background(), topicObj(), "Topic", Record{Operation: OpAlterTopicConfig, Resource: fmt.Sprintf("topic-%02d", i), Cause: CauseDrift, After: map[string]string{"retention.ms": "1000"}})
	}
	return admin.stored()
}

// renumber stores records at offsets base, base+1, ... as a broker would
// after the records were edited in its files.
func renumber(recs []StoredRecord, base int64) []StoredRecord {
	out := make([]StoredRecord, len(recs))
	for i, r := range recs {
		out[i] = StoredRecord{Offset: base + int64(i), Value: r.Value}
	}
	return out
}

func without(recs []StoredRecord, drop ...int) []StoredRecord {
	var out []StoredRecord
	for i, r := range recs {
		if !slices.Contains(drop, i) {
			out = append(out, r)
		}
	}
	return out
}

// insertAt puts value before position i, shifting later offsets (what a
// producer appending in the middle of the writer's records amounts to).
func insertAt(recs []StoredRecord, i int, value []byte) []StoredRecord {
	vals := make([]StoredRecord, 0, len(recs)+1)
	vals = append(vals, recs[:i]...)
	vals = append(vals, StoredRecord{Value: value})
	vals = append(vals, recs[i:]...)
	return renumber(vals, recs[0].Offset)
}

func replace(recs []StoredRecord, i int, value []byte) []StoredRecord {
	out := slices.Clone(recs)
	out[i].Value = value
	return out
}

// edit changes one field of a stored record, leaving the rest as is.
func edit(t testing.TB, value []byte, field string, v any) []byte {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(value))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	m[field] = v
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rechain recomputes every link from position i on, as a forger who knows
// the scheme would after changing record i.
func rechain(t testing.TB, recs []StoredRecord, i int) []StoredRecord {
	t.Helper()
	out := slices.Clone(recs)
	for j := i; j < len(out); j++ {
		prev := GenesisHash
		if j > 0 {
			prev = HashRecord(out[j-1].Value)
		}
		out[j].Value = edit(t, out[j].Value, "prevHash", prev)
	}
	return out
}

func forged(seq int64, prev string) []byte {
	b, _ := json.Marshal(wireRecord{Seq: seq, PrevHash: prev, ID: "forged", Phase: PhaseIntent, Time: time.Unix(0, 0).UTC(), Operation: OpDeleteACL, Resource: "User:mallory"})
	return b
}

func headOf(recs []StoredRecord, i int) *Head {
	w, _ := parseChained(recs[i].Value)
	return &Head{Topic: DefaultTopic, Seq: w.Seq, Offset: recs[i].Offset, Hash: HashRecord(recs[i].Value)}
}

func TestVerifyChain(t *testing.T) {
	g := genuineTrail(t, 6) // 12 records, seq 1..12 at offsets 0..11
	legacy := []StoredRecord{{Offset: 0, Value: []byte(`{"id":"old-1","operation":"CreateTopic"}`)}, {Offset: 1, Value: []byte(`{"id":"old-2","operation":"CreateACL"}`)}}
	// A trail begun on top of records written before the chain existed.
	onLegacy := func() []StoredRecord {
		admin := newFakeAdmin(DefaultTopic)
		for _, l := range legacy {
			<-admin.AppendAsync(context.Background(), DefaultTopic, nil, l.Value)
		}
		r, _ := newRecorder(admin, nil)
		r.Record(context.Background(), topicObj(), "Topic", Record{Operation: OpCreateTopic, Resource: "FeeUpdated"})
		return admin.stored()
	}()

	tests := []struct {
		name    string
		records []StoredRecord
		head    *Head
		want    FindingKind // first break; "" for none
		offset  int64
		seq     int64
		info    bool // an information finding is expected
	}{
		{name: "intact", records: g},
		{name: "intact, matching head", records: g, head: headOf(g, 11)},
		{name: "intact, head published a while ago", records: g, head: headOf(g, 7)},
		{name: "empty", records: nil},
		{name: "record changed in the middle", records: replace(g, 4, edit(t, g[4].Value, "resource", "topic-99")), want: FindingChanged, offset: 4, seq: 5},
		{name: "record changed into garbage", records: replace(g, 4, []byte(`{"truncated`)), want: FindingChanged, offset: 4, seq: 5},
		{name: "record's link changed", records: replace(g, 4, edit(t, g[4].Value, "prevHash", GenesisHash)), want: FindingChanged, offset: 4, seq: 5},
		{name: "record's seq changed", records: replace(g, 4, edit(t, g[4].Value, "seq", 40)), want: FindingChanged, offset: 4, seq: 5},
		{name: "first record changed", records: replace(g, 0, edit(t, g[0].Value, "operation", OpCreateTopic)), want: FindingChanged, offset: 0, seq: 1},
		{name: "record removed from the middle", records: without(g, 5), want: FindingRemoved, offset: 6, seq: 6},
		{name: "records removed and renumbered", records: renumber(without(g, 5, 6, 7), 0), want: FindingRemoved, offset: 5, seq: 6},
		{name: "garbage inserted", records: insertAt(g, 3, []byte(`not json`)), want: FindingInserted, offset: 3},
		{name: "record with a wrong link inserted", records: insertAt(g, 3, forged(4, GenesisHash)), want: FindingInserted, offset: 3, seq: 4},
		{name: "valid-looking record inserted (correct link and seq)", records: insertAt(g, 3, forged(4, HashRecord(g[2].Value))), want: FindingInserted, offset: 3, seq: 4},
		{name: "earlier record replayed", records: insertAt(g, 6, g[1].Value), want: FindingInserted, offset: 6, seq: 2},
		{name: "record forged at the end", records: append(slices.Clone(g), StoredRecord{Offset: 12, Value: forged(13, GenesisHash)}), want: FindingInserted, offset: 12, seq: 13},
		{name: "start deleted (DeleteRecords)", records: g[4:], want: FindingTruncated, offset: 4, seq: 5},
		{name: "start deleted past the published head", records: g[10:], head: headOf(g, 7), want: FindingTruncated, offset: 10, seq: 11},
		{name: "tail removed before the published head", records: g[:8], head: headOf(g, 11), want: FindingTailRemoved, offset: 7, seq: 9},
		{name: "everything removed after a publication", records: nil, head: headOf(g, 11), want: FindingTailRemoved, offset: 11, seq: 12},
		{name: "changed and the chain recomputed, up to the head", records: rechain(t, replace(g, 4, edit(t, g[4].Value, "resource", "topic-99")), 5), head: headOf(g, 11), want: FindingHeadMismatch, offset: 11, seq: 12},
		{name: "changed and the chain recomputed after the last publication (undetectable)", records: rechain(t, replace(g, 10, edit(t, g[10].Value, "resource", "topic-99")), 11), head: headOf(g, 9)},
		{name: "chain begun on older records", records: onLegacy, info: true},
		{name: "older record before the chain changed", records: replace(onLegacy, 1, []byte(`{"id":"old-2","operation":"DeleteACL"}`)), want: FindingChanged, offset: 1, info: true},
		{name: "older records deleted from the start", records: onLegacy[2:], want: FindingTruncated, offset: 2, seq: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := VerifyChain(tc.records, tc.head)
			var breaks []Finding
			info := false
			for _, f := range fs {
				if f.Break() {
					breaks = append(breaks, f)
				} else {
					info = true
				}
			}
			if info != tc.info {
				t.Errorf("information findings: got %v, want %v (%v)", info, tc.info, fs)
			}
			if tc.want == "" {
				if len(breaks) > 0 {
					t.Fatalf("intact trail reported %v", breaks)
				}
				return
			}
			if len(breaks) == 0 {
				t.Fatalf("no finding, want %s at offset %d", tc.want, tc.offset)
			}
			first := breaks[0]
			if first.Kind != tc.want || first.Offset != tc.offset || first.Seq != tc.seq {
				t.Fatalf("first finding %v, want %s at offset %d seq %d (all: %v)", first, tc.want, tc.offset, tc.seq, breaks)
			}
			if first.Detail == "" {
				t.Fatal("a finding must say what is wrong")
			}
		})
	}
}

func TestVerifyChainResumesAfterABreak(t *testing.T) {
	g := genuineTrail(t, 10)
	// Two separate changes: both are reported, and nothing else.
	recs := replace(g, 3, edit(t, g[3].Value, "resource", "x"))
	recs = replace(recs, 14, edit(t, g[14].Value, "resource", "y"))
	fs := VerifyChain(recs, headOf(g, 19))
	if len(fs) != 2 || fs[0].Offset != 3 || fs[1].Offset != 14 {
		t.Fatalf("findings %v, want changes at offsets 3 and 14", fs)
	}
}
