package audit

import (
	"context"
	"errors"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log"
)

// Defaults of the Keeper.
const (
	// DefaultAdoptWindow is how long intents left open by a stopped
	// process wait for a retried write to adopt them before they are
	// closed as interrupted: long enough for the first reconcile of every
	// object after a restart, short enough that the trail is settled soon.
	DefaultAdoptWindow = 30 * time.Second
	// DefaultPublishInterval and DefaultPublishEvery: the head is
	// published when it moved and this long has passed since the last
	// publication, or at once when this many records were written since.
	// The time bound caps the unanchored tail (records a forger could
	// rewrite undetected) at a few seconds while the operator is busy; the
	// count bound caps it during bursts. Publishing once per record would
	// cost one API write per broker change (10,000 for a large rollout).
	DefaultPublishInterval = 5 * time.Second
	DefaultPublishEvery    = 500
	// minPublishGap keeps bursts from turning into an API write per group.
	minPublishGap = time.Second
)

// Keeper looks after the audit trail while this process leads: at start
// it loads the chain (creating the audit topic if missing, and retrying
// with back-off while the broker is not reachable), then closes intents left open by a stopped
// process once no retried write adopted them within AdoptWindow; after that
// it publishes the chain head (see DefaultPublishInterval), retries outcomes
// Done could not store in time, and on stop publishes the head one last
// time. Add it to the manager; it runs only on the leader.
type Keeper struct {
	Recorder *Recorder
	// AdoptWindow, PublishInterval, PublishEvery: zero takes the defaults.
	AdoptWindow     time.Duration
	PublishInterval time.Duration
	PublishEvery    int
}

// NeedLeaderElection: the chain has one writer, the leader.
func (k *Keeper) NeedLeaderElection() bool { return true }

// Start runs until ctx ends; it never fails the manager: an unreachable
// broker is retried and logged.
func (k *Keeper) Start(ctx context.Context) error {
	lg := log.FromContext(ctx).WithName("audit")
	c := k.Recorder.chain()
	adopt := orDefault(k.AdoptWindow, DefaultAdoptWindow)
	interval := orDefault(k.PublishInterval, DefaultPublishInterval)
	every := k.PublishEvery
	if every <= 0 {
		every = DefaultPublishEvery
	}

	delay := time.Second
	for {
		err := c.ensureLoaded(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		lg.Error(err, "audit trail not readable yet; retrying", "topic", c.topic, "retryIn", delay.String())
		if !sleep(ctx, delay) {
			return nil
		}
		delay = min(delay*2, time.Minute)
	}

	tick := time.NewTicker(max(10*time.Millisecond, min(interval, adopt, time.Second)))
	defer tick.Stop()
	var lastPublish time.Time
	var lastSeq, lastCheckpoint int64 = -1, -1
	publish := func(ctx context.Context, force bool) {
		if c.heads == nil {
			return
		}
		h, checkpoint, pending := c.snapshot()
		if h.Seq == 0 || h.Offset < 0 || (h.Seq == lastSeq && checkpoint == lastCheckpoint) {
			return
		}
		due := time.Since(lastPublish) >= interval || (pending >= every && time.Since(lastPublish) >= minPublishGap)
		if !force && !due {
			return
		}
		head := Head{Topic: c.topic, Seq: h.Seq, Offset: h.Offset, Hash: h.Hash, Time: h.Time, Checkpoint: checkpoint, PublishedAt: time.Now().UTC()}
		if err := c.heads.PublishHead(ctx, head); err != nil {
			lg.Error(err, "publishing the audit chain head failed; will retry", "seq", h.Seq)
			return
		}
		lastPublish, lastSeq, lastCheckpoint = time.Now(), h.Seq, checkpoint
		c.published(h.Seq)
		headSeq.Set(float64(h.Seq))
	}

	for {
		select {
		case <-ctx.Done():
			// A last publication, so a clean hand-over leaves no
			// unanchored tail.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			publish(fctx, true)
			cancel()
			return nil
		case <-tick.C:
		case <-c.kick:
		}
		n, err := c.closeOrphans(ctx, adopt)
		if n > 0 {
			lg.Info("closed audit intents left open by a stopped operator", "count", n)
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			lg.Error(err, "closing open audit intents failed; will retry")
		}
		if err := c.flushRetries(ctx); err != nil && !errors.Is(err, context.Canceled) {
			lg.Error(err, "storing delayed audit outcomes failed; will retry")
		}
		publish(ctx, false)
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
