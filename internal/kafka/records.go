package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// StoredRecord is one record as a partition stores it. Value holds the exact
// bytes the broker returned, so a reader can hash what is stored.
type StoredRecord struct {
	Offset int64
	Key    []byte
	Value  []byte
	Time   time.Time
}

// Offsets are the bounds of a partition: Start is the first offset still
// stored (it moves up when records are deleted from the start), End is the
// offset the next record will get (the high watermark). Start == End means
// the partition holds no record.
type Offsets struct {
	Start int64
	End   int64
}

// AppendResult is the broker's definitive answer to one append.
type AppendResult struct {
	Partition int32
	Offset    int64
	Err       error
}

// PartitionOffsets returns the start and end offsets of one partition.
func (c *Client) PartitionOffsets(ctx context.Context, topic string, partition int32) (Offsets, error) {
	op := fmt.Sprintf("listing offsets of %s/%d", topic, partition)
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	starts, err := c.adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return Offsets{}, opErr(op, classify(err, ""))
	}
	ends, err := c.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return Offsets{}, opErr(op, classify(err, ""))
	}
	s, okS := starts.Lookup(topic, partition)
	e, okE := ends.Lookup(topic, partition)
	if !okS || !okE {
		// kadm lists a missing topic as partition -1 with
		// UNKNOWN_TOPIC_OR_PARTITION; a missing partition is absent.
		if bad, ok := starts.Lookup(topic, -1); ok && bad.Err != nil {
			return Offsets{}, opErr(op, classify(bad.Err, ""))
		}
		return Offsets{}, opErr(op, ErrTopicNotFound)
	}
	if s.Err != nil {
		return Offsets{}, opErr(op, classify(s.Err, ""))
	}
	if e.Err != nil {
		return Offsets{}, opErr(op, classify(e.Err, ""))
	}
	return Offsets{Start: s.Offset, End: e.Offset}, nil
}

// ReadRecords returns the records of one partition from offset from (or the
// partition's start, if from is before it) up to, not including, offset to,
// at most max of them (max <= 0: no limit). It reads with a short-lived
// consumer of its own, so it never disturbs the shared client's producer;
// reads are rare (an audit writer's start, an auditor's replay).
func (c *Client) ReadRecords(ctx context.Context, topic string, partition int32, from, to int64, max int) ([]StoredRecord, error) {
	op := fmt.Sprintf("reading %s/%d from offset %d", topic, partition, from)
	if to <= from {
		return nil, nil
	}
	mech, err := c.cfg.saslMechanism()
	if err != nil {
		return nil, opErr(op, err)
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.cfg.Bootstrap...),
		kgo.ClientID(c.cfg.ClientID),
		kgo.DialTimeout(min(c.cfg.RequestTimeout, 10*time.Second)),
		kgo.RetryTimeout(c.cfg.RequestTimeout),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(from)}}),
		// An offset below the start (records deleted meanwhile) resumes at
		// the start rather than failing: the caller sees where it begins.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200 * time.Millisecond),
	}
	if mech != nil {
		opts = append(opts, kgo.SASL(mech))
	}
	if c.cfg.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(c.cfg.TLS.Clone()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, opErr(op, fmt.Errorf("creating reader: %w", err))
	}
	defer cl.Close()

	var out []StoredRecord
	next := from
	idleSince := time.Now()
	for next < to && (max <= 0 || len(out) < max) {
		if err := ctx.Err(); err != nil {
			return out, opErr(op, classify(err, ""))
		}
		pollCtx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pollCtx)
		cancel()
		for _, fe := range fs.Errors() {
			if errors.Is(fe.Err, context.DeadlineExceeded) || errors.Is(fe.Err, context.Canceled) {
				continue // our poll timeout, not the broker's answer
			}
			return out, opErr(op, classify(fe.Err, ""))
		}
		got := 0
		fs.EachRecord(func(r *kgo.Record) {
			if r.Topic != topic || r.Partition != partition || r.Offset < next || r.Offset >= to {
				return
			}
			if max > 0 && len(out) >= max {
				return
			}
			out = append(out, StoredRecord{Offset: r.Offset, Key: r.Key, Value: r.Value, Time: r.Timestamp})
			next = r.Offset + 1
			got++
		})
		// A fetch that reports the partition ends at or before next means
		// nothing more is there (the offsets below to were compacted
		// away or never existed).
		ended := false
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if p.Topic == topic && p.Partition == partition && p.Err == nil && p.HighWatermark <= next && len(p.Records) == 0 {
				ended = true
			}
		})
		if ended {
			break
		}
		if got > 0 {
			idleSince = time.Now()
			continue
		}
		if time.Since(idleSince) > c.cfg.RequestTimeout {
			return out, opErr(op, fmt.Errorf("%w: no record arrived for %s (stopped at offset %d of %d)", ErrUnavailable, c.cfg.RequestTimeout, next, to))
		}
	}
	return out, nil
}

// AppendAsync produces one record and returns a channel that receives the
// broker's definitive answer exactly once. Unlike Append it never gives up
// on a record the broker may already have: the producer is idempotent and
// keeps such a record until the broker answers, so the answer says for sure
// whether the record is stored. ctx cancels only a record not yet sent. A
// writer that must know what is on the log (the audit hash chain) waits for
// this answer even after its caller left.
// AbandonAppends is the way out when no answer comes: brokers that
// restarted without their data never answer a request sent before, and the
// idempotent producer would keep such a record forever. It fails every
// buffered record (the producer bumps its epoch, so no sequence number is
// reused) and drops the producer's state of topic, whose partitions may now
// be new ones. The caller must read the log to learn what was stored.
func (c *Client) AbandonAppends(topic string) {
	c.cl.UnsafeAbortBufferedRecords()
	c.cl.PurgeTopicsFromProducing(topic)
}

func (c *Client) AppendAsync(ctx context.Context, topic string, key, value []byte) <-chan AppendResult {
	done := make(chan AppendResult, 1) // the promise must never block kgo
	c.cl.Produce(ctx, &kgo.Record{Topic: topic, Key: key, Value: value}, func(r *kgo.Record, err error) {
		res := AppendResult{Partition: r.Partition, Offset: r.Offset}
		if err != nil {
			res.Err = opErr("appending to topic "+topic, classify(err, ""))
		}
		done <- res
	})
	return done
}
