package bench

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/hms-platform/bus-operator/internal/embedded"
)

// requestCounter counts every request the kfake cluster receives, by API
// key. It observes the request stream and never intercepts it (the control
// function returns handled=false, so the broker answers normally).
type requestCounter struct {
	mu     sync.Mutex
	counts map[int16]int
}

func (c *requestCounter) install(b *embedded.Broker) {
	c.counts = map[int16]int{}
	// Key -1 runs the control function on every request. It is kept
	// because it never handles a request.
	b.Cluster().ControlKey(-1, func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.mu.Lock()
		c.counts[req.Key()]++
		c.mu.Unlock()
		return nil, nil, false
	})
}

// snapshot returns the counts so far; subtract two snapshots for a window.
func (c *requestCounter) snapshot() counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(counts, len(c.counts))
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}

// counts are requests per API key.
type counts map[int16]int

func (c counts) minus(before counts) counts {
	out := counts{}
	for k, v := range c {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

func (c counts) of(keys ...kmsg.Key) int {
	n := 0
	for _, k := range keys {
		n += c[int16(k)]
	}
	return n
}

// writeKeys are the requests that change broker state. Produce is one:
// the operator appends an audit record for every broker change.
var writeKeys = []kmsg.Key{
	kmsg.Produce, kmsg.CreateTopics, kmsg.DeleteTopics, kmsg.CreatePartitions,
	kmsg.IncrementalAlterConfigs, kmsg.AlterConfigs, kmsg.CreateACLs, kmsg.DeleteACLs,
	kmsg.AlterUserSCRAMCredentials, kmsg.AlterClientQuotas,
}

// readKeys are the admin reads a reconcile makes.
var readKeys = []kmsg.Key{
	kmsg.Metadata, kmsg.DescribeConfigs, kmsg.DescribeACLs,
	kmsg.DescribeUserSCRAMCredentials, kmsg.DescribeClientQuotas,
}

func (c counts) writes() int { return c.of(writeKeys...) }
func (c counts) reads() int  { return c.of(readKeys...) }

// String lists the counts by key name, for the human summary.
func (c counts) String() string {
	parts := make([]string, 0, len(c))
	for k, v := range c {
		parts = append(parts, fmt.Sprintf("%s=%d", kmsg.NameForKey(k), v))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
