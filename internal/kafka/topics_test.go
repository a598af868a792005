package kafka

import (
	"errors"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func mustCreate(t *testing.T, c *Client, nt NewTopic) Topic {
	t.Helper()
	got, err := c.CreateTopic(testCtx(t), nt)
	if err != nil {
		t.Fatalf("CreateTopic %s: %v", nt.Name, err)
	}
	return got
}

func mustDescribe(t *testing.T, name string) (Topic, bool) {
	t.Helper()
	got, err := admin.DescribeTopics(testCtx(t), name)
	if err != nil {
		t.Fatalf("DescribeTopics %s: %v", name, err)
	}
	tp, ok := got[name]
	return tp, ok
}

func wantRejected(t *testing.T, err error, code string) *RejectedError {
	t.Helper()
	r, ok := errors.AsType[*RejectedError](err)
	if !ok || r.Code != code {
		t.Fatalf("got %v, want a rejection with %s", err, code)
	}
	if errors.Is(err, ErrUnavailable) {
		t.Fatalf("a rejection is also unavailable: %v", err)
	}
	return r
}

func TestTopicLifecycle(t *testing.T) {
	ctx := testCtx(t)
	name := uniqueName(t, "topic")
	configs := map[string]string{"retention.ms": "3600000", "cleanup.policy": "delete"}

	created := mustCreate(t, admin, NewTopic{Name: name, Partitions: 3, ReplicationFactor: 3, Configs: configs})
	if created.ID == "" || created.Partitions != 3 || created.ReplicationFactor != 3 || !maps.Equal(created.Configs, configs) {
		t.Fatalf("created %+v", created)
	}

	got, err := admin.DescribeTopics(ctx, name, name+"-absent")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got[name+"-absent"]; ok || len(got) != 1 {
		t.Fatalf("describe returned %v, want only %s", got, name)
	}
	d := got[name]
	if d.ID != created.ID || d.Partitions != 3 || d.ReplicationFactor != 3 {
		t.Fatalf("described %+v, created %+v", d, created)
	}
	if !maps.Equal(d.Configs, configs) {
		t.Fatalf("described configs %v, want only the overrides %v", d.Configs, configs)
	}

	alter := ConfigAlter{Set: map[string]string{"retention.ms": "7200000", "max.message.bytes": "2097152"}, Delete: []string{"cleanup.policy"}}
	if err := admin.AlterTopicConfig(ctx, name, alter); err != nil {
		t.Fatal(err)
	}
	d, _ = mustDescribe(t, name)
	if want := alter.Set; !maps.Equal(d.Configs, want) {
		t.Fatalf("after alter configs = %v, want %v (deleted key back to default, i.e. gone)", d.Configs, want)
	}

	if err := admin.SetPartitions(ctx, name, 6); err != nil {
		t.Fatal(err)
	}
	if d, _ = mustDescribe(t, name); d.Partitions != 6 {
		t.Fatalf("partitions = %d, want 6", d.Partitions)
	}
	_ = wantRejected(t, admin.SetPartitions(ctx, name, 4), "INVALID_PARTITIONS")

	if _, err := admin.CreateTopic(ctx, NewTopic{Name: name, Partitions: 1, ReplicationFactor: 1}); !errors.Is(err, ErrTopicExists) {
		t.Fatalf("second create: %v, want ErrTopicExists", err)
	}

	if err := admin.DeleteTopic(ctx, name); err != nil {
		t.Fatal(err)
	}
	if _, ok := mustDescribe(t, name); ok {
		t.Fatal("topic still there after delete")
	}
	if err := admin.DeleteTopic(ctx, name); err != nil {
		t.Fatalf("deleting a missing topic: %v", err)
	}
	if err := admin.AlterTopicConfig(ctx, name, alter); !errors.Is(err, ErrTopicNotFound) {
		t.Fatalf("altering a missing topic: %v, want ErrTopicNotFound", err)
	}
	if err := admin.SetPartitions(ctx, name, 8); !errors.Is(err, ErrTopicNotFound) {
		t.Fatalf("growing a missing topic: %v, want ErrTopicNotFound", err)
	}
}

func TestCreateTopicBrokerDefaults(t *testing.T) {
	name := uniqueName(t, "topic")
	created := mustCreate(t, admin, NewTopic{Name: name, Partitions: 2, ReplicationFactor: -1})
	if created.ReplicationFactor != 3 || created.Partitions != 2 || len(created.Configs) != 0 {
		t.Fatalf("created %+v, want 2 partitions, the broker's RF 3, no overrides", created)
	}
	d, ok := mustDescribe(t, name)
	if !ok || d.ReplicationFactor != 3 || len(d.Configs) != 0 {
		t.Fatalf("described %+v", d)
	}
}

func TestCreateTopicRejected(t *testing.T) {
	ctx := testCtx(t)
	name := uniqueName(t, "topic")
	_, err := admin.CreateTopic(ctx, NewTopic{Name: name, Partitions: 1, ReplicationFactor: 5})
	r := wantRejected(t, err, "INVALID_REPLICATION_FACTOR")
	if r.Op != "creating topic "+name {
		t.Fatalf("Op = %q", r.Op)
	}
	_, err = admin.CreateTopic(ctx, NewTopic{Name: name, Partitions: 0, ReplicationFactor: 1})
	_ = wantRejected(t, err, "INVALID_PARTITIONS")
	if _, ok := mustDescribe(t, name); ok {
		t.Fatal("a rejected topic exists")
	}
}

// kfake accepts any topic config value, so these tests make the broker
// answer as a real Kafka broker does for an invalid value (INVALID_CONFIG
// with its reason) and check the reason reaches the caller.
func TestInvalidConfigRejectedWithBrokerMessage(t *testing.T) {
	ctx := testCtx(t)
	const msg = "Invalid value abc for configuration retention.ms: Not a number of type LONG"

	name := uniqueName(t, "topic")
	broker.Cluster().ControlKey(int16(kmsg.CreateTopics), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		req := kreq.(*kmsg.CreateTopicsRequest)
		if len(req.Topics) != 1 || req.Topics[0].Topic != name {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
		rt := kmsg.NewCreateTopicsResponseTopic()
		rt.Topic, rt.ErrorCode, rt.ErrorMessage = name, kerr.InvalidConfig.Code, kmsg.StringPtr(msg)
		resp.Topics = append(resp.Topics, rt)
		return resp, nil, true
	})
	_, err := admin.CreateTopic(ctx, NewTopic{Name: name, Partitions: 1, ReplicationFactor: 1, Configs: map[string]string{"retention.ms": "abc"}})
	if r := wantRejected(t, err, "INVALID_CONFIG"); r.Message != msg {
		t.Fatalf("message = %q, want the broker's %q", r.Message, msg)
	}

	mustCreate(t, admin, NewTopic{Name: name, Partitions: 1, ReplicationFactor: 1})
	handle := broker.Cluster().Fault(kfake.Fault{
		Keys:     []kmsg.Key{kmsg.IncrementalAlterConfigs},
		Resource: name,
		Err:      kerr.PolicyViolation,
	})
	defer handle.Remove()
	err = admin.AlterTopicConfig(ctx, name, ConfigAlter{Set: map[string]string{"retention.ms": "1"}})
	_ = wantRejected(t, err, "POLICY_VIOLATION")
}

// observe counts the requests of one kind the broker receives until the
// test ends.
func observe(t testing.TB, key kmsg.Key) *kfake.FaultHandle {
	h := broker.Cluster().Fault(kfake.Fault{Keys: []kmsg.Key{key}, Observe: true, Count: -1})
	t.Cleanup(h.Remove)
	return h
}

// concurrently runs fn(i) for i in [0, n) at once and returns the errors.
func concurrently(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

func TestConcurrentTopicCallsAreBatched(t *testing.T) {
	const n = 16
	ctx := testCtx(t)
	// A generous window so the test does not depend on scheduling.
	c := newClient(t, func(cfg *Config) { cfg.BatchWindow = 100 * time.Millisecond })
	if err := c.Ping(ctx); err != nil { // connect before counting
		t.Fatal(err)
	}
	names := make([]string, n)
	for i := range names {
		names[i] = uniqueName(t, "batch")
	}

	creates := observe(t, kmsg.CreateTopics)
	errs := concurrently(n, func(i int) error {
		_, err := c.CreateTopic(ctx, NewTopic{Name: names[i], Partitions: 1, ReplicationFactor: 1, Configs: map[string]string{"retention.ms": "1000"}})
		return err
	})
	checkAll(t, "create", errs)
	if hits := creates.Hits(); hits < 1 || hits > 2 {
		t.Fatalf("%d concurrent creates sent %d CreateTopics requests, want 1 (at most 2)", n, hits)
	}

	describes := observe(t, kmsg.DescribeConfigs)
	results := make([]map[string]Topic, n)
	errs = concurrently(n, func(i int) error {
		var err error
		results[i], err = c.DescribeTopics(ctx, names[i], names[(i+1)%n])
		return err
	})
	checkAll(t, "describe", errs)
	for i, got := range results {
		a, b := got[names[i]], got[names[(i+1)%n]]
		if len(got) != 2 || a.Name != names[i] || b.Name != names[(i+1)%n] || a.Configs["retention.ms"] != "1000" {
			t.Fatalf("caller %d got %v", i, got)
		}
	}
	if hits := describes.Hits(); hits < 1 || hits > 2 {
		t.Fatalf("%d concurrent describes sent %d DescribeConfigs requests, want 1 (at most 2)", n, hits)
	}

	alters := observe(t, kmsg.IncrementalAlterConfigs)
	errs = concurrently(n, func(i int) error {
		return c.AlterTopicConfig(ctx, names[i], ConfigAlter{Set: map[string]string{"retention.ms": "2000"}})
	})
	checkAll(t, "alter", errs)
	if hits := alters.Hits(); hits < 1 || hits > 2 {
		t.Fatalf("%d concurrent alters sent %d requests, want 1 (at most 2)", n, hits)
	}

	grows := observe(t, kmsg.CreatePartitions)
	errs = concurrently(n, func(i int) error { return c.SetPartitions(ctx, names[i], 2) })
	checkAll(t, "set partitions", errs)
	if hits := grows.Hits(); hits < 1 || hits > 2 {
		t.Fatalf("%d concurrent partition changes sent %d requests, want 1 (at most 2)", n, hits)
	}

	got, err := c.DescribeTopics(ctx, names...)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if tp := got[name]; tp.Partitions != 2 || tp.Configs["retention.ms"] != "2000" {
			t.Fatalf("%s after batched changes: %+v", name, tp)
		}
	}
}

func TestBatchedCreateOfOneNameTwice(t *testing.T) {
	ctx := testCtx(t)
	c := newClient(t, func(cfg *Config) { cfg.BatchWindow = 100 * time.Millisecond })
	name := uniqueName(t, "dup")
	errs := concurrently(2, func(int) error {
		_, err := c.CreateTopic(ctx, NewTopic{Name: name, Partitions: 1, ReplicationFactor: 1})
		return err
	})
	var ok, exists int
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrTopicExists):
			exists++
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if ok != 1 || exists != 1 {
		t.Fatalf("two creates of one topic: %d created, %d found it existing; want 1 and 1", ok, exists)
	}
}

func checkAll(t *testing.T, what string, errs []error) {
	t.Helper()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s %d: %v", what, i, err)
		}
	}
}
