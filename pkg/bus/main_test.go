package bus

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/hms-platform/bus-operator/test/harness/brokers"
	"github.com/hms-platform/bus-operator/test/harness/embedded"
)

// One broker under test (HMSBUS_TEST_BROKER: embedded kfake or Apache
// Kafka; real Kafka protocol, SASL/SCRAM and ACLs enforced either way)
// serves every test in the package. Each test uses its own topics and
// consumer groups so tests cannot see each other's events.
var (
	broker *brokers.Broker
	admin  *kgo.Client
	reader Credentials // consume role: Read+Describe on t.*, Read on groups svc.reader*
	writer Credentials // produce role: Write+Describe on t.*
)

const (
	readerUser = "svc.reader"
	writerUser = "svc.writer"
	// Topic names: t.* are granted to both users, secret to nobody,
	// d.describe-only only for Describe to the reader.
	topicPrefix       = "t."
	topicSecret       = "secret"
	topicDescribeOnly = "d.describe-only"
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	var err error
	broker, err = brokers.Start(brokers.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting broker:", err)
		return 1
	}
	defer func() { _ = broker.Close() }()
	admin, err = kgo.NewClient(broker.AdminOpts()...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "admin client:", err)
		return 1
	}
	defer admin.Close()
	if err := seed(); err != nil {
		fmt.Fprintln(os.Stderr, "seeding broker:", err)
		return 1
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "--- last lines of the %s log ---\n%s\n", broker.Name(), broker.LogTail(60))
	}
	return code
}

// seed creates the two users, their ACLs and the topics shared by tests.
func seed() error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	reader = Credentials{Bootstrap: broker.Bootstrap(), Mechanism: MechanismSCRAMSHA512, Username: readerUser, Password: mustPassword(), ConsumerGroup: readerUser}
	writer = Credentials{Bootstrap: broker.Bootstrap(), Mechanism: MechanismSCRAMSHA256, Username: writerUser, Password: mustPassword()}
	if err := createUser(ctx, reader); err != nil {
		return err
	}
	if err := createUser(ctx, writer); err != nil {
		return err
	}
	topic, group := kmsg.ACLResourceTypeTopic, kmsg.ACLResourceTypeGroup
	prefixed, literal := kmsg.ACLResourcePatternTypePrefixed, kmsg.ACLResourcePatternTypeLiteral
	grants := []aclGrant{
		{"User:" + readerUser, topic, topicPrefix, prefixed, kmsg.ACLOperationRead},
		{"User:" + readerUser, topic, topicPrefix, prefixed, kmsg.ACLOperationDescribe},
		{"User:" + readerUser, group, readerUser, prefixed, kmsg.ACLOperationRead},
		{"User:" + readerUser, topic, topicDescribeOnly, literal, kmsg.ACLOperationDescribe},
		{"User:" + writerUser, topic, topicPrefix, prefixed, kmsg.ACLOperationWrite},
		{"User:" + writerUser, topic, topicPrefix, prefixed, kmsg.ACLOperationDescribe},
	}
	if err := createACLs(ctx, grants); err != nil {
		return err
	}
	if err := createTopic(ctx, 1, topicSecret, topicDescribeOnly); err != nil {
		return err
	}
	// Kafka's brokers learn of new users from the metadata log a moment
	// after the admin's calls return: the tests start once both log in.
	for _, c := range []Credentials{reader, writer} {
		if err := waitLogin(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// waitLogin waits until c authenticates.
func waitLogin(ctx context.Context, c Credentials) error {
	for {
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.Bootstrap...), kgo.SASL(scramMechanism(c)), kgo.RequestRetries(0))
		if err != nil {
			return err
		}
		err = cl.Ping(ctx)
		cl.Close()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("user %s cannot log in: %w", c.Username, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func mustPassword() string {
	pw, err := embedded.RandomPassword()
	if err != nil {
		panic(err)
	}
	return pw
}

// createUser upserts a SCRAM credential the way kadm does: the client salts
// and hashes, the broker stores only the salted password. The iterations are
// the broker's (kfake verifies only 4096; Kafka gets 8192).
func createUser(ctx context.Context, c Credentials) error {
	salt := make([]byte, 24)
	if _, err := rand.Read(salt); err != nil {
		return err
	}
	iterations := broker.SCRAMIterations()
	u := kmsg.NewAlterUserSCRAMCredentialsRequestUpsertion()
	u.Name, u.Iterations, u.Salt = c.Username, int32(iterations), salt
	var err error
	switch c.Mechanism {
	case MechanismSCRAMSHA256:
		u.Mechanism = 1
		u.SaltedPassword, err = pbkdf2.Key(sha256.New, c.Password, salt, iterations, sha256.Size)
	default:
		u.Mechanism = 2
		u.SaltedPassword, err = pbkdf2.Key(sha512.New, c.Password, salt, iterations, sha512.Size)
	}
	if err != nil {
		return err
	}
	req := kmsg.NewPtrAlterUserSCRAMCredentialsRequest()
	req.Upsertions = append(req.Upsertions, u)
	resp, err := req.RequestWith(ctx, admin)
	if err != nil {
		return fmt.Errorf("creating user %s: %w", c.Username, err)
	}
	for _, r := range resp.Results {
		if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
			return fmt.Errorf("creating user %s: %w", r.User, err)
		}
	}
	return nil
}

type aclGrant struct {
	principal    string
	resourceType kmsg.ACLResourceType
	name         string
	pattern      kmsg.ACLResourcePatternType
	op           kmsg.ACLOperation
}

func createACLs(ctx context.Context, grants []aclGrant) error {
	req := kmsg.NewPtrCreateACLsRequest()
	for _, g := range grants {
		c := kmsg.NewCreateACLsRequestCreation()
		c.Principal, c.Host = g.principal, "*"
		c.ResourceType, c.ResourceName, c.ResourcePatternType = g.resourceType, g.name, g.pattern
		c.Operation, c.PermissionType = g.op, kmsg.ACLPermissionTypeAllow
		req.Creations = append(req.Creations, c)
	}
	resp, err := req.RequestWith(ctx, admin)
	if err != nil {
		return fmt.Errorf("creating ACLs: %w", err)
	}
	for _, r := range resp.Results {
		if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
			return fmt.Errorf("creating ACLs: %w", err)
		}
	}
	return nil
}

func createTopic(ctx context.Context, partitions int32, names ...string) error {
	return createTopicWith(ctx, admin, partitions, names...)
}

// createTopicWith creates topics through the given admin client.
func createTopicWith(ctx context.Context, admin *kgo.Client, partitions int32, names ...string) error {
	req := kmsg.NewPtrCreateTopicsRequest()
	for _, n := range names {
		t := kmsg.NewCreateTopicsRequestTopic()
		t.Topic, t.NumPartitions, t.ReplicationFactor = n, partitions, 1
		req.Topics = append(req.Topics, t)
	}
	resp, err := req.RequestWith(ctx, admin)
	if err != nil {
		return fmt.Errorf("creating topics %v: %w", names, err)
	}
	for _, t := range resp.Topics {
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return fmt.Errorf("creating topic %s: %w", t.Topic, err)
		}
	}
	return nil
}

// topicSeq keeps names unique when tests run more than once (-count).
var topicSeq atomic.Int32

// newTopicName is a fresh topic name granted to both test users.
func newTopicName(t *testing.T) string {
	return fmt.Sprintf("%s%s.%d", topicPrefix, strings.ReplaceAll(t.Name(), "/", "."), topicSeq.Add(1))
}

// newTopic creates a fresh topic granted to both test users.
func newTopic(t *testing.T, partitions int32) string {
	t.Helper()
	name := newTopicName(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := createTopic(ctx, partitions, name); err != nil {
		t.Fatal(err)
	}
	return name
}

// testCtx is a context that ends with the test or after 20s.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
