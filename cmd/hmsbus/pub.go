package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hms-platform/bus-operator/pkg/bus"
)

type pubFlags struct {
	creds   credFlags
	out     outputFlags
	typ     string
	source  string
	subject string
	id      string
}

func (a *app) pubCmd() *cobra.Command {
	f := &pubFlags{}
	cmd := &cobra.Command{
		Use:   "pub TOPIC JSON",
		Short: "Publish one event (JSON data; - reads it from stdin)",
		Example: fmt.Sprintf(`  %[1]s pub FeeUpdated '{"service":"passport","fee":150}' --type hms.fees.FeeUpdated --subscription fees/fee-publisher
  echo '{"fee":150}' | %[1]s pub FeeUpdated - --type hms.fees.FeeUpdated --credentials-dir /var/run/bus`, a.name),
		Args: namedArgs("TOPIC", "JSON"),
		RunE: func(cmd *cobra.Command, args []string) error { return a.runPub(cmd, f, args[0], args[1]) },
	}
	fs := cmd.Flags()
	f.creds.addFlags(fs)
	f.out.addFlags(fs)
	fs.StringVar(&f.typ, "type", "", "CloudEvents type, e.g. hms.fees.FeeUpdated (default: the topic name)")
	fs.StringVar(&f.source, "source", "hmsbus-cli", "CloudEvents source")
	fs.StringVar(&f.subject, "subject", "", "CloudEvents subject; also the record key, so events of one subject stay in order")
	fs.StringVar(&f.id, "id", "", "CloudEvents id (default: a random UUID)")
	return cmd
}

func (a *app) runPub(cmd *cobra.Command, f *pubFlags, topic, data string) error {
	if err := f.out.validate(); err != nil {
		return err
	}
	payload, err := readData(data, cmd.InOrStdin())
	if err != nil {
		return err
	}
	creds, err := a.credentials(cmd.Context(), &f.creds)
	if err != nil {
		return err
	}
	p, err := bus.NewPublisher(creds, bus.PublisherOptions{Source: f.source})
	if err != nil {
		return err
	}
	defer p.Close()
	typ := f.typ
	if typ == "" {
		typ = topic // an event on FeeUpdated is a FeeUpdated unless told otherwise
	}
	e, err := p.Publish(cmd.Context(), topic, bus.Event{ID: f.id, Type: typ, Subject: f.subject, Data: payload})
	if err != nil {
		return err
	}
	if f.out.format == "json" {
		return printEvent(a.out, "json", e)
	}
	_, err = fmt.Fprintf(a.out, "published %s to %s/%d@%d\n", e.ID, e.Topic, e.Partition, e.Offset)
	return err
}

// readData reads the event data argument, "-" meaning stdin, and checks it
// is JSON before anything is sent.
func readData(arg string, stdin io.Reader) (json.RawMessage, error) {
	raw := []byte(arg)
	if arg == "-" {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("reading event data from stdin: %w", err)
		}
		raw = b
	}
	raw = []byte(strings.TrimSpace(string(raw)))
	if !json.Valid(raw) {
		return nil, errors.New("event data is not valid JSON")
	}
	return raw, nil
}
