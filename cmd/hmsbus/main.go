// Command hmsbus is the people's side of the HMS event bus: reviewers approve
// ChangeTickets, teams check status, and anyone holding a Subscription's
// credentials can publish, subscribe and stream events. Installed as
// kubectl-bus it also works as `kubectl bus`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd(os.Args[0], os.Stdout, os.Stderr).ExecuteContext(ctx)
	stop()
	if err != nil {
		os.Exit(1)
	}
}
