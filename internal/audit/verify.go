package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
)

// GenesisHash is the prevHash of the chain's first record when nothing
// precedes it on the topic.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// HashRecord is the chain hash of one stored record: hex SHA-256 of its
// value bytes exactly as stored. The record key is not covered: it is only
// a partitioning hint, and readers never rely on it.
func HashRecord(value []byte) string {
	sum := sha256.Sum256(value)
	return hex.EncodeToString(sum[:])
}

// StoredRecord is one record of the audit topic as the broker returns it.
type StoredRecord struct {
	Offset int64
	Value  []byte
}

// FindingKind classifies what VerifyChain found.
type FindingKind string

// What the chain can show. Every kind but FindingUnchained is a break.
const (
	// FindingChanged: a record's bytes differ from what was written
	// (the next record holds another hash of it, or it no longer parses).
	FindingChanged FindingKind = "changed"
	// FindingRemoved: seqs are missing between two stored records.
	FindingRemoved FindingKind = "removed"
	// FindingInserted: a record the operator's chain does not contain
	// (forged, or replayed), sitting between chain records.
	FindingInserted FindingKind = "inserted"
	// FindingTruncated: the log no longer starts at seq 1 (records deleted
	// from the start, e.g. with DeleteRecords).
	FindingTruncated FindingKind = "truncated"
	// FindingTailRemoved: the log ends before the head the operator
	// published.
	FindingTailRemoved FindingKind = "tail-removed"
	// FindingHeadMismatch: the record at the published head's offset is
	// not the one published (changed, and the chain recomputed after it).
	FindingHeadMismatch FindingKind = "head-mismatch"
	// FindingUnchained: records before the chain's first record carry no
	// seq (written before the hash chain existed). Information only.
	FindingUnchained FindingKind = "unchained"
)

// Finding is one thing wrong with the trail. Offset is the stored record
// concerned, or the one right after a gap; Seq the chain position concerned.
type Finding struct {
	Kind   FindingKind `json:"kind"`
	Offset int64       `json:"offset"`
	Seq    int64       `json:"seq,omitempty"`
	Detail string      `json:"detail"`
}

// Break reports whether the finding means the trail was tampered with (or
// damaged), as opposed to information.
func (f Finding) Break() bool { return f.Kind != FindingUnchained }

func (f Finding) String() string {
	if f.Seq > 0 {
		return fmt.Sprintf("%s at offset %d (seq %d): %s", f.Kind, f.Offset, f.Seq, f.Detail)
	}
	return fmt.Sprintf("%s at offset %d: %s", f.Kind, f.Offset, f.Detail)
}

// chainLink is what the chain needs of a record; decoding only these
// fields skips the rest cheaply.
type chainLink struct {
	Seq      int64  `json:"seq"`
	PrevHash string `json:"prevHash"`
	ID       string `json:"id"`
	Phase    string `json:"phase"`
}

// parseChained decodes a stored value as a chain record: one JSON object
// with a positive seq and a well-formed prevHash. The writer and the
// verifier both decide with it, so they agree on what is chained.
func parseChained(value []byte) (chainLink, bool) {
	var l chainLink
	d := json.NewDecoder(bytes.NewReader(value))
	if err := d.Decode(&l); err != nil || d.More() {
		return chainLink{}, false
	}
	if l.Seq < 1 || !isHash(l.PrevHash) {
		return chainLink{}, false
	}
	return l, true
}

func isHash(s string) bool {
	if len(s) != sha256.Size*2 {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

type chainNode struct {
	off     int64
	hash    string
	chained bool
	seq     int64
	prev    string
}

// VerifyChain replays the audit topic's records (in offset order, as
// stored) and reports every break of the hash chain, first to last by
// offset. head, if not nil, is the head the operator published; it anchors
// the end of the chain.
//
// What it detects:
//   - a record changed in place: the next record holds a different hash of
//     it (or, if it no longer parses, the numbering continues after it);
//   - records removed from the middle (compaction, editing the log files):
//     a gap in seq;
//   - records inserted (produced by anyone with write access to the topic,
//     even the broker admin): a later record links past them;
//   - the start deleted (DeleteRecords, retention): the first record is not
//     seq 1, or seq 1 links to a record no longer there;
//   - the tail removed, up to the last published head: the log ends before
//     the published seq, or the record at the published offset is not the
//     published one (which also catches a chain recomputed from a change
//     up to the head).
//
// What it cannot detect: anything done to records written after the last
// head publication, when the chain is recomputed from the change onwards
// (or records are simply removed from the end, or forged with a correct
// link appended at the end). The operator publishes the head every few
// seconds, so that window is short; the writer's own next record exposes a
// tail forged while it runs, since it links to what it wrote itself.
func VerifyChain(records []StoredRecord, head *Head) []Finding {
	nodes := make([]chainNode, len(records))
	byPrev := map[string][]int{}
	byOffset := make(map[int64]int, len(records))
	for i, r := range records {
		n := chainNode{off: r.Offset, hash: HashRecord(r.Value)}
		if w, ok := parseChained(r.Value); ok {
			n.chained, n.seq, n.prev = true, w.Seq, w.PrevHash
			byPrev[n.prev] = append(byPrev[n.prev], i)
		}
		nodes[i] = n
		byOffset[r.Offset] = i
	}
	nextChained := func(i int) int {
		for j := i + 1; j < len(nodes); j++ {
			if nodes[j].chained {
				return j
			}
		}
		return -1
	}
	// linksLater: a chained record after position i continues from the
	// record with this hash at this seq.
	linksLater := func(hash string, seq int64, after int) bool {
		for _, j := range byPrev[hash] {
			if j > after && nodes[j].seq == seq {
				return true
			}
		}
		return false
	}

	var (
		fs         []Finding
		order      []int // accepted chain members, in order
		seqOf      = make([]int64, len(nodes))
		inChain    = make([]bool, len(nodes))
		byHash     = map[string]int{}
		tip        = -1
		tipSeq     int64
		wild       bool // the tip's original hash is unknown (it was changed)
		unchained  int
		firstLoose int64
		lastLoose  = -1
	)
	accept := func(i int, seq int64, isWild bool) {
		tip, tipSeq, wild = i, seq, isWild
		seqOf[i], inChain[i] = seq, true
		order = append(order, i)
		byHash[nodes[i].hash] = i
	}
	add := func(kind FindingKind, off, seq int64, format string, args ...any) {
		fs = append(fs, Finding{Kind: kind, Offset: off, Seq: seq, Detail: fmt.Sprintf(format, args...)})
	}

	for i, n := range nodes {
		if tip < 0 {
			if !n.chained {
				if unchained == 0 {
					firstLoose = n.off
				}
				unchained++
				lastLoose = i
				continue
			}
			switch {
			case n.seq > 1:
				add(FindingTruncated, n.off, n.seq, "the trail begins at seq %d: seq 1 to %d are gone (deleted from the start of the log)", n.seq, n.seq-1)
			case lastLoose < 0 && n.prev != GenesisHash:
				add(FindingTruncated, n.off, 1, "seq 1 links to a record that is no longer stored: the start of the log was deleted")
			case lastLoose >= 0 && n.prev != nodes[lastLoose].hash:
				add(FindingChanged, nodes[lastLoose].off, 0, "the chain's first record (offset %d) holds a different hash of this record, the last one written before the chain", n.off)
			}
			accept(i, n.seq, false)
			continue
		}
		exp := tipSeq + 1
		tipOff := nodes[tip].off
		if n.chained && n.seq == exp && (wild || n.prev == nodes[tip].hash) {
			accept(i, exp, false)
			continue
		}
		if !wild && linksLater(nodes[tip].hash, exp, i) {
			if n.chained {
				add(FindingInserted, n.off, n.seq, "not part of the chain: a later record continues from seq %d at offset %d, past this one", tipSeq, tipOff)
			} else {
				add(FindingInserted, n.off, 0, "not a chained audit record, and a later record continues from seq %d at offset %d past it", tipSeq, tipOff)
			}
			continue
		}
		if !n.chained {
			if j := nextChained(i); j >= 0 && nodes[j].seq == exp+1 {
				add(FindingChanged, n.off, exp, "seq %d is no longer a valid audit record: changed after it was written", exp)
				accept(i, exp, true)
				continue
			}
			add(FindingInserted, n.off, 0, "not a chained audit record")
			continue
		}
		switch {
		case n.seq == exp:
			// It sits where seq exp belongs but links elsewhere: either
			// the tip changed (this record still holds the tip's original
			// hash, and its own successor links to it) or this record did.
			j := nextChained(i)
			switch {
			case j < 0:
				add(FindingInserted, n.off, n.seq, "does not link to the record before it (seq %d at offset %d): appended by someone other than the operator, or that record was changed", tipSeq, tipOff)
			case nodes[j].prev == n.hash:
				add(FindingChanged, tipOff, tipSeq, "changed after it was written: the next record (offset %d) holds a different hash of it", n.off)
				accept(i, exp, false)
			default:
				add(FindingChanged, n.off, n.seq, "changed after it was written: its link to the previous record no longer matches")
				accept(i, exp, true)
			}
		case n.seq > exp:
			if !wild && n.prev == nodes[tip].hash {
				add(FindingChanged, n.off, exp, "changed after it was written: its seq reads %d where the chain has %d", n.seq, exp)
				accept(i, exp, true)
				continue
			}
			if exp == n.seq-1 {
				add(FindingRemoved, n.off, exp, "seq %d is missing between offset %d and %d", exp, tipOff, n.off)
			} else {
				add(FindingRemoved, n.off, exp, "seq %d to %d are missing between offset %d and %d", exp, n.seq-1, tipOff, n.off)
			}
			accept(i, n.seq, false)
		default:
			// It claims a place the chain already filled. If it links to
			// an earlier chain record and the chain continues from it, the
			// records taken after that one were the forgeries.
			e, ok := byHash[n.prev]
			if ok && seqOf[e] == n.seq-1 {
				if j := nextChained(i); j >= 0 && nodes[j].prev == n.hash {
					k := len(order) - 1
					for ; k >= 0 && order[k] != e; k-- {
						r := order[k]
						inChain[r] = false
						delete(byHash, nodes[r].hash)
						add(FindingInserted, nodes[r].off, seqOf[r], "a second record claiming seq %d: the chain continues from the one at offset %d", seqOf[r], n.off)
					}
					order = order[:k+1]
					accept(i, n.seq, false)
					continue
				}
			}
			add(FindingInserted, n.off, n.seq, "repeats seq %d, which the chain already has", n.seq)
		}
	}

	if unchained > 0 && tip >= 0 {
		add(FindingUnchained, firstLoose, 0, "%d records before the chain's first record carry no seq: written before the hash chain existed, they are not protected by it", unchained)
	}
	if head != nil && head.Seq > 0 {
		hn, stored := byOffset[head.Offset]
		switch {
		case tip < 0:
			add(FindingTailRemoved, head.Offset, head.Seq, "the operator published seq %d at offset %d (%s), but the trail holds no chained record", head.Seq, head.Offset, head.Time.Format("2006-01-02T15:04:05Z07:00"))
		case tipSeq < head.Seq:
			add(FindingTailRemoved, nodes[tip].off, tipSeq+1, "the operator published seq %d at offset %d (%s), but the trail ends at seq %d (offset %d): the records after it were removed", head.Seq, head.Offset, head.Time.Format("2006-01-02T15:04:05Z07:00"), tipSeq, nodes[tip].off)
		case !stored:
			if len(nodes) > 0 && head.Offset >= nodes[0].off {
				add(FindingHeadMismatch, head.Offset, head.Seq, "no record at offset %d, where the operator published seq %d", head.Offset, head.Seq)
			}
			// Below the first stored offset: deleted from the start,
			// reported as truncated.
		case nodes[hn].hash != head.Hash:
			add(FindingHeadMismatch, head.Offset, head.Seq, "not the record the operator published as seq %d (hash %s…, stored %s…): it was changed, and the chain recomputed after it", head.Seq, short(head.Hash), short(nodes[hn].hash))
		case !inChain[hn] || seqOf[hn] != head.Seq:
			add(FindingHeadMismatch, head.Offset, head.Seq, "the record the operator published as seq %d is not at that place in the chain", head.Seq)
		}
	}
	sort.SliceStable(fs, func(a, b int) bool { return fs[a].Offset < fs[b].Offset })
	return fs
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// Summary counts what a trail holds.
type Summary struct {
	Records  int
	Chained  int
	Intents  int
	Outcomes int
	// Open lists intent IDs without an outcome: writes in flight, or left
	// by a stopped operator and not yet handed over.
	Open []string
	// FirstSeq and LastSeq bound the chained records.
	FirstSeq, LastSeq int64
}

// Summarize counts the records of a trail.
func Summarize(records []StoredRecord) Summary {
	var s Summary
	open := map[string]bool{}
	var order []string
	for _, r := range records {
		s.Records++
		w, ok := parseChained(r.Value)
		if !ok {
			continue
		}
		s.Chained++
		if s.FirstSeq == 0 {
			s.FirstSeq = w.Seq
		}
		s.LastSeq = w.Seq
		switch w.Phase {
		case PhaseIntent:
			s.Intents++
			if !open[w.ID] {
				order = append(order, w.ID)
			}
			open[w.ID] = true
		case PhaseOutcome:
			s.Outcomes++
			delete(open, w.ID)
		}
	}
	for _, id := range order {
		if open[id] {
			s.Open = append(s.Open, id)
		}
	}
	return s
}

// ParseRecord decodes one stored audit record.
func ParseRecord(value []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(value, &r); err != nil {
		return Record{}, fmt.Errorf("decoding audit record: %w", err)
	}
	return r, nil
}
