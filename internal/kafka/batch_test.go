package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// recorder is a batch runner that remembers every batch it was given and
// answers each input n with n*10, or an error for negative n.
type recorder struct {
	mu      sync.Mutex
	batches [][]int
}

func (r *recorder) run(_ context.Context, ins []int) []outcome[int] {
	r.mu.Lock()
	r.batches = append(r.batches, slices.Clone(ins))
	r.mu.Unlock()
	outs := make([]outcome[int], len(ins))
	for i, n := range ins {
		if n < 0 {
			outs[i].err = fmt.Errorf("bad input %d", n)
			continue
		}
		outs[i].val = n * 10
	}
	return outs
}

func (r *recorder) snapshot() [][]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.batches)
}

func pendingLen[In, Out any](b *batcher[In, Out]) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending)
}

// waitFor polls cond until it holds or 20s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// callAll runs do for every input concurrently and returns the outcomes in
// input order.
func callAll(b *batcher[int, int], ins []int) []outcome[int] {
	outs := make([]outcome[int], len(ins))
	var wg sync.WaitGroup
	for i, n := range ins {
		wg.Go(func() {
			v, err := b.do(context.Background(), n)
			outs[i] = outcome[int]{v, err}
		})
	}
	wg.Wait()
	return outs
}

func TestBatcherFullBatchIsOneRun(t *testing.T) {
	var r recorder
	const n = 32
	b := newBatcher(time.Hour, n, r.run) // only reaching max can send it
	ins := make([]int, n)
	for i := range ins {
		ins[i] = i
	}
	outs := callAll(b, ins)

	batches := r.snapshot()
	if len(batches) != 1 || len(batches[0]) != n {
		t.Fatalf("want one batch of %d, got %v", n, batches)
	}
	for i, o := range outs {
		if o.err != nil || o.val != i*10 {
			t.Errorf("caller %d got (%d, %v), want (%d, nil)", i, o.val, o.err, i*10)
		}
	}
}

func TestBatcherWindowSendsPartialBatch(t *testing.T) {
	var r recorder
	b := newBatcher(5*time.Millisecond, 100, r.run)
	v, err := b.do(context.Background(), 7)
	if err != nil || v != 70 {
		t.Fatalf("got (%d, %v), want (70, nil)", v, err)
	}
	if got := r.snapshot(); len(got) != 1 || !slices.Equal(got[0], []int{7}) {
		t.Fatalf("batches = %v, want [[7]]", got)
	}
}

func TestBatcherConcurrentCallsCoalesce(t *testing.T) {
	var r recorder
	b := newBatcher(100*time.Millisecond, 1000, r.run)
	ins := make([]int, 16)
	for i := range ins {
		ins[i] = i + 1
	}
	outs := callAll(b, ins)
	for i, o := range outs {
		if o.err != nil || o.val != ins[i]*10 {
			t.Errorf("caller %d got (%d, %v)", i, o.val, o.err)
		}
	}
	batches := r.snapshot()
	total := 0
	for _, bt := range batches {
		total += len(bt)
	}
	if total != len(ins) || len(batches) > 2 {
		t.Fatalf("16 concurrent calls ran as %d batches (%v), want 1 (at most 2)", len(batches), batches)
	}
}

func TestBatcherPerItemErrors(t *testing.T) {
	var r recorder
	b := newBatcher(time.Hour, 3, r.run)
	outs := callAll(b, []int{1, -2, 3})
	if outs[0].err != nil || outs[0].val != 10 || outs[2].err != nil || outs[2].val != 30 {
		t.Fatalf("good items failed: %+v", outs)
	}
	if outs[1].err == nil {
		t.Fatalf("bad item got no error: %+v", outs[1])
	}
}

func TestBatcherCancelledCallLeavesBatch(t *testing.T) {
	var r recorder
	b := newBatcher(time.Hour, 2, r.run)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := b.do(ctx, 99)
		errc <- err
	}()
	waitFor(t, "the call to be pending", func() bool { return pendingLen(b) == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call returned %v, want context.Canceled", err)
	}
	if n := pendingLen(b); n != 0 {
		t.Fatalf("cancelled call still pending (%d)", n)
	}
	callAll(b, []int{1, 2})
	got := r.snapshot()
	if len(got) == 1 {
		slices.Sort(got[0]) // the two callers enqueue in either order
	}
	if len(got) != 1 || !slices.Equal(got[0], []int{1, 2}) {
		t.Fatalf("batches = %v, want [[1 2]] without the cancelled 99", got)
	}
}

func TestBatcherDoneContextNeverJoins(t *testing.T) {
	var r recorder
	b := newBatcher(time.Millisecond, 10, r.run)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.do(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if n := pendingLen(b); n != 0 || len(r.snapshot()) != 0 {
		t.Fatalf("a call with a done context was queued or run")
	}
}

func TestBatcherStaleTimerDoesNotCutNextWindow(t *testing.T) {
	var r recorder
	b := newBatcher(time.Hour, 2, r.run)
	callAll(b, []int{1, 2}) // a full batch: generation 0 went, its timer is stale
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = b.do(context.Background(), 3)
	}()
	waitFor(t, "the call to be pending", func() bool { return pendingLen(b) == 1 })
	b.flush(0)
	if n := pendingLen(b); n != 1 {
		t.Fatalf("the stale timer sent the next batch early")
	}
	b.flush(1)
	<-done
	if got := r.snapshot(); len(got) != 2 || !slices.Equal(got[1], []int{3}) {
		t.Fatalf("batches = %v, want [[1 2] [3]]", got)
	}
}

func TestBatcherRunOutlivesOneCaller(t *testing.T) {
	release := make(chan struct{})
	started := make(chan context.Context, 1)
	run := func(ctx context.Context, ins []int) []outcome[int] {
		started <- ctx
		<-release
		return make([]outcome[int], len(ins))
	}
	b := newBatcher(time.Hour, 2, run)
	ctxA, cancelA := context.WithCancel(context.Background())
	errA := make(chan error, 1)
	errB := make(chan error, 1)
	go func() { _, err := b.do(ctxA, 1); errA <- err }()
	go func() { _, err := b.do(context.Background(), 2); errB <- err }()
	runCtx := <-started
	cancelA()
	if err := <-errA; !errors.Is(err, context.Canceled) {
		t.Fatalf("caller A got %v, want context.Canceled", err)
	}
	if runCtx.Err() != nil {
		t.Fatalf("one caller leaving cancelled the whole batch")
	}
	close(release)
	if err := <-errB; err != nil {
		t.Fatalf("caller B got %v", err)
	}
}

func TestMergedContextEndsWithLastCaller(t *testing.T) {
	a, cancelA := context.WithCancel(context.Background())
	b, cancelB := context.WithCancel(context.Background())
	merged, stop := mergedContext([]context.Context{a, b})
	defer stop()
	cancelA()
	if merged.Err() != nil {
		t.Fatal("merged context ended with callers left")
	}
	cancelB()
	select {
	case <-merged.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("merged context did not end after every caller left")
	}
}

func TestRounds(t *testing.T) {
	tests := []struct {
		keys []string
		want [][]int
	}{
		{nil, nil},
		{[]string{"a", "b", "c"}, [][]int{{0, 1, 2}}},
		{[]string{"a", "b", "a", "c", "a", "b"}, [][]int{{0, 1, 3}, {2, 5}, {4}}},
	}
	for _, tt := range tests {
		got := rounds(len(tt.keys), func(i int) string { return tt.keys[i] })
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("rounds(%v) = %v, want %v", tt.keys, got, tt.want)
		}
	}
}
