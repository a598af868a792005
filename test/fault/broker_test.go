package fault

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/hms-platform/bus-operator/internal/audit"
	"github.com/hms-platform/bus-operator/internal/kafka"
	"github.com/hms-platform/bus-operator/test/harness/brokers"
)

// directClient is the test's own view of the broker, as its admin. On
// Kafka it connects to the SASL_SSL listener, which the proxy the faults
// pause and slow down does not stand in front of, so the checker can still
// look while the operator cannot; on the embedded broker there is no proxy
// (its faults stop the whole broker, and then nobody can look).
type directClient struct {
	cl  *kgo.Client
	adm *kadm.Client
	// k reads the audit topic and produces and reads the records that
	// must survive a fault, with the operator's own adapter.
	k *kafka.Client
}

func newDirectClient(b *brokers.Broker) (*directClient, error) {
	seeds := b.Bootstrap()
	tlsCfg := b.BootstrapTLS()
	if b.Kind() == brokers.Kafka {
		seeds, tlsCfg = b.TLSBootstrap(), b.TLSConfig()
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(seeds...), kgo.SASL(b.AdminSASL()),
		// A stopped broker must fail a look quickly, not after kgo's
		// default retries: the sampler skips a tick it cannot take.
		kgo.RetryTimeout(3 * time.Second), kgo.DialTimeout(2 * time.Second),
	}
	if tlsCfg != nil {
		opts = append(opts, kgo.DialTLSConfig(tlsCfg))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("creating the test's broker client: %w", err)
	}
	k, err := kafka.New(context.Background(), kafka.Config{
		Bootstrap: seeds, Mechanism: b.Mechanism(), Username: b.AdminUser, Password: b.AdminPassword,
		TLS: tlsCfg, ClientID: "hmsbus-fault-suite", RequestTimeout: 20 * time.Second, SCRAMIterations: b.SCRAMIterations(),
	})
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("creating the test's adapter client: %w", err)
	}
	return &directClient{cl: cl, adm: kadm.NewClient(cl), k: k}, nil
}

func (d *directClient) Close() {
	d.k.Close()
	d.cl.Close()
}

// brokerTopic is a topic as the broker reports it.
type brokerTopic struct {
	ID         string
	Partitions int32
}

// brokerState is everything on the broker the invariants are about.
type brokerState struct {
	topics map[string]brokerTopic
	// acls are every ACL on the broker; aclCount counts each by
	// kafka.ACL.Key, so a duplicate entry shows as 2.
	acls     []kafka.ACL
	aclCount map[string]int
	// users maps each SCRAM user to its mechanisms.
	users map[string][]string
}

// aclsOf returns the ACLs of one principal, by key.
func (s *brokerState) aclsOf(principal string) map[string]kafka.ACL {
	out := map[string]kafka.ACL{}
	for _, a := range s.acls {
		if a.Principal == principal {
			out[a.Key()] = a
		}
	}
	return out
}

// snapshot reads all topics, ACLs and SCRAM users, one request each.
func (d *directClient) snapshot(ctx context.Context) (*brokerState, error) {
	s := &brokerState{topics: map[string]brokerTopic{}, aclCount: map[string]int{}, users: map[string][]string{}}
	// A metadata request of its own, not kadm's ListTopics: kadm answers
	// from the client's metadata cache, which may be seconds old.
	meta := kmsg.NewPtrMetadataRequest()
	resp, err := meta.RequestWith(ctx, d.cl)
	if err != nil {
		return nil, fmt.Errorf("listing topics: %w", err)
	}
	for _, t := range resp.Topics {
		if t.Topic == nil {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return nil, fmt.Errorf("listing topic %s: %w", *t.Topic, err)
		}
		// Kafka's tools (and the operator's status) write topic IDs as
		// URL-safe base64 without padding.
		s.topics[*t.Topic] = brokerTopic{ID: base64.RawURLEncoding.EncodeToString(t.TopicID[:]), Partitions: int32(len(t.Partitions))}
	}
	if s.acls, err = d.allACLs(ctx); err != nil {
		return nil, err
	}
	for _, a := range s.acls {
		s.aclCount[a.Key()]++
	}
	scrams, err := d.adm.DescribeUserSCRAMs(ctx)
	if err != nil {
		return nil, fmt.Errorf("describing SCRAM users: %w", err)
	}
	for user, u := range scrams {
		if u.Err != nil {
			if errors.Is(u.Err, kerr.ResourceNotFound) {
				continue
			}
			return nil, fmt.Errorf("describing SCRAM user %s: %w", user, u.Err)
		}
		for _, ci := range u.CredInfos {
			s.users[user] = append(s.users[user], ci.Mechanism.String())
		}
	}
	return s, nil
}

// allACLs lists every ACL with a match-anything filter. It uses the wire
// request rather than kadm's builder, whose filters name principals.
func (d *directClient) allACLs(ctx context.Context) ([]kafka.ACL, error) {
	req := kmsg.NewPtrDescribeACLsRequest()
	req.ResourceType = kmsg.ACLResourceTypeAny
	req.ResourcePatternType = kmsg.ACLResourcePatternTypeAny
	req.Operation = kmsg.ACLOperationAny
	req.PermissionType = kmsg.ACLPermissionTypeAny
	resp, err := req.RequestWith(ctx, d.cl)
	if err != nil {
		return nil, fmt.Errorf("describing ACLs: %w", err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, fmt.Errorf("describing ACLs: %w", err)
	}
	var out []kafka.ACL
	for _, r := range resp.Resources {
		for _, a := range r.ACLs {
			out = append(out, kafka.ACL{
				Principal: a.Principal, Host: a.Host,
				ResourceType: resourceTypeName(r.ResourceType), ResourceName: r.ResourceName,
				PatternType: patternName(r.ResourcePatternType), Operation: operationName(a.Operation),
				Permission: permissionName(a.PermissionType),
			})
		}
	}
	return out, nil
}

// The adapter's names for the wire enums (internal/kafka's constants).
func resourceTypeName(t kmsg.ACLResourceType) string {
	switch t {
	case kmsg.ACLResourceTypeTopic:
		return kafka.ResourceTopic
	case kmsg.ACLResourceTypeGroup:
		return kafka.ResourceGroup
	case kmsg.ACLResourceTypeCluster:
		return kafka.ResourceCluster
	}
	return t.String()
}

func patternName(p kmsg.ACLResourcePatternType) string {
	switch p {
	case kmsg.ACLResourcePatternTypeLiteral:
		return kafka.PatternLiteral
	case kmsg.ACLResourcePatternTypePrefixed:
		return kafka.PatternPrefixed
	}
	return p.String()
}

func operationName(o kmsg.ACLOperation) string {
	switch o {
	case kmsg.ACLOperationRead:
		return kafka.OpRead
	case kmsg.ACLOperationWrite:
		return kafka.OpWrite
	case kmsg.ACLOperationDescribe:
		return kafka.OpDescribe
	case kmsg.ACLOperationIdempotentWrite:
		return kafka.OpIdempotentWrite
	}
	return o.String()
}

func permissionName(p kmsg.ACLPermissionType) string {
	switch p {
	case kmsg.ACLPermissionTypeAllow:
		return kafka.PermissionAllow
	case kmsg.ACLPermissionTypeDeny:
		return kafka.PermissionDeny
	}
	return p.String()
}

// topicConfigs returns the named topics' retention.ms overrides.
func (d *directClient) retention(ctx context.Context, topics []string) (map[string]string, error) {
	out := map[string]string{}
	rcs, err := d.adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("describing topic configs: %w", err)
	}
	for _, rc := range rcs {
		if rc.Err != nil {
			return nil, fmt.Errorf("describing configs of %s: %w", rc.Name, rc.Err)
		}
		for _, c := range rc.Configs {
			if c.Key == "retention.ms" && c.Value != nil && c.Source == kmsg.ConfigSourceDynamicTopicConfig {
				out[rc.Name] = *c.Value
			}
		}
	}
	return out, nil
}

// produce appends records to a topic as the admin and returns their values.
func (d *directClient) produce(ctx context.Context, topic, prefix string, n int) ([]string, error) {
	var values []string
	for i := range n {
		v := fmt.Sprintf("%s/%s/%d", prefix, topic, i)
		if err := d.k.Append(ctx, topic, []byte(topic), []byte(v)); err != nil {
			return nil, fmt.Errorf("producing to %s: %w", topic, err)
		}
		values = append(values, v)
	}
	return values, nil
}

// readAll returns the values stored in a one-partition topic.
func (d *directClient) readAll(ctx context.Context, topic string) ([]string, error) {
	offs, err := d.k.PartitionOffsets(ctx, topic, 0)
	if err != nil {
		return nil, fmt.Errorf("offsets of %s: %w", topic, err)
	}
	recs, err := d.k.ReadRecords(ctx, topic, 0, offs.Start, offs.End, 0)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", topic, err)
	}
	out := make([]string, 0, len(recs))
	for _, r := range recs {
		out = append(out, string(r.Value))
	}
	return out, nil
}

// login checks that a SCRAM credential authenticates on the broker: a
// client of the Subscription's own identity asks for metadata.
func login(ctx context.Context, bootstrap []string, user, password, mechanism string) error {
	auth := scram.Auth{User: user, Pass: password}
	opts := []kgo.Opt{kgo.SeedBrokers(bootstrap...), kgo.RetryTimeout(5 * time.Second), kgo.DialTimeout(3 * time.Second)}
	if mechanism == "SCRAM-SHA-256" {
		opts = append(opts, kgo.SASL(auth.AsSha256Mechanism()))
	} else {
		opts = append(opts, kgo.SASL(auth.AsSha512Mechanism()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	req := kmsg.NewPtrMetadataRequest()
	req.Topics = []kmsg.MetadataRequestTopic{} // no topics: authentication is the point
	_, err = req.RequestWith(ctx, cl)
	return err
}

// failOnce arms kfake request hooks that each fail the first matching admin
// request with UNKNOWN_SERVER_ERROR, an error the operator treats as
// transient and kgo does not retry by itself, so the operator sees the
// failure, records it and must retry on its own. Only requests naming the
// case's namespace are touched.
type failOnce struct {
	mu    sync.Mutex
	fired map[string]int
}

// injectedText is the broker message of an injected failure, which the
// audit trail must then show.
const injectedText = "injected by the fault suite: this admin call fails once"

// Hook names, one per admin call.
const (
	hookCreateTopics    = "CreateTopics"
	hookAlterConfigs    = "IncrementalAlterConfigs"
	hookCreatePartition = "CreatePartitions"
	hookCreateACLs      = "CreateACLs"
	hookDeleteACLs      = "DeleteACLs"
	hookUpsertSCRAM     = "AlterUserSCRAMCredentials(upsert)"
	hookDeleteSCRAM     = "AlterUserSCRAMCredentials(delete)"
)

var allHooks = []string{hookCreateTopics, hookAlterConfigs, hookCreatePartition, hookCreateACLs, hookDeleteACLs, hookUpsertSCRAM, hookDeleteSCRAM}

// hookAuditOps maps each hook to the audit operation whose failed outcome
// must then appear in the trail.
var hookAuditOps = map[string]string{
	hookCreateTopics: audit.OpCreateTopic, hookAlterConfigs: audit.OpAlterTopicConfig,
	hookCreatePartition: audit.OpAddPartitions, hookCreateACLs: audit.OpCreateACL,
	hookDeleteACLs: audit.OpDeleteACL, hookUpsertSCRAM: audit.OpUpsertCredential,
	hookDeleteSCRAM: audit.OpDeleteCredential,
}

func (f *failOnce) count(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fired[name]++
}

// counts returns how often each hook fired.
func (f *failOnce) counts() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.fired)
}

// armFailOnce installs one hook per admin call on the embedded cluster.
// A hook that handles a request is dropped by kfake, so each fails one
// request; a hook that passes a request on stays for the next.
func armFailOnce(b *brokers.Broker, ns string) (*failOnce, error) {
	c := b.Kfake()
	if c == nil {
		return nil, errors.New("admin call hooks need the embedded broker")
	}
	f := &failOnce{fired: map[string]int{}}
	mine := func(name string) bool {
		return strings.HasPrefix(name, ns+".") || strings.HasPrefix(name, "User:"+ns+".")
	}
	msg := kmsg.StringPtr(injectedText)
	code := kerr.UnknownServerError.Code

	c.ControlKey(int16(kmsg.CreateTopics), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		req := kr.(*kmsg.CreateTopicsRequest)
		if !slices.ContainsFunc(req.Topics, func(t kmsg.CreateTopicsRequestTopic) bool { return mine(t.Topic) }) {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
		for _, t := range req.Topics {
			rt := kmsg.NewCreateTopicsResponseTopic()
			rt.Topic, rt.ErrorCode, rt.ErrorMessage = t.Topic, code, msg
			resp.Topics = append(resp.Topics, rt)
		}
		f.count(hookCreateTopics)
		return resp, nil, true
	})
	c.ControlKey(int16(kmsg.IncrementalAlterConfigs), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		req := kr.(*kmsg.IncrementalAlterConfigsRequest)
		if !slices.ContainsFunc(req.Resources, func(r kmsg.IncrementalAlterConfigsRequestResource) bool { return mine(r.ResourceName) }) {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
		for _, r := range req.Resources {
			rr := kmsg.NewIncrementalAlterConfigsResponseResource()
			rr.ResourceType, rr.ResourceName, rr.ErrorCode, rr.ErrorMessage = r.ResourceType, r.ResourceName, code, msg
			resp.Resources = append(resp.Resources, rr)
		}
		f.count(hookAlterConfigs)
		return resp, nil, true
	})
	c.ControlKey(int16(kmsg.CreatePartitions), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		req := kr.(*kmsg.CreatePartitionsRequest)
		if !slices.ContainsFunc(req.Topics, func(t kmsg.CreatePartitionsRequestTopic) bool { return mine(t.Topic) }) {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
		for _, t := range req.Topics {
			rt := kmsg.NewCreatePartitionsResponseTopic()
			rt.Topic, rt.ErrorCode, rt.ErrorMessage = t.Topic, code, msg
			resp.Topics = append(resp.Topics, rt)
		}
		f.count(hookCreatePartition)
		return resp, nil, true
	})
	c.ControlKey(int16(kmsg.CreateACLs), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		req := kr.(*kmsg.CreateACLsRequest)
		if !slices.ContainsFunc(req.Creations, func(a kmsg.CreateACLsRequestCreation) bool { return mine(a.Principal) }) {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.CreateACLsResponse)
		for range req.Creations {
			rr := kmsg.NewCreateACLsResponseResult()
			rr.ErrorCode, rr.ErrorMessage = code, msg
			resp.Results = append(resp.Results, rr)
		}
		f.count(hookCreateACLs)
		return resp, nil, true
	})
	c.ControlKey(int16(kmsg.DeleteACLs), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		req := kr.(*kmsg.DeleteACLsRequest)
		if !slices.ContainsFunc(req.Filters, func(a kmsg.DeleteACLsRequestFilter) bool { return a.Principal != nil && mine(*a.Principal) }) {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.DeleteACLsResponse)
		for range req.Filters {
			rr := kmsg.NewDeleteACLsResponseResult()
			rr.ErrorCode, rr.ErrorMessage = code, msg
			resp.Results = append(resp.Results, rr)
		}
		f.count(hookDeleteACLs)
		return resp, nil, true
	})
	// Upserts and deletions share one request type; each hook fails the
	// first request carrying its kind (the whole request, as a broker that
	// failed it would).
	scramHook := func(name string, match func(*kmsg.AlterUserSCRAMCredentialsRequest) bool) {
		c.ControlKey(int16(kmsg.AlterUserSCRAMCredentials), func(kr kmsg.Request) (kmsg.Response, error, bool) {
			req := kr.(*kmsg.AlterUserSCRAMCredentialsRequest)
			if !match(req) {
				return nil, nil, false
			}
			resp := req.ResponseKind().(*kmsg.AlterUserSCRAMCredentialsResponse)
			seen := map[string]bool{}
			users := []string{}
			for _, d := range req.Deletions {
				users = append(users, d.Name)
			}
			for _, u := range req.Upsertions {
				users = append(users, u.Name)
			}
			for _, u := range users {
				if seen[u] {
					continue
				}
				seen[u] = true
				rr := kmsg.NewAlterUserSCRAMCredentialsResponseResult()
				rr.User, rr.ErrorCode, rr.ErrorMessage = u, code, msg
				resp.Results = append(resp.Results, rr)
			}
			f.count(name)
			return resp, nil, true
		})
	}
	scramHook(hookUpsertSCRAM, func(r *kmsg.AlterUserSCRAMCredentialsRequest) bool {
		return slices.ContainsFunc(r.Upsertions, func(u kmsg.AlterUserSCRAMCredentialsRequestUpsertion) bool { return strings.HasPrefix(u.Name, ns+".") })
	})
	scramHook(hookDeleteSCRAM, func(r *kmsg.AlterUserSCRAMCredentialsRequest) bool {
		return slices.ContainsFunc(r.Deletions, func(d kmsg.AlterUserSCRAMCredentialsRequestDeletion) bool { return strings.HasPrefix(d.Name, ns+".") })
	})
	return f, nil
}
