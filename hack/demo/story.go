package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/test/harness/localstack"
	"github.com/hms-platform/bus-operator/test/harness/testenv"
)

// The cast and the objects of config/samples.
const (
	admin     = testenv.AdminUser
	alice     = localstack.Requester
	rita      = localstack.Reviewer
	namespace = "fees"
	ticket    = "chg-1042"
	topic     = "FeeUpdated"
	eventType = "hms.fees.FeeUpdated"
	auditLog  = "hms.audit"
)

// subscriptions of the sample, in the order they are shown.
var subscriptions = []string{"fee-service", "payment", "sms", "audit"}

// fees published in the story; lateFee after the late consumer starts.
var (
	fees    = []int{120, 125, 135}
	lateFee = 150
)

// readyTimeout bounds every wait for the operator.
const readyTimeout = 2 * time.Minute

// step is one heading of the story.
type step struct {
	title string
	run   func(ctx context.Context) error
}

type story struct {
	r *runner
}

func (s *story) steps() []step {
	steps := []step{
		{"Admin creates the team namespace " + namespace, s.createNamespace},
		{"Alice (requester) files CHG-1042 and declares the topic and four subscriptions", s.declare},
		{"Rita (reviewer) looks at what the pending ticket would change", s.review},
		{"Alice cannot approve her own ticket (four eyes)", s.selfApprovalRefused},
		{"Rita approves CHG-1042", s.approve},
		{"The operator applies the approved change to the broker", s.applied},
		{"Each service gets the credentials the operator issued (a mounted Secret)", s.exportCredentials},
		{"The broker enforces each grant: payment may read FeeUpdated, not write it", s.grantsEnforced},
		{"Payment and SMS subscribe; the fee service publishes 120 -> 125 -> 135", s.publishAndSubscribe},
		{"Audit replays the stream from the earliest offset", s.replay},
		{"A late consumer starts at the latest offset and sees only what comes next", s.lateConsumer},
	}
	if s.r.stack.MTLSBootstrap != "" && s.r.stack.OAuthBootstrap != "" {
		// Only Apache Kafka has the listeners these identities need.
		steps = append(steps,
			step{"Alice files CHG-1043: SMS and audit read with identities that hold no password", s.declareIdentities},
			step{"Rita approves CHG-1043; SMS reads with its client certificate, audit with its ServiceAccount token", s.passwordlessReaders},
		)
	}
	return append(steps, step{"The audit trail on " + auditLog + ": every broker change and the ticket behind it", s.auditTrail})
}

// play runs every step, stopping at the first failure, which it names.
func (s *story) play(ctx context.Context) error {
	steps := s.steps()
	for i, st := range steps {
		s.r.out.printf("\n==> [%d/%d] %s\n", i+1, len(steps), st.title)
		if err := st.run(ctx); err != nil {
			return fmt.Errorf("step %d/%d %q failed: %w", i+1, len(steps), st.title, err)
		}
	}
	return nil
}

func (s *story) createNamespace(ctx context.Context) error {
	_, err := s.r.run(ctx, s.r.kubectlAs(admin, "create", "namespace", namespace))
	return err
}

func (s *story) declare(ctx context.Context) error {
	samples := filepath.Join(s.r.stack.RootDir, "config", "samples")
	if _, err := s.r.run(ctx, s.r.kubectlAs(alice, "apply", "-k", samples)); err != nil {
		return err
	}
	s.r.out.line("    (waiting until the operator has evaluated them)")
	if err := s.waitAwaitingApproval(ctx); err != nil {
		return err
	}
	_, err := s.r.run(ctx, s.r.kubectlAs(alice, "get", "topics,subscriptions,changetickets", "-n", namespace))
	return err
}

// waitAwaitingApproval waits until the Topic says it awaits approval and
// every Subscription has a Ready condition, so the table shows the
// operator's verdict rather than empty columns.
func (s *story) waitAwaitingApproval(ctx context.Context) error {
	return s.waitOperator(ctx, "evaluated the sample", func() (string, error) { return s.notYetEvaluated(ctx, s.r.stack.Env.Client) })
}

// waitOperator polls notYet (what the operator has not done yet, "" when
// it has) until it says nothing is left, for at most readyTimeout.
func (s *story) waitOperator(ctx context.Context, what string, notYet func() (string, error)) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		why, err := notYet()
		if err == nil && why == "" {
			return nil
		}
		if err != nil {
			why = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the operator has not %s after %s: %s (see %s)", what, readyTimeout, why, s.r.stack.Path(localstack.OperatorLog))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// notYetEvaluated says what the operator has not looked at yet ("" when
// it has looked at everything).
func (s *story) notYetEvaluated(ctx context.Context, c client.Client) (string, error) {
	var tp busv1.Topic
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "fee-updated"}, &tp); err != nil {
		return "", fmt.Errorf("reading Topic fee-updated: %w", err)
	}
	if cond := meta.FindStatusCondition(tp.Status.Conditions, busv1.ConditionReady); cond == nil || cond.Reason != busv1.ReasonAwaitingApproval {
		return "Topic fee-updated is not Ready=False/AwaitingApproval yet", nil
	}
	for _, name := range subscriptions {
		var sub busv1.Subscription
		if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &sub); err != nil {
			return "", fmt.Errorf("reading Subscription %s: %w", name, err)
		}
		if meta.FindStatusCondition(sub.Status.Conditions, busv1.ConditionReady) == nil {
			return "Subscription " + name + " has no Ready condition yet", nil
		}
	}
	return "", nil
}

func (s *story) review(ctx context.Context) error {
	out, err := s.r.run(ctx, s.r.hmsbusAs(rita, "tickets", "-n", namespace))
	if err != nil {
		return err
	}
	if !strings.Contains(out, "would change") {
		return errors.New("hmsbus tickets shows no pending change for CHG-1042")
	}
	return nil
}

func (s *story) selfApprovalRefused(ctx context.Context) error {
	s.r.out.line("  As herself, alice holds no right to approve at all (RBAC):")
	err := s.r.mustFail(ctx, s.r.hmsbusAs(alice, "approve", ticket, "-n", namespace, "--comment", "LGTM"), "forbidden")
	if err != nil {
		return err
	}
	s.r.out.line("  Even if alice were also a reviewer (the admin impersonates her in both groups),")
	s.r.out.line("  the admission policy refuses a requester's approval of her own ticket:")
	c := s.r.hmsbusAs(admin, "approve", ticket, "-n", namespace, "--comment", "LGTM",
		"--as", alice, "--as-group", testenv.RequestersGroup, "--as-group", testenv.ReviewersGroup)
	return s.r.mustFail(ctx, c, "four-eyes")
}

func (s *story) approve(ctx context.Context) error {
	_, err := s.r.run(ctx, s.r.hmsbusAs(rita, "approve", ticket, "-n", namespace,
		"--comment", "Retention and consumers checked with the data owner"))
	return err
}

func (s *story) applied(ctx context.Context) error {
	targets := []string{"topic/fee-updated"}
	for _, name := range subscriptions {
		targets = append(targets, "subscription/"+name)
	}
	args := append([]string{"wait", "--for=condition=Ready", "-n", namespace, "--timeout=" + readyTimeout.String()}, targets...)
	if _, err := s.r.run(ctx, s.r.kubectlAs(alice, args...)); err != nil {
		return fmt.Errorf("%w\n(the operator's log is %s)", err, s.r.stack.Path(localstack.OperatorLog))
	}
	if _, err := s.r.run(ctx, s.r.kubectlAs(alice, "get", "topics,subscriptions,changetickets", "-n", namespace)); err != nil {
		return err
	}
	_, err := s.r.run(ctx, s.r.hmsbusAs(alice, "status", "-n", namespace))
	return err
}

// exportCredentials writes each Subscription's Secret as files, the way a
// Secret volume is mounted into the service's pod. People hold no right to
// read Secrets (see config/rbac/base/personas), so the admin plays the kubelet.
func (s *story) exportCredentials(ctx context.Context) error {
	out, err := s.r.run(ctx, s.r.kubectlAs(admin, "get", "subscriptions", "-n", namespace,
		"-o", `jsonpath={range .items[*]}{.metadata.name}{"\t"}{.status.secretName}{"\n"}{end}`))
	if err != nil {
		return err
	}
	secrets := map[string]string{}
	for line := range strings.Lines(out) {
		if name, secret, ok := strings.Cut(strings.TrimSpace(line), "\t"); ok && secret != "" {
			secrets[name] = secret
		}
	}
	for _, name := range subscriptions {
		if err := s.exportSecret(ctx, name, secrets[name]); err != nil {
			return err
		}
	}
	s.r.out.line("  The audit topic belongs to the broker's superuser; an auditor with broker access holds:")
	dir := credsDir(s.r.stack, "broker-admin")
	if err := s.r.stack.WriteBrokerAdminCredentials(dir); err != nil {
		return err
	}
	s.r.out.line(fmt.Sprintf("    wrote %s/ from %s", s.r.rel(dir), s.r.rel(s.r.stack.AdminPasswordFile)))
	return nil
}

func (s *story) exportSecret(ctx context.Context, sub, secret string) error {
	if secret == "" {
		return fmt.Errorf("subscription %s has no status.secretName", sub)
	}
	c := s.r.kubectlAs(admin, "get", "secret", secret, "-n", namespace, "-o", "json")
	c.quiet = true
	out, err := s.r.run(ctx, c)
	if err != nil {
		return err
	}
	data, err := localstack.SecretDataFromJSON([]byte(out))
	if err != nil {
		return fmt.Errorf("reading Secret %s: %w", secret, err)
	}
	dir := credsDir(s.r.stack, sub)
	if err := localstack.WriteSecretDir(dir, data); err != nil {
		return err
	}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s.r.out.line(fmt.Sprintf("    wrote %s/ {%s} (values not shown)", s.r.rel(dir), strings.Join(keys, ",")))
	return nil
}

// publish sends one fee update as the fee service.
func (s *story) publish(ctx context.Context, fee int) error {
	data := fmt.Sprintf(`{"service":"passport","fee":%d}`, fee)
	// One subject keeps every passport fee on one partition, in order.
	_, err := s.r.run(ctx, s.r.hmsbusWith("fee-service", "pub", topic, data,
		"--type", eventType, "--source", "/fees/fee-service", "--subject", "passport"))
	return err
}

func (s *story) grantsEnforced(ctx context.Context) error {
	c := s.r.hmsbusWith("payment", "pub", topic, `{"service":"passport","fee":1}`, "--type", eventType)
	return s.r.mustFail(ctx, c, "not authorized")
}

func (s *story) publishAndSubscribe(ctx context.Context) error {
	var subs []*background
	defer func() {
		for _, b := range subs {
			b.stop()
		}
	}()
	for _, name := range []string{"payment", "sms"} {
		b, err := s.r.start(ctx, name, s.r.hmsbusWith(name, "sub", topic, "--max", strconv.Itoa(len(fees)), "--timeout", "90s"))
		if err != nil {
			return err
		}
		subs = append(subs, b)
	}
	for _, fee := range fees {
		if err := s.publish(ctx, fee); err != nil {
			return err
		}
	}
	for _, b := range subs {
		out, err := b.wait(2 * time.Minute)
		if err != nil {
			return err
		}
		if got := feesIn(out); !slices.Equal(got, fees) {
			return fmt.Errorf("[%s] acknowledged fees %v; want %v", b.label, got, fees)
		}
		s.r.out.line(fmt.Sprintf("    [%s] handled and acknowledged %d events", b.label, len(fees)))
	}
	return nil
}

func (s *story) replay(ctx context.Context) error {
	out, err := s.r.run(ctx, s.r.hmsbusWith("audit", "stream", topic, "--offset", "earliest",
		"--max", strconv.Itoa(len(fees)), "--timeout", "60s"))
	if err != nil {
		return err
	}
	if got := feesIn(out); !slices.Equal(got, fees) {
		return fmt.Errorf("the replay shows fees %v; want %v", got, fees)
	}
	return nil
}

func (s *story) lateConsumer(ctx context.Context) error {
	b, err := s.r.start(ctx, "late", s.r.hmsbusWith("audit", "stream", topic, "--offset", "latest", "--max", "1", "--timeout", "60s"))
	if err != nil {
		return err
	}
	defer b.stop()
	// The stream says where it starts once the offsets are fixed; only an
	// event published after that is "later".
	if err := b.waitForOutput("streaming "+topic+" from", time.Minute); err != nil {
		return err
	}
	if err := s.publish(ctx, lateFee); err != nil {
		return err
	}
	out, err := b.wait(2 * time.Minute)
	if err != nil {
		return err
	}
	if got := feesIn(out); !slices.Equal(got, []int{lateFee}) {
		return fmt.Errorf("the late consumer saw fees %v; want only %d", got, lateFee)
	}
	return nil
}

func (s *story) auditTrail(ctx context.Context) error {
	out, err := s.r.run(ctx, s.r.hmsbusWith("broker-admin", "stream", auditLog, "--offset", "earliest", "--max", "5", "--timeout", "30s"))
	if err != nil {
		return err
	}
	if !strings.Contains(out, "CHG-1042") {
		return errors.New("the audit records name no ticket CHG-1042")
	}
	return nil
}

var feePattern = regexp.MustCompile(`"fee":(\d+)`)

// feesIn lists the fees of the events printed in out, in order.
func feesIn(out string) []int {
	var got []int
	for _, m := range feePattern.FindAllStringSubmatch(out, -1) {
		n, err := strconv.Atoi(m[1])
		if err == nil {
			got = append(got, n)
		}
	}
	return got
}

// pokeAround tells the user how to use the running stack.
func (s *story) pokeAround() {
	st, r := s.r.stack, s.r
	lines := []string{
		"",
		"==> The stack keeps running. In another terminal, try:",
		"",
		"  export PATH=" + st.BinDir + ":$PATH",
		"  export KUBECONFIG=" + st.KubeconfigPath(admin) + "    # or " + st.KubeconfigPath(alice) + " / " + st.KubeconfigPath(rita),
		"  kubectl get topics,subscriptions,changetickets -A",
		"  kubectl describe topic fee-updated -n fees",
		"  hmsbus status -n fees",
		"  hmsbus tickets -n fees",
		"  hmsbus stream " + topic + " --offset earliest --credentials-dir " + r.rel(credsDir(st, "audit")),
		"  hmsbus sub " + topic + " --credentials-dir " + r.rel(credsDir(st, "payment")),
		"  hmsbus pub " + topic + ` '{"service":"passport","fee":160}' --type ` + eventType + " --credentials-dir " + r.rel(credsDir(st, "fee-service")),
		"  hmsbus stream " + auditLog + " --offset earliest --credentials-dir " + r.rel(credsDir(st, "broker-admin")),
		"",
		"  broker bootstrap:    " + st.Bootstrap + " (" + st.BrokerName + ", SASL/SCRAM-SHA-512)",
		"  broker admin:        " + localstack.BrokerAdmin + ", password in " + r.rel(st.AdminPasswordFile),
		"  operator readiness:  http://" + st.ProbeAddr + "/readyz",
		"  logs:                " + r.rel(st.Path(localstack.OperatorLog)) + ", " + r.rel(st.Path(localstack.BrokerLog)) + ", " + r.rel(st.Path(localstack.ControlPlaneLog)),
		"",
		"Press Ctrl-C to stop everything.",
	}
	for _, l := range lines {
		r.out.line(l)
	}
}

// tailOperatorLog prints the end of the operator's log after a failure.
func (s *story) tailOperatorLog() {
	if s.r.stack == nil {
		return
	}
	path := s.r.stack.Path(localstack.OperatorLog)
	if tail := localstack.TailFile(path, 20); tail != "" {
		fmt.Fprintf(os.Stderr, "--- last lines of %s ---\n%s\n", path, tail)
	}
}

// The identities of config/samples/identities, played on Apache Kafka.
const (
	identityTicket  = "chg-1043"
	certReader      = "sms-cert"
	tokenReader     = "audit-token"
	readerAccount   = "audit-service"
	strangerAccount = "marketing"
	identitySamples = "identities"
)

func (s *story) declareIdentities(ctx context.Context) error {
	dir := filepath.Join(s.r.stack.RootDir, "config", "samples", identitySamples)
	s.r.out.line("  The platform team creates the audit service's ServiceAccount (people hold no right to):")
	if _, err := s.r.run(ctx, s.r.kubectlAs(admin, "apply", "-f", filepath.Join(dir, "serviceaccount.yaml"))); err != nil {
		return err
	}
	if _, err := s.r.run(ctx, s.r.kubectlAs(alice, "apply", "-f", filepath.Join(dir, "changeticket.yaml"), "-f", filepath.Join(dir, "subscriptions.yaml"))); err != nil {
		return err
	}
	s.r.out.line("  Nothing reaches the broker before the approval: both wait for CHG-1043.")
	return s.waitReason(ctx, busv1.ReasonAwaitingApproval, certReader, tokenReader)
}

// waitReason waits until each Subscription's Ready condition has reason.
func (s *story) waitReason(ctx context.Context, reason string, names ...string) error {
	return s.waitOperator(ctx, "marked them "+reason, func() (string, error) {
		for _, name := range names {
			var sub busv1.Subscription
			if err := s.r.stack.Env.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &sub); err != nil {
				return "", fmt.Errorf("reading Subscription %s: %w", name, err)
			}
			if cond := meta.FindStatusCondition(sub.Status.Conditions, busv1.ConditionReady); cond == nil || cond.Reason != reason {
				return "Subscription " + name + " is not " + reason + " yet", nil
			}
		}
		return "", nil
	})
}

func (s *story) passwordlessReaders(ctx context.Context) error {
	if _, err := s.r.run(ctx, s.r.hmsbusAs(rita, "approve", identityTicket, "-n", namespace, "--comment", "No shared secrets: approved")); err != nil {
		return err
	}
	args := []string{"wait", "--for=condition=Ready", "-n", namespace, "--timeout=" + readyTimeout.String(), "subscription/" + certReader, "subscription/" + tokenReader}
	if _, err := s.r.run(ctx, s.r.kubectlAs(alice, args...)); err != nil {
		return fmt.Errorf("%w\n(the operator's log is %s)", err, s.r.stack.Path(localstack.OperatorLog))
	}
	if _, err := s.r.run(ctx, s.r.kubectlAs(alice, "get", "subscriptions", certReader, tokenReader, "-n", namespace,
		"-o", "custom-columns=NAME:.metadata.name,AUTHENTICATION:.status.authentication,PRINCIPAL:.status.principal,READY:.status.conditions[?(@.type=='Ready')].status")); err != nil {
		return err
	}
	want := append(slices.Clone(fees), lateFee)
	max := strconv.Itoa(len(want))

	s.r.out.line("  SMS: the Secret holds a client certificate and key, no password:")
	if err := s.exportSecret(ctx, certReader, certReader+"-bus-credentials"); err != nil {
		return err
	}
	out, err := s.r.run(ctx, s.r.hmsbusWith(certReader, "stream", topic, "--offset", "earliest", "--max", max, "--timeout", "60s"))
	if err != nil {
		return err
	}
	if got := feesIn(out); !slices.Equal(got, want) {
		return fmt.Errorf("the certificate reader saw fees %v; want %v", got, want)
	}

	s.r.out.line("  Audit: the Secret says only where to connect; the pod's projected token is the identity")
	s.r.out.line("  (the admin plays the kubelet and asks for a token with audience " + localstack.TokenAudience + "):")
	if err := s.exportSecret(ctx, tokenReader, tokenReader+"-bus-credentials"); err != nil {
		return err
	}
	token, err := s.tokenFile(ctx, readerAccount)
	if err != nil {
		return err
	}
	out, err = s.r.run(ctx, s.r.hmsbusWith(tokenReader, "stream", topic, "--offset", "earliest", "--max", max, "--timeout", "60s", "--token-file", token))
	if err != nil {
		return err
	}
	if got := feesIn(out); !slices.Equal(got, want) {
		return fmt.Errorf("the ServiceAccount reader saw fees %v; want %v", got, want)
	}

	s.r.out.line("  A token of another ServiceAccount of the namespace gets nothing: no approval names it.")
	if _, err := s.r.run(ctx, s.r.kubectlAs(admin, "create", "serviceaccount", strangerAccount, "-n", namespace)); err != nil {
		return err
	}
	other, err := s.tokenFile(ctx, strangerAccount)
	if err != nil {
		return err
	}
	return s.r.mustFail(ctx, s.r.hmsbusWith(tokenReader, "stream", topic, "--offset", "earliest", "--max", "1", "--timeout", "30s", "--token-file", other), "not authorized")
}

// tokenFile writes a short-lived token of the ServiceAccount, with the
// audience the broker accepts, where a projected volume would put it.
func (s *story) tokenFile(ctx context.Context, account string) (string, error) {
	c := s.r.kubectlAs(admin, "create", "token", account, "-n", namespace, "--audience", localstack.TokenAudience, "--duration", "10m")
	c.quiet = true
	out, err := s.r.run(ctx, c)
	if err != nil {
		return "", err
	}
	path := s.r.stack.Path("tokens", account)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("making the token directory: %w", err)
	}
	if err := os.WriteFile(path, []byte(strings.TrimSpace(out)), 0o600); err != nil {
		return "", fmt.Errorf("writing the token of %s: %w", account, err)
	}
	s.r.out.line(fmt.Sprintf("    wrote %s (a token of ServiceAccount %s/%s, not shown)", s.r.rel(path), namespace, account))
	return path, nil
}
