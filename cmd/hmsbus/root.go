package main

import (
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// pluginName is the executable name kubectl looks for to run `kubectl bus`.
const pluginName = "kubectl-bus"

// commandName is how the user invoked us: "kubectl bus" when run as the
// kubectl plugin, so help and examples show what the user types.
func commandName(argv0 string) string {
	// Either separator: the binary may run on Windows as kubectl-bus.exe.
	base := argv0[strings.LastIndexAny(argv0, `/\`)+1:]
	base = strings.TrimSuffix(base, ".exe")
	if base == pluginName {
		return "kubectl bus"
	}
	return "hmsbus"
}

// app holds what every command shares.
type app struct {
	name   string
	out    io.Writer
	errOut io.Writer
	kube   kubeOptions
}

func newRootCmd(argv0 string, out, errOut io.Writer) *cobra.Command {
	a := &app{name: commandName(argv0), out: out, errOut: errOut}
	root := &cobra.Command{
		Use:   strings.ReplaceAll(a.name, " ", "-"),
		Short: "Approve bus changes, check their status, and publish and consume events",
		Long: `hmsbus works with the HMS event bus operator.

Reviewers approve or deny ChangeTickets; teams see the state of their Topics,
Subscriptions and tickets; anyone holding a Subscription's credentials can
publish, subscribe (with acknowledgements) and stream events.

Kubernetes access follows kubectl: --kubeconfig, --context, -n, and --as /
--as-group to act as another user.

As a kubectl plugin: put a copy of (or a symlink to) this binary named
` + pluginName + ` on your PATH, and "kubectl bus ..." runs it.`,
		SilenceUsage: true,
		// Cobra names a command by the first word of Use; the annotation
		// makes help and usage show the two-word plugin name.
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: a.name},
	}
	root.SetOut(out)
	root.SetErr(errOut)
	a.kube.addFlags(root.PersistentFlags())
	root.AddCommand(
		a.pubCmd(),
		a.subCmd(),
		a.streamCmd(),
		a.approveCmd(),
		a.denyCmd(),
		a.ticketsCmd(),
		a.statusCmd(),
		a.rotateCmd(),
		a.auditCmd(),
	)
	return root
}
