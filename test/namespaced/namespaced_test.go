// Package namespaced proves the operator's least-privilege mode: limited to
// chosen namespaces (--watch-namespaces) and running with the RBAC of
// config/rbac/namespaced only, it serves its namespaces and cannot read a
// Secret anywhere else.
package namespaced

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/governance"
	"github.com/hms-platform/bus-operator/internal/kafka"
	"github.com/hms-platform/bus-operator/internal/operator"
	"github.com/hms-platform/bus-operator/test/harness/embedded"
	"github.com/hms-platform/bus-operator/test/harness/localstack"
	"github.com/hms-platform/bus-operator/test/harness/testenv"
)

// operatorSA is the operator's ServiceAccount, as config/rbac binds it.
const operatorSA = "system:serviceaccount:hmsbus-system:hmsbus-operator"

var (
	env    *testenv.Env
	broker *embedded.Broker
	admin  *kafka.Client
	logs   = &localstack.SyncBuffer{}
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	var err error
	if env, err = testenv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "starting test control plane:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	if broker, err = embedded.Start(embedded.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, "starting the embedded broker:", err)
		return 1
	}
	defer broker.Close()
	ctrl.SetLogger(zap.New(zap.WriteTo(io.MultiWriter(logs, os.Stderr))))
	return m.Run()
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: still failing after 45s: %v", what, err)
}

// operatorConfig is a REST config acting as the operator's ServiceAccount,
// so every request it makes is checked against its RBAC.
func operatorConfig() *rest.Config {
	rc := rest.CopyConfig(env.Config)
	rc.Impersonate = rest.ImpersonationConfig{UserName: operatorSA, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:hmsbus-system"}}
	return rc
}

func TestOperatorLimitedToChosenNamespaces(t *testing.T) {
	ctx := ctxT(t)
	watched := env.NamespaceT(t, "team-a")
	other := env.NamespaceT(t, "team-b")

	// The RBAC of config/rbac/namespaced, bound in the watched namespace
	// only, as the example RoleBinding shows.
	if err := env.ApplyKustomization(ctx, "config/rbac/namespaced"); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: watched, Name: "hmsbus-operator"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "hmsbus-operator-namespace"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "hmsbus-operator", Namespace: testenv.SystemNamespace}},
	}
	if err := env.Client.Create(ctx, binding); err != nil {
		t.Fatal(err)
	}
	waitAllowed(t, "list", "topics", watched)

	kcfg := kafka.Config{Bootstrap: broker.Addrs(), Mechanism: embedded.AdminMechanism, Username: broker.AdminUser, Password: broker.AdminPassword,
		SCRAMIterations: kafka.MinSCRAMIterations, RequestTimeout: 5 * time.Second}
	var err error
	if admin, err = kafka.New(ctx, kcfg); err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	mgr, opClient, err := operator.New(operatorConfig(), operator.Config{
		Kafka: kcfg, WatchNamespaces: []string{watched},
		Policy:       governance.Policy{MinApprovals: 1, MaxWindow: time.Hour},
		ResyncPeriod: 3 * time.Second, MetricsAddr: "0", ProbeAddr: "0", SkipNameValidation: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer opClient.Close()
		if err := mgr.Start(mctx); err != nil {
			t.Errorf("operator stopped: %v", err)
		}
	}()
	defer func() { cancel(); <-done }()

	// In the watched namespace the operator does its whole job.
	mine := topic(watched, "orders", "Orders."+watched)
	sub := &busv1.Subscription{ObjectMeta: metav1.ObjectMeta{Namespace: watched, Name: "shipper"},
		Spec: busv1.SubscriptionSpec{Topics: []busv1.TopicReference{{Name: "orders"}}, ChangeTicket: "chg-1", Role: busv1.RoleConsume}}
	// A reference into a namespace the operator does not watch.
	elsewhere := &busv1.Subscription{ObjectMeta: metav1.ObjectMeta{Namespace: watched, Name: "peeker"},
		Spec: busv1.SubscriptionSpec{Topics: []busv1.TopicReference{{Name: "secret-plans", Namespace: other}}, ChangeTicket: "chg-1", Role: busv1.RoleConsume}}
	approvedAll(t, watched, "chg-1", mine, sub, elsewhere)
	waitReady(t, mine)
	waitReady(t, sub)
	waitReason(t, elsewhere, busv1.ReasonTopicNotFound, "which this operator does not watch")
	if got, err := admin.DescribeTopics(ctx, "Orders."+watched); err != nil || len(got) != 1 {
		t.Fatalf("the watched namespace's topic is not on the broker: %v %v", got, err)
	}
	secret := &corev1.Secret{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: watched, Name: "shipper-bus-credentials"}, secret); err != nil {
		t.Fatalf("no credentials issued in the watched namespace: %v", err)
	}

	// In a namespace it does not watch, nothing happens at all.
	theirs := topic(other, "secret-plans", "SecretPlans."+other)
	approvedAll(t, other, "chg-1", theirs)
	time.Sleep(6 * time.Second) // two resync periods
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(theirs), theirs); err != nil {
		t.Fatal(err)
	}
	if len(theirs.Status.Conditions) != 0 {
		t.Fatalf("the operator acted in an unwatched namespace: %+v", theirs.Status.Conditions)
	}
	if got, _ := admin.DescribeTopics(ctx, "SecretPlans."+other); len(got) != 0 {
		t.Fatal("a topic of an unwatched namespace reached the broker")
	}

	// And with its identity it cannot read a Secret outside its namespaces.
	planted := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: "database-password"}, StringData: map[string]string{"password": "not for the operator"}}
	if err := env.Client.Create(ctx, planted); err != nil {
		t.Fatal(err)
	}
	asOperator, err := client.New(operatorConfig(), client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	if err := asOperator.Get(ctx, client.ObjectKeyFromObject(planted), &corev1.Secret{}); !apierrors.IsForbidden(err) {
		t.Fatalf("the operator read a Secret outside its namespaces: %v", err)
	}
	if err := asOperator.List(ctx, &corev1.SecretList{}); !apierrors.IsForbidden(err) {
		t.Fatalf("the operator listed Secrets cluster-wide: %v", err)
	}
	if err := asOperator.Get(ctx, client.ObjectKeyFromObject(secret), &corev1.Secret{}); err != nil {
		t.Fatalf("the operator cannot read its own Secret: %v", err)
	}
	if strings.Contains(strings.ToLower(logs.String()), "forbidden") {
		t.Fatalf("the operator was refused something it needs in its namespaces; its log:\n%s", tail(logs.String(), 40))
	}
}

func topic(ns, name, brokerName string) *busv1.Topic {
	one := int32(1)
	return &busv1.Topic{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: busv1.TopicSpec{TopicName: brokerName, Partitions: 1, ReplicationFactor: &one, ChangeTicket: "chg-1", AllowedNamespaces: []string{"*"}}}
}

// approvedAll files a ticket as the requester, creates objs, then approves
// them as the reviewer.
func approvedAll(t *testing.T, ns, ticket string, objs ...client.Object) {
	t.Helper()
	req, err := env.As("alice", testenv.RequestersGroup)
	if err != nil {
		t.Fatal(err)
	}
	var covers []busv1.CoveredObject
	for _, o := range objs {
		kind := busv1.KindTopic
		if _, ok := o.(*busv1.Subscription); ok {
			kind = busv1.KindSubscription
		}
		covers = append(covers, busv1.CoveredObject{Kind: kind, Name: o.GetName()})
	}
	tk := &busv1.ChangeTicket{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ticket},
		Spec: busv1.ChangeTicketSpec{Reference: "CHG-1", Summary: "namespaced mode", RequestedBy: "alice", Covers: covers, NotAfter: metav1.NewTime(time.Now().Add(time.Hour))}}
	if err := req.Create(ctxT(t), tk); err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if err := req.Create(ctxT(t), o); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.Approve(ctxT(t), ns, ticket, "rita"); err != nil {
		t.Fatal(err)
	}
}

func waitReady(t *testing.T, obj client.Object) {
	t.Helper()
	waitReason(t, obj, busv1.ReasonSucceeded, "")
}

func waitReason(t *testing.T, obj client.Object, reason, msg string) {
	t.Helper()
	eventually(t, fmt.Sprintf("%s %s", obj.GetName(), reason), func() error {
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		var conds []metav1.Condition
		switch o := obj.(type) {
		case *busv1.Topic:
			conds = o.Status.Conditions
		case *busv1.Subscription:
			conds = o.Status.Conditions
		}
		c := meta.FindStatusCondition(conds, busv1.ConditionReady)
		switch {
		case c == nil:
			return errors.New("no Ready condition")
		case c.Reason != reason || !strings.Contains(c.Message, msg):
			return fmt.Errorf("Ready %s/%s: %s", c.Status, c.Reason, c.Message)
		}
		return nil
	})
}

// waitAllowed waits until the authorizer has seen the new bindings.
func waitAllowed(t *testing.T, verb, resource, ns string) {
	t.Helper()
	eventually(t, "the operator's RBAC is in force", func() error {
		sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{User: operatorSA, Groups: []string{"system:serviceaccounts"},
			ResourceAttributes: &authzv1.ResourceAttributes{Verb: verb, Group: busv1.GroupVersion.Group, Resource: resource, Namespace: ns}}}
		if err := env.Client.Create(ctxT(t), sar); err != nil {
			return err
		}
		if !sar.Status.Allowed {
			return fmt.Errorf("not yet: %s", sar.Status.Reason)
		}
		return nil
	})
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
