package main

import (
	"bytes"
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hms-platform/bus-operator/pkg/bus"
	"github.com/hms-platform/bus-operator/test/harness/brokers"
)

// The package's broker under test (HMSBUS_TEST_BROKER), started by the
// first test that needs it and closed by TestMain: one per package.
var shared struct {
	once   sync.Once
	broker *brokers.Broker
	err    error
}

func sharedBroker(t *testing.T) *brokers.Broker {
	t.Helper()
	shared.once.Do(func() { shared.broker, shared.err = brokers.Start(brokers.Options{}) })
	if shared.err != nil {
		t.Fatalf("starting the broker under test: %v", shared.err)
	}
	shared.broker.LogOnFailure(t)
	return shared.broker
}

func closeSharedBroker() {
	if shared.broker != nil {
		if err := shared.broker.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "closing the broker:", err)
		}
	}
}

// TestPubStreamWithIssuedCredentials runs `hmsbus pub` and `hmsbus stream`
// with a credentials directory shaped like the Secret the operator issues
// (a SCRAM user with the broker's iterations: 8192 on Kafka), and with a
// wrong password, which the CLI must report as refused credentials with
// Kafka's code, whatever the broker (kfake closes the connection instead).
func TestPubStreamWithIssuedCredentials(t *testing.T) {
	b := sharedBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(b.AdminOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	const user, topic = "cli.svc", "cli.events"
	password := rand.Text()
	if _, err := adm.CreateTopic(ctx, 1, -1, nil, topic); err != nil {
		t.Fatal(err)
	}
	salt := []byte(rand.Text())
	salted, err := pbkdf2.Key(sha512.New, password, salt, b.SCRAMIterations(), sha512.Size)
	if err != nil {
		t.Fatal(err)
	}
	altered, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{
		User: user, Mechanism: kadm.ScramSha512, Iterations: int32(b.SCRAMIterations()), Salt: salt, SaltedPassword: salted,
	}})
	if err == nil {
		err = altered.Error()
	}
	if err != nil {
		t.Fatalf("creating user %s: %v", user, err)
	}
	acls := kadm.NewACLs().Allow("User:"+user).AllowHosts("*").
		Topics(topic).Operations(kadm.OpRead, kadm.OpWrite, kadm.OpDescribe).ResourcePatternType(kadm.ACLPatternLiteral)
	if _, err := adm.CreateACLs(ctx, acls); err != nil {
		t.Fatal(err)
	}

	creds := bus.Credentials{Bootstrap: b.Bootstrap(), Mechanism: bus.MechanismSCRAMSHA512, Username: user, Password: password}
	dir := filepath.Join(t.TempDir(), "creds")
	writeCredentialsDir(t, dir, creds)
	run := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		root := newRootCmd("hmsbus", &out, &errOut)
		root.SetArgs(args)
		err := root.ExecuteContext(ctx)
		return out.String() + errOut.String(), err
	}

	// Kafka learns of new users and ACLs from its metadata log a moment
	// after the admin's calls return: retry the first publish briefly.
	var out string
	deadline := time.Now().Add(15 * time.Second)
	for {
		if out, err = run("pub", topic, `{"fee":120}`, "--type", "hms.fees.FeeUpdated", "--credentials-dir", dir); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("hmsbus pub with issued credentials: %v\n%s", err, out)
	}
	out, err = run("stream", topic, "--offset", "earliest", "--max", "1", "--timeout", "30s", "--credentials-dir", dir)
	if err != nil || !strings.Contains(out, `"fee":120`) {
		t.Fatalf("hmsbus stream with issued credentials: %v\n%s", err, out)
	}

	wrong := creds
	wrong.Password = "not-the-password"
	wrongDir := filepath.Join(t.TempDir(), "wrong")
	writeCredentialsDir(t, wrongDir, wrong)
	for _, args := range [][]string{
		{"pub", topic, `{"fee":0}`, "--type", "hms.fees.FeeUpdated", "--credentials-dir", wrongDir},
		{"stream", topic, "--offset", "earliest", "--max", "1", "--timeout", "30s", "--credentials-dir", wrongDir},
	} {
		out, err := run(args...)
		if err == nil {
			t.Fatalf("hmsbus %s with a wrong password succeeded:\n%s", args[0], out)
		}
		msg := err.Error() + "\n" + out
		if !strings.Contains(msg, bus.ErrAuthenticationFailed.Error()) || !strings.Contains(msg, kerr.SaslAuthenticationFailed.Message) {
			t.Fatalf("hmsbus %s with a wrong password must say the credentials were refused (%s): %s", args[0], kerr.SaslAuthenticationFailed.Message, msg)
		}
		if strings.Contains(msg, wrong.Password) {
			t.Fatalf("hmsbus %s shows the password: %s", args[0], msg)
		}
	}

	// The records are the CLI's, checked as the admin reads them.
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := ends.Lookup(topic, 0); o.Offset != 1 {
		t.Fatalf("%s holds %d records, want the one published", topic, o.Offset)
	}
}

// writeCredentialsDir writes creds as the operator's Secret, one file per
// key, as a mounted Secret volume.
func writeCredentialsDir(t *testing.T, dir string, creds bus.Credentials) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for k, v := range bus.SecretData(creds) {
		if err := os.WriteFile(filepath.Join(dir, k), v, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
