package bench

import (
	"fmt"
	"sort"
	"strings"
)

// printScale prints BenchmarkScale's figures as tables: the side-by-side
// comparison first, then where the requests went.
func printScale(dir string, r *scaleResults) {
	var sb strings.Builder
	fmt.Fprintf(&sb, "\nBenchmarkScale %s (operator %s %s), %.0f s in all; load average %s\n\n", orLabel(r.Label), r.Manager, r.ManagerArgs, r.TotalSeconds, strings.Join(r.LoadAverage, " -> "))
	fmt.Fprintf(&sb, "| What | N | floor | operator: first ticket filed to all Ready | ratio |\n|---|---|---|---|---|\n")
	for _, f := range []struct {
		name string
		fig  *fleetFig
	}{{"Topics (100 per ticket)", r.Topics}, {"Subscriptions (SCRAM user, Secret, ACLs)", r.Subscriptions}} {
		if f.fig == nil || f.fig.OperatorSeconds == 0 {
			continue
		}
		fmt.Fprintf(&sb, "| %s | %d | %.1f s (%.0f/s) | %.1f s (%.0f/s) | %.2fx |\n", f.name, f.fig.N,
			f.fig.FloorSeconds, f.fig.FloorPerSecond, f.fig.OperatorSeconds, f.fig.OperatorPerSecond, f.fig.Ratio)
	}
	for _, f := range []struct {
		name string
		fig  *fleetFig
	}{{"Topics", r.Topics}, {"Subscriptions", r.Subscriptions}} {
		if f.fig == nil || f.fig.OperatorSeconds == 0 {
			continue
		}
		fig := f.fig
		fmt.Fprintf(&sb, "\n%s: creates (with tickets filed and approved in step) %.1f s; last approval to last Ready %.1f s; ticket filing p50 %.0f ms, approval p50 %.0f ms (max %.0f ms)\n",
			f.name, fig.CreatesSeconds, fig.LastApprovalToReadySec, fig.TicketFileMsP50, fig.TicketApproveMsP50, fig.TicketApproveMsMax)
		fmt.Fprintf(&sb, "  API requests per object (all clients) [mean latency]: %s\n", withLatency(fig.APIPerObject, fig.APIMeanMs))
		fmt.Fprintf(&sb, "  operator's own API requests per object: %s\n", list(fig.OperatorPerObject))
		if len(fig.APIConflicts) > 0 {
			fmt.Fprintf(&sb, "  conflicts (409): %s\n", list(fig.APIConflicts))
		}
		fmt.Fprintf(&sb, "  broker requests per object: %s\n", list(fig.BrokerPerObject))
		fmt.Fprintf(&sb, "  reconciles per object: %s\n", list(fig.ReconcilesPerObj))
		fmt.Fprintf(&sb, "  work queue: max depth %s; mean wait %s ms; mean work %s ms\n", list(fig.QueueMaxDepth), list(fig.QueueWaitMsMean), list(fig.WorkMsMean))
	}
	if w := r.WaitingTicket; w != nil {
		fmt.Fprintf(&sb, "\n%d Topics waiting for one ticket: approval write %.0f ms; approval to first Ready %.0f ms, to all Ready %.0f ms (target 1000 ms)\n",
			w.Topics, w.ApprovalWriteMs, w.ApprovalToFirstReadyMs, w.ApprovalToAllReadyMs)
	}
	if t := r.Tickets; t != nil {
		fmt.Fprintf(&sb, "\n| Ticket (100 of each, one at a time) | file p50 | approve p50 |\n|---|---|---|\n")
		for _, k := range sortedByName(t.FileMsP50) {
			fmt.Fprintf(&sb, "| %s | %.0f ms | %.0f ms |\n", k, t.FileMsP50[k], t.ApproveMsP50[k])
		}
		fmt.Fprintf(&sb, "ChangeTicket requests and conflicts meanwhile: %s\n", list(t.Conflicts))
		fmt.Fprintf(&sb, "ChangeTicket mean API latency (ms): %s\n", list(t.APIMeanMs))
	}
	if len(r.KubectlMs) > 0 {
		fmt.Fprintf(&sb, "\n| kubectl create (median of 10) | ms |\n|---|---|\n")
		for _, k := range sortedByName(r.KubectlMs) {
			fmt.Fprintf(&sb, "| %s | %.0f |\n", k, r.KubectlMs[k])
		}
	}
	if i := r.Idle; i != nil {
		fmt.Fprintf(&sb, "\nIdle %.0f s: API writes %s; broker writes %d, reads %d; reconciles %s\n",
			i.Seconds, list(i.APIWrites), i.BrokerWrites, i.BrokerReads, list(i.Reconciles))
	}
	if len(r.Memory) > 0 {
		fmt.Fprintf(&sb, "\n| Operator memory at | objects | peak RSS (VmHWM) | RSS |\n|---|---|---|---|\n")
		for _, k := range []string{"topics", "topics+subscriptions", "end"} {
			if m, ok := r.Memory[k]; ok {
				fmt.Fprintf(&sb, "| %s | %d | %.0f MB | %.0f MB |\n", k, m.Objects, m.PeakMB, m.RSSMB)
			}
		}
	}
	report(dir, "%s", sb.String())
}

// list renders a map as "key=value" pairs, largest first.
func list(m map[string]float64) string {
	if len(m) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s=%s", strings.TrimSpace(k), num(m[k])))
	}
	return strings.Join(parts, ", ")
}

func withLatency(counts, latency map[string]float64) string {
	parts := make([]string, 0, len(counts))
	for _, k := range sortedKeys(counts) {
		p := fmt.Sprintf("%s=%s", strings.TrimSpace(k), num(counts[k]))
		if l, ok := latency[k]; ok {
			p += fmt.Sprintf(" [%.1f ms]", l)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

func num(f float64) string {
	if f == float64(int64(f)) {
		return fmt.Sprintf("%d", int64(f))
	}
	return fmt.Sprintf("%.3g", f)
}

func sortedByName(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
