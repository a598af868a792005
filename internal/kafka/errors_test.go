package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

func TestClassify(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	tests := []struct {
		name        string
		err         error
		msg         string
		unavailable bool
		auth        bool
		exists      bool
		notFound    bool
		rejected    string // Kafka error name, "" if not a rejection
	}{
		{name: "invalid config", err: kerr.InvalidConfig, msg: "retention.ms must be a number", rejected: "INVALID_CONFIG"},
		{name: "wrapped rf", err: fmt.Errorf("x: %w", kerr.InvalidReplicationFactor), rejected: "INVALID_REPLICATION_FACTOR"},
		{name: "policy", err: kerr.PolicyViolation, rejected: "POLICY_VIOLATION"},
		{name: "topic authz", err: &kadm.AuthError{Err: kerr.TopicAuthorizationFailed}, rejected: "TOPIC_AUTHORIZATION_FAILED"},
		{name: "not controller", err: kerr.NotController, unavailable: true},
		{name: "request timed out", err: kerr.RequestTimedOut, unavailable: true},
		{name: "unknown server error", err: kerr.UnknownServerError, unavailable: true},
		{name: "sasl failed", err: fmt.Errorf("%w: bad password", kerr.SaslAuthenticationFailed), unavailable: true, auth: true},
		{name: "exists", err: kerr.TopicAlreadyExists, exists: true},
		{name: "unknown topic", err: kerr.UnknownTopicOrPartition, notFound: true},
		{name: "dial", err: dial, unavailable: true},
		{name: "eof", err: io.EOF, unavailable: true},
		{name: "deadline", err: context.DeadlineExceeded, unavailable: true},
		{name: "canceled", err: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classify(tt.err, tt.msg)
			if errors.Is(got, ErrUnavailable) != tt.unavailable {
				t.Errorf("unavailable = %v, want %v (%v)", !tt.unavailable, tt.unavailable, got)
			}
			if errors.Is(got, ErrAuthentication) != tt.auth {
				t.Errorf("authentication = %v, want %v (%v)", !tt.auth, tt.auth, got)
			}
			if errors.Is(got, ErrTopicExists) != tt.exists {
				t.Errorf("exists = %v, want %v (%v)", !tt.exists, tt.exists, got)
			}
			if errors.Is(got, ErrTopicNotFound) != tt.notFound {
				t.Errorf("not found = %v, want %v (%v)", !tt.notFound, tt.notFound, got)
			}
			r, ok := errors.AsType[*RejectedError](got)
			if ok != (tt.rejected != "") || ok && (r.Code != tt.rejected || r.Message != tt.msg) {
				t.Errorf("got %#v, want rejection %q with message %q", got, tt.rejected, tt.msg)
			}
			if !ok && !errors.Is(got, tt.err) {
				t.Errorf("%v lost the original error %v", got, tt.err)
			}
		})
	}
}

func TestOpErrNamesOperationWithoutSharing(t *testing.T) {
	shared := classify(kerr.InvalidReplicationFactor, "")
	a := opErr("creating topic A", shared)
	b := opErr("creating topic B", shared)
	ra, _ := errors.AsType[*RejectedError](a)
	rb, _ := errors.AsType[*RejectedError](b)
	if ra == nil || rb == nil || ra.Op != "creating topic A" || rb.Op != "creating topic B" {
		t.Fatalf("ops not set per caller: %v / %v", a, b)
	}
	wrapped := opErr("pinging broker", classify(io.EOF, ""))
	if !errors.Is(wrapped, ErrUnavailable) || wrapped.Error() == "" {
		t.Fatalf("opErr lost the error kind: %v", wrapped)
	}
	if opErr("x", nil) != nil {
		t.Fatal("opErr(nil) must be nil")
	}
}

func TestKafkaName(t *testing.T) {
	for wire, want := range map[string]string{
		"TOPIC": ResourceTopic, "CLUSTER": ResourceCluster, "GROUP": ResourceGroup,
		"LITERAL": PatternLiteral, "PREFIXED": PatternPrefixed,
		"IDEMPOTENT_WRITE": OpIdempotentWrite, "DESCRIBE": OpDescribe,
		"ALLOW": PermissionAllow, "DENY": PermissionDeny, "TRANSACTIONAL_ID": "TransactionalId",
	} {
		if got := kafkaName(wire); got != want {
			t.Errorf("kafkaName(%s) = %s, want %s", wire, got, want)
		}
	}
}

func TestToWireRefusesWildcards(t *testing.T) {
	good := ACL{Principal: "User:a", Host: "*", ResourceType: ResourceTopic, ResourceName: "t", PatternType: PatternLiteral, Operation: OpRead, Permission: PermissionAllow}
	if _, err := toWire(good); err != nil {
		t.Fatalf("good ACL refused: %v", err)
	}
	bad := []func(*ACL){
		func(a *ACL) { a.ResourceType = "Any" },
		func(a *ACL) { a.PatternType = "Match" },
		func(a *ACL) { a.PatternType = "Any" },
		func(a *ACL) { a.Operation = "Any" },
		func(a *ACL) { a.Permission = "Any" },
		func(a *ACL) { a.Operation = "Fly" },
		func(a *ACL) { a.Principal = "" },
		func(a *ACL) { a.Host = "" },
		func(a *ACL) { a.ResourceName = "" },
	}
	for i, mutate := range bad {
		a := good
		mutate(&a)
		if _, err := toWire(a); err == nil {
			t.Errorf("case %d: %s accepted", i, a)
		}
	}
}

func TestNoAnswerTellsALostAnswerFromTheBrokersOwn(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"connection lost", opErr("creating topic x", classify(io.EOF, "")), true},
		{"caller stopped waiting", opErr("creating topic x", classify(context.Canceled, "")), true},
		{"broker's error answer", opErr("creating topic x", classify(kerr.UnknownServerError, "")), false},
		{"broker refused", opErr("creating topic x", classify(kerr.TopicAuthorizationFailed, "")), false},
		{"topic exists", opErr("creating topic x", classify(kerr.TopicAlreadyExists, "")), false},
	}
	for _, c := range cases {
		if got := NoAnswer(c.err); got != c.want {
			t.Errorf("%s: NoAnswer(%v) = %t, want %t", c.name, c.err, got, c.want)
		}
	}
	if got := classify(io.EOF, "").Error(); !strings.Contains(got, io.EOF.Error()) {
		t.Errorf("the cause's text is lost: %q", got)
	}
}

func TestOnlyTheClusterDependentRejectionIsAskedAgain(t *testing.T) {
	rf := opErr("creating topic x", classify(kerr.InvalidReplicationFactor, "All brokers are currently fenced"))
	if !IsRejected(rf) || !DependsOnCluster(rf) {
		t.Fatalf("INVALID_REPLICATION_FACTOR: rejected %t, depends on the cluster %t", IsRejected(rf), DependsOnCluster(rf))
	}
	cfg := opErr("creating topic x", classify(kerr.InvalidConfig, "segment.bytes too small"))
	if !IsRejected(cfg) || DependsOnCluster(cfg) {
		t.Fatalf("INVALID_CONFIG: rejected %t, depends on the cluster %t", IsRejected(cfg), DependsOnCluster(cfg))
	}
}
