package kafka

import (
	"errors"
	"fmt"
	"maps"
	"strings"
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

// waitGone waits until the broker no longer lists a deleted topic. Kafka
// deletes asynchronously: DeleteTopics returns once the controller has
// committed the deletion, and the broker's metadata cache follows a moment
// later (kfake is done at once).
func waitGone(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, ok := mustDescribe(t, name); !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s still listed 15s after its deletion", name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestTopicLifecycle(t *testing.T) {
	ctx := testCtx(t)
	name := uniqueName(t, "topic")
	configs := map[string]string{"retention.ms": "3600000", "cleanup.policy": "delete"}
	rf := broker.ReplicationFactor()

	created := mustCreate(t, admin, NewTopic{Name: name, Partitions: 3, ReplicationFactor: rf, Configs: configs})
	if created.ID == "" || created.Partitions != 3 || created.ReplicationFactor != rf || !maps.Equal(created.Configs, configs) {
		t.Fatalf("created %+v", created)
	}

	settled(t, "the created topic described", func() error {
		got, err := admin.DescribeTopics(ctx, name, name+"-absent")
		if err != nil {
			return err
		}
		if _, ok := got[name+"-absent"]; ok || len(got) != 1 {
			return fmt.Errorf("describe returned %v, want only %s", got, name)
		}
		d := got[name]
		if d.ID != created.ID || d.Partitions != 3 || d.ReplicationFactor != rf {
			return fmt.Errorf("described %+v, created %+v", d, created)
		}
		if !maps.Equal(d.Configs, configs) {
			return fmt.Errorf("described configs %v, want only the overrides %v", d.Configs, configs)
		}
		return nil
	})

	alter := ConfigAlter{Set: map[string]string{"retention.ms": "7200000", "max.message.bytes": "2097152"}, Delete: []string{"cleanup.policy"}}
	if err := admin.AlterTopicConfig(ctx, name, alter); err != nil {
		t.Fatal(err)
	}
	settled(t, "the alter described", func() error {
		if d, _ := mustDescribe(t, name); !maps.Equal(d.Configs, alter.Set) {
			return fmt.Errorf("after alter configs = %v, want %v (deleted key back to default, i.e. gone)", d.Configs, alter.Set)
		}
		return nil
	})

	if err := admin.SetPartitions(ctx, name, 6); err != nil {
		t.Fatal(err)
	}
	settled(t, "the new partitions described", func() error {
		if d, _ := mustDescribe(t, name); d.Partitions != 6 {
			return fmt.Errorf("partitions = %d, want 6", d.Partitions)
		}
		return nil
	})
	_ = wantRejected(t, admin.SetPartitions(ctx, name, 4), "INVALID_PARTITIONS")

	if _, err := admin.CreateTopic(ctx, NewTopic{Name: name, Partitions: 1, ReplicationFactor: 1}); !errors.Is(err, ErrTopicExists) {
		t.Fatalf("second create: %v, want ErrTopicExists", err)
	}

	if err := admin.DeleteTopic(ctx, name); err != nil {
		t.Fatal(err)
	}
	waitGone(t, name)
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

// TestDeleteThenRecreate: a topic deleted and created again under the same
// name at once (what drift repair does after an out-of-band deletion) is a
// new topic, with a new ID, holding none of the old records, even though
// Kafka finishes a deletion asynchronously.
func TestDeleteThenRecreate(t *testing.T) {
	ctx := testCtx(t)
	name := uniqueName(t, "again")
	first := mustCreate(t, admin, NewTopic{Name: name, Partitions: 2, ReplicationFactor: 1})
	if err := admin.Append(ctx, name, nil, []byte("old")); err != nil {
		t.Fatal(err)
	}
	if err := admin.DeleteTopic(ctx, name); err != nil {
		t.Fatal(err)
	}
	second, err := admin.CreateTopic(ctx, NewTopic{Name: name, Partitions: 1, ReplicationFactor: 1})
	if err != nil {
		t.Fatalf("creating %s right after deleting it: %v", name, err)
	}
	if second.ID == "" || second.ID == first.ID {
		t.Fatalf("recreated topic has ID %q, the deleted one had %q", second.ID, first.ID)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		d, ok := mustDescribe(t, name)
		if ok && d.ID == second.ID && d.Partitions == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the broker still describes %s as %+v (ok=%v), want the new topic %s", name, d, ok, second.ID)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ends, err := admin.adm.ListEndOffsets(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := ends.Lookup(name, 0); o.Offset != 0 {
		t.Fatalf("the recreated topic holds %d records of the deleted one", o.Offset)
	}
}

func TestCreateTopicBrokerDefaults(t *testing.T) {
	name := uniqueName(t, "topic")
	// Both brokers default to as many replicas as they have nodes.
	rf := broker.ReplicationFactor()
	created := mustCreate(t, admin, NewTopic{Name: name, Partitions: 2, ReplicationFactor: -1})
	if created.ReplicationFactor != rf || created.Partitions != 2 || len(created.Configs) != 0 {
		t.Fatalf("created %+v, want 2 partitions, the broker's RF %d, no overrides", created, rf)
	}
	settled(t, "the created topic described", func() error {
		if d, ok := mustDescribe(t, name); !ok || d.ReplicationFactor != rf || len(d.Configs) != 0 {
			return fmt.Errorf("described %+v (ok=%v)", d, ok)
		}
		return nil
	})
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

// TestInvalidConfigRejectedByTheBroker: a value the CRD lets through but
// the broker refuses (segment.bytes has a 1 MiB minimum since Kafka 4) is a
// rejection carrying the broker's own text, on create and on alter. kfake
// accepts any value, so on the embedded broker it is told to answer as
// Kafka does; on Kafka the answer is Kafka's.
func TestInvalidConfigRejectedByTheBroker(t *testing.T) {
	ctx := testCtx(t)
	name := uniqueName(t, "topic")
	bad := map[string]string{"segment.bytes": "100"}
	if c := broker.Kfake(); c != nil {
		const msg = "Invalid value 100 for configuration segment.bytes: Value must be at least 1048576"
		c.ControlKey(int16(kmsg.CreateTopics), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
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
		h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.IncrementalAlterConfigs}, Resource: name, Err: kerr.InvalidConfig, Count: -1})
		defer h.Remove()
	}
	_, err := admin.CreateTopic(ctx, NewTopic{Name: name, Partitions: 1, ReplicationFactor: 1, Configs: bad})
	r := wantRejected(t, err, "INVALID_CONFIG")
	t.Logf("%s refused the create: %s", broker.Name(), r.Message)
	if !strings.Contains(r.Message, "segment.bytes") {
		t.Fatalf("message = %q, want the broker's text naming segment.bytes", r.Message)
	}
	if _, ok := mustDescribe(t, name); ok {
		t.Fatal("a topic with a refused config exists")
	}

	mustCreate(t, admin, NewTopic{Name: name, Partitions: 1, ReplicationFactor: 1})
	err = admin.AlterTopicConfig(ctx, name, ConfigAlter{Set: bad})
	_ = wantRejected(t, err, "INVALID_CONFIG")
	if d, _ := mustDescribe(t, name); len(d.Configs) != 0 {
		t.Fatalf("a refused alter changed the topic: %v", d.Configs)
	}
}

// TestRejectionCodesReachTheCaller: an answer a healthy broker gives only
// under a policy (POLICY_VIOLATION) is a rejection too. Injected, so on a
// kfake broker in either tier.
func TestRejectionCodesReachTheCaller(t *testing.T) {
	fb := faultBroker(t)
	c := newClientOf(t, fb, nil)
	name := uniqueName(t, "topic")
	mustCreate(t, c, NewTopic{Name: name, Partitions: 1, ReplicationFactor: 1})
	handle := fb.Kfake().Fault(kfake.Fault{
		Keys:     []kmsg.Key{kmsg.IncrementalAlterConfigs},
		Resource: name,
		Err:      kerr.PolicyViolation,
	})
	defer handle.Remove()
	err := c.AlterTopicConfig(testCtx(t), name, ConfigAlter{Set: map[string]string{"retention.ms": "1"}})
	_ = wantRejected(t, err, "POLICY_VIOLATION")
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

	// Kafka's brokers learn of new topics a moment after CreateTopics
	// returns: wait for that before counting the describes.
	settled(t, "the created topics described", func() error {
		got, err := admin.DescribeTopics(ctx, names...)
		if err == nil && len(got) != n {
			err = fmt.Errorf("%d of %d topics described", len(got), n)
		}
		return err
	})
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

	settled(t, "the batched changes described", func() error {
		got, err := c.DescribeTopics(ctx, names...)
		if err != nil {
			return err
		}
		for _, name := range names {
			if tp := got[name]; tp.Partitions != 2 || tp.Configs["retention.ms"] != "2000" {
				return fmt.Errorf("%s after batched changes: %+v", name, tp)
			}
		}
		return nil
	})
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
