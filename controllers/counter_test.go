package controllers_test

import (
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/hms-platform/bus-operator/internal/embedded"
)

// requestCounter counts broker write requests by observing the kfake
// cluster's request stream (it never intercepts them).
type requestCounter struct {
	mu     sync.Mutex
	counts map[int16]int
}

// writeKeys are the admin requests that change broker state.
var writeKeys = []int16{
	int16(kmsg.CreateTopics), int16(kmsg.DeleteTopics), int16(kmsg.CreatePartitions),
	int16(kmsg.IncrementalAlterConfigs), int16(kmsg.AlterConfigs), int16(kmsg.CreateACLs),
	int16(kmsg.DeleteACLs), int16(kmsg.AlterUserSCRAMCredentials), int16(kmsg.AlterClientQuotas),
}

func (c *requestCounter) install(b *embedded.Broker) {
	for _, k := range writeKeys {
		b.Cluster().ControlKey(k, func(req kmsg.Request) (kmsg.Response, error, bool) {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.counts == nil {
				c.counts = map[int16]int{}
			}
			c.counts[req.Key()]++
			return nil, nil, false
		})
	}
}

// writes returns the number of write requests seen so far.
func (c *requestCounter) writes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.counts {
		n += v
	}
	return n
}
