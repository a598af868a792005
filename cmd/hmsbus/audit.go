package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hms-platform/bus-operator/internal/audit"
	"github.com/hms-platform/bus-operator/internal/kafka"
)

// auditBrokerFlags pick how to reach the audit topic: as the operator's
// broker admin (its Secret, or a username and password file), or as a
// reader with bus credentials (--credentials-dir, --subscription, HMSBUS_*).
// No Subscription is ever granted the audit topic, so a reader is someone
// granted Read on it out of band.
type auditBrokerFlags struct {
	creds        credFlags
	bootstrap    string
	mechanism    string
	username     string
	passwordFile string
	adminSecret  string
	tls          bool
	caFile       string
	topic        string
}

func (f *auditBrokerFlags) addFlags(fs *pflag.FlagSet) {
	f.creds.addFlags(fs)
	fs.StringVar(&f.topic, "topic", audit.DefaultTopic, "the audit topic")
	fs.StringVar(&f.bootstrap, "bootstrap", "", "broker addresses, comma-separated (needed with admin credentials; overrides the reader credentials' own)")
	fs.StringVar(&f.adminSecret, "admin-secret", "", "read the broker admin credentials (keys username, password) from this Secret, NAMESPACE/NAME, via the kubeconfig")
	fs.StringVar(&f.username, "username", "", "broker admin user (with --password-file)")
	fs.StringVar(&f.passwordFile, "password-file", "", "file holding the broker admin password (a password is never a flag value)")
	fs.StringVar(&f.mechanism, "mechanism", kafka.MechanismSCRAMSHA512, "SASL mechanism of the admin credentials")
	fs.BoolVar(&f.tls, "tls", false, "use TLS to the brokers (admin credentials)")
	fs.StringVar(&f.caFile, "ca-file", "", "PEM CA bundle the brokers' certificates chain to (admin credentials)")
}

// auditBrokerConfig resolves the flags into an adapter config.
func (a *app) auditBrokerConfig(ctx context.Context, f *auditBrokerFlags) (kafka.Config, error) {
	bootstrap := splitComma(f.bootstrap)
	if f.adminSecret != "" || f.passwordFile != "" {
		if f.creds.dir != "" || f.creds.subscription != "" {
			return kafka.Config{}, errors.New("use admin credentials (--admin-secret, --password-file) or reader credentials (--credentials-dir, --subscription), not both")
		}
		if len(bootstrap) == 0 {
			return kafka.Config{}, errors.New("--bootstrap is needed with admin credentials")
		}
		cfg := kafka.Config{Bootstrap: bootstrap, Mechanism: f.mechanism, Username: f.username}
		switch {
		case f.adminSecret != "" && f.passwordFile != "":
			return kafka.Config{}, errors.New("use either --admin-secret or --password-file, not both")
		case f.adminSecret != "":
			user, pw, err := a.adminSecret(ctx, f.adminSecret)
			if err != nil {
				return kafka.Config{}, err
			}
			if cfg.Username == "" {
				cfg.Username = user
			}
			cfg.Password = pw
		default:
			b, err := os.ReadFile(f.passwordFile)
			if err != nil {
				return kafka.Config{}, fmt.Errorf("reading --password-file: %w", err)
			}
			cfg.Password = strings.TrimSpace(string(b))
		}
		if cfg.Username == "" {
			return kafka.Config{}, errors.New("--username is needed with --password-file")
		}
		if f.tls || f.caFile != "" {
			tc, err := tlsConfig(f.caFile)
			if err != nil {
				return kafka.Config{}, err
			}
			cfg.TLS = tc
		}
		return cfg, nil
	}
	creds, err := a.credentials(ctx, &f.creds)
	if err != nil {
		return kafka.Config{}, fmt.Errorf("%w (or give admin credentials with --admin-secret or --username and --password-file)", err)
	}
	if len(bootstrap) == 0 {
		bootstrap = creds.Bootstrap
	}
	cfg := kafka.Config{Bootstrap: bootstrap, Mechanism: creds.Mechanism, Username: creds.Username, Password: creds.Password}
	if creds.TLS {
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		if len(creds.CACert) > 0 {
			if cfg.TLS, err = kafka.TLSConfigFromPEM(creds.CACert); err != nil {
				return kafka.Config{}, fmt.Errorf("credentials CA: %w", err)
			}
		}
	}
	return cfg, nil
}

func tlsConfig(caFile string) (*tls.Config, error) {
	if caFile == "" {
		return &tls.Config{MinVersion: tls.VersionTLS12}, nil
	}
	return kafka.TLSConfigFromCAFile(caFile)
}

func splitComma(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// adminSecret reads the operator's broker admin Secret.
func (a *app) adminSecret(ctx context.Context, ref string) (user, password string, err error) {
	c, ns, err := a.kube.connect()
	if err != nil {
		return "", "", err
	}
	ns, name, err := splitRef(ref, ns)
	if err != nil {
		return "", "", fmt.Errorf("--admin-secret %w", err)
	}
	var s corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
		return "", "", fmt.Errorf("reading Secret %s/%s: %w", ns, name, err)
	}
	user, password = strings.TrimSpace(string(s.Data["username"])), strings.TrimSpace(string(s.Data["password"]))
	if user == "" || password == "" {
		return "", "", fmt.Errorf("secret %s/%s lacks the keys username and password", ns, name)
	}
	return user, password, nil
}

// readTrail reads the whole audit topic from its earliest offset.
func readTrail(ctx context.Context, cfg kafka.Config, topic string) ([]audit.StoredRecord, kafka.Offsets, error) {
	cl, err := kafka.New(ctx, cfg)
	if err != nil {
		return nil, kafka.Offsets{}, err
	}
	defer cl.Close()
	offs, err := cl.PartitionOffsets(ctx, topic, 0)
	if err != nil {
		return nil, kafka.Offsets{}, err
	}
	recs, err := cl.ReadRecords(ctx, topic, 0, offs.Start, offs.End, 0)
	if err != nil {
		return nil, offs, err
	}
	out := make([]audit.StoredRecord, len(recs))
	for i, r := range recs {
		out[i] = audit.StoredRecord{Offset: r.Offset, Value: r.Value}
	}
	return out, offs, nil
}

type auditVerifyFlags struct {
	broker auditBrokerFlags
	out    outputFlags
	head   string
	noHead bool
}

func (a *app) auditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify and read the operator's audit trail",
		Long: `The operator writes every broker change to the audit topic twice: an intent
before the write and its outcome after it, in a hash chain (each record holds
the SHA-256 of the one before) whose head it publishes in a ConfigMap every few
seconds. "verify" replays the topic and reports any record changed, removed or
inserted since it was written; "show" prints the records.`,
	}
	cmd.AddCommand(a.auditVerifyCmd(), a.auditShowCmd())
	return cmd
}

func (a *app) auditVerifyCmd() *cobra.Command {
	f := &auditVerifyFlags{}
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Replay the audit topic from its earliest offset and check its hash chain",
		Long: `Replays the audit topic from its earliest offset, recomputes the hash chain and
compares its end with the head the operator published (ConfigMap --head, read
with your kubeconfig; --no-head to skip). Reports the first record changed,
removed or inserted (offset, seq, what is wrong) and every other break, and
exits non-zero on any.

Records written after the last head publication (at most a few seconds' worth
while the operator runs) are protected only against changes in the middle:
a forger who rewrites the chain from there to the end is caught only once the
operator publishes a head past it.`,
		Example: fmt.Sprintf(`  %[1]s audit verify --bootstrap broker:9092 --admin-secret hmsbus-system/hmsbus-broker-admin
  %[1]s audit verify --bootstrap broker:9092 --username hmsbus-operator --password-file pw --no-head
  %[1]s audit verify --credentials-dir /var/run/auditor -o json`, a.name),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runAuditVerify(cmd.Context(), f) },
	}
	fs := cmd.Flags()
	f.broker.addFlags(fs)
	f.out.addFlags(fs)
	fs.StringVar(&f.head, "head", audit.DefaultHeadNamespace+"/"+audit.DefaultHeadConfigMap, "ConfigMap NAMESPACE/NAME holding the published chain head")
	fs.BoolVar(&f.noHead, "no-head", false, "do not compare with the published head")
	return cmd
}

// verifyReport is the JSON output of audit verify.
type verifyReport struct {
	Topic       string          `json:"topic"`
	StartOffset int64           `json:"startOffset"`
	EndOffset   int64           `json:"endOffset"`
	Records     int             `json:"records"`
	FirstSeq    int64           `json:"firstSeq"`
	LastSeq     int64           `json:"lastSeq"`
	Intents     int             `json:"intents"`
	Outcomes    int             `json:"outcomes"`
	Open        []string        `json:"openIntents,omitempty"`
	Head        *audit.Head     `json:"publishedHead,omitempty"`
	HeadError   string          `json:"headError,omitempty"`
	Findings    []audit.Finding `json:"findings"`
	Intact      bool            `json:"intact"`
}

func (a *app) runAuditVerify(ctx context.Context, f *auditVerifyFlags) error {
	if err := f.out.validate(); err != nil {
		return err
	}
	cfg, err := a.auditBrokerConfig(ctx, &f.broker)
	if err != nil {
		return err
	}
	rep := verifyReport{Topic: f.broker.topic, Findings: []audit.Finding{}}
	if !f.noHead {
		h, err := a.publishedHead(ctx, f.head)
		switch {
		case err != nil:
			rep.HeadError = err.Error()
		case h == nil:
			rep.HeadError = fmt.Sprintf("ConfigMap %s not found: the operator has not published a head", f.head)
		case h.Topic != "" && h.Topic != f.broker.topic:
			rep.HeadError = fmt.Sprintf("ConfigMap %s is the head of topic %s", f.head, h.Topic)
		default:
			rep.Head = h
		}
	}
	recs, offs, err := readTrail(ctx, cfg, f.broker.topic)
	if err != nil {
		return fmt.Errorf("reading audit topic %s: %w", f.broker.topic, err)
	}
	sum := audit.Summarize(recs)
	rep.StartOffset, rep.EndOffset = offs.Start, offs.End
	rep.Records, rep.FirstSeq, rep.LastSeq = sum.Records, sum.FirstSeq, sum.LastSeq
	rep.Intents, rep.Outcomes, rep.Open = sum.Intents, sum.Outcomes, sum.Open
	var breaks int
	for _, fd := range audit.VerifyChain(recs, rep.Head) {
		rep.Findings = append(rep.Findings, fd)
		if fd.Break() {
			breaks++
		}
	}
	rep.Intact = breaks == 0
	if f.out.format == "json" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return fmt.Errorf("encoding report: %w", err)
		}
		if _, err := fmt.Fprintf(a.out, "%s\n", b); err != nil {
			return err
		}
	} else if err := printVerify(a.out, rep); err != nil {
		return err
	}
	if breaks > 0 {
		return fmt.Errorf("audit trail %s is not intact: %d finding(s), the first at offset %d", f.broker.topic, breaks, firstBreak(rep.Findings).Offset)
	}
	return nil
}

func firstBreak(fs []audit.Finding) audit.Finding {
	for _, f := range fs {
		if f.Break() {
			return f
		}
	}
	return audit.Finding{}
}

func printVerify(w io.Writer, rep verifyReport) error {
	var b strings.Builder
	fmt.Fprintf(&b, "audit topic %s: %d records (offsets %d to %d), chain seq %d to %d, %d intents, %d outcomes\n",
		rep.Topic, rep.Records, rep.StartOffset, rep.EndOffset-1, rep.FirstSeq, rep.LastSeq, rep.Intents, rep.Outcomes)
	switch {
	case rep.Head != nil:
		fmt.Fprintf(&b, "published head: seq %d at offset %d, written %s, published %s\n", rep.Head.Seq, rep.Head.Offset,
			rep.Head.Time.UTC().Format(time.RFC3339), rep.Head.PublishedAt.UTC().Format(time.RFC3339))
	case rep.HeadError != "":
		fmt.Fprintf(&b, "published head NOT checked: %s\n", rep.HeadError)
	default:
		b.WriteString("published head not checked (--no-head)\n")
	}
	if n := len(rep.Open); n > 0 {
		fmt.Fprintf(&b, "%d intent(s) without outcome yet (writes in flight, or an operator stopped and not yet handed over): %s\n", n, strings.Join(rep.Open, ", "))
	}
	first := true
	for _, f := range rep.Findings {
		switch {
		case !f.Break():
			fmt.Fprintf(&b, "note: %s\n", f)
		case first:
			fmt.Fprintf(&b, "FIRST BREAK: %s\n", f)
			first = false
		default:
			fmt.Fprintf(&b, "break: %s\n", f)
		}
	}
	if first {
		b.WriteString("OK: the hash chain is intact\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// publishedHead reads the head ConfigMap; nil if it does not exist.
func (a *app) publishedHead(ctx context.Context, ref string) (*audit.Head, error) {
	c, ns, err := a.kube.connect()
	if err != nil {
		return nil, err
	}
	ns, name, err := splitRef(ref, ns)
	if err != nil {
		return nil, fmt.Errorf("--head %w", err)
	}
	return (&audit.ConfigMapHeads{Reader: c, Namespace: ns, Name: name}).LoadHead(ctx)
}

type auditShowFlags struct {
	broker auditBrokerFlags
	out    outputFlags
	from   int64
	max    int
}

func (a *app) auditShowCmd() *cobra.Command {
	f := &auditShowFlags{}
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Print the audit records, one per line, with each outcome joined to its intent",
		Example: fmt.Sprintf(`  %[1]s audit show --bootstrap broker:9092 --admin-secret hmsbus-system/hmsbus-broker-admin
  %[1]s audit show --credentials-dir /var/run/auditor --from 1200 -o json`, a.name),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runAuditShow(cmd.Context(), f) },
	}
	fs := cmd.Flags()
	f.broker.addFlags(fs)
	f.out.addFlags(fs)
	fs.Int64Var(&f.from, "from", 0, "first offset to print")
	fs.IntVar(&f.max, "max", 0, "print at most this many records (0: all)")
	return cmd
}

func (a *app) runAuditShow(ctx context.Context, f *auditShowFlags) error {
	if err := f.out.validate(); err != nil {
		return err
	}
	cfg, err := a.auditBrokerConfig(ctx, &f.broker)
	if err != nil {
		return err
	}
	recs, _, err := readTrail(ctx, cfg, f.broker.topic)
	if err != nil {
		return fmt.Errorf("reading audit topic %s: %w", f.broker.topic, err)
	}
	// Intents seen so far, so an outcome line says what it concludes.
	intents := map[string]audit.Record{}
	printed := 0
	for _, r := range recs {
		rec, perr := audit.ParseRecord(r.Value)
		if perr == nil && rec.Phase == audit.PhaseIntent {
			intents[rec.ID] = rec
		}
		if r.Offset < f.from || (f.max > 0 && printed >= f.max) {
			continue
		}
		printed++
		if f.out.format == "json" {
			if _, err := fmt.Fprintf(a.out, "{\"offset\":%d,\"record\":%s}\n", r.Offset, jsonOrString(r.Value)); err != nil {
				return err
			}
			continue
		}
		if _, err := fmt.Fprintln(a.out, showLine(r.Offset, rec, perr, intents)); err != nil {
			return err
		}
	}
	return nil
}

func jsonOrString(v []byte) string {
	if json.Valid(v) {
		return string(v)
	}
	b, _ := json.Marshal(string(v))
	return string(b)
}

func showLine(offset int64, r audit.Record, perr error, intents map[string]audit.Record) string {
	if perr != nil {
		return fmt.Sprintf("%d  (not an audit record: %v)", offset, perr)
	}
	seq := "-"
	if r.Seq > 0 {
		seq = fmt.Sprintf("#%d", r.Seq)
	}
	head := fmt.Sprintf("%d %s %s %-7s %s", offset, seq, r.Time.UTC().Format(time.RFC3339), r.Phase, r.ID)
	switch r.Phase {
	case audit.PhaseOutcome:
		line := head + " " + r.Result
		if in, ok := intents[r.ID]; ok {
			line += fmt.Sprintf(" (%s %s)", in.Operation, in.Resource)
		} else if r.Operation != "" {
			// The intent was lost with the broker's data; the outcome
			// repeats it.
			line += fmt.Sprintf(" (%s %s by %s %s/%s, intent repeated)", r.Operation, r.Resource, r.Object.Kind, r.Object.Namespace, r.Object.Name)
		}
		if r.Note != "" && strings.HasPrefix(r.Note, "confirmed") {
			line += " (confirmed later from the broker's state)"
		}
		if r.Error != "" {
			line += ": " + r.Error
		}
		return line
	default:
		line := fmt.Sprintf("%s %s %s by %s %s/%s (%s)", head, r.Operation, r.Resource, r.Object.Kind, r.Object.Namespace, r.Object.Name, r.Cause)
		if r.Ticket != nil {
			line += fmt.Sprintf(" under %s approved by %s", r.Ticket.Reference, strings.Join(r.Ticket.ApprovedBy, ","))
		}
		return line
	}
}
