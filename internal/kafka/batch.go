package kafka

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// outcome is the result of one call in a batch.
type outcome[Out any] struct {
	val Out
	err error
}

// batcher coalesces concurrent calls into one run over all of them, so many
// reconcilers asking at once cost one admin request rather than one each.
// The first call of a batch waits at most window for others to join; a
// batch that reaches max calls goes at once. run gets the inputs of the
// calls still waiting and returns one outcome per input, in order.
//
// Batches run concurrently with each other: a slow request does not hold
// up the next window.
type batcher[In, Out any] struct {
	window time.Duration
	max    int
	run    func(ctx context.Context, ins []In) []outcome[Out]

	mu      sync.Mutex
	pending []*call[In, Out]
	// gen counts flushes, so a window timer that fires after its batch
	// already went (full) does not cut the next batch's window short.
	gen uint64
}

type call[In, Out any] struct {
	ctx  context.Context
	in   In
	done chan outcome[Out] // buffered: the batch never blocks on a caller who left
}

func newBatcher[In, Out any](window time.Duration, max int, run func(context.Context, []In) []outcome[Out]) *batcher[In, Out] {
	if max < 1 {
		max = 1
	}
	return &batcher[In, Out]{window: window, max: max, run: run}
}

// do adds in to the next batch and waits for its outcome. If ctx ends
// first, do returns ctx's error, and in is left out of the batch unless the
// batch already went.
func (b *batcher[In, Out]) do(ctx context.Context, in In) (Out, error) {
	if err := ctx.Err(); err != nil {
		var zero Out
		return zero, err
	}
	c := &call[In, Out]{ctx: ctx, in: in, done: make(chan outcome[Out], 1)}
	b.enqueue(c)
	select {
	case o := <-c.done:
		return o.val, o.err
	case <-ctx.Done():
		b.withdraw(c)
		var zero Out
		return zero, ctx.Err()
	}
}

func (b *batcher[In, Out]) enqueue(c *call[In, Out]) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending = append(b.pending, c)
	if len(b.pending) >= b.max {
		b.flushLocked()
		return
	}
	if len(b.pending) == 1 {
		gen := b.gen
		time.AfterFunc(b.window, func() { b.flush(gen) })
	}
}

// flush sends the batch that generation gen's timer was started for.
func (b *batcher[In, Out]) flush(gen uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gen == gen {
		b.flushLocked()
	}
}

func (b *batcher[In, Out]) flushLocked() {
	calls := b.pending
	b.pending = nil
	b.gen++
	if len(calls) > 0 {
		go b.execute(calls)
	}
}

func (b *batcher[In, Out]) withdraw(c *call[In, Out]) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, p := range b.pending {
		if p == c {
			b.pending = append(b.pending[:i], b.pending[i+1:]...)
			return
		}
	}
}

func (b *batcher[In, Out]) execute(calls []*call[In, Out]) {
	ctxs := make([]context.Context, len(calls))
	ins := make([]In, len(calls))
	for i, c := range calls {
		ctxs[i], ins[i] = c.ctx, c.in
	}
	ctx, cancel := mergedContext(ctxs)
	defer cancel()
	outs := b.run(ctx, ins)
	for i, c := range calls {
		c.done <- outs[i]
	}
}

// mergedContext is done once every one of ctxs is done: a batch carries on
// for as long as anyone still waits for it, and one caller giving up does
// not fail the others. Values of ctxs are not carried over.
func mergedContext(ctxs []context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	var live atomic.Int64
	live.Store(int64(len(ctxs)))
	stops := make([]func() bool, len(ctxs))
	for i, c := range ctxs {
		stops[i] = context.AfterFunc(c, func() {
			if live.Add(-1) == 0 {
				cancel()
			}
		})
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}

// rounds splits n items into groups where no key repeats, keeping order:
// Kafka rejects a whole request that names one topic twice, so a second
// call for the same topic goes in a later request of the same batch.
func rounds(n int, key func(i int) string) [][]int {
	var out [][]int
	seen := make(map[string]int)
	for i := range n {
		k := key(i)
		r := seen[k]
		seen[k] = r + 1
		if r == len(out) {
			out = append(out, nil)
		}
		out[r] = append(out[r], i)
	}
	return out
}
