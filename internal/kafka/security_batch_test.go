package kafka

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// securityFleet is n Subscriptions' worth of principals: a SCRAM user each
// and three ACLs on one topic and group each, as the operator grants them.
type securityFleet struct {
	users, principals []string
	acls              [][]ACL
}

func newSecurityFleet(t *testing.T, n int) securityFleet {
	var f securityFleet
	topic := uniqueName(t, "events")
	for range n {
		u := uniqueName(t, "svc")
		p := "User:" + u
		f.users, f.principals = append(f.users, u), append(f.principals, p)
		f.acls = append(f.acls, []ACL{
			{Principal: p, Host: "*", ResourceType: ResourceTopic, ResourceName: topic, PatternType: PatternLiteral, Operation: OpRead, Permission: PermissionAllow},
			{Principal: p, Host: "*", ResourceType: ResourceTopic, ResourceName: topic, PatternType: PatternLiteral, Operation: OpDescribe, Permission: PermissionAllow},
			{Principal: p, Host: "*", ResourceType: ResourceGroup, ResourceName: u, PatternType: PatternLiteral, Operation: OpRead, Permission: PermissionAllow},
		})
	}
	return f
}

// wantFew fails unless n concurrent calls sent at least one and at most
// two requests (a window may close while the last callers enqueue).
func wantFew(t *testing.T, what string, n int, h *observation) {
	t.Helper()
	if hits := h.Hits(); hits < 1 || hits > 2 {
		t.Fatalf("%d concurrent %s sent %d requests, want 1 (at most 2)", n, what, hits)
	}
}

// TestConcurrentSecurityCallsAreBatched: what a wave of Subscription
// reconciles asks of the broker (SCRAM describe and upsert, ACL describe
// and create, quota describe and set, and the reverse on deletion) costs
// one request of each kind, and every caller gets its own answer.
func TestConcurrentSecurityCallsAreBatched(t *testing.T) {
	const n = 16
	ctx := testCtx(t)
	c := newClient(t, func(cfg *Config) { cfg.BatchWindow = 100 * time.Millisecond })
	if err := c.Ping(ctx); err != nil { // connect before counting
		t.Fatal(err)
	}
	f := newSecurityFleet(t, n)

	h := observe(t, kmsg.AlterUserSCRAMCredentials)
	checkAll(t, "upsert", concurrently(n, func(i int) error {
		return c.UpsertSCRAM(ctx, f.users[i], MechanismSCRAMSHA512, "password-"+f.users[i])
	}))
	wantFew(t, "SCRAM upserts", n, h)

	h = observe(t, kmsg.DescribeUserSCRAMCredentials)
	mechs := make([]map[string][]string, n)
	checkAll(t, "describe SCRAM", concurrently(n, func(i int) error {
		var err error
		mechs[i], err = c.SCRAMMechanisms(ctx, f.users[i], f.users[i]+"-absent")
		return err
	}))
	wantFew(t, "SCRAM describes", n, h)
	for i, m := range mechs {
		if len(m) != 1 || !slices.Equal(m[f.users[i]], []string{MechanismSCRAMSHA512}) {
			t.Fatalf("caller %d got mechanisms %v", i, m)
		}
	}
	// Each batched credential authenticates with its own password.
	for _, i := range []int{0, n - 1} {
		if err := pingAs(t, MechanismSCRAMSHA512, f.users[i], "password-"+f.users[i], 10*time.Second); err != nil {
			t.Fatalf("batched credential of %s does not authenticate: %v", f.users[i], err)
		}
	}

	h = observe(t, kmsg.CreateACLs)
	checkAll(t, "create ACLs", concurrently(n, func(i int) error { return c.CreateACLs(ctx, f.acls[i]) }))
	wantFew(t, "ACL creates", n, h)

	h = observe(t, kmsg.DescribeACLs)
	described := make([][]ACL, n)
	checkAll(t, "describe ACLs", concurrently(n, func(i int) error {
		var err error
		described[i], err = c.DescribeACLs(ctx, f.principals[i])
		return err
	}))
	wantFew(t, "ACL describes", n, h)
	for i, got := range described {
		if !slices.Equal(aclKeys(got), aclKeys(f.acls[i])) {
			t.Fatalf("caller %d described %v, want %v", i, aclKeys(got), aclKeys(f.acls[i]))
		}
	}

	rate := int64(1 << 20)
	h = observe(t, kmsg.AlterClientQuotas)
	checkAll(t, "set quota", concurrently(n, func(i int) error {
		if i%2 == 1 {
			return nil // half the fleet has no quota
		}
		return c.SetQuota(ctx, f.users[i], Quota{ConsumerByteRate: &rate})
	}))
	wantFew(t, "quota alters", n/2, h)

	h = observe(t, kmsg.DescribeClientQuotas)
	quotas := make([]Quota, n)
	checkAll(t, "describe quota", concurrently(n, func(i int) error {
		var err error
		quotas[i], err = c.DescribeQuota(ctx, f.users[i])
		return err
	}))
	wantFew(t, "quota describes", n, h)
	for i, q := range quotas {
		want := Quota{}
		if i%2 == 0 {
			want.ConsumerByteRate = &rate
		}
		if !equalRate(q.ConsumerByteRate, want.ConsumerByteRate) || q.ProducerByteRate != nil {
			t.Fatalf("caller %d got quota %s/%s", i, fmtRate(q.ProducerByteRate), fmtRate(q.ConsumerByteRate))
		}
	}

	h = observe(t, kmsg.DeleteACLs)
	checkAll(t, "delete ACLs", concurrently(n, func(i int) error { return c.DeleteACLs(ctx, f.acls[i][:1]) }))
	wantFew(t, "ACL deletes", n, h)
	h = observe(t, kmsg.AlterUserSCRAMCredentials)
	checkAll(t, "delete SCRAM", concurrently(n, func(i int) error { return c.DeleteSCRAM(ctx, f.users[i], MechanismSCRAMSHA512) }))
	wantFew(t, "SCRAM deletes", n, h)

	for _, i := range []int{0, n - 1} {
		got, err := c.DescribeACLs(ctx, f.principals[i])
		if err != nil || !slices.Equal(aclKeys(got), aclKeys(f.acls[i][1:])) {
			t.Fatalf("after batched deletes %s has %v (%v), want %v", f.principals[i], aclKeys(got), err, aclKeys(f.acls[i][1:]))
		}
	}
	if m, err := c.SCRAMMechanisms(ctx, f.users...); err != nil || len(m) != 0 {
		t.Fatalf("after batched deletes: mechanisms %v, %v", m, err)
	}
}

// TestBatchedSecurityErrorsStayPerItem: the broker refusing one item of a
// shared request fails that caller only.
func TestBatchedSecurityErrorsStayPerItem(t *testing.T) {
	const n = 8
	ctx := testCtx(t)
	fb := faultBroker(t) // refusals are injected: kfake in either tier
	c := newClientOf(t, fb, func(cfg *Config) { cfg.BatchWindow = 100 * time.Millisecond })
	f := newSecurityFleet(t, n)
	const bad = 3
	refuse := func(key kmsg.Key, resource string) {
		h := fb.Kfake().Fault(kfake.Fault{Keys: []kmsg.Key{key}, Resource: resource, Err: kerr.PolicyViolation, Count: -1})
		t.Cleanup(h.Remove)
	}
	onlyBadFailed := func(what string, errs []error) {
		t.Helper()
		for i, err := range errs {
			switch {
			case i == bad && !IsRejected(err):
				t.Fatalf("%s: the refused item got %v, want a rejection", what, err)
			case i != bad && err != nil:
				t.Fatalf("%s: item %d failed with the refused one: %v", what, i, err)
			}
		}
	}

	refuse(kmsg.AlterUserSCRAMCredentials, f.users[bad])
	onlyBadFailed("SCRAM upserts", concurrently(n, func(i int) error {
		return c.UpsertSCRAM(ctx, f.users[i], MechanismSCRAMSHA512, "password-"+f.users[i])
	}))

	refuse(kmsg.DescribeUserSCRAMCredentials, f.users[bad])
	onlyBadFailed("SCRAM describes", concurrently(n, func(i int) error {
		m, err := c.SCRAMMechanisms(ctx, f.users[i])
		if err == nil && len(m[f.users[i]]) == 0 {
			return fmt.Errorf("user %s has no credential", f.users[i])
		}
		return err
	}))

	// The refused ACL is the bad principal's group grant (its own name).
	refuse(kmsg.CreateACLs, f.users[bad])
	onlyBadFailed("ACL creates", concurrently(n, func(i int) error { return c.CreateACLs(ctx, f.acls[i]) }))
	for i := range n {
		got, err := c.DescribeACLs(ctx, f.principals[i])
		want := f.acls[i]
		if i == bad {
			want = want[:2] // its other ACLs in the same request were created
		}
		if err != nil || !slices.Equal(aclKeys(got), aclKeys(want)) {
			t.Fatalf("principal %d has %v (%v), want %v", i, aclKeys(got), err, aclKeys(want))
		}
	}

	refuse(kmsg.AlterClientQuotas, f.users[bad])
	rate := int64(4096)
	onlyBadFailed("quota alters", concurrently(n, func(i int) error {
		return c.SetQuota(ctx, f.users[i], Quota{ProducerByteRate: &rate})
	}))
}

// TestDescribeAllPolicy: describing everything is chosen only while the
// last full answer was small for the batch's size.
func TestDescribeAllPolicy(t *testing.T) {
	var p describeAllPolicy
	if p.useAll(1) {
		t.Fatal("a single item must use a filtered request")
	}
	if !p.useAll(2) {
		t.Fatal("with no answer seen yet a batch should learn the size")
	}
	p.record(10 * describeAllPerItem)
	if p.useAll(8) || !p.useAll(10) {
		t.Fatalf("after a full answer of %d entries: 8 items all=%v, 10 items all=%v", 10*describeAllPerItem, p.useAll(8), p.useAll(10))
	}
}

// TestBatchedACLDescribesFiltered: once the cluster's ACLs outgrow the
// batch, each principal is described with its own filter, concurrently,
// and still gets exactly its ACLs.
func TestBatchedACLDescribesFiltered(t *testing.T) {
	const n = 4
	ctx := testCtx(t)
	c := newClient(t, func(cfg *Config) { cfg.BatchWindow = 100 * time.Millisecond })
	f := newSecurityFleet(t, n)
	checkAll(t, "create ACLs", concurrently(n, func(i int) error { return c.CreateACLs(ctx, f.acls[i]) }))
	c.security().aclPolicy.record(1 << 30) // a huge cluster
	h := observe(t, kmsg.DescribeACLs)
	got := make([][]ACL, n)
	checkAll(t, "describe ACLs", concurrently(n, func(i int) error {
		var err error
		got[i], err = c.DescribeACLs(context.WithoutCancel(ctx), f.principals[i])
		return err
	}))
	if hits := h.Hits(); hits != n {
		t.Fatalf("%d filtered describes sent %d requests, want %d", n, hits, n)
	}
	for i := range n {
		if !slices.Equal(aclKeys(got[i]), aclKeys(f.acls[i])) {
			t.Fatalf("caller %d described %v, want %v", i, aclKeys(got[i]), aclKeys(f.acls[i]))
		}
	}
}
