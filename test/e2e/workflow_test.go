package e2e

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hms-platform/bus-operator/test/harness/localstack"
)

// columns splits a kubectl table line into cells (two or more spaces
// apart; single spaces belong to headers such as BROKER NAME).
var columnGap = regexp.MustCompile(`\s{2,}`)

func columns(line string) []string { return columnGap.Split(strings.TrimSpace(line), -1) }

// table is one kubectl table: its header and rows, by cells.
type table struct {
	header []string
	rows   [][]string
}

// tables parses kubectl's output for several kinds: tables separated by
// blank lines.
func tables(out string) []table {
	var ts []table
	for block := range strings.SplitSeq(strings.TrimSpace(out), "\n\n") {
		lines := strings.Split(strings.TrimSpace(block), "\n")
		t := table{header: columns(lines[0])}
		for _, l := range lines[1:] {
			t.rows = append(t.rows, columns(l))
		}
		ts = append(ts, t)
	}
	return ts
}

// row finds the row whose NAME cell is name.
func (t table) row(name string) []string {
	i := slices.Index(t.header, "NAME")
	for _, r := range t.rows {
		if i >= 0 && i < len(r) && r[i] == name {
			return r
		}
	}
	return nil
}

// A reviewer lists every namespace's declarations and sees the printer
// columns the CRDs define, filled in by the operator.
func TestKubectlShowsPrinterColumns(t *testing.T) {
	f := sharedFixture(t)
	out := mustRun(t, time.Minute, "kubectl", f.kubeconfig(localstack.Reviewer, "get", "topics,subscriptions,changetickets", "-A")...)
	ts := tables(out)
	if len(ts) != 3 {
		t.Fatalf("kubectl get printed %d tables; want 3 (topics, subscriptions, changetickets):\n%s", len(ts), out)
	}
	cases := []struct {
		kind   string
		header []string
		name   string
		want   []string // the row, without the trailing age
	}{
		{"topics", []string{"NAMESPACE", "NAME", "BROKER NAME", "PARTITIONS", "TICKET", "READY", "REASON", "AGE"},
			"topic.bus.hms.io/orders", []string{shopNS, "topic.bus.hms.io/orders", ordersTopic, "1", shopTicket, "True", "Succeeded"}},
		{"subscriptions", []string{"NAMESPACE", "NAME", "ROLE", "TOPICS", "PRINCIPAL", "READY", "REASON", "AGE"},
			"subscription.bus.hms.io/" + workerSub, []string{shopNS, "subscription.bus.hms.io/" + workerSub, "Consume", ordersTopic, "User:shop." + workerSub, "True", "Succeeded"}},
		// EXPIRES is left out of the comparison: its value is a time.
		{"changetickets", []string{"NAMESPACE", "NAME", "REFERENCE", "STATE", "APPROVALS", "REQUIRED", "REQUESTER", "EXPIRES", "AGE"},
			"changeticket.bus.hms.io/" + shopTicket, []string{shopNS, "changeticket.bus.hms.io/" + shopTicket, "CHG-7", "Approved", "1", "1", localstack.Requester}},
	}
	for i, c := range cases {
		tb := ts[i]
		if !slices.Equal(tb.header, c.header) {
			t.Errorf("%s header = %q; want %q", c.kind, tb.header, c.header)
			continue
		}
		r := tb.row(c.name)
		if len(r) != len(c.header) {
			t.Errorf("%s row %s = %q; want %d cells\n%s", c.kind, c.name, r, len(c.header), out)
			continue
		}
		if got := r[:len(c.want)]; !slices.Equal(got, c.want) {
			t.Errorf("%s row %s = %q; want it to start with %q", c.kind, c.name, r, c.want)
		}
	}
	// The producer's row shows both of its topics.
	if r := ts[1].row("subscription.bus.hms.io/" + writerSub); len(r) < 4 || r[2] != "Produce" || !strings.Contains(r[3], ordersTopic) || !strings.Contains(r[3], ledgerTopic) {
		t.Errorf("producer row = %q; want role Produce on %s and %s", r, ordersTopic, ledgerTopic)
	}
}

// A failing handler leaves the event unacknowledged: it is delivered again,
// and once handled, acknowledged for the whole group.
func TestSubAcknowledgesAndRedelivers(t *testing.T) {
	f := sharedFixture(t)
	suffix := fmt.Sprint(time.Now().UnixNano())
	first, second := "order-1-"+suffix, "order-2-"+suffix
	at := f.publish(t, ordersTopic, first)

	r := f.bus(2*time.Minute, workerSub, "sub", ordersTopic, "--fail-first", "1", "--max", "1", "--timeout", "60s")
	if r.err != nil {
		t.Fatalf("sub --fail-first 1 failed:\n%s", r)
	}
	refusal := fmt.Sprintf("handler failed on %s; it will be delivered again: refused by --fail-first (1 of 1)", at)
	if !strings.Contains(r.stderr, refusal) {
		t.Errorf("sub did not report refusing %s; want %q in stderr:\n%s", at, refusal, r)
	}
	if got := eventIDs(r.stdout); !slices.Equal(got, []string{first}) {
		t.Errorf("after the refusal sub handled %q; want the same event again, [%s]\n%s", got, first, r)
	}
	if !strings.Contains(r.stdout, " "+at+" ") {
		t.Errorf("the redelivered event is not at %s:\n%s", at, r.stdout)
	}

	// Acknowledged: a new member of the group starts after it...
	r = f.bus(time.Minute, workerSub, "sub", ordersTopic, "--timeout", "3s")
	if r.err != nil || eventIDs(r.stdout) != nil {
		t.Errorf("a new sub in the group got old events %q; want none (all acknowledged)\n%s", eventIDs(r.stdout), r)
	}
	// ...and receives what is published next, and only that.
	f.publish(t, ordersTopic, second)
	r = f.bus(2*time.Minute, workerSub, "sub", ordersTopic, "--max", "1", "--timeout", "60s")
	if r.err != nil {
		t.Fatalf("sub after a new event failed:\n%s", r)
	}
	if got := eventIDs(r.stdout); !slices.Equal(got, []string{second}) {
		t.Errorf("sub handled %q; want only the new event [%s]\n%s", got, second, r)
	}
}

// stream reads from earliest, from an absolute offset, or from the end,
// without a consumer group.
func TestStreamFromOffsets(t *testing.T) {
	f := sharedFixture(t)
	suffix := fmt.Sprint(time.Now().UnixNano())
	var ids []string
	var offsets []int
	for i := range 3 {
		id := fmt.Sprintf("entry-%d-%s", i+1, suffix)
		at := f.publish(t, ledgerTopic, id)
		var off int
		if _, err := fmt.Sscanf(at, ledgerTopic+"/0@%d", &off); err != nil {
			t.Fatalf("published %s at %q; want %s/0@OFFSET (one partition): %v", id, at, ledgerTopic, err)
		}
		ids, offsets = append(ids, id), append(offsets, off)
	}

	t.Run("earliest", func(t *testing.T) {
		total := offsets[2] + 1 // everything the topic holds
		r := f.bus(time.Minute, readerSub, "stream", ledgerTopic, "--offset", "earliest", "--max", fmt.Sprint(total), "--timeout", "30s")
		got := eventIDs(r.stdout)
		if r.err != nil || len(got) != total || !slices.Equal(got[total-3:], ids) {
			t.Fatalf("stream --offset earliest printed %q; want %d events ending with %q\n%s", got, total, ids, r)
		}
		if !strings.Contains(r.stderr, "streaming "+ledgerTopic+" from partition 0@0") {
			t.Errorf("stream --offset earliest did not start at offset 0:\n%s", r.stderr)
		}
	})
	t.Run("absolute offset", func(t *testing.T) {
		r := f.bus(time.Minute, readerSub, "stream", ledgerTopic, "--offset", fmt.Sprint(offsets[1]), "--max", "2", "--timeout", "30s")
		if got := eventIDs(r.stdout); r.err != nil || !slices.Equal(got, ids[1:]) {
			t.Fatalf("stream --offset %d printed %q; want %q\n%s", offsets[1], got, ids[1:], r)
		}
	})
	t.Run("latest", func(t *testing.T) {
		b := f.startBus(t, readerSub, "stream", ledgerTopic, "--offset", "latest", "--max", "1", "--timeout", "60s")
		// Only once the start offset is fixed does "latest" exclude what
		// is published next.
		started := fmt.Sprintf("streaming %s from partition 0@%d", ledgerTopic, offsets[2]+1)
		eventually(t, time.Minute, "stream --offset latest starts", func() error {
			select {
			case <-b.done:
				return nil // reported below with the output
			default:
			}
			if !strings.Contains(b.errOut.String(), started) {
				return fmt.Errorf("stderr so far: %q", b.errOut.String())
			}
			return nil
		})
		next := "entry-4-" + suffix
		f.publish(t, ledgerTopic, next)
		r := b.wait(t)
		if got := eventIDs(r.stdout); r.err != nil || !slices.Equal(got, []string{next}) || !strings.Contains(r.stderr, started) {
			t.Fatalf("stream --offset latest printed %q; want only [%s], after %q\n%s", got, next, started, r)
		}
	})
}

// The broker enforces each grant: a consumer of one topic cannot read
// another, and cannot publish to its own.
func TestGrantsAreEnforced(t *testing.T) {
	f := sharedFixture(t)
	for _, c := range []struct {
		what string
		args []string
	}{
		{"stream a topic not granted", []string{"stream", ledgerTopic, "--offset", "earliest", "--timeout", "20s"}},
		{"publish with consumer credentials", []string{"pub", ordersTopic, `{"id":"x"}`, "--type", eventType}},
	} {
		r := f.bus(time.Minute, workerSub, c.args...)
		if r.err == nil || !strings.Contains(r.stderr, "not authorized by the broker's ACLs") {
			t.Errorf("%s as %s: want a refusal by the ACLs, got:\n%s", c.what, workerSub, r)
		}
	}
}
