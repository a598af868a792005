package main

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/spf13/cobra"

	"github.com/hms-platform/bus-operator/pkg/bus"
)

type streamFlags struct {
	creds  credFlags
	out    outputFlags
	limit  limitFlags
	offset string
}

func (a *app) streamCmd() *cobra.Command {
	f := &streamFlags{}
	cmd := &cobra.Command{
		Use:   "stream [TOPIC]",
		Short: "Read a topic from an offset, without a consumer group (nothing is acknowledged)",
		Long: `Read a topic from earliest, latest or an absolute offset (on every
partition), without joining a consumer group: nothing is committed, and any
number of streams can read the same topic. TOPIC may be left out when the
credentials grant exactly one topic.`,
		Example: fmt.Sprintf(`  %[1]s stream FeeUpdated --offset earliest --subscription audit/audit-fees
  %[1]s stream FeeUpdated --offset 42 --max 10 --timeout 10s -o json`, a.name),
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return a.runStream(cmd, f, args) },
	}
	fs := cmd.Flags()
	f.creds.addFlags(fs)
	f.out.addFlags(fs)
	f.limit.addFlags(fs)
	fs.StringVar(&f.offset, "offset", "latest", "where to start: earliest, latest or an offset number")
	return cmd
}

func (a *app) runStream(cmd *cobra.Command, f *streamFlags, args []string) error {
	if err := f.out.validate(); err != nil {
		return err
	}
	from, err := bus.ParseOffset(f.offset)
	if err != nil {
		return fmt.Errorf("--offset: %w", err)
	}
	creds, err := a.credentials(cmd.Context(), &f.creds)
	if err != nil {
		return err
	}
	topic, err := topicArg(args, creds)
	if err != nil {
		return err
	}
	s, err := bus.NewStreamer(creds, bus.StreamOptions{OnStart: func(topic string, start map[int32]int64) {
		_, _ = fmt.Fprintf(a.errOut, "streaming %s from %s\n", topic, formatStart(start))
	}})
	if err != nil {
		return err
	}
	ctx, count, cancel := f.limit.start(cmd.Context())
	defer cancel()
	err = s.Stream(ctx, topic, from, func(_ context.Context, e bus.Event) error {
		if err := printEvent(a.out, f.out.format, e); err != nil {
			return err
		}
		count.add()
		return nil
	})
	if err != nil {
		return err
	}
	return count.result()
}

// formatStart renders start offsets as "partition 0@5, partition 1@3".
func formatStart(start map[int32]int64) string {
	out := ""
	for i, p := range slices.Sorted(maps.Keys(start)) {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("partition %d@%d", p, start[p])
	}
	return out
}
