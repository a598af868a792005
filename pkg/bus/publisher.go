package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// PublisherOptions configures a Publisher. The zero value is usable.
type PublisherOptions struct {
	// ClientID is the Kafka client.id (default DefaultClientID).
	ClientID string
	// Source fills Event.Source when an event has none.
	Source string
	// DisableIdempotence turns off the idempotent producer, for brokers
	// that grant neither IdempotentWrite nor (Kafka 2.8+) Write alone.
	// With it on (the default) a retried send cannot duplicate an event.
	DisableIdempotence bool
	// DeliveryTimeout bounds how long one Publish may retry (default 30s).
	DeliveryTimeout time.Duration
}

// Publisher publishes events and waits for every in-sync replica to store
// each one (acks=all).
type Publisher struct {
	cl         *client
	source     string
	idempotent bool
	now        func() time.Time

	mu    sync.Mutex
	known map[string]bool // topics already described successfully
}

// NewPublisher connects a publisher. Close it when done.
func NewPublisher(c Credentials, o PublisherOptions) (*Publisher, error) {
	timeout := o.DeliveryTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	opts := []kgo.Opt{
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(timeout),
		// One event per Publish call: do not wait to fill a batch.
		kgo.ProducerLinger(0),
	}
	if o.DisableIdempotence {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	cl, err := newClient(c, o.ClientID, opts...)
	if err != nil {
		return nil, fmt.Errorf("creating publisher: %w", err)
	}
	return &Publisher{cl: cl, source: o.Source, idempotent: !o.DisableIdempotence, now: time.Now, known: map[string]bool{}}, nil
}

// Publish sends e to topic and returns it as stored: with its ID, Time,
// partition and offset. It returns only once the broker acknowledged it.
func (p *Publisher) Publish(ctx context.Context, topic string, e Event) (Event, error) {
	if e.Source == "" {
		e.Source = p.source
	}
	rec, e, err := e.toRecord(topic, p.now())
	if err != nil {
		return e, fmt.Errorf("publishing to %s: %w", topic, err)
	}
	if err := p.checkTopic(ctx, topic); err != nil {
		return e, fmt.Errorf("publishing to %s: %w", topic, err)
	}
	ctx, cancel := p.cl.auth.bind(ctx)
	defer cancel()
	stored, err := p.cl.ProduceSync(ctx, rec).First()
	if err != nil {
		err = classify(p.cl.auth.explain(err))
		if p.idempotent && errors.Is(err, kerr.ClusterAuthorizationFailed) {
			// Kafka refuses an idempotent producer id to a principal that
			// may write no topic at all, before looking at this topic.
			err = fmt.Errorf("%w (an idempotent producer needs Write on some topic or IdempotentWrite on the cluster: are these producer credentials?)", err)
		}
		return e, fmt.Errorf("publishing event %s to %s: %w", e.ID, topic, err)
	}
	e.Partition, e.Offset = stored.Partition, stored.Offset
	return e, nil
}

// checkTopic describes a topic the first time it is used.
func (p *Publisher) checkTopic(ctx context.Context, topic string) error {
	p.mu.Lock()
	known := p.known[topic]
	p.mu.Unlock()
	if known {
		return nil
	}
	if _, err := describeTopic(ctx, p.cl, topic, kmsg.ACLOperationWrite); err != nil {
		return err
	}
	p.mu.Lock()
	p.known[topic] = true
	p.mu.Unlock()
	return nil
}

// Close flushes nothing (Publish already waited) and disconnects.
func (p *Publisher) Close() { p.cl.Close() }
