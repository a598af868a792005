package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The security calls a Subscription makes (SCRAM credentials, ACLs, client
// quotas) are batched like topic calls: concurrent calls of one kind share
// one request per batch window, so many Subscriptions reconciled at once
// cost a handful of requests rather than one of each kind per Subscription.
//
// What Kafka lets us merge decides the shape of each batch:
//   - DescribeUserSCRAMCredentials, AlterUserSCRAMCredentials,
//     CreateACLs, DeleteACLs and AlterClientQuotas take many items per
//     request and answer per item: one request per batch (per round of
//     distinct users, where Kafka refuses a user named twice).
//   - DescribeACLs takes exactly one filter, and DescribeClientQuotas one
//     entity match: neither can ask for "these N principals". A batch
//     either describes everything (one request, but its answer grows with
//     every ACL or quota in the cluster) or sends one filtered request per
//     principal, concurrently. describeAllPolicy picks the cheaper one from
//     the size of the last full answer, so describe-all is used while the
//     cluster is small relative to the batch and never turns a fleet-wide
//     reconcile into N copies of the whole ACL table.

// securityBatchers are a Client's batchers for ACL, SCRAM and quota calls.
type securityBatchers struct {
	scramDescribes *batcher[[]string, map[string][]string]
	scramAlters    *batcher[scramAlter, struct{}]
	aclDescribes   *batcher[string, []ACL]
	aclCreates     *batcher[[]ACL, struct{}]
	aclDeletes     *batcher[[]ACL, struct{}]
	quotaDescribes *batcher[string, Quota]
	quotaAlters    *batcher[quotaAlter, struct{}]

	aclPolicy, quotaPolicy describeAllPolicy
}

// security returns c's security batchers.
func (c *Client) security() *securityBatchers { return c.sec }

// newSecurityBatchers makes the batchers of c.
func newSecurityBatchers(c *Client, cfg Config) *securityBatchers {
	s := &securityBatchers{}
	s.scramDescribes = newBatcher(cfg.BatchWindow, cfg.BatchMax, c.scramDescribeBatch)
	s.scramAlters = newBatcher(cfg.BatchWindow, cfg.BatchMax, c.scramAlterBatch)
	s.aclDescribes = newBatcher(cfg.BatchWindow, cfg.BatchMax, func(ctx context.Context, in []string) []outcome[[]ACL] {
		return c.aclDescribeBatch(ctx, in, &s.aclPolicy)
	})
	s.aclCreates = newBatcher(cfg.BatchWindow, cfg.BatchMax, c.aclCreateBatch)
	s.aclDeletes = newBatcher(cfg.BatchWindow, cfg.BatchMax, c.aclDeleteBatch)
	s.quotaDescribes = newBatcher(cfg.BatchWindow, cfg.BatchMax, func(ctx context.Context, in []string) []outcome[Quota] {
		return c.quotaDescribeBatch(ctx, in, &s.quotaPolicy)
	})
	s.quotaAlters = newBatcher(cfg.BatchWindow, cfg.BatchMax, c.quotaAlterBatch)
	return s
}

// describeAllPerItem is how many entries a describe-all answer may carry per
// item the batch asked about before filtered requests are cheaper: decoding
// a few dozen entries costs less than a round trip each.
const describeAllPerItem = 64

// describeAllPolicy remembers how large the last full answer was (0 until
// one was asked for), so a batch can tell whether describing everything is
// cheaper than one filtered request per item.
type describeAllPolicy struct{ last atomic.Int64 }

func (p *describeAllPolicy) useAll(items int) bool {
	if items < 2 {
		return false
	}
	// The first multi-item batch learns the size; a fresh cluster is small.
	return p.last.Load() <= int64(items*describeAllPerItem)
}

func (p *describeAllPolicy) record(entries int) { p.last.Store(int64(entries)) }

// scramAlter is one UpsertSCRAM or DeleteSCRAM call. Upserts arrive salted
// and hashed: the key derivation ran in the caller, in parallel with other
// callers, and no password is held by the batch.
type scramAlter struct {
	user      string
	mechanism kadm.ScramMechanism
	delete    bool
	// For upserts:
	iterations   int32
	salt, salted []byte
}

// scramDescribeBatch answers many SCRAMMechanisms calls with one
// DescribeUserSCRAMCredentials request for the union of their users.
func (c *Client) scramDescribeBatch(ctx context.Context, calls [][]string) []outcome[map[string][]string] {
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	users := union(calls)
	outs := make([]outcome[map[string][]string], len(calls))
	described, err := c.adm.DescribeUserSCRAMs(ctx, users...)
	if err != nil {
		fail(outs, indexes(len(calls)), classifyAdm(err))
		return outs
	}
	mechs, userErrs := scramResults(described)
	for i, want := range calls {
		got := make(map[string][]string, len(want))
		for _, u := range want {
			if e := userErrs[u]; e != nil {
				outs[i].err = fmt.Errorf("user %s: %w", u, e)
				break
			}
			if m, ok := mechs[u]; ok {
				got[u] = append([]string(nil), m...) // callers own their slices
			}
		}
		if outs[i].err == nil {
			outs[i].val = got
		}
	}
	return outs
}

// scramAlterBatch applies many upserts and deletions, one
// AlterUserSCRAMCredentials request per round in which no user repeats
// (Kafka answers a user named twice in one request with DUPLICATE_RESOURCE).
func (c *Client) scramAlterBatch(ctx context.Context, as []scramAlter) []outcome[struct{}] {
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	outs := make([]outcome[struct{}], len(as))
	for _, round := range rounds(len(as), func(i int) string { return as[i].user }) {
		var dels []kadm.DeleteSCRAM
		var ups []kadm.UpsertSCRAM
		for _, i := range round {
			a := as[i]
			if a.delete {
				dels = append(dels, kadm.DeleteSCRAM{User: a.user, Mechanism: a.mechanism})
				continue
			}
			ups = append(ups, kadm.UpsertSCRAM{User: a.user, Mechanism: a.mechanism, Iterations: a.iterations, Salt: a.salt, SaltedPassword: a.salted})
		}
		altered, err := c.adm.AlterUserSCRAMs(ctx, dels, ups)
		if err != nil {
			fail(outs, round, classifyAdm(err))
			continue
		}
		for _, i := range round {
			outs[i].err = alteredErr(altered, as[i].user)
		}
	}
	return outs
}

// aclDescribeBatch answers many DescribeACLs calls: one describe of every
// ACL split by principal, or one filtered request per distinct principal
// sent concurrently (see describeAllPolicy).
func (c *Client) aclDescribeBatch(ctx context.Context, principals []string, policy *describeAllPolicy) []outcome[[]ACL] {
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	distinct := union([][]string{principals})
	byPrincipal := make(map[string][]ACL, len(distinct))
	errs := make(map[string]error)
	if policy.useAll(len(distinct)) {
		all, err := c.describeACLs(ctx, nil)
		if err != nil {
			outs := make([]outcome[[]ACL], len(principals))
			fail(outs, indexes(len(principals)), err)
			return outs
		}
		policy.record(len(all))
		for _, a := range all {
			byPrincipal[a.Principal] = append(byPrincipal[a.Principal], a)
		}
	} else {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, p := range distinct {
			wg.Go(func() {
				acls, err := c.describeACLs(ctx, &p)
				mu.Lock()
				defer mu.Unlock()
				byPrincipal[p], errs[p] = acls, err
			})
		}
		wg.Wait()
	}
	outs := make([]outcome[[]ACL], len(principals))
	for i, p := range principals {
		if errs[p] != nil {
			outs[i].err = errs[p]
			continue
		}
		outs[i].val = sortedACLs(byPrincipal[p])
	}
	return outs
}

// describeACLs sends one DescribeACLs request for principal's ACLs, or for
// every ACL when principal is nil.
func (c *Client) describeACLs(ctx context.Context, principal *string) ([]ACL, error) {
	req := kmsg.NewPtrDescribeACLsRequest()
	req.ResourceType = kmsg.ACLResourceTypeAny
	req.ResourcePatternType = kmsg.ACLResourcePatternTypeAny
	req.Principal = principal
	req.Operation = kmsg.ACLOperationAny
	req.PermissionType = kmsg.ACLPermissionTypeAny
	resp, err := req.RequestWith(ctx, c.cl)
	if err != nil {
		return nil, classify(err, "")
	}
	if err := codeErr(resp.ErrorCode, resp.ErrorMessage); err != nil {
		return nil, err
	}
	var out []ACL
	for _, r := range resp.Resources {
		for _, a := range r.ACLs {
			out = append(out, ACL{
				Principal:    a.Principal,
				Host:         a.Host,
				ResourceType: kafkaName(r.ResourceType.String()),
				ResourceName: r.ResourceName,
				PatternType:  kafkaName(r.ResourcePatternType.String()),
				Operation:    kafkaName(a.Operation.String()),
				Permission:   kafkaName(a.PermissionType.String()),
			})
		}
	}
	return out, nil
}

// aclCreateBatch creates the ACLs of many CreateACLs calls in one request;
// Kafka answers each creation in order, so each caller gets exactly its own
// results.
func (c *Client) aclCreateBatch(ctx context.Context, calls [][]ACL) []outcome[struct{}] {
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	req := kmsg.NewPtrCreateACLsRequest()
	for _, acls := range calls {
		for _, a := range acls {
			w, _ := toWire(a) // validated by CreateACLs before it joined the batch
			cr := kmsg.NewCreateACLsRequestCreation()
			cr.ResourceType, cr.ResourceName, cr.ResourcePatternType = w.resourceType, a.ResourceName, w.pattern
			cr.Principal, cr.Host, cr.Operation, cr.PermissionType = a.Principal, a.Host, w.operation, w.permission
			req.Creations = append(req.Creations, cr)
		}
	}
	outs := make([]outcome[struct{}], len(calls))
	resp, err := req.RequestWith(ctx, c.cl)
	if err != nil {
		fail(outs, indexes(len(calls)), opErr(fmt.Sprintf("creating %d ACLs", len(req.Creations)), classify(err, "")))
		return outs
	}
	codes := make([]error, len(req.Creations))
	for i := range codes {
		if i < len(resp.Results) {
			codes[i] = codeErr(resp.Results[i].ErrorCode, resp.Results[i].ErrorMessage)
		} else {
			codes[i] = fmt.Errorf("%w: broker did not answer for the ACL", ErrUnavailable)
		}
	}
	splitResults(calls, codes, outs, "creating ACL ")
	return outs
}

// aclDeleteBatch deletes the ACLs of many DeleteACLs calls in one request,
// one exact filter per ACL, answered in order.
func (c *Client) aclDeleteBatch(ctx context.Context, calls [][]ACL) []outcome[struct{}] {
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	req := kmsg.NewPtrDeleteACLsRequest()
	for _, acls := range calls {
		for _, a := range acls {
			w, _ := toWire(a) // validated by DeleteACLs before it joined the batch
			f := kmsg.NewDeleteACLsRequestFilter()
			f.ResourceType, f.ResourceName, f.ResourcePatternType = w.resourceType, kmsg.StringPtr(a.ResourceName), w.pattern
			f.Principal, f.Host, f.Operation, f.PermissionType = kmsg.StringPtr(a.Principal), kmsg.StringPtr(a.Host), w.operation, w.permission
			req.Filters = append(req.Filters, f)
		}
	}
	outs := make([]outcome[struct{}], len(calls))
	resp, err := req.RequestWith(ctx, c.cl)
	if err != nil {
		fail(outs, indexes(len(calls)), opErr(fmt.Sprintf("deleting %d ACLs", len(req.Filters)), classify(err, "")))
		return outs
	}
	codes := make([]error, len(req.Filters))
	for i := range codes {
		if i < len(resp.Results) {
			codes[i] = codeErr(resp.Results[i].ErrorCode, resp.Results[i].ErrorMessage)
		} else {
			codes[i] = fmt.Errorf("%w: broker did not answer for the ACL", ErrUnavailable)
		}
	}
	splitResults(calls, codes, outs, "deleting ACL ")
	return outs
}

// splitResults hands each call the results of its own ACLs, which sit in
// the flat list in call order.
func splitResults(calls [][]ACL, codes []error, outs []outcome[struct{}], op string) {
	next := 0
	for i, acls := range calls {
		var errs []error
		for _, a := range acls {
			if err := opErr(op+a.String(), codes[next]); err != nil {
				errs = append(errs, err)
			}
			next++
		}
		outs[i].err = errors.Join(errs...)
	}
}

// quotaAlter is one SetQuota call.
type quotaAlter struct {
	user  string
	quota Quota
}

// quotaDescribeBatch answers many DescribeQuota calls: one describe of
// every user quota split by user, or one exact describe per distinct user
// sent concurrently (see describeAllPolicy). Only users with a quota have
// an entry, so the full answer is usually small.
func (c *Client) quotaDescribeBatch(ctx context.Context, users []string, policy *describeAllPolicy) []outcome[Quota] {
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	distinct := union([][]string{users})
	quotas := make(map[string]Quota, len(distinct))
	errs := make(map[string]error)
	if policy.useAll(len(distinct)) {
		match := []kadm.DescribeClientQuotaComponent{{Type: quotaEntityUser, MatchType: kmsg.QuotasMatchTypeAny}}
		described, err := c.adm.DescribeClientQuotas(ctx, true, match)
		if err != nil {
			outs := make([]outcome[Quota], len(users))
			fail(outs, indexes(len(users)), classifyAdm(err))
			return outs
		}
		policy.record(len(described))
		for _, d := range described {
			if len(d.Entity) == 1 && d.Entity[0].Type == quotaEntityUser && d.Entity[0].Name != nil {
				quotas[*d.Entity[0].Name] = quotaValues(d.Values)
			}
		}
	} else {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, u := range distinct {
			wg.Go(func() {
				q, err := c.describeUserQuota(ctx, u)
				mu.Lock()
				defer mu.Unlock()
				quotas[u], errs[u] = q, err
			})
		}
		wg.Wait()
	}
	outs := make([]outcome[Quota], len(users))
	for i, u := range users {
		outs[i] = outcome[Quota]{val: quotas[u], err: errs[u]}
	}
	return outs
}

// describeUserQuota describes exactly user=<user>.
func (c *Client) describeUserQuota(ctx context.Context, user string) (Quota, error) {
	match := []kadm.DescribeClientQuotaComponent{{Type: quotaEntityUser, MatchName: &user}}
	described, err := c.adm.DescribeClientQuotas(ctx, true, match)
	if err != nil {
		return Quota{}, classifyAdm(err)
	}
	for _, d := range described {
		if isUserEntity(d.Entity, user) {
			return quotaValues(d.Values), nil
		}
	}
	return Quota{}, nil
}

// quotaAlterBatch applies many SetQuota calls, one AlterClientQuotas
// request per round of distinct users; each entity is answered apart.
func (c *Client) quotaAlterBatch(ctx context.Context, as []quotaAlter) []outcome[struct{}] {
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	outs := make([]outcome[struct{}], len(as))
	for _, round := range rounds(len(as), func(i int) string { return as[i].user }) {
		entries := make([]kadm.AlterClientQuotaEntry, 0, len(round))
		for _, i := range round {
			user := as[i].user
			entries = append(entries, kadm.AlterClientQuotaEntry{
				Entity: kadm.ClientQuotaEntity{{Type: quotaEntityUser, Name: &user}},
				Ops: []kadm.AlterClientQuotaOp{
					quotaOp(quotaProducerByteRate, as[i].quota.ProducerByteRate),
					quotaOp(quotaConsumerByteRate, as[i].quota.ConsumerByteRate),
				},
			})
		}
		altered, err := c.adm.AlterClientQuotas(ctx, entries)
		if err != nil {
			fail(outs, round, classifyAdm(err))
			continue
		}
		byUser := make(map[string]error, len(altered))
		answered := make(map[string]bool, len(altered))
		for _, a := range altered {
			if len(a.Entity) == 1 && a.Entity[0].Type == quotaEntityUser && a.Entity[0].Name != nil {
				u := *a.Entity[0].Name
				byUser[u], answered[u] = classify(a.Err, a.ErrMessage), true
			}
		}
		for _, i := range round {
			if !answered[as[i].user] {
				outs[i].err = fmt.Errorf("%w: broker did not answer for the user", ErrUnavailable)
				continue
			}
			outs[i].err = byUser[as[i].user]
		}
	}
	return outs
}

// union returns the distinct strings of lists, in first-seen order.
func union(lists [][]string) []string {
	seen := make(map[string]bool)
	var out []string
	for _, l := range lists {
		for _, s := range l {
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	return out
}

func indexes(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}
