package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// StreamOptions configures a Streamer. The zero value is usable.
type StreamOptions struct {
	// ClientID is the Kafka client.id (default DefaultClientID).
	ClientID string
	// OnStart, if set, is called once the start offset of every partition
	// is fixed, before the first event is handled. From then on a Latest
	// stream sees every event published.
	OnStart func(topic string, start map[int32]int64)
}

// Streamer reads topics from a chosen offset without a consumer group: it
// commits nothing and any number of them can read the same topic.
type Streamer struct {
	creds Credentials
	opts  StreamOptions
}

// NewStreamer checks the credentials; Stream connects.
func NewStreamer(c Credentials, o StreamOptions) (*Streamer, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("creating stream: %w", err)
	}
	return &Streamer{creds: c, opts: o}, nil
}

// Stream reads topic from offset `from` on every partition (At(n) is clamped
// to what each partition holds) and hands each event to handle, in order
// within a partition, until ctx is done (it returns nil), the broker refuses
// access, or handle fails (its error is returned: without a group nothing
// would remember the event). Partitions added while streaming are not read.
func (s *Streamer) Stream(ctx context.Context, topic string, from Offset, handle Handler) error {
	if err := from.valid(); err != nil {
		return fmt.Errorf("streaming %s: %w", topic, err)
	}
	start, err := s.resolveStart(ctx, topic, from)
	if err != nil {
		return stopped(ctx, fmt.Errorf("streaming %s from %s: %w", topic, from, err))
	}
	if s.opts.OnStart != nil {
		s.opts.OnStart(topic, start)
	}
	offsets := make(map[int32]kgo.Offset, len(start))
	for p, o := range start {
		offsets[p] = kgo.NewOffset().At(o)
	}
	cl, err := newClient(s.creds, s.opts.ClientID, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))
	if err != nil {
		return fmt.Errorf("streaming %s: %w", topic, err)
	}
	defer cl.Close()
	pollCtx, cancel := cl.auth.bind(ctx)
	defer cancel()
	for {
		fetches := cl.PollFetches(pollCtx)
		if err := cl.auth.err(); err != nil {
			return fmt.Errorf("streaming %s: %w", topic, err)
		}
		if ctx.Err() != nil {
			return nil
		}
		if err := fatalFetchError(fetches); err != nil {
			return fmt.Errorf("streaming %s: %w", topic, err)
		}
		for it := fetches.RecordIter(); !it.Done(); {
			rec := it.Next()
			if ctx.Err() != nil {
				return nil
			}
			if err := handle(ctx, eventFromRecord(rec)); err != nil {
				return fmt.Errorf("streaming %s: handling %s/%d@%d: %w", topic, rec.Topic, rec.Partition, rec.Offset, err)
			}
		}
	}
}

// resolveStart fixes the first offset to read on each partition, asking the
// broker for the log bounds, so "latest" means the end as of this call
// rather than whenever the consumer first fetches.
func (s *Streamer) resolveStart(ctx context.Context, topic string, from Offset) (map[int32]int64, error) {
	cl, err := newClient(s.creds, s.opts.ClientID)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	partitions, err := describeTopic(ctx, cl, topic, kmsg.ACLOperationRead)
	if err != nil {
		return nil, err
	}
	earliest, err := listOffsets(ctx, cl, topic, partitions, int64(Earliest))
	if err != nil || from == Earliest {
		return earliest, err
	}
	latest, err := listOffsets(ctx, cl, topic, partitions, int64(Latest))
	if err != nil || from == Latest {
		return latest, err
	}
	start := make(map[int32]int64, len(partitions))
	for _, p := range partitions {
		start[p] = min(max(int64(from), earliest[p]), latest[p])
	}
	return start, nil
}

// listOffsets asks for the offset at timestamp ts (-2 earliest, -1 latest)
// on each partition; kgo sends each partition to its leader.
func listOffsets(ctx context.Context, cl *client, topic string, partitions []int32, ts int64) (map[int32]int64, error) {
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for _, p := range partitions {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition = p
		rp.Timestamp = ts
		rp.CurrentLeaderEpoch = -1
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	ctx, cancel := cl.auth.bind(ctx)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("listing offsets of %s: %w", topic, classify(cl.auth.explain(err)))
	}
	out := make(map[int32]int64, len(partitions))
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return nil, fmt.Errorf("listing offsets of %s/%d: %w", topic, p.Partition, classify(err))
			}
			out[p.Partition] = p.Offset
		}
	}
	for _, p := range partitions {
		if _, ok := out[p]; !ok {
			return nil, fmt.Errorf("listing offsets of %s/%d: partition missing from the broker's answer", topic, p)
		}
	}
	return out, nil
}

// fatalFetchError returns the first error of a poll that retrying cannot
// fix; kgo retries everything else itself.
func fatalFetchError(fetches kgo.Fetches) error {
	var fatal error
	fetches.EachError(func(topic string, partition int32, err error) {
		err = classify(err)
		if fatal == nil && (isFatal(err) || errors.Is(err, kgo.ErrClientClosed)) {
			fatal = fmt.Errorf("reading %s/%d: %w", topic, partition, err)
		}
	})
	return fatal
}

// stopped turns an error caused by ctx ending into a clean stop.
func stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}
