package embedded

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// RequestCounter counts the requests a broker receives, by API key. It
// observes the request stream and never intercepts it (its control function
// reports the request as not handled, so the broker answers normally). Tests
// and benchmarks use it to prove batching and zero-write resyncs.
type RequestCounter struct {
	mu     sync.Mutex
	counts Counts
}

// Attach starts counting the requests b receives. A counter may be attached
// to a restarted broker again; its counts go on adding up.
func (c *RequestCounter) Attach(b *Broker) {
	c.mu.Lock()
	if c.counts == nil {
		c.counts = Counts{}
	}
	c.mu.Unlock()
	// Key -1 runs the function on every request; it stays installed
	// because it never handles one.
	b.Cluster().ControlKey(-1, func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.mu.Lock()
		c.counts[req.Key()]++
		c.mu.Unlock()
		return nil, nil, false
	})
}

// Snapshot returns the counts so far; subtract two snapshots for a window.
func (c *RequestCounter) Snapshot() Counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(Counts, len(c.counts))
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}

// Counts are requests per API key.
type Counts map[int16]int

// Minus returns the requests counted since before.
func (c Counts) Minus(before Counts) Counts {
	out := Counts{}
	for k, v := range c {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// Of sums the counts of keys.
func (c Counts) Of(keys ...kmsg.Key) int {
	n := 0
	for _, k := range keys {
		n += c[int16(k)]
	}
	return n
}

// WriteKeys are the requests that change broker state. Produce is one: the
// operator appends an audit record for every broker change.
var WriteKeys = []kmsg.Key{
	kmsg.Produce, kmsg.CreateTopics, kmsg.DeleteTopics, kmsg.CreatePartitions,
	kmsg.IncrementalAlterConfigs, kmsg.AlterConfigs, kmsg.CreateACLs, kmsg.DeleteACLs,
	kmsg.AlterUserSCRAMCredentials, kmsg.AlterClientQuotas,
}

// ReadKeys are the admin reads a reconcile makes.
var ReadKeys = []kmsg.Key{
	kmsg.Metadata, kmsg.DescribeConfigs, kmsg.DescribeACLs,
	kmsg.DescribeUserSCRAMCredentials, kmsg.DescribeClientQuotas,
}

// Writes counts state-changing requests.
func (c Counts) Writes() int { return c.Of(WriteKeys...) }

// Reads counts admin reads.
func (c Counts) Reads() int { return c.Of(ReadKeys...) }

// String lists the counts by request name.
func (c Counts) String() string {
	parts := make([]string, 0, len(c))
	for k, v := range c {
		parts = append(parts, fmt.Sprintf("%s=%d", kmsg.NameForKey(k), v))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// Only keeps the counts of keys.
func (c Counts) Only(keys ...kmsg.Key) Counts {
	out := Counts{}
	for _, k := range keys {
		if v := c[int16(k)]; v != 0 {
			out[int16(k)] = v
		}
	}
	return out
}
