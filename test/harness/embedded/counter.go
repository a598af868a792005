package embedded

import (
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/hms-platform/bus-operator/test/harness/brokerproxy"
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

// Counts are requests per API key: the type brokerproxy counts Apache
// Kafka's requests in, so a test reads both brokers' counts the same way.
type Counts = brokerproxy.Counts

// WriteKeys are the requests that change broker state (see brokerproxy).
var WriteKeys = brokerproxy.WriteKeys

// ReadKeys are the admin reads a reconcile makes (see brokerproxy).
var ReadKeys = brokerproxy.ReadKeys
