package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/pkg/bus"
)

func TestCommandName(t *testing.T) {
	for argv0, want := range map[string]string{
		"hmsbus":                        "hmsbus",
		"/usr/local/bin/hmsbus":         "hmsbus",
		"/home/u/.krew/bin/kubectl-bus": "kubectl bus",
		`C:\bin\kubectl-bus.exe`:        "kubectl bus",
		"./kubectl-bus":                 "kubectl bus",
	} {
		if got := commandName(argv0); got != want {
			t.Errorf("commandName(%q) = %q, want %q", argv0, got, want)
		}
	}
	var out bytes.Buffer
	root := newRootCmd("kubectl-bus", &out, &out)
	root.SetArgs([]string{"--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "kubectl bus [command]") {
		t.Errorf("plugin help does not show `kubectl bus`:\n%s", out.String())
	}
}

func TestSplitRef(t *testing.T) {
	cases := []struct{ ref, ns, wantNS, wantName string }{
		{"payment-fees", "payments", "payments", "payment-fees"},
		{"audit/audit-fees", "payments", "audit", "audit-fees"},
	}
	for _, tc := range cases {
		ns, name, err := splitRef(tc.ref, tc.ns)
		if err != nil || ns != tc.wantNS || name != tc.wantName {
			t.Errorf("splitRef(%q) = %q, %q, %v", tc.ref, ns, name, err)
		}
	}
	for _, bad := range []string{"", "/x", "x/", "a/b/c"} {
		if _, _, err := splitRef(bad, "default"); err == nil {
			t.Errorf("splitRef(%q): no error", bad)
		}
	}
}

func TestCredentialSources(t *testing.T) {
	creds := bus.Credentials{Bootstrap: []string{"b0:9092"}, Mechanism: bus.MechanismSCRAMSHA512, Username: "payments.payment-fees", Password: "pw", ConsumerGroup: "g", Topics: []string{"FeeUpdated"}}
	dir := t.TempDir()
	for k, v := range bus.SecretData(creds) {
		if err := os.WriteFile(filepath.Join(dir, k), v, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	a := &app{}
	ctx := context.Background()

	got, err := a.credentials(ctx, &credFlags{dir: dir})
	if err != nil || got.Username != creds.Username || got.Password != "pw" {
		t.Fatalf("from dir: %+v, %v", got, err)
	}
	if _, err := a.credentials(ctx, &credFlags{dir: dir, subscription: "x"}); err == nil {
		t.Error("both --credentials-dir and --subscription: no error")
	}

	for _, k := range []string{bus.EnvBootstrap, bus.EnvUsername, bus.EnvPassword, bus.EnvMechanism, bus.EnvGroup, bus.EnvTopics, bus.EnvSecurityProtocol, bus.EnvCAFile} {
		t.Setenv(k, "")
	}
	if _, err := a.credentials(ctx, &credFlags{}); !errors.Is(err, bus.ErrIncompleteCredentials) {
		t.Errorf("no source: err = %v", err)
	}
	t.Setenv(bus.EnvBootstrap, "b0:9092")
	t.Setenv(bus.EnvUsername, "u")
	t.Setenv(bus.EnvPassword, "p")
	if got, err := a.credentials(ctx, &credFlags{}); err != nil || got.Username != "u" {
		t.Errorf("from env: %+v, %v", got, err)
	}

	if topic, err := topicArg(nil, creds); err != nil || topic != "FeeUpdated" {
		t.Errorf("topicArg with one granted topic: %q, %v", topic, err)
	}
	creds.Topics = append(creds.Topics, "FeeDeleted")
	if _, err := topicArg(nil, creds); err == nil {
		t.Error("topicArg with two granted topics and none named: no error")
	}
	if topic, err := topicArg([]string{"X"}, creds); err != nil || topic != "X" {
		t.Errorf("topicArg named: %q, %v", topic, err)
	}
}

func TestPrintEvent(t *testing.T) {
	e := bus.Event{
		ID: "id-1", Source: "/fees", Type: "hms.fees.FeeUpdated", Subject: "passport",
		Time: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), Data: json.RawMessage(`{"fee":150}`),
		Topic: "FeeUpdated", Partition: 1, Offset: 42,
	}
	var out bytes.Buffer
	if err := printEvent(&out, "text", e); err != nil {
		t.Fatal(err)
	}
	want := "2030-01-02T03:04:05Z FeeUpdated/1@42 hms.fees.FeeUpdated source=/fees id=id-1 subject=passport {\"fee\":150}\n"
	if out.String() != want {
		t.Errorf("text: %q, want %q", out.String(), want)
	}
	out.Reset()
	if err := printEvent(&out, "json", e); err != nil {
		t.Fatal(err)
	}
	var back bus.Event
	if err := json.Unmarshal(out.Bytes(), &back); err != nil || back.ID != "id-1" || back.Offset != 42 || string(back.Data) != `{"fee":150}` {
		t.Errorf("json: %s -> %+v, %v", out.String(), back, err)
	}
	if strings.Count(out.String(), "\n") != 1 {
		t.Errorf("json output is not one line: %q", out.String())
	}
}

func TestReadData(t *testing.T) {
	if got, err := readData(` {"a":1} `, nil); err != nil || string(got) != `{"a":1}` {
		t.Errorf("arg: %s, %v", got, err)
	}
	if got, err := readData("-", strings.NewReader("[1,2]\n")); err != nil || string(got) != "[1,2]" {
		t.Errorf("stdin: %s, %v", got, err)
	}
	if _, err := readData("{oops", nil); err == nil {
		t.Error("invalid JSON: no error")
	}
}

func TestLimits(t *testing.T) {
	ctx, count, cancel := limitFlags{max: 2}.start(context.Background())
	defer cancel()
	count.add()
	if ctx.Err() != nil || count.result() == nil {
		t.Fatalf("after 1 of 2: ctx %v, result %v", ctx.Err(), count.result())
	}
	count.add()
	if ctx.Err() == nil || count.result() != nil {
		t.Fatalf("after 2 of 2: ctx %v, result %v", ctx.Err(), count.result())
	}

	ctx, count, cancel = limitFlags{timeout: time.Millisecond}.start(context.Background())
	defer cancel()
	<-ctx.Done()
	if count.result() != nil {
		t.Errorf("timeout without --max is a normal end, got %v", count.result())
	}
}

func TestRenderStatus(t *testing.T) {
	ready := func(status metav1.ConditionStatus, reason, msg string) []metav1.Condition {
		return []metav1.Condition{{Type: busv1.ConditionReady, Status: status, Reason: reason, Message: msg}}
	}
	v := &statusView{
		topics: []busv1.Topic{
			{ObjectMeta: metav1.ObjectMeta{Namespace: "fees", Name: "fee-updated"},
				Spec:   busv1.TopicSpec{TopicName: "FeeUpdated", Partitions: 3, ChangeTicket: "chg-1"},
				Status: busv1.TopicStatus{Partitions: 3, Conditions: ready(metav1.ConditionTrue, "Succeeded", "topic FeeUpdated\nis ready")}},
			{ObjectMeta: metav1.ObjectMeta{Namespace: "fees", Name: "fee-deleted"},
				Spec: busv1.TopicSpec{Partitions: 1, ChangeTicket: "chg-2"}},
		},
		subs: []busv1.Subscription{
			{ObjectMeta: metav1.ObjectMeta{Namespace: "fees", Name: "audit"},
				Spec:   busv1.SubscriptionSpec{ChangeTicket: "chg-1"},
				Status: busv1.SubscriptionStatus{Conditions: ready(metav1.ConditionFalse, "AwaitingApproval", "ticket chg-1 needs 1 more approval")}},
		},
	}
	want := `Topics:
NAME         BROKER TOPIC  PARTITIONS  TICKET  READY    REASON     MESSAGE
fee-deleted  fee-deleted   -           chg-2   Unknown  -          not reconciled yet
fee-updated  FeeUpdated    3           chg-1   True     Succeeded  topic FeeUpdated is ready

Subscriptions:
NAME   ROLE     TOPICS  PRINCIPAL  TICKET  READY  REASON            MESSAGE
audit  Consume  -       -          chg-1   False  AwaitingApproval  ticket chg-1 needs 1 more approval
`
	// renderStatus keeps the order it is given; loadStatusView sorts.
	v.topics[0], v.topics[1] = v.topics[1], v.topics[0]
	var out bytes.Buffer
	if err := renderStatus(&out, v, now, false); err != nil {
		t.Fatal(err)
	}
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
	}
	if got := oneLine(strings.Repeat("x", 150), 100); len([]rune(got)) != 100 || !strings.HasSuffix(got, "…") {
		t.Errorf("oneLine did not cut to 100 runes: %q", got)
	}
}
