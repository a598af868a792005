package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
)

// sample is one Prometheus series: its labels and value.
type sample struct {
	labels map[string]string
	value  float64
}

// scrape is a parsed Prometheus text exposition: series by metric name.
type scrape map[string][]sample

// parseScrape reads the text format. It keeps what the figures need (names,
// labels, values) and skips comments; it needs no client library.
func parseScrape(data []byte) scrape {
	out := scrape{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest := line, ""
		labels := map[string]string{}
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			if j < i {
				continue
			}
			name, rest = line[:i], strings.TrimSpace(line[j+1:])
			parseLabels(line[i+1:j], labels)
		} else if i := strings.IndexByte(line, ' '); i >= 0 {
			name, rest = line[:i], strings.TrimSpace(line[i+1:])
		}
		if f := strings.Fields(rest); len(f) > 0 {
			if v, err := strconv.ParseFloat(f[0], 64); err == nil {
				out[name] = append(out[name], sample{labels, v})
			}
		}
	}
	return out
}

func parseLabels(s string, into map[string]string) {
	for len(s) > 0 {
		eq := strings.IndexByte(s, '=')
		if eq < 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			return
		}
		key := strings.TrimSpace(strings.TrimLeft(s[:eq], ","))
		var val strings.Builder
		i := eq + 2
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
			}
			val.WriteByte(s[i])
		}
		into[key] = val.String()
		s = s[min(i+1, len(s)):]
	}
}

func matches(labels, match map[string]string) bool {
	for k, v := range match {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// by sums name's series grouped by the values of keys, for those matching
// match.
func (s scrape) by(name string, match map[string]string, keys ...string) map[string]float64 {
	out := map[string]float64{}
	for _, smp := range s[name] {
		if !matches(smp.labels, match) {
			continue
		}
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = smp.labels[k]
		}
		out[strings.Join(parts, " ")] += smp.value
	}
	return out
}

// minus returns the per-key growth from before to after.
func minus(after, before map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// scrapeAPIServer reads the kube-apiserver's /metrics as the admin.
func (s *scaleStack) scrapeAPIServer(ctx context.Context) (scrape, error) {
	cs, err := kubernetes.NewForConfig(unlimited(s.env.Config))
	if err != nil {
		return nil, fmt.Errorf("creating clientset: %w", err)
	}
	data, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the API server's /metrics: %w", err)
	}
	return parseScrape(data), nil
}

// scrapeManager reads the operator's controller-runtime metrics endpoint.
func (s *scaleStack) scrapeManager(ctx context.Context) (scrape, error) {
	data, err := httpGet(ctx, s.mgr.metricsURL)
	if err != nil {
		return nil, err
	}
	return parseScrape(data), nil
}

func httpGet(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s %w", url, resp.Status, err)
	}
	return data, nil
}

// procStatus reads VmHWM (peak RSS) and VmRSS of a process, in MiB.
func procStatus(pid int) (hwm, rss float64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("reading process status: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmHWM:":
			hwm = kb / 1024
		case "VmRSS:":
			rss = kb / 1024
		}
	}
	return hwm, rss, nil
}

// profile saves a pprof profile of the operator (kind "profile?seconds=N"
// for CPU, "heap" for the heap) and returns its path and the top entries
// as `go tool pprof -top` prints them ("" if the binary serves no pprof).
func (s *scaleStack) profile(ctx context.Context, kind, file string, top ...string) (string, string, error) {
	if s.mgr.pprofURL == "" {
		return "", "", nil
	}
	data, err := httpGet(ctx, s.mgr.pprofURL+"/"+kind)
	if err != nil {
		return "", "", err
	}
	path := filepath.Join(s.dir, file)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return "", "", fmt.Errorf("saving profile: %w", err)
	}
	args := append([]string{"tool", "pprof", "-top", "-nodecount=25"}, top...)
	out, err := exec.CommandContext(ctx, "go", append(args, path)...).CombinedOutput()
	if err != nil {
		return path, "", fmt.Errorf("go tool pprof: %w: %s", err, out)
	}
	return path, string(out), nil
}

// queueSampler polls the operator's work queue depth while a phase runs
// and keeps the largest depth seen per controller.
type queueSampler struct {
	mu     sync.Mutex
	max    map[string]float64
	cancel context.CancelFunc
	done   chan struct{}
}

func (s *scaleStack) sampleQueues(ctx context.Context) *queueSampler {
	ctx, cancel := context.WithCancel(ctx)
	q := &queueSampler{max: map[string]float64{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(q.done)
		for {
			if m, err := s.scrapeManager(ctx); err == nil {
				q.mu.Lock()
				for name, v := range m.by("workqueue_depth", nil, "name") {
					q.max[name] = max(q.max[name], v)
				}
				q.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}()
	return q
}

func (q *queueSampler) stop() map[string]float64 {
	q.cancel()
	<-q.done
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.max
}

// sortedKeys returns m's keys by descending value.
func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	return keys
}
