package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/audit"
	"github.com/hms-platform/bus-operator/internal/kafka"
	"github.com/hms-platform/bus-operator/test/harness/embedded"
)

type noEvents struct{}

func (noEvents) Eventf(runtime.Object, runtime.Object, string, string, string, string, ...any) {}

func TestAuditVerifyAndShow(t *testing.T) {
	b, err := embedded.Start(embedded.Options{Brokers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := kafka.New(ctx, kafka.Config{Bootstrap: b.Addrs(), Mechanism: embedded.AdminMechanism, Username: b.AdminUser, Password: b.AdminPassword, SCRAMIterations: kafka.MinSCRAMIterations})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := audit.EnsureTopic(ctx, admin, audit.DefaultTopic); err != nil {
		t.Fatal(err)
	}
	rec := &audit.Recorder{Admin: admin, Topic: audit.DefaultTopic, Events: noEvents{}}
	obj := &busv1.Topic{ObjectMeta: metav1.ObjectMeta{Namespace: "fees", Name: "fee-updated", UID: "u1"}}
	for _, op := range []string{audit.OpCreateTopic, audit.OpAddPartitions} {
		p, err := rec.Begin(ctx, obj, "Topic", audit.Record{Operation: op, Resource: "FeeUpdated", Cause: audit.CauseApproved,
			Ticket: &busv1.AppliedTicket{Reference: "CHG-1042", ApprovedBy: []string{"rita"}}})
		if err != nil {
			t.Fatal(err)
		}
		p.Done(ctx, nil)
	}

	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(b.AdminPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		root := newRootCmd("hmsbus", &out, &errOut)
		root.SetArgs(append(args, "--bootstrap", b.Bootstrap(), "--username", b.AdminUser, "--password-file", pwFile))
		err := root.ExecuteContext(ctx)
		return out.String(), err
	}

	out, err := run("audit", "verify", "--no-head")
	if err != nil || !strings.Contains(out, "OK: the hash chain is intact") || !strings.Contains(out, "4 records") {
		t.Fatalf("verify of a genuine trail: %v\n%s", err, out)
	}
	// An unreachable cluster: the head is not checked, and it says so.
	out, err = run("audit", "verify", "--kubeconfig", filepath.Join(t.TempDir(), "missing"))
	if err != nil || !strings.Contains(out, "published head NOT checked") {
		t.Fatalf("verify without a cluster: %v\n%s", err, out)
	}
	// The head the operator published, read through the API server.
	ns := env.NamespaceT(t, "audithead")
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := env.WriteKubeconfig(kubeconfig); err != nil {
		t.Fatal(err)
	}
	heads := &audit.ConfigMapHeads{Reader: env.Client, Writer: env.Client, Namespace: ns, Name: audit.DefaultHeadConfigMap}
	trail, err := admin.ReadRecords(ctx, audit.DefaultTopic, 0, 0, 4, 0)
	if err != nil || len(trail) != 4 {
		t.Fatalf("trail: %d records, %v", len(trail), err)
	}
	head := audit.Head{Topic: audit.DefaultTopic, Seq: 3, Offset: 2, Hash: audit.HashRecord(trail[2].Value), Time: time.Now(), Checkpoint: 2, PublishedAt: time.Now()}
	if err := heads.PublishHead(ctx, head); err != nil {
		t.Fatal(err)
	}
	head.Seq, head.Offset, head.Hash = 4, 3, audit.HashRecord(trail[3].Value)
	if err := heads.PublishHead(ctx, head); err != nil { // an update this time
		t.Fatal(err)
	}
	if got, err := heads.LoadHead(ctx); err != nil || got == nil || got.Seq != 4 || got.Hash != head.Hash {
		t.Fatalf("loaded head %+v, %v", got, err)
	}
	headRef := ns + "/" + audit.DefaultHeadConfigMap
	out, err = run("audit", "verify", "--kubeconfig", kubeconfig, "--head", headRef)
	if err != nil || !strings.Contains(out, "published head: seq 4 at offset 3") || !strings.Contains(out, "OK: the hash chain is intact") {
		t.Fatalf("verify with the published head: %v\n%s", err, out)
	}
	// A head that says more was written than the topic holds: the tail
	// was removed.
	head.Seq, head.Offset = 9, 8
	if err := heads.PublishHead(ctx, head); err != nil {
		t.Fatal(err)
	}
	out, err = run("audit", "verify", "--kubeconfig", kubeconfig, "--head", headRef)
	if err == nil || !strings.Contains(out, "FIRST BREAK: tail-removed") {
		t.Fatalf("verify with a head past the end: %v\n%s", err, out)
	}

	out, err = run("audit", "show")
	if err != nil || !strings.Contains(out, "CreateTopic FeeUpdated by Topic fees/fee-updated (approved change) under CHG-1042 approved by rita") ||
		!strings.Contains(out, "succeeded (AddPartitions FeeUpdated)") {
		t.Fatalf("show: %v\n%s", err, out)
	}

	// A record produced with the admin's credentials, then the operator
	// carries on.
	if err := admin.Append(ctx, audit.DefaultTopic, nil, []byte(`{"id":"x","operation":"DeleteACL"}`)); err != nil {
		t.Fatal(err)
	}
	rec.Record(ctx, obj, "Topic", audit.Record{Operation: audit.OpAlterTopicConfig, Resource: "FeeUpdated"})
	out, err = run("audit", "verify", "--no-head")
	if err == nil || !strings.Contains(out, "FIRST BREAK: inserted at offset 4") {
		t.Fatalf("verify of a trail with a forged record: %v\n%s", err, out)
	}
	out, _ = run("audit", "verify", "--no-head", "-o", "json")
	var rep verifyReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Intact || len(rep.Findings) != 1 || rep.Findings[0].Kind != audit.FindingInserted || rep.Findings[0].Offset != 4 {
		t.Fatalf("json report: %v\n%s", err, out)
	}
	if strings.Contains(out, b.AdminPassword) {
		t.Fatal("the report shows the admin password")
	}
}
