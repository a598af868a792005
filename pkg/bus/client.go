// Package bus is the client side of the HMS event bus: publish CloudEvents,
// consume them at least once in a consumer group, or stream a topic from any
// offset, with the SCRAM credentials the operator issues for a Subscription
// (see the SecretKey* constants for the Secret it writes).
//
// It speaks the Kafka protocol through franz-go's kgo client; it does not
// administer the broker.
package bus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// DefaultClientID is the Kafka client.id sent when none is configured.
const DefaultClientID = "hmsbus"

// Handler handles one event. Returning nil acknowledges it; an error leaves
// it unacknowledged so it is delivered again.
type Handler func(ctx context.Context, e Event) error

// client is a kgo client that also notices refused authentication.
type client struct {
	*kgo.Client
	auth *authWatch
}

// newClient connects a kgo client with the credentials' SASL and TLS
// settings plus extra options.
func newClient(c Credentials, clientID string, extra ...kgo.Opt) (*client, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if clientID == "" {
		clientID = DefaultClientID
	}
	watch := newAuthWatch(c)
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Bootstrap...),
		kgo.ClientID(clientID),
		kgo.WithHooks(watch),
	}
	ids, err := identityOpts(c)
	if err != nil {
		return nil, err
	}
	opts = append(opts, ids...)
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("creating bus client for %s: %w", c.Username, err)
	}
	return &client{Client: cl, auth: watch}, nil
}

// authWatch notices a broker refusing the credentials by closing the
// connection during SASL authentication. Apache Kafka answers a bad
// password with SASL_AUTHENTICATION_FAILED, which kgo returns; other
// brokers (kfake among them) just close the connection, which kgo treats
// as a network error and retries until the caller gives up. Two such
// closes with no authenticated response in between mean the credentials
// are refused; a single one may be a network blip.
type authWatch struct {
	creds    string
	closes   atomic.Int32
	once     sync.Once
	refused  chan struct{}
	failure  error
	failedMu sync.Mutex

	// certificate is set for a client-certificate identity: a broker that
	// trusts the certificate's issuer but maps no principal from its
	// subject (no CN) completes the TLS handshake, then closes the
	// connection at the first request.
	certificate bool
}

func newAuthWatch(c Credentials) *authWatch {
	creds := fmt.Sprintf("%s as %s", c.mechanism(), c.Username)
	switch {
	case c.usesCertificate():
		creds = "client certificate"
		if c.Username != "" {
			creds += " CN=" + c.Username
		}
	case c.usesToken():
		creds = "OAUTHBEARER token from " + c.TokenFile
	}
	return &authWatch{creds: creds, certificate: c.usesCertificate(), refused: make(chan struct{})}
}

// OnBrokerRead implements kgo.HookBrokerRead.
func (w *authWatch) OnBrokerRead(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	switch kmsg.Key(key) {
	case kmsg.ApiVersions, kmsg.SASLHandshake:
		return
	case kmsg.SASLAuthenticate:
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			if w.closes.Add(1) >= 2 {
				w.trip()
			}
		}
	default:
		if err == nil {
			w.closes.Store(0) // some connection authenticated
		}
	}
}

func (w *authWatch) trip() {
	w.once.Do(func() {
		// Reported as the error Kafka itself sends for refused credentials,
		// so callers can match one code whatever the broker.
		w.failedMu.Lock()
		w.failure = fmt.Errorf("%w: the broker closed the connection during SASL authentication (%s): %w", ErrAuthenticationFailed, w.creds, kerr.SaslAuthenticationFailed)
		w.failedMu.Unlock()
		close(w.refused)
	})
}

// err is the authentication failure seen so far, or nil.
func (w *authWatch) err() error {
	w.failedMu.Lock()
	defer w.failedMu.Unlock()
	return w.failure
}

// bind returns a context that also ends when the credentials are refused,
// so a call that kgo would retry forever returns instead.
func (w *authWatch) bind(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-w.refused:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// explain prefers the authentication failure, when there was one, over
// the error (often just a canceled context) it caused.
func (w *authWatch) explain(err error) error {
	if authErr := w.err(); authErr != nil {
		return authErr
	}
	if w.certificate && closedAfterHandshake(err) {
		return fmt.Errorf("%w: the broker closed the connection right after the TLS handshake (%s): it trusts the certificate's issuer but takes no principal from its subject (does the certificate have the CN its ssl.principal.mapping.rules expect?): %w", ErrAuthenticationFailed, w.creds, err)
	}
	return err
}

// closedAfterHandshake reports the broker hanging up on the connection's
// first request (kgo's ErrFirstReadEOF). With a client certificate, after
// a TLS handshake that succeeded, that is Kafka refusing the certificate's
// subject; kgo's own text would suggest TLS is missing, which it is not.
func closedAfterHandshake(err error) bool {
	var eof *kgo.ErrFirstReadEOF
	return errors.As(err, &eof)
}

func scramMechanism(c Credentials) sasl.Mechanism {
	auth := scram.Auth{User: c.Username, Pass: c.Password}
	if c.mechanism() == MechanismSCRAMSHA256 {
		return auth.AsSha256Mechanism()
	}
	return auth.AsSha512Mechanism()
}

func tlsConfig(caPEM []byte) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(caPEM) == 0 {
		return cfg, nil // system roots
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("CA bundle holds no PEM certificate")
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// newTopicGrace bounds how long describeTopic waits for a topic the broker
// does not know yet. Apache Kafka answers CreateTopics once its controller
// has committed the topic; the brokers learn it from the metadata log a
// moment later and until then answer UNKNOWN_TOPIC_OR_PARTITION (or
// LEADER_NOT_AVAILABLE while the first leader is elected). A service started
// when the operator reports its Topic Ready must not take that moment for a
// missing topic (Kafka's own producer likewise waits for metadata). kfake
// knows a topic as soon as it is created.
const newTopicGrace = 5 * time.Second

// describeTopic returns the topic's partitions, after checking the
// credentials may perform op on it. Asking first makes a missing grant, a
// wrong password or a missing topic fail at once with a clear error, where
// the producer and consumer would retry quietly or only notice later.
func describeTopic(ctx context.Context, cl *client, topic string, op kmsg.ACLOperation) ([]int32, error) {
	deadline := time.Now().Add(newTopicGrace)
	for {
		partitions, err := describeTopicOnce(ctx, cl, topic, op)
		if err == nil || !isAny(err, []error{kerr.UnknownTopicOrPartition, kerr.LeaderNotAvailable}) || time.Now().After(deadline) {
			return partitions, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func describeTopicOnce(ctx context.Context, cl *client, topic string, op kmsg.ACLOperation) ([]int32, error) {
	req := kmsg.NewPtrMetadataRequest()
	req.IncludeTopicAuthorizedOperations = true
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	ctx, cancel := cl.auth.bind(ctx)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("describing topic %s: %w", topic, classify(cl.auth.explain(err)))
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return nil, fmt.Errorf("describing topic %s: %w", topic, classify(err))
		}
		if !allowed(t.AuthorizedOperations, op) {
			return nil, fmt.Errorf("%w: %w: the credentials may not %s topic %s", ErrNotAuthorized, kerr.TopicAuthorizationFailed, strings.ToLower(op.String()), topic)
		}
		partitions := make([]int32, 0, len(t.Partitions))
		for _, p := range t.Partitions {
			partitions = append(partitions, p.Partition)
		}
		return partitions, nil
	}
	return nil, fmt.Errorf("describing topic %s: %w: missing from the broker's answer", topic, ErrTopicNotFound)
}

// allowed reads Kafka's authorized-operations bit field (KIP-430): bit n is
// ACL operation n. Brokers that do not report it send math.MinInt32, and
// then the broker decides at the first read or write.
func allowed(ops int32, op kmsg.ACLOperation) bool {
	if ops == math.MinInt32 {
		return true
	}
	return ops&(1<<int32(op)) != 0
}
