package brokerproxy_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/hms-platform/bus-operator/test/harness/brokerproxy"
	"github.com/hms-platform/bus-operator/test/harness/kafkabroker"
)

// One Apache Kafka broker behind a proxy serves the package; its TLS
// listener has a second proxy in front, to show raw forwarding.
var (
	broker   *kafkabroker.Broker
	proxy    *brokerproxy.Proxy
	tlsProxy *brokerproxy.Proxy
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// The TLS proxy exists before the broker so the broker can advertise
	// it; the port it targets is reserved here and given to the broker.
	tlsPort, err := freePort()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tlsProxy, err = brokerproxy.Start(net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = tlsProxy.Close() }()
	began := time.Now()
	broker, proxy, err = kafkabroker.StartBehindProxy(kafkabroker.Options{
		ListenerPorts: map[string]int{kafkabroker.ListenerTLS: tlsPort},
		Advertised:    map[string]string{kafkabroker.ListenerTLS: tlsProxy.Addr()},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("brokerproxy: Apache Kafka %s behind %s ready in %s\n", broker.Version(), proxy.Addr(), time.Since(began).Round(time.Millisecond))
	code := m.Run()
	if err := broker.Close(); err != nil {
		// Killed after StopTimeout: gone all the same.
		fmt.Fprintln(os.Stderr, "brokerproxy: warning:", err)
	}
	if err := proxy.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	return code
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func newClient(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append(broker.AdminOpts(), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// metadata sends one Metadata request to the broker (through the proxy it
// advertises). kadm's ListTopics would not do: kgo answers repeated
// metadata requests from a short-lived cache.
func metadata(ctx context.Context, cl *kgo.Client) error {
	_, err := cl.Broker(1).Request(ctx, kmsg.NewPtrMetadataRequest())
	return err
}

func TestCountsRequestsByKey(t *testing.T) {
	broker.LogOnFailure(t)
	before := proxy.Counts()
	adm := kadm.NewClient(newClient(t))
	topic := fmt.Sprintf("counted-%d", time.Now().UnixNano())
	resp, err := adm.CreateTopic(ctxTimeout(t, 20*time.Second), 1, 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("creating %s through the proxy: %v", topic, err)
	}
	got := proxy.Counts().Minus(before)
	t.Logf("requests: %s", got)
	if n := got.Of(kmsg.CreateTopics); n != 1 {
		t.Errorf("CreateTopics = %d, want 1", n)
	}
	if got.Writes() != 1 {
		t.Errorf("writes = %d, want the one CreateTopics", got.Writes())
	}
	// A new client authenticates through the proxy: SaslHandshake v1, then
	// SCRAM's two rounds as SaslAuthenticate requests, all counted.
	if got.Of(kmsg.SASLHandshake) < 1 || got.Of(kmsg.SASLAuthenticate) < 2 || got.Of(kmsg.ApiVersions) < 1 {
		t.Errorf("want ApiVersions, SaslHandshake and two SaslAuthenticate per connection, got %s", got)
	}
	if got.Of(kmsg.Metadata) < 1 {
		t.Errorf("want at least one Metadata, got %s", got)
	}

	// Requests on an open connection are counted one by one.
	cl := newClient(t)
	if err := metadata(ctxTimeout(t, 10*time.Second), cl); err != nil {
		t.Fatal(err)
	}
	before = proxy.Counts()
	for range 3 {
		if err := metadata(ctxTimeout(t, 10*time.Second), cl); err != nil {
			t.Fatal(err)
		}
	}
	if got := proxy.Counts().Minus(before); got.Of(kmsg.Metadata) != 3 || len(got) != 1 {
		t.Errorf("three Metadata requests counted as %s, want Metadata=3", got)
	}
}

func TestPauseStallsAndResumeDelivers(t *testing.T) {
	broker.LogOnFailure(t)
	t.Cleanup(proxy.Resume)
	cl := newClient(t)
	if err := metadata(ctxTimeout(t, 10*time.Second), cl); err != nil {
		t.Fatalf("before pause: %v", err)
	}

	proxy.Pause()
	before := proxy.Counts()
	if err := metadata(ctxTimeout(t, 1500*time.Millisecond), cl); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("request while paused: err = %v, want a timeout", err)
	}
	// A new connection is accepted but not served either.
	fresh := newClient(t)
	if err := fresh.Ping(ctxTimeout(t, 1500*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("new client while paused: err = %v, want a timeout", err)
	}
	if got := proxy.Counts().Minus(before); len(got) != 0 {
		t.Fatalf("the broker received %s while paused", got)
	}

	proxy.Resume()
	if err := metadata(ctxTimeout(t, 15*time.Second), cl); err != nil {
		t.Fatalf("after resume: %v", err)
	}
	if err := metadata(ctxTimeout(t, 15*time.Second), fresh); err != nil {
		t.Fatalf("new client after resume: %v", err)
	}
}

func TestSetDelayDelaysEachRequest(t *testing.T) {
	broker.LogOnFailure(t)
	t.Cleanup(func() { proxy.SetDelay(0) })
	cl := newClient(t)
	if err := cl.Ping(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	timed := func() time.Duration {
		began := time.Now()
		if _, err := cl.Broker(1).Request(ctxTimeout(t, 10*time.Second), kmsg.NewPtrMetadataRequest()); err != nil {
			t.Fatal(err)
		}
		return time.Since(began)
	}
	fast := timed()
	const delay = 400 * time.Millisecond
	proxy.SetDelay(delay)
	slow := timed()
	proxy.SetDelay(0)
	again := timed()
	t.Logf("metadata round trip: %s, with a %s delay %s, after %s", fast, delay, slow, again)
	if slow < delay {
		t.Errorf("with a %s delay the request took %s", delay, slow)
	}
	if again >= delay {
		t.Errorf("after SetDelay(0) the request still took %s", again)
	}
}

func TestDropConnectionsClientsReconnect(t *testing.T) {
	broker.LogOnFailure(t)
	cl := newClient(t)
	if err := metadata(ctxTimeout(t, 10*time.Second), cl); err != nil {
		t.Fatal(err)
	}
	accepted := proxy.Accepted()
	proxy.DropConnections()
	// The first request may meet the dead connection; kgo then redials.
	ctx := ctxTimeout(t, 15*time.Second)
	for err := metadata(ctx, cl); err != nil; err = metadata(ctx, cl) {
		if ctx.Err() != nil {
			t.Fatalf("after dropped connections: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if proxy.Accepted() <= accepted {
		t.Fatalf("the client did not reconnect (accepted %d, before %d)", proxy.Accepted(), accepted)
	}
}

func TestTLSIsForwardedRawAndUncounted(t *testing.T) {
	broker.LogOnFailure(t)
	cl := newClient(t, kgo.SeedBrokers(broker.TLSBootstrap()), kgo.DialTLSConfig(broker.TLSConfig()),
		kgo.SASL(scram.Auth{User: broker.AdminUser, Pass: broker.AdminPassword}.AsSha512Mechanism()))
	if broker.TLSBootstrap() != tlsProxy.Addr() {
		t.Fatalf("TLS listener advertises %s, want the proxy %s", broker.TLSBootstrap(), tlsProxy.Addr())
	}
	if _, err := kadm.NewClient(cl).ListBrokers(ctxTimeout(t, 15*time.Second)); err != nil {
		t.Fatalf("admin over SASL_SSL through the proxy: %v", err)
	}
	if tlsProxy.Accepted() == 0 {
		t.Fatal("the TLS client did not go through the proxy")
	}
	if got := tlsProxy.Counts(); len(got) != 0 {
		t.Fatalf("TLS bytes were counted as requests: %s", got)
	}
}
