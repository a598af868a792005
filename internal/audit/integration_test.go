package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/hms-platform/bus-operator/internal/kafka"
	"github.com/hms-platform/bus-operator/test/harness/embedded"
)

func brokerConfig(b *embedded.Broker) kafka.Config {
	return kafka.Config{Bootstrap: b.Addrs(), Mechanism: embedded.AdminMechanism, Username: b.AdminUser, Password: b.AdminPassword,
		RequestTimeout: 10 * time.Second, SCRAMIterations: kafka.MinSCRAMIterations}
}

func readLog(t *testing.T, admin kafka.Admin, topic string) []StoredRecord {
	t.Helper()
	offs, err := admin.PartitionOffsets(ctxT(t), topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := admin.ReadRecords(ctxT(t), topic, 0, offs.Start, offs.End, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]StoredRecord, len(recs))
	for i, r := range recs {
		out[i] = StoredRecord{Offset: r.Offset, Value: r.Value}
	}
	if int64(len(out)) != offs.End-offs.Start {
		t.Fatalf("read %d records of offsets %d..%d", len(out), offs.Start, offs.End)
	}
	return out
}

func findingAt(fs []Finding, kind FindingKind, offset int64) bool {
	for _, f := range fs {
		if f.Kind == kind && f.Offset == offset {
			return true
		}
	}
	return false
}

// TestTamperingOnTheEmbeddedBroker writes a trail through the real adapter,
// then tampers with it the ways someone with broker admin rights or disk
// access could, and checks the verifier points at each.
func TestTamperingOnTheEmbeddedBroker(t *testing.T) {
	dir := t.TempDir()
	b, err := embedded.Start(embedded.Options{Brokers: 1, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { b.Close() }()
	admin, err := kafka.New(context.Background(), brokerConfig(b))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { admin.Close() }()
	const topic = "hms.audit.tamper"
	if err := EnsureTopic(ctxT(t), admin, topic); err != nil {
		t.Fatal(err)
	}

	heads := &memHeads{}
	r := &Recorder{Admin: admin, Topic: topic, Events: &fakeEvents{}, Heads: heads}
	stop := runKeeper(t, r, time.Nanosecond)
	change := func(r *Recorder, i int) {
		t.Helper()
		p, err := r.Begin(ctxT(t), topicObj(), "Topic", Record{Operation: OpAlterTopicConfig, Resource: "topic-" + strconv.Itoa(i), Cause: CauseDrift, Ticket: ticket})
		if err != nil {
			t.Fatal(err)
		}
		p.Done(ctxT(t), nil)
	}
	for i := range 5 {
		change(r, i) // offsets 0..9
	}
	// A process that dies between intent and outcome (offset 10).
	if _, err := r.Begin(ctxT(t), topicObj(), "Topic", Record{Operation: OpDeleteTopic, Resource: "doomed", Cause: CauseDeletion}); err != nil {
		t.Fatal(err)
	}
	stop()

	// The next leader hands over: it reads the real topic, closes the
	// intent (offset 11) and continues the chain.
	r2 := &Recorder{Admin: admin, Topic: topic, Events: &fakeEvents{}, Heads: heads}
	stop = runKeeper(t, r2, time.Nanosecond)
	waitFor(t, func() bool { s := Summarize(readLog(t, admin, topic)); return s.Records == 12 && len(s.Open) == 0 })
	change(r2, 5) // offsets 12, 13
	waitFor(t, func() bool { h := heads.last(); return h != nil && h.Seq == 14 })
	if fs := VerifyChain(readLog(t, admin, topic), heads.last()); len(fs) != 0 {
		t.Fatalf("genuine trail: %v", fs)
	}

	// 1. Someone with the broker admin's credentials produces a record of
	// their own (offset 14); the operator carries on (offsets 15, 16).
	if err := admin.Append(ctxT(t), topic, nil, forged(15, HashRecord(readLog(t, admin, topic)[13].Value))); err != nil {
		t.Fatal(err)
	}
	change(r2, 6)
	fs := VerifyChain(readLog(t, admin, topic), heads.last())
	if len(fs) != 1 || !findingAt(fs, FindingInserted, 14) {
		t.Fatalf("after a forged record at offset 14: %v", fs)
	}
	stop()

	// 2. Someone with disk access edits a record in the middle (offset 4)
	// of the stored log while the broker is down, fixing the batch CRC.
	admin.Close()
	b.Close()
	editStoredRecord(t, dir, topic, 4, []byte("topic-2"), []byte("topic-9"))
	b, err = embedded.Start(embedded.Options{Brokers: 1, DataDir: dir, AdminPassword: b.AdminPassword})
	if err != nil {
		t.Fatal(err)
	}
	admin, err = kafka.New(context.Background(), brokerConfig(b))
	if err != nil {
		t.Fatal(err)
	}
	stored := readLog(t, admin, topic)
	if !bytes.Contains(stored[4].Value, []byte("topic-9")) {
		t.Fatalf("the edit did not survive the restart: %s", stored[4].Value)
	}
	fs = VerifyChain(stored, heads.last())
	if len(fs) != 2 || fs[0].Kind != FindingChanged || fs[0].Offset != 4 || fs[0].Seq != 5 || !findingAt(fs, FindingInserted, 14) {
		t.Fatalf("after editing offset 4: %v", fs)
	}

	// 3. The start of the log is deleted (DeleteRecords up to offset 3).
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...), kgo.SASL(scram.Auth{User: b.AdminUser, Pass: b.AdminPassword}.AsSha512Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var del kadm.Offsets
	del.Add(kadm.Offset{Topic: topic, Partition: 0, At: 3})
	resp, err := kadm.NewClient(cl).DeleteRecords(ctxT(t), del)
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Error(); err != nil {
		t.Fatal(err)
	}
	fs = VerifyChain(readLog(t, admin, topic), heads.last())
	if len(fs) != 3 || fs[0].Kind != FindingTruncated || fs[0].Offset != 3 || fs[0].Seq != 4 {
		t.Fatalf("after deleting offsets 0..2: %v", fs)
	}

	// A writer started on the tampered log keeps the evidence: it links
	// to the last record, so the breaks stay where they are.
	r3 := &Recorder{Admin: admin, Topic: topic, Events: &fakeEvents{}, Heads: heads}
	change(r3, 7)
	if got := VerifyChain(readLog(t, admin, topic), nil); len(got) != 3 {
		t.Fatalf("after more records: %v", got)
	}
}

// editStoredRecord rewrites the record at offset in the broker's segment
// files, replacing old with new in its value and fixing the batch's length
// and CRC, as someone with access to the broker's disks could.
func editStoredRecord(t *testing.T, dataDir, topic string, offset int64, old, new []byte) {
	t.Helper()
	pdir := filepath.Join(dataDir, "partitions", url.PathEscape(topic)+"-0")
	segs, err := filepath.Glob(filepath.Join(pdir, "*.dat"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no segment files in %s: %v", pdir, err)
	}
	for _, seg := range segs {
		raw, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		var out []byte
		edited := false
		for pos := 0; pos+12 <= len(raw); {
			size := 12 + int(binary.BigEndian.Uint32(raw[pos+8:pos+12]))
			batch := raw[pos : pos+size]
			pos += size
			var rb kmsg.RecordBatch
			if err := rb.ReadFrom(batch); err != nil {
				t.Fatal(err)
			}
			if offset < rb.FirstOffset || offset > rb.FirstOffset+int64(rb.LastOffsetDelta) {
				out = append(out, batch...)
				continue
			}
			recs, err := kfake.BatchRecords(rb)
			if err != nil {
				t.Fatal(err)
			}
			var body []byte
			for i := range recs {
				if rb.FirstOffset+int64(recs[i].OffsetDelta) == offset {
					if !bytes.Contains(recs[i].Value, old) {
						t.Fatalf("record %d has no %q: %s", offset, old, recs[i].Value)
					}
					recs[i].Value = bytes.Replace(recs[i].Value, old, new, 1)
					recs[i].Length += int32(len(new) - len(old))
					edited = true
				}
				body = recs[i].AppendTo(body)
			}
			rb.Attributes &^= 0x07 // stored uncompressed now
			rb.Records = body
			enc := rb.AppendTo(nil)
			binary.BigEndian.PutUint32(enc[8:12], uint32(len(enc)-12))
			binary.BigEndian.PutUint32(enc[17:21], crc32.Checksum(enc[21:], crc32.MakeTable(crc32.Castagnoli)))
			out = append(out, enc...)
		}
		if edited {
			if err := os.WriteFile(seg, out, 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("offset %d not found in %s", offset, strings.Join(segs, ", "))
}
