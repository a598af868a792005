package kafkabroker_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/hms-platform/bus-operator/test/harness/kafkabroker"
)

func TestVersionIsWhatRuns(t *testing.T) {
	broker.LogOnFailure(t)
	if broker.Version() == "" {
		t.Fatal("Version is empty")
	}
	// The broker logs the version of the jars it loaded.
	log, err := os.ReadFile(broker.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "Kafka version: "+broker.Version()) {
		t.Fatalf("the broker log does not say it runs Kafka %s", broker.Version())
	}
	t.Logf("Kafka %s, cluster %s, CLIENT %s, TLS %s, MTLS %s", broker.Version(), broker.ClusterID(),
		broker.Bootstrap(), broker.TLSBootstrap(), broker.MTLSBootstrap())
}

func TestMissingJarsSayRunMakeKafka(t *testing.T) {
	_, err := kafkabroker.Start(kafkabroker.Options{Home: t.TempDir()})
	if !errors.Is(err, kafkabroker.ErrNotFetched) {
		t.Fatalf("start without jars: err = %v, want ErrNotFetched", err)
	}
	t.Logf("the error reads: %v", err)
}

func TestAdminLogsInWithBothSCRAMMechanisms(t *testing.T) {
	broker.LogOnFailure(t)
	for _, mech := range []struct {
		name string
		m    func(scram.Auth) kgo.Opt
	}{
		{"SCRAM-SHA-512", func(a scram.Auth) kgo.Opt { return kgo.SASL(a.AsSha512Mechanism()) }},
		{"SCRAM-SHA-256", func(a scram.Auth) kgo.Opt { return kgo.SASL(a.AsSha256Mechanism()) }},
	} {
		t.Run(mech.name, func(t *testing.T) {
			auth := scram.Auth{User: broker.AdminUser, Pass: broker.AdminPassword}
			adm := kadm.NewClient(newClient(t, kgo.SeedBrokers(broker.Bootstrap()), mech.m(auth)))
			brokers, err := adm.ListBrokers(testContext(t))
			if err != nil {
				t.Fatalf("admin with %s: %v", mech.name, err)
			}
			if len(brokers) != 1 {
				t.Fatalf("brokers = %v, want one", brokers)
			}
			// The admin is a super user: it may create topics without ACLs.
			createTopic(t, adm, uniqueName("admin-"+strings.ToLower(mech.name)))
		})
	}
}

func TestWrongPasswordIsSaslAuthenticationFailed(t *testing.T) {
	broker.LogOnFailure(t)
	cl := newClient(t, kgo.SeedBrokers(broker.Bootstrap()), kgo.SASL(scramSHA512(broker.AdminUser, "not-the-password")))
	err := cl.Ping(testContext(t))
	if !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("ping with a wrong password: err = %v, want SASL_AUTHENTICATION_FAILED", err)
	}
	// So is an unknown user.
	cl = newClient(t, kgo.SeedBrokers(broker.Bootstrap()), kgo.SASL(scramSHA512("nobody", "x")))
	if err := cl.Ping(testContext(t)); !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("ping as an unknown user: err = %v, want SASL_AUTHENTICATION_FAILED", err)
	}
}

// createUser makes a SCRAM-SHA-512 user as the operator does, with 8192
// iterations, and waits until it can log in.
func createUser(t *testing.T, adm *kadm.Client, user, pass string) {
	t.Helper()
	res, err := adm.AlterUserSCRAMs(testContext(t), nil, []kadm.UpsertSCRAM{{
		User: user, Mechanism: kadm.ScramSha512, Iterations: 8192, Password: pass,
	}})
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		t.Fatalf("creating SCRAM user %s: %v", user, err)
	}
	// Kafka does not read its own writes here: the broker answers Describe
	// from its metadata cache, which may not hold the new credential yet
	// (RESOURCE_NOT_FOUND for a moment after the Alter succeeded).
	eventually(t, "describing "+user, func() error {
		described, err := adm.DescribeUserSCRAMs(testContext(t), user)
		if err != nil {
			return err
		}
		d := described[user]
		if d.Err != nil {
			return d.Err
		}
		if len(d.CredInfos) != 1 || d.CredInfos[0].Iterations != 8192 {
			t.Fatalf("SCRAM user %s described as %+v, want one credential with 8192 iterations", user, d)
		}
		return nil
	})
	eventually(t, "logging in as "+user, func() error {
		cl, err := kgo.NewClient(kgo.SeedBrokers(broker.Bootstrap()), kgo.SASL(scramSHA512(user, pass)))
		if err != nil {
			return err
		}
		defer cl.Close()
		return cl.Ping(testContext(t))
	})
}

func TestUserWith8192IterationsLogsInButHasNoRights(t *testing.T) {
	broker.LogOnFailure(t)
	adm := admin(t)
	topic := uniqueName("no-acl")
	createTopic(t, adm, topic)
	user, pass := uniqueName("user"), "pass-"+uniqueName("p")
	createUser(t, adm, user, pass)

	userOpts := []kgo.Opt{kgo.SeedBrokers(broker.Bootstrap()), kgo.SASL(scramSHA512(user, pass))}
	cl := newClient(t, userOpts...)
	// Metadata answers, but not about the topic: no ACL, no Describe.
	if err := topicMetadataErr(t, cl, topic); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("metadata of %s as %s: err = %v, want TOPIC_AUTHORIZATION_FAILED", topic, user, err)
	}
	// Producing is refused the same way (StandardAuthorizer: no ACL, no access).
	err := cl.ProduceSync(testContext(t), &kgo.Record{Topic: topic, Value: []byte("x")}).FirstErr()
	if !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("produce as %s without ACLs: err = %v, want TOPIC_AUTHORIZATION_FAILED", user, err)
	}
	// Creating topics needs a Create ACL it does not have either.
	resp, err := kadm.NewClient(cl).CreateTopic(testContext(t), 1, 1, nil, uniqueName("not-allowed"))
	if err == nil {
		err = resp.Err
	}
	if !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("create topic as %s without ACLs: err = %v, want TOPIC_AUTHORIZATION_FAILED", user, err)
	}
}

// Kafka 4 admin clients can talk to controllers directly, and any local
// process can reach the loopback ports: the controller and inter-broker
// listeners must refuse everyone but the broker's internal user.
func TestInternalListenersRefuseOutsiders(t *testing.T) {
	broker.LogOnFailure(t)
	for _, listener := range []string{kafkabroker.ListenerController, kafkabroker.ListenerInternal, kafkabroker.ListenerClient} {
		t.Run(listener+"/anonymous", func(t *testing.T) {
			// No SASL at all: the broker drops a connection whose first
			// request (after ApiVersions) is not a SASL handshake.
			cl := newClient(t, kgo.SeedBrokers(broker.Addr(listener)))
			req := kmsg.NewPtrMetadataRequest()
			if _, err := cl.SeedBrokers()[0].Request(testContext(t), req); err == nil {
				t.Fatalf("anonymous Metadata on %s succeeded", listener)
			}
		})
	}
	for _, listener := range []string{kafkabroker.ListenerController, kafkabroker.ListenerInternal} {
		t.Run(listener+"/admin-scram", func(t *testing.T) {
			// Only PLAIN is enabled there: SCRAM users, even the admin, are not let in.
			cl := newClient(t, kgo.SeedBrokers(broker.Addr(listener)), kgo.SASL(scramSHA512(broker.AdminUser, broker.AdminPassword)))
			_, err := cl.SeedBrokers()[0].Request(testContext(t), kmsg.NewPtrMetadataRequest())
			if !errors.Is(err, kerr.UnsupportedSaslMechanism) {
				t.Fatalf("admin SCRAM on %s: err = %v, want UNSUPPORTED_SASL_MECHANISM", listener, err)
			}
		})
		t.Run(listener+"/plain-guess", func(t *testing.T) {
			cl := newClient(t, kgo.SeedBrokers(broker.Addr(listener)),
				kgo.SASL(plain.Auth{User: broker.AdminUser, Pass: broker.AdminPassword}.AsMechanism()))
			_, err := cl.SeedBrokers()[0].Request(testContext(t), kmsg.NewPtrMetadataRequest())
			if !errors.Is(err, kerr.SaslAuthenticationFailed) {
				t.Fatalf("PLAIN as the admin on %s: err = %v, want SASL_AUTHENTICATION_FAILED", listener, err)
			}
		})
	}
}

func TestTLSListener(t *testing.T) {
	broker.LogOnFailure(t)
	t.Run("trusting the CA", func(t *testing.T) {
		adm := kadm.NewClient(newClient(t, kgo.SeedBrokers(broker.TLSBootstrap()),
			kgo.DialTLSConfig(broker.TLSConfig()),
			kgo.SASL(scramSHA512(broker.AdminUser, broker.AdminPassword))))
		if _, err := adm.ListBrokers(testContext(t)); err != nil {
			t.Fatalf("admin over SASL_SSL: %v", err)
		}
	})
	t.Run("without the CA", func(t *testing.T) {
		cl := newClient(t, kgo.SeedBrokers(broker.TLSBootstrap()),
			kgo.DialTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12}),
			kgo.SASL(scramSHA512(broker.AdminUser, broker.AdminPassword)))
		err := cl.Ping(testContext(t))
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Fatalf("SASL_SSL without the CA: err = %v, want an unknown-authority error", err)
		}
	})
	t.Run("plaintext to the TLS port", func(t *testing.T) {
		cl := newClient(t, kgo.SeedBrokers(broker.TLSBootstrap()),
			kgo.SASL(scramSHA512(broker.AdminUser, broker.AdminPassword)))
		if err := cl.Ping(testContext(t)); err == nil {
			t.Fatal("a plaintext client was served on the TLS listener")
		}
	})
}

func TestMTLSListener(t *testing.T) {
	broker.LogOnFailure(t)
	adm := admin(t)
	topic := uniqueName("mtls")
	createTopic(t, adm, topic)
	produce(t, newClient(t, broker.AdminOpts()...), topic, "hello over mTLS")

	mtls := func(certs ...tls.Certificate) []kgo.Opt {
		return []kgo.Opt{kgo.SeedBrokers(broker.MTLSBootstrap()), kgo.DialTLSConfig(tlsConfigWith(certs...)),
			kgo.RequestRetries(1), kgo.RetryTimeout(5 * time.Second)}
	}
	issue := func(ca *kafkabroker.CA, subject pkix.Name) tls.Certificate {
		t.Helper()
		c, err := ca.ClientCert(subject)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	t.Run("no client certificate", func(t *testing.T) {
		if err := newClient(t, mtls()...).Ping(testContext(t)); err == nil {
			t.Fatal("a client without a certificate was served")
		}
	})
	t.Run("certificate from an untrusted CA", func(t *testing.T) {
		// The launcher's own CA signed the server certificate, but the
		// listener trusts only the configured clients CA.
		cert := issue(broker.CA(), pkix.Name{CommonName: "intruder"})
		if err := newClient(t, mtls(cert)...).Ping(testContext(t)); err == nil {
			t.Fatal("a certificate from a CA outside ClientCAPEM was accepted")
		}
	})
	t.Run("certificate without a CN", func(t *testing.T) {
		// No mapping rule applies, and there is deliberately no DEFAULT.
		cert := issue(clientsCA, pkix.Name{Organization: []string{"hms"}, OrganizationalUnit: []string{"bus"}})
		if err := newClient(t, mtls(cert)...).Ping(testContext(t)); err == nil {
			t.Fatal("a certificate without a CN was accepted")
		}
	})

	for _, tc := range []struct {
		name    string
		subject pkix.Name
	}{
		{"CN only", pkix.Name{CommonName: uniqueName("fees.payment")}},
		{"CN with other RDNs", pkix.Name{CommonName: uniqueName("fees.sms"), Organization: []string{"hms, platform"}, OrganizationalUnit: []string{"CN=not-me"}, Country: []string{"NZ"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert := issue(clientsCA, tc.subject)
			opts := mtls(cert)
			// Before any ACL: authenticated, but no rights.
			if err := topicMetadataErr(t, newClient(t, opts...), topic); !errors.Is(err, kerr.TopicAuthorizationFailed) {
				t.Fatalf("metadata over mTLS before its ACL: err = %v, want TOPIC_AUTHORIZATION_FAILED", err)
			}
			// An ACL for User:<CN> is what lets it read: proof that the
			// certificate became exactly that principal.
			principal := "User:" + tc.subject.CommonName
			res, err := adm.CreateACLs(testContext(t), kadm.NewACLs().Allow(principal).AllowHosts("*").
				Topics(topic).Operations(kadm.OpRead, kadm.OpDescribe).ResourcePatternType(kadm.ACLPatternLiteral))
			if err == nil {
				for _, r := range res {
					err = errors.Join(err, r.Err)
				}
			}
			if err != nil {
				t.Fatalf("granting read to %s: %v", principal, err)
			}
			eventually(t, "reading as "+principal, func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				got, err := consumeAll(ctx, opts, topic, 1)
				if err != nil {
					return err
				}
				if !slices.Equal(got, []string{"hello over mTLS"}) {
					t.Fatalf("read %q", got)
				}
				return nil
			})
		})
	}
}

// The restart tests run on the shared broker and leave it running; every
// other test makes its own topics and users, so the order does not matter.
func TestRestartKeepsData(t *testing.T) {
	broker.LogOnFailure(t)
	topic := uniqueName("durable")
	createTopic(t, admin(t), topic)
	produce(t, newClient(t, broker.AdminOpts()...), topic, "one", "two")

	began := time.Now()
	if err := broker.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("graceful restart took %s (start %s)", time.Since(began).Round(time.Millisecond), broker.LastStartup().Round(time.Millisecond))
	assertRecords(t, topic, "one", "two")

	// A crash: SIGKILL, then start again (log recovery on the way up).
	produce(t, newClient(t, broker.AdminOpts()...), topic, "three")
	broker.Kill()
	if broker.Running() {
		t.Fatal("broker still running after Kill")
	}
	began = time.Now()
	if err := broker.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart after kill took %s", time.Since(began).Round(time.Millisecond))
	assertRecords(t, topic, "one", "two", "three")
}

func TestRestartEmptyLosesDataButNotTheAdmin(t *testing.T) {
	broker.LogOnFailure(t)
	adm := admin(t)
	topic := uniqueName("lost")
	createTopic(t, adm, topic)
	produce(t, newClient(t, broker.AdminOpts()...), topic, "gone soon")
	user := uniqueName("lost-user")
	createUser(t, adm, user, "pw-"+user)
	clusterID := broker.ClusterID()

	if err := broker.RestartEmpty(); err != nil {
		t.Fatal(err)
	}
	if broker.ClusterID() != clusterID {
		t.Fatalf("cluster ID changed from %s to %s", clusterID, broker.ClusterID())
	}
	// The admin still logs in (with the same password) and sees nothing.
	adm = admin(t)
	topics, err := adm.ListTopics(testContext(t))
	if err != nil {
		t.Fatalf("admin after RestartEmpty: %v", err)
	}
	if topics.Has(topic) {
		t.Fatalf("topic %s survived RestartEmpty", topic)
	}
	users, err := adm.DescribeUserSCRAMs(testContext(t))
	if err != nil {
		t.Fatalf("describing SCRAM users: %v", err)
	}
	if _, ok := users[user]; ok {
		t.Fatalf("SCRAM user %s survived RestartEmpty", user)
	}
	if _, ok := users[broker.AdminUser]; !ok {
		t.Fatalf("admin %s has no SCRAM credentials after RestartEmpty: %v", broker.AdminUser, users)
	}
}

func assertRecords(t *testing.T, topic string, want ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got, err := consumeAll(ctx, broker.AdminOpts(), topic, len(want))
	if err != nil {
		t.Fatalf("reading %s: %v", topic, err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s holds %q, want %q", topic, got, want)
	}
}

// topicMetadataErr asks for topic's metadata and returns the error, whether
// kadm reports it for the request or for the topic.
func topicMetadataErr(t *testing.T, cl *kgo.Client, topic string) error {
	t.Helper()
	md, err := kadm.NewClient(cl).Metadata(testContext(t), topic)
	if err != nil {
		return err
	}
	return md.Topics[topic].Err
}
