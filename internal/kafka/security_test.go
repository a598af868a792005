package kafka

import (
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"
)

func aclKeys(acls []ACL) []string {
	keys := make([]string, len(acls))
	for i, a := range acls {
		keys[i] = a.Key()
	}
	slices.Sort(keys)
	return keys
}

func TestACLs(t *testing.T) {
	ctx := testCtx(t)
	alice := "User:" + uniqueName(t, "alice")
	bob := "User:" + uniqueName(t, "bob")
	topic := uniqueName(t, "orders")
	grant := func(p, rt, name, pattern, op string) ACL {
		return ACL{Principal: p, Host: "*", ResourceType: rt, ResourceName: name, PatternType: pattern, Operation: op, Permission: PermissionAllow}
	}
	aliceACLs := []ACL{
		grant(alice, ResourceTopic, topic, PatternLiteral, OpRead),
		grant(alice, ResourceTopic, topic+".", PatternPrefixed, OpWrite),
		grant(alice, ResourceGroup, topic+"-group", PatternLiteral, OpRead),
		grant(alice, ResourceCluster, ClusterResourceName, PatternLiteral, OpIdempotentWrite),
	}
	bobACL := grant(bob, ResourceTopic, topic, PatternLiteral, OpRead)

	if err := admin.CreateACLs(ctx, append(slices.Clone(aliceACLs), bobACL)); err != nil {
		t.Fatal(err)
	}
	if err := admin.CreateACLs(ctx, aliceACLs[:1]); err != nil { // again: no error, no duplicate
		t.Fatalf("re-creating an ACL: %v", err)
	}
	got, err := admin.DescribeACLs(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(aclKeys(got), aclKeys(aliceACLs)) {
		t.Fatalf("described\n%v\nwant\n%v", aclKeys(got), aclKeys(aliceACLs))
	}

	// Deleting alice's read on the topic must leave bob's identical grant
	// and alice's other grants alone.
	if err := admin.DeleteACLs(ctx, aliceACLs[:1]); err != nil {
		t.Fatal(err)
	}
	if got, _ = admin.DescribeACLs(ctx, alice); !slices.Equal(aclKeys(got), aclKeys(aliceACLs[1:])) {
		t.Fatalf("after delete alice has %v, want %v", aclKeys(got), aclKeys(aliceACLs[1:]))
	}
	if got, _ = admin.DescribeACLs(ctx, bob); !slices.Equal(aclKeys(got), aclKeys([]ACL{bobACL})) {
		t.Fatalf("bob's ACLs changed: %v", aclKeys(got))
	}

	wildcard := aliceACLs[1]
	wildcard.Operation = "Any"
	if err := admin.DeleteACLs(ctx, []ACL{wildcard}); err == nil {
		t.Fatal("a wildcard delete was sent")
	}
	if got, _ = admin.DescribeACLs(ctx, alice); len(got) != 3 {
		t.Fatalf("refused delete still deleted something: %v", aclKeys(got))
	}
	if got, err = admin.DescribeACLs(ctx, "User:"+uniqueName(t, "nobody")); err != nil || len(got) != 0 {
		t.Fatalf("principal without ACLs: %v, %v", got, err)
	}
}

// pingAs pings the shared broker as user with password. A failing
// password fails within timeout.
func pingAs(t *testing.T, mechanism, user, password string, timeout time.Duration) error {
	c := newClient(t, func(cfg *Config) {
		cfg.Mechanism, cfg.Username, cfg.Password = mechanism, user, password
		cfg.RequestTimeout = timeout
	})
	return c.Ping(testCtx(t))
}

// kfake answers a failed SASL exchange by closing the connection, where
// Kafka answers SASL_AUTHENTICATION_FAILED first, so against kfake a bad
// password is ErrUnavailable without ErrAuthentication (TestClassify covers
// the Kafka answer).
func wantAuthFailure(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("%s: %v, want ErrUnavailable", what, err)
	}
}

func TestSCRAM(t *testing.T) {
	ctx := testCtx(t)
	user := uniqueName(t, "svc")
	const pw1, pw2 = "first-secret-password", "second-secret-password"
	const ok, bad = 10 * time.Second, time.Second

	if err := admin.UpsertSCRAM(ctx, user, MechanismSCRAMSHA512, pw1); err != nil {
		t.Fatal(err)
	}
	mechs, err := admin.SCRAMMechanisms(ctx, user, user+"-absent")
	if err != nil {
		t.Fatal(err)
	}
	if len(mechs) != 1 || !slices.Equal(mechs[user], []string{MechanismSCRAMSHA512}) {
		t.Fatalf("mechanisms = %v", mechs)
	}
	if err := pingAs(t, MechanismSCRAMSHA512, user, pw1, ok); err != nil {
		t.Fatalf("the new credential does not authenticate: %v", err)
	}
	wantAuthFailure(t, "wrong password", pingAs(t, MechanismSCRAMSHA512, user, "wrong-password", bad))

	// Rotation: the new password works, the old one no longer does.
	if err := admin.UpsertSCRAM(ctx, user, MechanismSCRAMSHA512, pw2); err != nil {
		t.Fatal(err)
	}
	if err := pingAs(t, MechanismSCRAMSHA512, user, pw2, ok); err != nil {
		t.Fatalf("rotated password: %v", err)
	}
	wantAuthFailure(t, "old password after rotation", pingAs(t, MechanismSCRAMSHA512, user, pw1, bad))

	if err := admin.UpsertSCRAM(ctx, user, MechanismSCRAMSHA256, pw2); err != nil {
		t.Fatal(err)
	}
	if mechs, _ = admin.SCRAMMechanisms(ctx, user); !slices.Equal(mechs[user], []string{MechanismSCRAMSHA256, MechanismSCRAMSHA512}) {
		t.Fatalf("mechanisms = %v", mechs)
	}

	for _, m := range []string{MechanismSCRAMSHA256, MechanismSCRAMSHA512} {
		if err := admin.DeleteSCRAM(ctx, user, m); err != nil {
			t.Fatal(err)
		}
	}
	if mechs, err = admin.SCRAMMechanisms(ctx, user); err != nil || len(mechs) != 0 {
		t.Fatalf("after delete: %v, %v", mechs, err)
	}
	wantAuthFailure(t, "deleted credential", pingAs(t, MechanismSCRAMSHA512, user, pw2, bad))
	if err := admin.DeleteSCRAM(ctx, user, MechanismSCRAMSHA512); err != nil {
		t.Fatalf("deleting a missing credential: %v", err)
	}
	if err := admin.UpsertSCRAM(ctx, user, "SCRAM-MD5", pw1); err == nil {
		t.Fatal("unknown mechanism accepted")
	}
}

func TestQuotas(t *testing.T) {
	ctx := testCtx(t)
	user := uniqueName(t, "svc")
	other := uniqueName(t, "other")
	rate := func(n int64) *int64 { return &n }
	check := func(wantP, wantC *int64) {
		t.Helper()
		q, err := admin.DescribeQuota(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		if !equalRate(q.ProducerByteRate, wantP) || !equalRate(q.ConsumerByteRate, wantC) {
			t.Fatalf("quota = %s/%s, want %s/%s", fmtRate(q.ProducerByteRate), fmtRate(q.ConsumerByteRate), fmtRate(wantP), fmtRate(wantC))
		}
	}

	check(nil, nil)
	if err := admin.SetQuota(ctx, other, Quota{ProducerByteRate: rate(1)}); err != nil {
		t.Fatal(err)
	}
	if err := admin.SetQuota(ctx, user, Quota{ProducerByteRate: rate(1 << 20)}); err != nil {
		t.Fatal(err)
	}
	check(rate(1<<20), nil)
	if err := admin.SetQuota(ctx, user, Quota{ConsumerByteRate: rate(2048)}); err != nil {
		t.Fatal(err)
	}
	check(nil, rate(2048))
	if err := admin.SetQuota(ctx, user, Quota{}); err != nil {
		t.Fatal(err)
	}
	check(nil, nil)
	if q, _ := admin.DescribeQuota(ctx, other); !equalRate(q.ProducerByteRate, rate(1)) {
		t.Fatalf("another user's quota changed: %+v", q)
	}
}

func equalRate(a, b *int64) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

func fmtRate(r *int64) string {
	if r == nil {
		return "none"
	}
	return strconv.FormatInt(*r, 10)
}

func TestUpsertSCRAMUsesConfiguredIterations(t *testing.T) {
	ctx := testCtx(t)
	c := newClient(t, func(cfg *Config) { cfg.SCRAMIterations = 0 }) // the default
	user := uniqueName(t, "svc")
	if err := c.UpsertSCRAM(ctx, user, MechanismSCRAMSHA512, "a-password-of-some-length"); err != nil {
		t.Fatal(err)
	}
	described, err := c.adm.DescribeUserSCRAMs(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	infos := described[user].CredInfos
	if len(infos) != 1 || infos[0].Iterations != DefaultSCRAMIterations {
		t.Fatalf("credential infos %+v, want one with %d iterations", infos, DefaultSCRAMIterations)
	}
}
