package fault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hms-platform/bus-operator/internal/audit"
	"github.com/hms-platform/bus-operator/internal/kafka"
	"github.com/hms-platform/bus-operator/test/harness/testenv"
)

// auditLog is the audit topic as read so far. The trail grows by thousands
// of records per case, so each refresh reads only what is new; a log that
// no longer matches what was read (the broker lost its data) is read again
// from its start.
type auditLog struct {
	mu   sync.Mutex
	recs []audit.StoredRecord
	next int64
}

var trail = &auditLog{}

// refresh reads the records appended since the last call. A missing audit
// topic (a broker that lost its data, before the operator recreated it)
// reads as empty.
func (a *auditLog) refresh(ctx context.Context) ([]audit.StoredRecord, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	offs, err := direct.k.PartitionOffsets(ctx, audit.DefaultTopic, 0)
	if errors.Is(err, kafka.ErrTopicNotFound) {
		a.recs, a.next = nil, 0
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit topic offsets: %w", err)
	}
	if n := len(a.recs); n > 0 {
		// The last record read must still be there, byte for byte;
		// otherwise the log was replaced and is read again.
		last := a.recs[n-1]
		same := offs.Start <= last.Offset && last.Offset < offs.End
		if same {
			got, err := direct.k.ReadRecords(ctx, audit.DefaultTopic, 0, last.Offset, last.Offset+1, 1)
			same = err == nil && len(got) == 1 && bytes.Equal(got[0].Value, last.Value)
		}
		if !same {
			a.recs, a.next = nil, 0
		}
	}
	from := max(a.next, offs.Start)
	if from < offs.End {
		got, err := direct.k.ReadRecords(ctx, audit.DefaultTopic, 0, from, offs.End, 0)
		if err != nil {
			return nil, fmt.Errorf("reading the audit topic from offset %d: %w", from, err)
		}
		for _, r := range got {
			a.recs = append(a.recs, audit.StoredRecord{Offset: r.Offset, Value: r.Value})
		}
	}
	a.next = offs.End
	return append([]audit.StoredRecord(nil), a.recs...), nil
}

// publishedHead is the chain head the operator published.
func publishedHead(ctx context.Context) (*audit.Head, error) {
	heads := &audit.ConfigMapHeads{Reader: stack.Env.Client, Writer: stack.Env.Client,
		Namespace: testenv.SystemNamespace, Name: audit.DefaultHeadConfigMap}
	h, err := heads.LoadHead(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the published audit head: %w", err)
	}
	return h, nil
}

// change is one broker change of the trail: its intent and the outcomes
// with its ID.
type change struct {
	ID       string
	Intent   *audit.Record
	Offset   int64 // of the intent (or of the first outcome without one)
	Outcomes []audit.Record
	// IntentRepeated: the intent record is missing (lost with the
	// broker's data) and Intent is what its outcome repeats.
	IntentRepeated bool
}

// Result is the outcome's result ("" when there is none).
func (c *change) Result() string {
	if len(c.Outcomes) == 0 {
		return ""
	}
	return c.Outcomes[0].Result
}

// trailView is the trail grouped by change ID.
type trailView struct {
	changes []*change
	byID    map[string]*change
	// intentsTwice lists IDs with more than one intent record.
	intentsTwice []string
	// unparsable lists offsets whose record did not decode.
	unparsable []int64
	lastSeq    int64
}

func groupTrail(recs []audit.StoredRecord) *trailView {
	v := &trailView{byID: map[string]*change{}}
	for _, sr := range recs {
		rec, err := audit.ParseRecord(sr.Value)
		if err != nil || rec.ID == "" {
			v.unparsable = append(v.unparsable, sr.Offset)
			continue
		}
		v.lastSeq = max(v.lastSeq, rec.Seq)
		c := v.byID[rec.ID]
		if c == nil {
			c = &change{ID: rec.ID, Offset: sr.Offset}
			v.byID[rec.ID] = c
			v.changes = append(v.changes, c)
		}
		switch rec.Phase {
		case audit.PhaseIntent:
			if c.Intent != nil {
				v.intentsTwice = append(v.intentsTwice, rec.ID)
				continue
			}
			r := rec
			c.Intent, c.Offset = &r, sr.Offset
		case audit.PhaseOutcome:
			c.Outcomes = append(c.Outcomes, rec)
			if c.Intent == nil && rec.Operation != "" {
				// An outcome that repeats an intent lost with the
				// broker's data stands for it.
				r := rec
				c.Intent, c.IntentRepeated = &r, true
			}
		default:
			v.unparsable = append(v.unparsable, sr.Offset)
		}
	}
	sort.SliceStable(v.changes, func(i, j int) bool { return v.changes[i].Offset < v.changes[j].Offset })
	return v
}

// of returns the changes whose intent names an object in namespace ns.
func (v *trailView) of(ns string) []*change {
	var out []*change
	for _, c := range v.changes {
		if c.Intent != nil && c.Intent.Object.Namespace == ns {
			out = append(out, c)
		}
	}
	return out
}

// openIntents counts the changes of ns without an outcome yet.
func (v *trailView) openIntents(ns string) int {
	n := 0
	for _, c := range v.of(ns) {
		if len(c.Outcomes) == 0 {
			n++
		}
	}
	return n
}

// waitAuditSettled waits until every intent of the case's objects has its
// outcome (a stopped operator's are closed by the next leader after the
// keeper's adopt window) and the operator has published a head at the end
// of the trail, so the chain can be verified to its last record.
func waitAuditSettled(ctx context.Context, ns string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		recs, err := trail.refresh(ctx)
		if err == nil {
			v := groupTrail(recs)
			open := v.openIntents(ns)
			h, herr := publishedHead(ctx)
			switch {
			case herr != nil:
				last = herr.Error()
			case open > 0:
				last = fmt.Sprintf("%d intents of namespace %s have no outcome yet", open, ns)
			case h == nil || h.Seq < v.lastSeq:
				last = fmt.Sprintf("published head behind the trail (trail ends at seq %d, head %+v)", v.lastSeq, h)
			default:
				return nil
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("audit trail not settled: %s", last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
