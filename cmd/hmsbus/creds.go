package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/hms-platform/bus-operator/pkg/bus"
)

// credFlags pick where the bus credentials come from: a mounted Secret
// directory, a Subscription's Secret in the cluster, or HMSBUS_* variables;
// and, for the identities whose secret is not in the Secret, where the
// token or certificate is when the command does not run in the pod that
// mounts them.
type credFlags struct {
	dir          string
	subscription string
	tokenFile    string
	certFile     string
	keyFile      string
}

func (f *credFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.dir, "credentials-dir", "", "directory holding the credentials Secret's keys (a mounted Secret)")
	fs.StringVar(&f.subscription, "subscription", "", "read the credentials of this Subscription (NAME or NAMESPACE/NAME) from the cluster")
	fs.StringVar(&f.tokenFile, "token-file", "", "ServiceAccount token (a JWT with the broker's audience) for authentication type serviceAccount, instead of the pod's mounted token.file; read again at each connection")
	fs.StringVar(&f.certFile, "cert-file", "", "client certificate (PEM) for authentication type tls, instead of the Secret's tls.crt; read again at each connection (needs --key-file)")
	fs.StringVar(&f.keyFile, "key-file", "", "private key (PEM) of --cert-file")
}

func (a *app) credentials(ctx context.Context, f *credFlags) (bus.Credentials, error) {
	if err := f.validateIdentity(); err != nil {
		return bus.Credentials{}, err
	}
	creds, err := a.credentialsFrom(ctx, f)
	if err != nil {
		return bus.Credentials{}, err
	}
	return f.applyIdentity(creds)
}

// validateIdentity checks the identity file flags before any credentials
// are read, so a typo in a path is reported as such.
func (f *credFlags) validateIdentity() error {
	switch {
	case (f.certFile == "") != (f.keyFile == ""):
		return errors.New("--cert-file and --key-file go together")
	case f.tokenFile != "" && f.certFile != "":
		return errors.New("use --token-file or --cert-file, not both: a Subscription has one authentication type")
	}
	for flag, path := range map[string]string{"--token-file": f.tokenFile, "--cert-file": f.certFile, "--key-file": f.keyFile} {
		if path == "" {
			continue
		}
		// Only checked to exist and to be readable: the content is read
		// at each connection (a refreshed token, a renewed certificate),
		// and never printed.
		fh, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("%s: %w", flag, err)
		}
		_ = fh.Close()
	}
	return nil
}

// applyIdentity puts the token or certificate files of the flags into
// credentials read from a Secret or the environment. A token only makes
// sense for serviceAccount credentials (their bootstrap is the brokers'
// OAUTHBEARER listener), a certificate only for tls credentials (the
// client-certificate listener): anything else would fail at the broker
// with a less helpful error.
func (f *credFlags) applyIdentity(c bus.Credentials) (bus.Credentials, error) {
	switch {
	case f.tokenFile != "":
		if c.Mechanism != bus.MechanismOAuthBearer {
			return bus.Credentials{}, fmt.Errorf("--token-file: these credentials are for %s, not for a ServiceAccount token (authentication type serviceAccount, mechanism %s)", identityOf(c), bus.MechanismOAuthBearer)
		}
		c.TokenFile = f.tokenFile
	case f.certFile != "":
		if c.SecurityProtocol() != bus.SecurityProtocolSSL {
			return bus.Credentials{}, fmt.Errorf("--cert-file: these credentials are for %s, not for a client certificate (authentication type tls, security protocol %s)", identityOf(c), bus.SecurityProtocolSSL)
		}
		c.CertPEM, c.KeyPEM = nil, nil
		c.CertFile, c.KeyFile = f.certFile, f.keyFile
	default:
		return c, nil
	}
	if err := c.Validate(); err != nil {
		return bus.Credentials{}, err
	}
	return c, nil
}

// identityOf names the kind of credentials, for error messages.
func identityOf(c bus.Credentials) string {
	switch {
	case c.SecurityProtocol() == bus.SecurityProtocolSSL:
		return "a client certificate"
	case c.Mechanism == bus.MechanismOAuthBearer:
		return "a ServiceAccount token"
	case c.Mechanism != "":
		return "a " + c.Mechanism + " password"
	}
	return "a password"
}

// credentialsFrom reads the credentials from the chosen source. In the
// environment, --token-file and --cert-file/--key-file stand for the
// HMSBUS_TOKEN_FILE and HMSBUS_CERT_FILE/HMSBUS_KEY_FILE variables, which
// select the identity there.
func (a *app) credentialsFrom(ctx context.Context, f *credFlags) (bus.Credentials, error) {
	switch {
	case f.dir != "" && f.subscription != "":
		return bus.Credentials{}, errors.New("use either --credentials-dir or --subscription, not both")
	case f.dir != "":
		return bus.CredentialsFromDir(f.dir)
	case f.subscription != "":
		c, ns, err := a.kube.connect()
		if err != nil {
			return bus.Credentials{}, err
		}
		ns, name, err := splitRef(f.subscription, ns)
		if err != nil {
			return bus.Credentials{}, fmt.Errorf("--subscription %w", err)
		}
		return subscriptionCredentials(ctx, c, ns, name)
	}
	restore := setEnvFor(map[string]string{bus.EnvTokenFile: f.tokenFile, bus.EnvCertFile: f.certFile, bus.EnvKeyFile: f.keyFile})
	creds, err := bus.CredentialsFromEnv()
	restore()
	if err != nil {
		return bus.Credentials{}, fmt.Errorf("%w (set --credentials-dir, --subscription or the %s variables)", err, "HMSBUS_*")
	}
	return creds, nil
}

// topicArg is the topic named on the command line or, when none is, the
// only topic the credentials were granted.
func topicArg(args []string, creds bus.Credentials) (string, error) {
	if len(args) > 0 {
		return args[0], nil
	}
	if len(creds.Topics) == 1 {
		return creds.Topics[0], nil
	}
	return "", fmt.Errorf("name the topic: the credentials grant %d topics %v", len(creds.Topics), creds.Topics)
}

// outputFlags control how events are printed.
type outputFlags struct {
	format string
}

func (f *outputFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&f.format, "output", "o", "text", "output format: text or json (one JSON object per line)")
}

func (f *outputFlags) validate() error {
	if f.format != "text" && f.format != "json" {
		return fmt.Errorf("--output %q: want text or json", f.format)
	}
	return nil
}

// printEvent writes one event on one line.
func printEvent(w io.Writer, format string, e bus.Event) error {
	if format == "json" {
		b, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("encoding event %s: %w", e.ID, err)
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	// Records that are not CloudEvents (the audit trail, foreign
	// producers) have no type, source or id: print only what is there.
	fields := []string{e.Time.UTC().Format(time.RFC3339Nano), fmt.Sprintf("%s/%d@%d", e.Topic, e.Partition, e.Offset)}
	for _, f := range [][2]string{{"", e.Type}, {"source=", e.Source}, {"id=", e.ID}, {"subject=", e.Subject}} {
		if f[1] != "" {
			fields = append(fields, f[0]+f[1])
		}
	}
	data := string(e.Data)
	if data == "" {
		data = "(no data)"
	}
	_, err := fmt.Fprintln(w, strings.Join(append(fields, data), " "))
	return err
}

// limitFlags end a consuming command, for scripts and demos.
type limitFlags struct {
	max     int
	timeout time.Duration
}

func (f *limitFlags) addFlags(fs *pflag.FlagSet) {
	fs.IntVar(&f.max, "max", 0, "exit after this many events (0: no limit)")
	fs.DurationVar(&f.timeout, "timeout", 0, "exit after this long; with --max, fewer events by then is an error (0: no limit)")
}

// counter counts handled events and stops the run at --max.
type counter struct {
	limit  limitFlags
	seen   int
	cancel context.CancelFunc
}

// start derives the run's context from the limits.
func (f limitFlags) start(ctx context.Context) (context.Context, *counter, context.CancelFunc) {
	var cancel context.CancelFunc
	if f.timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, f.timeout)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	return ctx, &counter{limit: f, cancel: cancel}, cancel
}

func (c *counter) add() {
	c.seen++
	if c.limit.max > 0 && c.seen >= c.limit.max {
		c.cancel()
	}
}

// result says whether the run ended as asked: with --max, it must have
// seen that many events before the timeout or an interrupt.
func (c *counter) result() error {
	if c.limit.max > 0 && c.seen < c.limit.max {
		return fmt.Errorf("stopped after %d of %d events", c.seen, c.limit.max)
	}
	return nil
}

// setEnvFor sets the non-empty values for the time of one read of the
// environment and returns what puts the previous values back (the CLI
// reads its credentials once, from one goroutine).
func setEnvFor(vars map[string]string) (restore func()) {
	type previous struct {
		value string
		set   bool
	}
	saved := map[string]previous{}
	for k, v := range vars {
		if v == "" {
			continue
		}
		old, set := os.LookupEnv(k)
		saved[k] = previous{old, set}
		_ = os.Setenv(k, v)
	}
	return func() {
		for k, p := range saved {
			if p.set {
				_ = os.Setenv(k, p.value)
			} else {
				_ = os.Unsetenv(k)
			}
		}
	}
}
