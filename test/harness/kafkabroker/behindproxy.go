package kafkabroker

import (
	"fmt"
	"maps"

	"github.com/hms-platform/bus-operator/test/harness/brokerproxy"
)

// StartBehindProxy starts a broker whose CLIENT listener is reached through
// a brokerproxy.Proxy: the broker advertises the proxy's address there, so
// every connection a SCRAM client makes after bootstrap goes through it,
// and the proxy counts, pauses and delays all of that client's requests.
// Bootstrap returns the proxy's address; Addr(ListenerClient) the broker's
// own. The broker reaches itself directly, so pausing the proxy cuts off
// clients only. Close the proxy after the broker.
func StartBehindProxy(o Options) (*Broker, *brokerproxy.Proxy, error) {
	b, err := prepare(o)
	if err != nil {
		return nil, nil, fmt.Errorf("starting kafka behind a proxy: %w", err)
	}
	// Ports are chosen now, so the proxy can target the CLIENT listener
	// before the broker starts and the broker can advertise the proxy;
	// restarts keep both.
	p, err := brokerproxy.Start(b.Addr(ListenerClient))
	if err != nil {
		b.cleanup()
		return nil, nil, fmt.Errorf("starting kafka behind a proxy: %w", err)
	}
	b.opts.Advertised = maps.Clone(b.opts.Advertised)
	if b.opts.Advertised == nil {
		b.opts.Advertised = map[string]string{}
	}
	b.opts.Advertised[ListenerClient] = p.Addr()
	if err := b.start(false); err != nil {
		_ = p.Close()
		b.cleanup()
		return nil, nil, fmt.Errorf("starting kafka behind a proxy: %w", err)
	}
	return b, p, nil
}
