package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

const feeUpdated = "hms.fees.FeeUpdated"

func withGroup(c Credentials, group string) Credentials {
	c.ConsumerGroup = group
	return c
}

// groupFor is a consumer group of the reader's, unique to topic.
func groupFor(topic string) string { return readerUser + "." + topic }

func newPublisher(t *testing.T, c Credentials) *Publisher {
	t.Helper()
	p, err := NewPublisher(c, PublisherOptions{Source: "/test/fees"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// publishN publishes n events with distinct subjects and data and returns
// them as stored.
func publishN(t *testing.T, p *Publisher, topic string, n int) []Event {
	t.Helper()
	var sent []Event
	for range n {
		i := len(sent)
		e, err := p.Publish(testCtx(t), topic, Event{
			Type:    feeUpdated,
			Subject: fmt.Sprintf("fee-%d-%d", time.Now().UnixNano(), i),
			Data:    json.RawMessage(fmt.Sprintf(`{"fee":%d}`, i)),
		})
		if err != nil {
			t.Fatalf("publishing event %d: %v", i, err)
		}
		sent = append(sent, e)
	}
	return sent
}

// until runs run with a handler that passes each event to h, and stops run
// once h says it is done. It fails the test if run ends first.
func until(t *testing.T, run func(context.Context, Handler) error, h func(Event) (done bool, err error)) {
	t.Helper()
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	finished := false
	err := run(ctx, func(_ context.Context, e Event) error {
		done, err := h(e)
		if done {
			finished = true
			cancel()
		}
		return err
	})
	if err != nil {
		t.Fatalf("consuming: %v", err)
	}
	if !finished {
		t.Fatalf("consumer stopped before the expected events arrived: %v", ctx.Err())
	}
}

// collect returns the first n events run delivers.
func collect(t *testing.T, n int, run func(context.Context, Handler) error) []Event {
	t.Helper()
	var got []Event
	until(t, run, func(e Event) (bool, error) {
		got = append(got, e)
		return len(got) == n, nil
	})
	return got
}

func subscribe(t *testing.T, c Credentials, o SubscriberOptions, topic string) func(context.Context, Handler) error {
	t.Helper()
	s, err := NewSubscriber(c, o)
	if err != nil {
		t.Fatal(err)
	}
	return func(ctx context.Context, h Handler) error { return s.Run(ctx, topic, h) }
}

func stream(t *testing.T, c Credentials, o StreamOptions, topic string, from Offset) func(context.Context, Handler) error {
	t.Helper()
	s, err := NewStreamer(c, o)
	if err != nil {
		t.Fatal(err)
	}
	return func(ctx context.Context, h Handler) error { return s.Stream(ctx, topic, from, h) }
}

func ids(es []Event) []string {
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

func sortedIDs(es []Event) []string {
	out := ids(es)
	slices.Sort(out)
	return out
}

// readRaw reads n records of topic as the superuser, bypassing this package.
func readRaw(t *testing.T, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append(broker.AdminOpts(),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := testCtx(t)
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d raw records", len(recs), n)
		}
		recs = append(recs, fs.Records()...)
	}
	return recs
}

func TestPublishSubscribeRoundTrip(t *testing.T) {
	topic := newTopic(t, 3)
	sent := publishN(t, newPublisher(t, writer), topic, 3)
	byID := map[string]Event{}
	for _, e := range sent {
		if e.ID == "" || e.Time.IsZero() || e.Topic != topic || e.Source != "/test/fees" {
			t.Fatalf("Publish did not fill ID, Time, Topic and Source: %+v", e)
		}
		byID[e.ID] = e
	}

	// On the wire: CloudEvents binary mode, attributes in headers.
	for _, r := range readRaw(t, topic, 3) {
		h := map[string]string{}
		for _, kv := range r.Headers {
			h[kv.Key] = string(kv.Value)
		}
		want, ok := byID[h[HeaderID]]
		if !ok {
			t.Fatalf("record with unknown ce_id %q: headers %v", h[HeaderID], h)
		}
		wantHeaders := map[string]string{
			HeaderSpecVersion: "1.0",
			HeaderID:          want.ID,
			HeaderSource:      "/test/fees",
			HeaderType:        feeUpdated,
			HeaderTime:        want.Time.Format(time.RFC3339Nano),
			HeaderSubject:     want.Subject,
			HeaderContentType: "application/json",
		}
		if !maps.Equal(h, wantHeaders) {
			t.Errorf("headers = %v, want %v", h, wantHeaders)
		}
		if string(r.Key) != want.Subject || string(r.Value) != string(want.Data) {
			t.Errorf("record key/value = %q/%q, want %q/%q", r.Key, r.Value, want.Subject, want.Data)
		}
	}

	got := collect(t, 3, subscribe(t, withGroup(reader, groupFor(topic)), SubscriberOptions{}, topic))
	for _, e := range got {
		want, ok := byID[e.ID]
		if !ok {
			t.Fatalf("received unknown event %+v", e)
		}
		if e.Source != want.Source || e.Type != want.Type || e.Subject != want.Subject ||
			string(e.Data) != string(want.Data) || !e.Time.Equal(want.Time) ||
			e.Topic != topic || e.Partition != want.Partition || e.Offset != want.Offset {
			t.Errorf("received %+v, want %+v", e, want)
		}
	}
	if !slices.Equal(sortedIDs(got), sortedIDs(sent)) {
		t.Errorf("received %v, want %v", sortedIDs(got), sortedIDs(sent))
	}
}

func TestHandlerErrorRedeliversThenAcks(t *testing.T) {
	topic := newTopic(t, 1)
	pub := newPublisher(t, writer)
	sent := publishN(t, pub, topic, 2)
	creds := withGroup(reader, groupFor(topic))

	boom := errors.New("boom")
	var reported []error
	opts := SubscriberOptions{RetryBackoff: 10 * time.Millisecond, OnError: func(err error) { reported = append(reported, err) }}
	var deliveries []string
	failed := false
	until(t, subscribe(t, creds, opts, topic), func(e Event) (bool, error) {
		deliveries = append(deliveries, e.ID)
		if e.ID == sent[0].ID && !failed {
			failed = true
			return false, boom
		}
		return e.ID == sent[1].ID, nil
	})
	want := []string{sent[0].ID, sent[0].ID, sent[1].ID}
	if !slices.Equal(deliveries, want) {
		t.Fatalf("deliveries = %v, want %v (first event failed once, then delivered again)", deliveries, want)
	}
	if len(reported) != 1 || !errors.Is(reported[0], boom) {
		t.Errorf("OnError got %v, want exactly the handler's error", reported)
	}

	// Both were acknowledged: a new member of the group starts after them.
	third := publishN(t, pub, topic, 1)
	got := collect(t, 1, subscribe(t, creds, SubscriberOptions{}, topic))
	if got[0].ID != third[0].ID {
		t.Fatalf("new member of the group got %s first, want the unacknowledged %s", got[0].ID, third[0].ID)
	}
}

func TestAckCommitsOnlyHandledEvents(t *testing.T) {
	topic := newTopic(t, 1)
	pub := newPublisher(t, writer)
	sent := publishN(t, pub, topic, 3)
	creds := withGroup(reader, groupFor(topic))

	// Stop after two events: the third was fetched but never handled.
	first := collect(t, 2, subscribe(t, creds, SubscriberOptions{}, topic))
	if !slices.Equal(ids(first), ids(sent[:2])) {
		t.Fatalf("first member got %v, want %v", ids(first), ids(sent[:2]))
	}
	marker := publishN(t, pub, topic, 1)

	second := collect(t, 2, subscribe(t, creds, SubscriberOptions{}, topic))
	if want := []string{sent[2].ID, marker[0].ID}; !slices.Equal(ids(second), want) {
		t.Fatalf("second member of the group got %v, want %v (acked events must not come back)", ids(second), want)
	}

	// Control: another group has acknowledged nothing and sees everything.
	other := collect(t, 4, subscribe(t, withGroup(reader, groupFor(topic)+".other"), SubscriberOptions{}, topic))
	if want := append(ids(sent), marker[0].ID); !slices.Equal(ids(other), want) {
		t.Fatalf("another group got %v, want %v", ids(other), want)
	}
}

func TestSubscriberStartLatest(t *testing.T) {
	topic := newTopic(t, 1)
	pub := newPublisher(t, writer)
	publishN(t, pub, topic, 2)
	assigned := make(chan struct{})
	opts := SubscriberOptions{StartOffset: Latest, OnAssigned: func(string, []int32) { close(assigned) }}
	run := subscribe(t, withGroup(reader, groupFor(topic)), opts, topic)
	ctx, stop := context.WithCancel(testCtx(t))
	defer stop()
	go func() {
		// Where "latest" lands is fixed shortly after assignment; keep
		// publishing until the subscriber sees one, so the test does not
		// depend on that moment. What must hold: no old event arrives.
		<-assigned
		for ctx.Err() == nil {
			_, _ = pub.Publish(ctx, topic, Event{Type: feeUpdated})
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	got := collect(t, 1, run)
	if got[0].Offset < 2 {
		t.Fatalf("a new group starting at latest got the old event at offset %d", got[0].Offset)
	}
}

func TestStreamOffsets(t *testing.T) {
	topic := newTopic(t, 2)
	pub := newPublisher(t, writer)
	sent := publishN(t, pub, topic, 6)
	ends := map[int32]int64{0: 0, 1: 0}
	for _, e := range sent {
		ends[e.Partition] = max(ends[e.Partition], e.Offset+1)
	}

	t.Run("earliest sees all", func(t *testing.T) {
		got := collect(t, 6, stream(t, reader, StreamOptions{}, topic, Earliest))
		if !slices.Equal(sortedIDs(got), sortedIDs(sent)) {
			t.Fatalf("got %v, want %v", sortedIDs(got), sortedIDs(sent))
		}
	})

	t.Run("at N on every partition", func(t *testing.T) {
		var want []Event
		for _, e := range sent {
			if e.Offset >= 1 {
				want = append(want, e)
			}
		}
		got := collect(t, len(want), stream(t, reader, StreamOptions{}, topic, At(1)))
		if !slices.Equal(sortedIDs(got), sortedIDs(want)) {
			t.Fatalf("got %v, want the events at offset >= 1: %v", sortedIDs(got), sortedIDs(want))
		}
	})

	for _, from := range []Offset{Latest, At(1000)} {
		t.Run("from "+from.String()+" sees only new events", func(t *testing.T) {
			var start map[int32]int64
			var fresh []Event
			opts := StreamOptions{OnStart: func(_ string, s map[int32]int64) {
				start = s
				fresh = publishN(t, pub, topic, 1)
			}}
			got := collect(t, 1, stream(t, reader, opts, topic, from))
			if !maps.Equal(start, ends) {
				t.Errorf("start offsets = %v, want the log ends %v", start, ends)
			}
			if got[0].ID != fresh[0].ID {
				t.Fatalf("got %+v, want the event published after the start %s", got[0], fresh[0].ID)
			}
			ends[fresh[0].Partition]++
		})
	}
}

func TestNotAuthorized(t *testing.T) {
	granted := newTopic(t, 1)
	noop := func(context.Context, Event) error { return nil }
	cases := []struct {
		name string
		run  func(ctx context.Context) error
		code error
	}{
		{"stream a topic without grants", func(ctx context.Context) error {
			s, _ := NewStreamer(reader, StreamOptions{})
			return s.Stream(ctx, topicSecret, Earliest, noop)
		}, kerr.TopicAuthorizationFailed},
		{"subscribe to a topic without grants", func(ctx context.Context) error {
			s, _ := NewSubscriber(withGroup(reader, groupFor(granted)+".secret"), SubscriberOptions{})
			return s.Run(ctx, topicSecret, noop)
		}, kerr.TopicAuthorizationFailed},
		{"subscribe to a topic with Describe but no Read", func(ctx context.Context) error {
			s, _ := NewSubscriber(withGroup(reader, groupFor(granted)+".describe-only"), SubscriberOptions{})
			return s.Run(ctx, topicDescribeOnly, noop)
		}, kerr.TopicAuthorizationFailed},
		{"stream a topic with Describe but no Read", func(ctx context.Context) error {
			s, _ := NewStreamer(reader, StreamOptions{})
			return s.Stream(ctx, topicDescribeOnly, Earliest, noop)
		}, kerr.TopicAuthorizationFailed},
		{"subscribe as a group without grants", func(ctx context.Context) error {
			s, _ := NewSubscriber(withGroup(reader, "someone-elses-group"), SubscriberOptions{})
			return s.Run(ctx, granted, noop)
		}, kerr.GroupAuthorizationFailed},
		{"publish without any Write grant", func(ctx context.Context) error {
			return publishAs(ctx, reader, PublisherOptions{Source: "/test"}, granted)
		}, kerr.TopicAuthorizationFailed},
		{"publish without Write, not idempotent", func(ctx context.Context) error {
			return publishAs(ctx, reader, PublisherOptions{Source: "/test", DisableIdempotence: true}, granted)
		}, kerr.TopicAuthorizationFailed},
		{"publish to a topic without Write", func(ctx context.Context) error {
			return publishAs(ctx, writer, PublisherOptions{Source: "/test"}, topicSecret)
		}, kerr.TopicAuthorizationFailed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run(testCtx(t))
			if !errors.Is(err, ErrNotAuthorized) || !errors.Is(err, tc.code) {
				t.Fatalf("err = %v, want ErrNotAuthorized wrapping %v", err, tc.code)
			}
		})
	}
}

func publishAs(ctx context.Context, c Credentials, o PublisherOptions, topic string) error {
	p, err := NewPublisher(c, o)
	if err != nil {
		return err
	}
	defer p.Close()
	_, err = p.Publish(ctx, topic, Event{Type: feeUpdated, Data: json.RawMessage(`{}`)})
	return err
}

func TestWrongCredentialsFailClearly(t *testing.T) {
	topic := newTopic(t, 1)
	wrongPassword := reader
	wrongPassword.Password = "not-the-password"
	unknownUser := reader
	unknownUser.Username = "svc.nobody"
	noop := func(context.Context, Event) error { return nil }
	for name, c := range map[string]Credentials{"wrong password": wrongPassword, "unknown user": unknownUser} {
		t.Run(name, func(t *testing.T) {
			runs := map[string]func(ctx context.Context) error{
				"publish": func(ctx context.Context) error {
					p, err := NewPublisher(c, PublisherOptions{Source: "/test"})
					if err != nil {
						return err
					}
					defer p.Close()
					_, err = p.Publish(ctx, topic, Event{Type: feeUpdated})
					return err
				},
				"subscribe": func(ctx context.Context) error {
					s, _ := NewSubscriber(c, SubscriberOptions{})
					return s.Run(ctx, topic, noop)
				},
				"stream": func(ctx context.Context) error {
					s, _ := NewStreamer(c, StreamOptions{})
					return s.Stream(ctx, topic, Earliest, noop)
				},
			}
			for what, run := range runs {
				err := run(testCtx(t))
				if !errors.Is(err, ErrAuthenticationFailed) || !errors.Is(err, kerr.SaslAuthenticationFailed) {
					t.Errorf("%s: err = %v, want ErrAuthenticationFailed wrapping SASL_AUTHENTICATION_FAILED", what, err)
				}
				if err != nil && strings.Contains(err.Error(), c.Password) {
					t.Errorf("%s: error shows the password", what)
				}
			}
		})
	}
}

// TestMissingTopicIsNotFound: a topic that does not exist is reported as
// such once the grace for a just-created topic has passed, not retried
// until the caller gives up.
func TestMissingTopicIsNotFound(t *testing.T) {
	missing := newTopicName(t) // granted by prefix, never created
	noop := func(context.Context, Event) error { return nil }
	runs := map[string]func(ctx context.Context) error{
		"publish": func(ctx context.Context) error {
			return publishAs(ctx, writer, PublisherOptions{Source: "/test"}, missing)
		},
		"stream": func(ctx context.Context) error {
			s, _ := NewStreamer(reader, StreamOptions{})
			return s.Stream(ctx, missing, Earliest, noop)
		},
	}
	for what, run := range runs {
		t.Run(what, func(t *testing.T) {
			t.Parallel() // each waits out the grace
			err := run(testCtx(t))
			if !errors.Is(err, ErrTopicNotFound) || !errors.Is(err, kerr.UnknownTopicOrPartition) {
				t.Errorf("%s to a missing topic: err = %v, want ErrTopicNotFound wrapping UNKNOWN_TOPIC_OR_PARTITION", what, err)
			}
		})
	}
}
