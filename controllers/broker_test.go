package controllers_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/test/harness/brokers"
)

// The tests in this file pin down what Apache Kafka does differently from
// the embedded broker, and that the operator copes: they run in both tiers
// (HMSBUS_TEST_BROKER), and the Kafka tier is where they prove something.

// kafkaSegmentBytesRefusal is Kafka 4's answer to segment.bytes=100, a
// value the CRD lets through (a non-negative integer) but the broker
// refuses (its minimum is 1 MiB since Kafka 4.0).
const kafkaSegmentBytesRefusal = "Invalid value 100 for configuration segment.bytes: Value must be at least 1048576"

// TestTopicInvalidConfigIsStalledWithBrokerText: a config the broker
// refuses ends in Stalled/BrokerRejected with the broker's own text, and
// nothing is created. kfake accepts any value, so there it is told to
// answer exactly as Kafka does; on Kafka the refusal is Kafka's.
func TestTopicInvalidConfigIsStalledWithBrokerText(t *testing.T) {
	ns := env.NamespaceT(t, "badcfg")
	name := uniqueName(ns, "BadConfig")
	if c := broker.b.Kfake(); c != nil {
		c.ControlKey(int16(kmsg.CreateTopics), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
			req := kreq.(*kmsg.CreateTopicsRequest)
			if len(req.Topics) != 1 || req.Topics[0].Topic != name {
				return nil, nil, false
			}
			c.KeepControl()
			resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
			rt := kmsg.NewCreateTopicsResponseTopic()
			rt.Topic, rt.ErrorCode, rt.ErrorMessage = name, kerr.InvalidConfig.Code, kmsg.StringPtr(kafkaSegmentBytesRefusal)
			resp.Topics = append(resp.Topics, rt)
			return resp, nil, true
		})
	}
	tp := newTopic(ns, "bad-config", name, "chg-1", 1, map[string]busv1.ConfigValue{"segment.bytes": "100"})
	createApproved(t, ns, "chg-1", tp)
	waitCondition(t, tp, topicConds(tp), busv1.ConditionStalled, metav1.ConditionTrue, busv1.ReasonBrokerRejected)
	msg := findCond(tp.Status.Conditions, busv1.ConditionReady)
	if !strings.Contains(msg, "INVALID_CONFIG") || !strings.Contains(msg, kafkaSegmentBytesRefusal) {
		t.Fatalf("Ready message should carry %s's code and text %q: %s", broker.b.Name(), kafkaSegmentBytesRefusal, msg)
	}
	assertSaidOnce(t, msg)
	if _, ok := brokerTopic(t, name); ok {
		t.Fatal("a topic with a refused config exists on the broker")
	}
}

// TestTopicDeletedThenRecreatedUnderTheSameName: Kafka deletes a topic
// asynchronously (the brokers learn of it a moment after DeleteTopics
// returns), yet a new Topic object claiming the name at once gets a new
// topic, and the operator does not stall on what the old one left.
func TestTopicDeletedThenRecreatedUnderTheSameName(t *testing.T) {
	ns := env.NamespaceT(t, "recreate")
	name := uniqueName(ns, "Again")
	first := newTopic(ns, "again", name, "chg-1", 2, nil)
	first.Spec.DeletionPolicy = busv1.DeletionDelete
	fileTicket(t, ns, "chg-1", covers(busv1.KindTopic, "again", busv1.OperationApply, busv1.OperationDelete))
	create(t, first)
	approve(t, ns, "chg-1")
	waitTopicReady(t, first)
	firstID := first.Status.TopicID

	c := requesterClient(t)
	if err := c.Delete(ctxT(t), first); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deleted Topic released", func() error { return gone404(c, first) })

	// The same object name, again: a new object with a new UID, under a
	// new ticket, created the moment the old one is gone.
	second := newTopic(ns, "again", name, "chg-2", 3, map[string]busv1.ConfigValue{"retention.ms": "3600000"})
	createApproved(t, ns, "chg-2", second)
	waitTopicReady(t, second)
	if second.Status.TopicID == "" || second.Status.TopicID == firstID {
		t.Fatalf("the recreated Topic reports topic ID %q; the deleted one had %q", second.Status.TopicID, firstID)
	}
	eventually(t, "the new broker topic", func() error {
		got, ok := brokerTopic(t, name)
		if !ok || got.ID != second.Status.TopicID || got.Partitions != 3 || got.Configs["retention.ms"] != "3600000" {
			return fmt.Errorf("broker has ok=%v %+v", ok, got)
		}
		return nil
	})
}

// TestIssuedCredentialIterations: the issued SCRAM credential is stored
// with the operator's --scram-iterations (8192 in the Kafka tier, which
// Kafka honours; kfake verifies only 4096) and logs in.
func TestIssuedCredentialIterations(t *testing.T) {
	ns := env.NamespaceT(t, "iterations")
	topic := readyTopic(t, ns, "events")
	sub := newSub(ns, "counter", "chg-1", busv1.RoleProduce, ref("events"))
	createApproved(t, ns, "chg-1", sub)
	waitSubReady(t, sub)
	creds, _ := credentials(t, sub)

	cl, err := kgo.NewClient(broker.b.AdminOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	user := ns + ".counter"
	// Kafka's describe follows its controller a moment later.
	eventually(t, "the credential's iterations", func() error {
		described, err := kadm.NewClient(cl).DescribeUserSCRAMs(ctxT(t), user)
		if err != nil {
			return err
		}
		infos := described[user].CredInfos
		if len(infos) != 1 || int(infos[0].Iterations) != broker.b.SCRAMIterations() {
			return fmt.Errorf("credential of %s: %+v, want one with %d iterations", user, infos, broker.b.SCRAMIterations())
		}
		return nil
	})
	if err := publish(ctxT(t), creds, topic, `{"n":1}`); err != nil {
		t.Fatalf("a credential with %d iterations does not log in: %v", broker.b.SCRAMIterations(), err)
	}
}

// throttleWatch records the throttling brokers report (kgo's hook).
type throttleWatch struct{ max atomic.Int64 }

func (w *throttleWatch) OnBrokerThrottle(_ kgo.BrokerMetadata, d time.Duration, _ bool) {
	for {
		cur := w.max.Load()
		if int64(d) <= cur || w.max.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

// TestSubscriptionQuotaThrottles: a producer quota the operator sets is
// enforced by the broker. The producer writes as fast as it can, well past
// its quota; the broker answers with throttle times and the throughput
// falls to about the quota. The embedded broker stores quotas but does not
// enforce them (README, Known limits), so only the Kafka tier can show
// enforcement.
func TestSubscriptionQuotaThrottles(t *testing.T) {
	if broker.b.Kind() != brokers.Kafka {
		t.Skip("kfake stores client quotas but does not enforce them; the Kafka tier runs this test")
	}
	const (
		quota   = 32 << 10 // bytes per second
		record  = 8 << 10
		records = 24 // 192 KiB: six seconds' worth at the quota
	)
	ns := env.NamespaceT(t, "quota")
	topic := readyTopic(t, ns, "bulk")
	sub := newSub(ns, "bulk-writer", "chg-1", busv1.RoleProduce, ref("bulk"))
	sub.Spec.Quota = &busv1.QuotaSpec{ProducerByteRate: ptr.To[int64](quota)}
	createApproved(t, ns, "chg-1", sub)
	waitSubReady(t, sub)
	creds, _ := credentials(t, sub)

	watch := &throttleWatch{}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(creds.Bootstrap...),
		kgo.SASL(scram.Auth{User: creds.Username, Pass: creds.Password}.AsSha512Mechanism()),
		kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(0),
		kgo.WithHooks(watch),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// Random bytes: kgo compresses batches, and zeros would shrink to
	// nothing, far below any quota.
	value := func() []byte {
		v := make([]byte, record)
		_, _ = rand.Read(v)
		return v
	}
	// One record first, so the timing below measures producing, not
	// connecting and authenticating.
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: value()}).FirstErr(); err != nil {
		t.Fatalf("producing with the issued credentials: %v", err)
	}
	began := time.Now()
	for range records {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: value()}).FirstErr(); err != nil {
			t.Fatalf("producing: %v", err)
		}
	}
	took := time.Since(began)
	rate := float64(records*record) / took.Seconds()
	t.Logf("produced %d KiB in %s: %.1f KiB/s against a quota of %d KiB/s; largest throttle %s",
		records*record>>10, took.Round(time.Millisecond), rate/1024, quota>>10, time.Duration(watch.max.Load()))
	if watch.max.Load() <= 0 {
		t.Fatal("the broker never reported throttling a producer far above its quota")
	}
	// Unthrottled, this takes tens of milliseconds on loopback. Kafka lets
	// a short burst through before its measured rate exceeds the quota,
	// so allow twice the quota over the whole run.
	if rate > 2*quota {
		t.Fatalf("throughput %.1f KiB/s is more than twice the quota of %d KiB/s", rate/1024, quota>>10)
	}
}
