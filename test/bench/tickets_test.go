package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
)

// BenchmarkTicketCost isolates what a ChangeTicket's size costs the API
// server, with no operator running (so no status write races the
// reviewer's): 100 tickets of 1 cover, then 100 of 100 covers, each filed
// and approved (pinning 100 existing Topics) one at a time, with the
// latency of each step and a CPU profile of kube-apiserver taken during
// each series, so the difference can be read off the two profiles.
//
//	go test -run '^$' -bench TicketCost -benchtime 1x ./test/bench/
func BenchmarkTicketCost(b *testing.B) {
	root, err := repoRoot()
	must(b, err)
	dir := filepath.Join(root, "bin", "bench", "ticket-cost")
	_ = os.RemoveAll(dir)
	s, err := startScaleStack(dir)
	must(b, err)
	defer s.stop()
	ctx := benchCtx(b, 30*time.Minute)
	const tickets, objects = 100, 100
	for b.Loop() {
		for _, covers := range []int{1, 100} {
			ns := s.newNamespace(b, ctx, fmt.Sprintf("cost-%d", covers))
			names := make([]string, objects)
			for i := range names {
				names[i] = fmt.Sprintf("t-%03d", i)
			}
			must(b, parallel(objects, func(i int) error { return s.requester.Create(ctx, newTopic(ns, names[i], "chg-none")) }))
			var prof sync.WaitGroup
			var top string
			prof.Go(func() { top = s.apiServerProfile(b, ctx, fmt.Sprintf("apiserver-%dcovers.pprof", covers), 8) })
			var file, approve []time.Duration
			for t := range tickets {
				covered := []string{names[t%objects]}
				if covers == 100 {
					covered = names
				}
				ticket := fmt.Sprintf("chg-%03d", t)
				at := time.Now()
				must(b, s.fileTicketAs(ctx, ns, ticket, busv1.KindTopic, covered))
				file = append(file, time.Since(at))
				at = time.Now()
				must(b, s.approve(ctx, ns, ticket))
				approve = append(approve, time.Since(at))
			}
			prof.Wait()
			report(dir, "%d tickets of %d cover(s): file p50 %.1f ms (max %.1f), approve p50 %.1f ms (max %.1f); kube-apiserver CPU during the first 8 s:\n%s",
				tickets, covers, ms(percentile(file, 50)), ms(percentile(file, 100)), ms(percentile(approve, 50)), ms(percentile(approve, 100)), top)
		}
	}
}

// apiServerProfile takes a CPU profile of kube-apiserver (its
// /debug/pprof, as the admin) and returns `go tool pprof -top` of it.
func (s *scaleStack) apiServerProfile(b *testing.B, ctx context.Context, file string, seconds int) string {
	cs, err := kubernetes.NewForConfig(unlimited(s.env.Config))
	must(b, err)
	data, err := cs.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", fmt.Sprint(seconds)).Timeout(time.Duration(seconds+30) * time.Second).DoRaw(ctx)
	if err != nil {
		return fmt.Sprintf("(no profile: %v)", err)
	}
	path := filepath.Join(s.dir, file)
	must(b, os.WriteFile(path, data, 0o644))
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-cum", "-nodecount=45", path).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("(pprof: %v)", err)
	}
	return path + "\n" + string(out)
}
