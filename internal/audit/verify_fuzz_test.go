package audit

import (
	"bytes"
	"slices"
	"sort"
	"sync"
	"testing"
)

var (
	fuzzTrailOnce sync.Once
	fuzzTrail     []StoredRecord
)

// FuzzVerifyChain tampers with a genuine trail (anchored by a head at its
// last record) in the ways ops spells out: the verifier must never panic,
// must report nothing for an untouched trail, and must report at least one
// break for any trail whose bytes differ from what was written.
func FuzzVerifyChain(f *testing.F) {
	f.Add([]byte{}, []byte("x"))
	f.Add([]byte{0, 5}, []byte(nil))                       // delete one
	f.Add([]byte{1, 7}, []byte(`{"seq":8}`))               // insert
	f.Add([]byte{2, 3, 40}, []byte(nil))                   // flip a byte
	f.Add([]byte{3, 2, 9}, []byte(nil))                    // replay
	f.Add([]byte{4, 11}, []byte(nil))                      // swap neighbours
	f.Add([]byte{5, 19}, []byte(`{"seq":20,"prevHash":"`)) // replace the last
	f.Add([]byte{0, 0, 0, 0, 0, 0}, []byte(nil))           // delete the start
	f.Add([]byte{3, 4, 4, 0, 5}, []byte(nil))              // duplicate then delete: unchanged
	f.Fuzz(func(t *testing.T, ops, extra []byte) {
		fuzzTrailOnce.Do(func() { fuzzTrail = genuineTrail(t, 10) })
		orig := fuzzTrail
		head := headOf(orig, len(orig)-1)
		vals := make([][]byte, len(orig))
		for i, r := range orig {
			vals[i] = r.Value
		}
		for i := 0; i+1 < len(ops); i += 2 {
			op, arg := ops[i]%6, int(ops[i+1])
			n := len(vals)
			switch {
			case op == 0 && n > 0:
				vals = slices.Delete(vals, arg%n, arg%n+1)
			case op == 1:
				vals = slices.Insert(vals, arg%(n+1), slices.Clone(extra))
			case op == 2 && n > 0 && i+2 < len(ops):
				v := slices.Clone(vals[arg%n])
				if len(v) > 0 {
					v[int(ops[i+2])%len(v)] ^= 0x20
					vals[arg%n] = v
				}
				i++
			case op == 3 && n > 0 && i+2 < len(ops):
				vals = slices.Insert(vals, int(ops[i+2])%(n+1), vals[arg%n])
				i++
			case op == 4 && n > 1:
				a, b := arg%n, (arg+1)%n
				vals[a], vals[b] = vals[b], vals[a]
			case op == 5 && n > 0:
				vals[arg%n] = slices.Clone(extra)
			}
		}
		recs := make([]StoredRecord, len(vals))
		for i, v := range vals {
			recs[i] = StoredRecord{Offset: int64(i), Value: v}
		}
		findings := VerifyChain(recs, head)
		if !sort.SliceIsSorted(findings, func(a, b int) bool { return findings[a].Offset < findings[b].Offset }) {
			t.Fatalf("findings not in offset order: %v", findings)
		}
		breaks := 0
		for _, f := range findings {
			if f.Break() {
				breaks++
			}
			if f.Detail == "" {
				t.Fatalf("finding without detail: %+v", f)
			}
		}
		same := len(vals) == len(orig) && slices.EqualFunc(vals, orig, func(v []byte, r StoredRecord) bool { return bytes.Equal(v, r.Value) })
		if same && len(findings) != 0 {
			t.Fatalf("untouched trail: %v", findings)
		}
		if !same && breaks == 0 {
			t.Fatalf("tampering not detected (ops %v): %v", ops, findings)
		}
		// Arbitrary records and heads never make it panic either.
		_ = VerifyChain([]StoredRecord{{Offset: 0, Value: extra}, {Offset: 1, Value: extra}}, &Head{Seq: int64(len(extra)), Offset: 1, Hash: HashRecord(extra)})
		_ = Summarize(recs)
	})
}
