package e2e

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hms-platform/bus-operator/test/harness/localstack"
)

// TestDemoCompletes runs `make demo`'s program non-interactively on a fresh
// stack and checks that the story it tells happened: the fees reached both
// subscribers, the audit replay saw all of them, the late consumer only the
// newest, and alice's self-approval was refused; on Apache Kafka, readers
// with a client certificate and a ServiceAccount token replayed the fees.
func TestDemoCompletes(t *testing.T) {
	requireBinaries(t)
	tmp := t.TempDir()
	demo := filepath.Join(tmp, "hmsbus-demo")
	mustRun(t, 2*time.Minute, "go", "build", "-o", demo, "./hack/demo")

	start := time.Now()
	r := execute(4*time.Minute, localstack.Environ("DEMO_EXIT=1"), demo, "--bin-dir", binDir, "--state-dir", filepath.Join(tmp, "state"), "--broker", brokerUnderTest)
	t.Logf("demo ran in %s", time.Since(start).Round(100*time.Millisecond))
	if r.err != nil {
		t.Fatalf("the demo failed:\n%s", r)
	}
	out := r.stdout

	for _, sub := range []string{"payment", "sms"} {
		if got := fees(linesWith(out, "["+sub+"] ")); !slices.Equal(got, []int{120, 125, 135}) {
			t.Errorf("%s printed fees %v; want [120 125 135]\n%s", sub, got, out)
		}
	}
	replay := section(t, out, "Audit replays the stream")
	if got := fees(linesWith(replay, "FeeUpdated/")); !slices.Equal(got, []int{120, 125, 135}) {
		t.Errorf("the audit replay printed fees %v; want [120 125 135]\n%s", got, replay)
	}
	late := section(t, out, "A late consumer")
	if got := fees(linesWith(late, "[late] ")); !slices.Equal(got, []int{150}) {
		t.Errorf("the late consumer printed fees %v; want only [150]\n%s", got, late)
	}
	refusal := section(t, out, "Alice cannot approve her own ticket")
	if !strings.Contains(refusal, "four-eyes: the requester cannot approve their own ticket (alice requested it)") {
		t.Errorf("no four-eyes refusal of alice's self-approval:\n%s", refusal)
	}
	trail := section(t, out, "The audit trail")
	if len(linesWith(trail, `"reference":"CHG-1042"`)) == 0 {
		t.Errorf("the audit trail names no ticket CHG-1042:\n%s", trail)
	}
	if brokerUnderTest == localstack.BrokerKafka {
		if !strings.Contains(out, "(broker: Apache Kafka ") {
			t.Errorf("the demo did not run on Apache Kafka:\n%s", out)
		}
		// On Kafka the story goes on with the identities that hold no
		// password: each reader replays all four fees with its own.
		ids := section(t, out, "SMS reads with its client certificate")
		for _, creds := range []string{"creds/sms-cert", "creds/audit-token"} {
			var replay []string
			for _, part := range strings.Split(ids, "\n$ ") {
				if strings.HasPrefix(part, "hmsbus stream FeeUpdated --offset earliest --max 4") && strings.Contains(part, creds) {
					replay = linesWith(part, "FeeUpdated/")
				}
			}
			if got := fees(replay); !slices.Equal(got, []int{120, 125, 135, 150}) {
				t.Errorf("the reader with %s printed fees %v; want [120 125 135 150]\n%s", creds, got, ids)
			}
		}
		if !strings.Contains(ids, "tls              User:fees.sms-cert") || !strings.Contains(ids, "serviceAccount   User:system:serviceaccount:fees:audit-service") {
			t.Errorf("the identities' principals are not shown:\n%s", ids)
		}
		if !strings.Contains(ids, "TOPIC_AUTHORIZATION_FAILED") {
			t.Errorf("another ServiceAccount's token was not refused:\n%s", ids)
		}
	} else if strings.Contains(out, "CHG-1043") {
		t.Errorf("the embedded broker has no identity listeners, yet the demo played CHG-1043:\n%s", out)
	}
	if !strings.Contains(out, "The story completed") || !strings.Contains(out, "stopping control plane ... stopped") {
		t.Errorf("the demo did not complete and stop cleanly:\n%s", out)
	}
}

// section is the part of the demo's output under the heading containing
// title, up to the next heading.
func section(t *testing.T, out, title string) string {
	t.Helper()
	for _, part := range strings.Split(out, "\n==> ") {
		heading, _, _ := strings.Cut(part, "\n")
		if strings.Contains(heading, title) {
			return part
		}
	}
	t.Fatalf("the demo's output has no step %q:\n%s", title, out)
	return ""
}

var feeField = regexp.MustCompile(`"fee":(\d+)`)

// fees lists the fees in event lines, in order.
func fees(lines []string) []int {
	var out []int
	for _, l := range lines {
		for _, m := range feeField.FindAllStringSubmatch(l, -1) {
			n, err := strconv.Atoi(m[1])
			if err != nil {
				panic(fmt.Sprintf("regexp matched a non-number %q", m[1]))
			}
			out = append(out, n)
		}
	}
	return out
}
