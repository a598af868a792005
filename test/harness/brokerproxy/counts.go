package brokerproxy

import (
	"fmt"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Counts are requests per Kafka API key. Tests and benchmarks take a
// snapshot before and after a step and subtract them to prove batching and
// zero-write resyncs. (The same shape as test/harness/embedded's Counts, so
// one type can serve both brokers.)
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
