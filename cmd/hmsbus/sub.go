package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hms-platform/bus-operator/pkg/bus"
)

type subFlags struct {
	creds     credFlags
	out       outputFlags
	limit     limitFlags
	group     string
	start     string
	failFirst int
}

func (a *app) subCmd() *cobra.Command {
	f := &subFlags{}
	cmd := &cobra.Command{
		Use:   "sub [TOPIC]",
		Short: "Consume a topic in the Subscription's consumer group, acknowledging each event",
		Long: `Consume a topic as a member of the credentials' consumer group. Each event is
printed and then acknowledged (its offset committed), so another member of the
group, or the next run, continues after it. With --fail-first N the first N
deliveries are refused instead, to show that an unacknowledged event comes
back. TOPIC may be left out when the credentials grant exactly one topic.`,
		Example: fmt.Sprintf(`  %[1]s sub FeeUpdated --subscription payments/payment-fees
  %[1]s sub FeeUpdated --credentials-dir /var/run/bus --max 3 --timeout 30s -o json`, a.name),
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return a.runSub(cmd, f, args) },
	}
	fs := cmd.Flags()
	f.creds.addFlags(fs)
	f.out.addFlags(fs)
	f.limit.addFlags(fs)
	fs.StringVar(&f.group, "group", "", "consumer group (default: the one in the credentials)")
	fs.StringVar(&f.start, "start", "earliest", "where a group with no acknowledged events starts: earliest or latest")
	fs.IntVar(&f.failFirst, "fail-first", 0, "refuse (do not acknowledge) the first N deliveries, to demonstrate redelivery")
	return cmd
}

func (a *app) runSub(cmd *cobra.Command, f *subFlags, args []string) error {
	if err := f.out.validate(); err != nil {
		return err
	}
	start, err := bus.ParseOffset(f.start)
	if err != nil || (start != bus.Earliest && start != bus.Latest) {
		return fmt.Errorf("--start %q: want earliest or latest", f.start)
	}
	creds, err := a.credentials(cmd.Context(), &f.creds)
	if err != nil {
		return err
	}
	if f.group != "" {
		creds.ConsumerGroup = f.group
	}
	topic, err := topicArg(args, creds)
	if err != nil {
		return err
	}
	s, err := bus.NewSubscriber(creds, bus.SubscriberOptions{
		StartOffset: start,
		OnError:     func(err error) { _, _ = fmt.Fprintln(a.errOut, "warning:", err) },
	})
	if err != nil {
		return err
	}
	ctx, count, cancel := f.limit.start(cmd.Context())
	defer cancel()
	refused := 0
	err = s.Run(ctx, topic, func(_ context.Context, e bus.Event) error {
		if refused < f.failFirst {
			refused++
			return fmt.Errorf("refused by --fail-first (%d of %d)", refused, f.failFirst)
		}
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
