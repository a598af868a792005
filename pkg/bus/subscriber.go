package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// SubscriberOptions configures a Subscriber. The zero value is usable.
type SubscriberOptions struct {
	// ClientID is the Kafka client.id (default DefaultClientID).
	ClientID string
	// StartOffset is where a group with no committed offset starts:
	// Earliest (the default; the zero value means Earliest too) or Latest.
	StartOffset Offset
	// RetryBackoff is the pause before an event whose handler failed is
	// delivered again (default 1s), so a failing handler does not spin.
	RetryBackoff time.Duration
	// CommitTimeout bounds one offset commit (default 10s).
	CommitTimeout time.Duration
	// OnError, if set, is told about errors the subscriber recovers from:
	// handler failures (the event is delivered again), failed commits
	// (the events are delivered again) and transient broker errors.
	OnError func(error)
	// OnAssigned, if set, is called with the partitions this member was
	// given each time the group assigns it some.
	OnAssigned func(topic string, partitions []int32)
}

// Subscriber consumes a topic as a member of the credentials' consumer group,
// at least once: an event is committed (acknowledged) only after its handler
// returned nil, so a crash or a handler error means it is delivered again.
type Subscriber struct {
	creds Credentials
	opts  SubscriberOptions
}

// NewSubscriber checks the credentials; Run connects.
func NewSubscriber(c Credentials, o SubscriberOptions) (*Subscriber, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("creating subscriber: %w", err)
	}
	if c.ConsumerGroup == "" {
		return nil, fmt.Errorf("creating subscriber: %w: missing consumer group", ErrIncompleteCredentials)
	}
	if o.StartOffset != Earliest && o.StartOffset != Latest && o.StartOffset != 0 {
		return nil, fmt.Errorf("creating subscriber: start offset must be earliest or latest, not %s", o.StartOffset)
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = time.Second
	}
	if o.CommitTimeout <= 0 {
		o.CommitTimeout = 10 * time.Second
	}
	return &Subscriber{creds: c, opts: o}, nil
}

// Run consumes topic until ctx is done (then it returns nil) or the broker
// refuses the credentials or a grant (ErrAuthenticationFailed,
// ErrNotAuthorized). Events of one partition reach handle in order; after a
// handler error that partition is read again from the failed event.
// Once the credentials are rotated, the next refused connection ends Run
// with ErrAuthenticationFailed: reload the credentials and run again.
func (s *Subscriber) Run(ctx context.Context, topic string, handle Handler) error {
	cl, err := newClient(s.creds, s.opts.ClientID, s.clientOpts(topic)...)
	if err != nil {
		return fmt.Errorf("subscribing to %s: %w", topic, err)
	}
	defer cl.Close()
	if _, err := describeTopic(ctx, cl, topic, kmsg.ACLOperationRead); err != nil {
		return stopped(ctx, fmt.Errorf("subscribing to %s: %w", topic, err))
	}
	pollCtx, cancel := cl.auth.bind(ctx)
	defer cancel()
	for {
		fetches := cl.PollFetches(pollCtx)
		if err := cl.auth.err(); err != nil {
			cl.AllowRebalance()
			return fmt.Errorf("subscribing to %s: %w", topic, err)
		}
		if ctx.Err() != nil {
			cl.AllowRebalance()
			return nil
		}
		if err := s.fetchError(fetches); err != nil {
			cl.AllowRebalance()
			return fmt.Errorf("subscribing to %s as group %s: %w", topic, s.creds.ConsumerGroup, err)
		}
		acked, retry := s.handleBatch(ctx, fetches, handle)
		// Commit before allowing a rebalance: the partitions are still
		// ours, so the commit cannot race another member's.
		err := s.commit(ctx, cl, acked)
		if len(retry) > 0 {
			cl.SetOffsets(retry)
		}
		cl.AllowRebalance()
		if err != nil {
			return fmt.Errorf("subscribing to %s: %w", topic, err)
		}
		if len(retry) > 0 {
			s.pause(ctx)
		}
	}
}

func (s *Subscriber) clientOpts(topic string) []kgo.Opt {
	reset := kgo.NewOffset().AtStart()
	if s.opts.StartOffset == Latest {
		reset = kgo.NewOffset().AtEnd()
	}
	opts := []kgo.Opt{
		kgo.ConsumerGroup(s.creds.ConsumerGroup),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(reset),
		// Offsets are committed only for events whose handler succeeded.
		kgo.DisableAutoCommit(),
		// Keep partitions from moving between a poll and its commit.
		kgo.BlockRebalanceOnPoll(),
	}
	if s.opts.OnAssigned != nil {
		opts = append(opts, kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
			for t, ps := range assigned {
				s.opts.OnAssigned(t, ps)
			}
		}))
	}
	return opts
}

// handleBatch runs handle over a poll's records. It returns the records
// handled successfully and, per partition that failed, the offset to
// deliver again from; later records of that partition are left for then.
func (s *Subscriber) handleBatch(ctx context.Context, fetches kgo.Fetches, handle Handler) ([]*kgo.Record, map[string]map[int32]kgo.EpochOffset) {
	var acked []*kgo.Record
	retry := map[string]map[int32]kgo.EpochOffset{}
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		for _, rec := range p.Records {
			if ctx.Err() != nil {
				return // unhandled: stays uncommitted for the next member
			}
			if err := handle(ctx, eventFromRecord(rec)); err != nil {
				s.report(fmt.Errorf("handler failed on %s/%d@%d; it will be delivered again: %w", rec.Topic, rec.Partition, rec.Offset, err))
				if retry[rec.Topic] == nil {
					retry[rec.Topic] = map[int32]kgo.EpochOffset{}
				}
				retry[rec.Topic][rec.Partition] = kgo.EpochOffset{Epoch: rec.LeaderEpoch, Offset: rec.Offset}
				return
			}
			acked = append(acked, rec)
		}
	})
	return acked, retry
}

// commit commits the acked records. It outlives ctx: an event whose handler
// succeeded just before cancellation must still be acknowledged.
func (s *Subscriber) commit(ctx context.Context, cl *client, acked []*kgo.Record) error {
	if len(acked) == 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.CommitTimeout)
	defer cancel()
	err := classify(cl.CommitRecords(cctx, acked...))
	switch {
	case err == nil:
		return nil
	case isFatal(err):
		return fmt.Errorf("committing offsets of group %s: %w", s.creds.ConsumerGroup, err)
	}
	s.report(fmt.Errorf("committing offsets of group %s; the events will be delivered again: %w", s.creds.ConsumerGroup, err))
	return nil
}

// fetchError returns the first fatal error of a poll and reports the rest.
func (s *Subscriber) fetchError(fetches kgo.Fetches) error {
	var fatal error
	fetches.EachError(func(topic string, partition int32, err error) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return
		}
		err = classify(err)
		if fatal == nil && (isFatal(err) || errors.Is(err, kgo.ErrClientClosed)) {
			fatal = err
			return
		}
		s.report(fmt.Errorf("consuming %s/%d: %w", topic, partition, err))
	})
	return fatal
}

func (s *Subscriber) pause(ctx context.Context) {
	t := time.NewTimer(s.opts.RetryBackoff)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (s *Subscriber) report(err error) {
	if s.opts.OnError != nil {
		s.opts.OnError(err)
	}
}
