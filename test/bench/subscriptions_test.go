package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
)

// subscriptionFleet is how many Subscriptions BenchmarkCreateSubscriptions
// declares, all consuming one Topic: each is a SCRAM user, a Secret and
// three ACLs.
const subscriptionFleet = 300

// strimziUsers is the user operator anchor from the design: about 2.7 hours
// for 19,300 users.
const strimziUsers = 19300

// BenchmarkCreateSubscriptions measures how fast Subscriptions become
// credentials and grants: filed tickets, the creates, then the approvals
// (which pin what exists); from the first create until all are Ready.
func BenchmarkCreateSubscriptions(b *testing.B) {
	s := getStack(b)
	s.startOperator(b, idleResync)
	s.waitQuiet(b, 500*time.Millisecond, time.Minute)
	ctx := benchCtx(b, 30*time.Minute)
	var elapsed time.Duration
	var perSub float64
	for b.Loop() {
		b.StopTimer()
		ns := s.namespace(b, "bench-subs")
		topic := s.readyTopic(b, ctx, ns)
		names := make([]string, subscriptionFleet)
		for i := range names {
			names[i] = fmt.Sprintf("svc-%04d", i)
		}
		ticketOf, tickets, err := s.fileTickets(ctx, ns, busv1.KindSubscription, names)
		must(b, err)
		before := s.requests.Snapshot()

		b.StartTimer()
		start := time.Now()
		must(b, s.createAll(ctx, names, func(n string) client.Object {
			return &busv1.Subscription{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: n},
				Spec:       busv1.SubscriptionSpec{Topics: []busv1.TopicReference{{Name: topic}}, ChangeTicket: ticketOf[n]},
			}
		}))
		must(b, s.approveAll(ctx, ns, tickets))
		must(b, s.waitSubscriptionsReady(ctx, ns, len(names), 10*time.Minute))
		elapsed = time.Since(start)
		b.StopTimer()

		s.waitQuiet(b, 500*time.Millisecond, time.Minute)
		reqs := s.requests.Snapshot().Minus(before)
		admin := reqs.Minus(reqs.Only(kmsg.Produce)) // audit appends are counted apart
		perSub = float64(admin.Reads()+admin.Writes()) / subscriptionFleet
		b.Logf("%d Subscriptions Ready in %s (%.1f/s, %.1f ms each); broker admin requests %.1f per Subscription (%s), audit appends %d",
			subscriptionFleet, elapsed.Round(time.Millisecond), float64(subscriptionFleet)/elapsed.Seconds(),
			ms(elapsed)/subscriptionFleet, perSub, admin, reqs.Of(kmsg.Produce))
		b.StartTimer()
	}
	rate := float64(subscriptionFleet) / elapsed.Seconds()
	b.ReportMetric(rate, "subscriptions/s")
	b.ReportMetric(ms(elapsed)/subscriptionFleet, "ms/subscription")
	b.ReportMetric(perSub, "broker-requests/subscription")
	b.Logf("at this rate %d users take %s (the design's anchor: about 2.7 h)", strimziUsers, (time.Duration(float64(strimziUsers)/rate) * time.Second).Round(time.Second))
}

// readyTopic declares one approved Topic and waits until it is on the broker.
func (s *stack) readyTopic(b *testing.B, ctx context.Context, ns string) string {
	b.Helper()
	const name = "events"
	ticketOf, tickets, err := s.fileTickets(ctx, ns, busv1.KindTopic, []string{name})
	must(b, err)
	tp := newTopic(ns, name, ticketOf[name])
	must(b, s.requester.Create(ctx, tp))
	must(b, s.approveAll(ctx, ns, tickets))
	must(b, s.waitTopic(ctx, tp, isReady))
	return name
}

// waitSubscriptionsReady polls until n Subscriptions in ns are Ready.
func (s *stack) waitSubscriptionsReady(ctx context.Context, ns string, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		var list busv1.SubscriptionList
		if err := s.env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return fmt.Errorf("listing Subscriptions: %w", err)
		}
		ready := 0
		for i := range list.Items {
			c := meta.FindStatusCondition(list.Items[i].Status.Conditions, busv1.ConditionReady)
			if c != nil && c.Status == metav1.ConditionTrue {
				ready++
			}
		}
		if ready == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d Subscriptions Ready after %s", ready, n, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
