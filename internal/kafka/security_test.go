package kafka

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/hms-platform/bus-operator/test/harness/brokers"
)

func aclKeys(acls []ACL) []string {
	keys := make([]string, len(acls))
	for i, a := range acls {
		keys[i] = a.Key()
	}
	slices.Sort(keys)
	return keys
}

// settled retries check until it passes or 15 seconds go by. Apache Kafka
// answers a write once its controller has committed it; its brokers'
// describes (served from their metadata cache) show it a moment later.
// kfake shows it at once.
func settled(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wantACLs waits until principal's ACLs are exactly want.
func wantACLs(t *testing.T, what, principal string, want []ACL) {
	t.Helper()
	settled(t, what, func() error {
		got, err := admin.DescribeACLs(testCtx(t), principal)
		if err != nil {
			return err
		}
		if !slices.Equal(aclKeys(got), aclKeys(want)) {
			return fmt.Errorf("%s has\n%v\nwant\n%v", principal, aclKeys(got), aclKeys(want))
		}
		return nil
	})
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
	wantACLs(t, "alice's ACLs", alice, aliceACLs)

	// Deleting alice's read on the topic must leave bob's identical grant
	// and alice's other grants alone.
	if err := admin.DeleteACLs(ctx, aliceACLs[:1]); err != nil {
		t.Fatal(err)
	}
	wantACLs(t, "after delete", alice, aliceACLs[1:])
	wantACLs(t, "bob's ACLs unchanged", bob, []ACL{bobACL})

	wildcard := aliceACLs[1]
	wildcard.Operation = "Any"
	if err := admin.DeleteACLs(ctx, []ACL{wildcard}); err == nil {
		t.Fatal("a wildcard delete was sent")
	}
	if got, _ := admin.DescribeACLs(ctx, alice); len(got) != 3 {
		t.Fatalf("refused delete still deleted something: %v", aclKeys(got))
	}
	if got, err := admin.DescribeACLs(ctx, "User:"+uniqueName(t, "nobody")); err != nil || len(got) != 0 {
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

// wantAuthFailure checks a refused login. Kafka answers
// SASL_AUTHENTICATION_FAILED, which the adapter reports as ErrUnavailable
// (the operator backs off) and ErrAuthentication, with Kafka's code in the
// chain. kfake closes the connection instead, which is all a client can
// see there: ErrUnavailable alone (TestClassify covers the mapping).
func wantAuthFailure(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("%s: %v, want ErrUnavailable", what, err)
	}
	if broker.Kind() == brokers.Kafka && (!errors.Is(err, ErrAuthentication) || !errors.Is(err, kerr.SaslAuthenticationFailed)) {
		t.Fatalf("%s: %v, want ErrAuthentication with Kafka's SASL_AUTHENTICATION_FAILED", what, err)
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
	settled(t, "the new credential described", func() error {
		mechs, err := admin.SCRAMMechanisms(ctx, user, user+"-absent")
		if err == nil && (len(mechs) != 1 || !slices.Equal(mechs[user], []string{MechanismSCRAMSHA512})) {
			err = fmt.Errorf("mechanisms = %v", mechs)
		}
		return err
	})
	// The credential has the iterations the client was configured with
	// (8192 on Kafka), and logs in.
	settled(t, "the credential's iterations", func() error {
		described, err := admin.adm.DescribeUserSCRAMs(ctx, user)
		if err != nil {
			return err
		}
		if infos := described[user].CredInfos; len(infos) != 1 || int(infos[0].Iterations) != broker.SCRAMIterations() {
			return fmt.Errorf("credential infos %+v, want one with %d iterations", infos, broker.SCRAMIterations())
		}
		return nil
	})
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
	settled(t, "both mechanisms described", func() error {
		mechs, err := admin.SCRAMMechanisms(ctx, user)
		if err == nil && !slices.Equal(mechs[user], []string{MechanismSCRAMSHA256, MechanismSCRAMSHA512}) {
			err = fmt.Errorf("mechanisms = %v", mechs)
		}
		return err
	})

	for _, m := range []string{MechanismSCRAMSHA256, MechanismSCRAMSHA512} {
		if err := admin.DeleteSCRAM(ctx, user, m); err != nil {
			t.Fatal(err)
		}
	}
	settled(t, "deleted credentials gone", func() error {
		mechs, err := admin.SCRAMMechanisms(ctx, user)
		if err == nil && len(mechs) != 0 {
			err = fmt.Errorf("after delete: %v", mechs)
		}
		return err
	})
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
		settled(t, "quota described", func() error {
			q, err := admin.DescribeQuota(ctx, user)
			if err == nil && (!equalRate(q.ProducerByteRate, wantP) || !equalRate(q.ConsumerByteRate, wantC)) {
				err = fmt.Errorf("quota = %s/%s, want %s/%s", fmtRate(q.ProducerByteRate), fmtRate(q.ConsumerByteRate), fmtRate(wantP), fmtRate(wantC))
			}
			return err
		})
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
	settled(t, "another user's quota unchanged", func() error {
		q, err := admin.DescribeQuota(ctx, other)
		if err == nil && !equalRate(q.ProducerByteRate, rate(1)) {
			err = fmt.Errorf("another user's quota changed: %+v", q)
		}
		return err
	})
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
	settled(t, "the credential's iterations", func() error {
		described, err := c.adm.DescribeUserSCRAMs(ctx, user)
		if err != nil {
			return err
		}
		if infos := described[user].CredInfos; len(infos) != 1 || infos[0].Iterations != DefaultSCRAMIterations {
			return fmt.Errorf("credential infos %+v, want one with %d iterations", infos, DefaultSCRAMIterations)
		}
		return nil
	})
}
