package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/hms-platform/bus-operator/pkg/bus"
)

// credFlags pick where the bus credentials come from: a mounted Secret
// directory, a Subscription's Secret in the cluster, or HMSBUS_* variables.
type credFlags struct {
	dir          string
	subscription string
}

func (f *credFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.dir, "credentials-dir", "", "directory holding the credentials Secret's keys (a mounted Secret)")
	fs.StringVar(&f.subscription, "subscription", "", "read the credentials of this Subscription (NAME or NAMESPACE/NAME) from the cluster")
}

func (a *app) credentials(ctx context.Context, f *credFlags) (bus.Credentials, error) {
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
	creds, err := bus.CredentialsFromEnv()
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
