package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/hms-platform/bus-operator/internal/embedded"
)

type brokerFlags struct {
	ports        []int
	dataDir      string
	adminUser    string
	passwordFile string
	logLevel     string
}

func (a *app) brokerCmd() *cobra.Command {
	f := &brokerFlags{}
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run the embedded event-bus broker (for demos and development)",
		Long: `Run the embedded broker: a Kafka-protocol cluster with SASL/SCRAM and ACLs
enforced. The superuser's password is read from --admin-password-file, which
is created with a random password when missing; it is never a flag. Stop it
with Ctrl-C or SIGTERM; with --data-dir its state is saved and reloaded.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runBroker(cmd, f) },
	}
	fs := cmd.Flags()
	fs.IntSliceVar(&f.ports, "ports", []int{9092, 9093, 9094}, "one listen port per broker; empty picks free ports")
	fs.StringVar(&f.dataDir, "data-dir", "", "directory to persist topics, events, users and ACLs (default: in memory)")
	fs.StringVar(&f.adminUser, "admin-user", "admin", "superuser name (SCRAM-SHA-512)")
	fs.StringVar(&f.passwordFile, "admin-password-file", "", "file holding the superuser password, created if missing (default: <user config dir>/hmsbus/admin-password)")
	fs.StringVar(&f.logLevel, "log-level", "warn", "broker log level: none, error, warn, info or debug")
	return cmd
}

func (a *app) runBroker(cmd *cobra.Command, f *brokerFlags) error {
	level, err := parseLogLevel(f.logLevel)
	if err != nil {
		return err
	}
	if f.passwordFile == "" {
		if f.passwordFile, err = defaultPasswordFile(); err != nil {
			return err
		}
	}
	password, err := embedded.LoadOrCreatePassword(f.passwordFile)
	if err != nil {
		return err
	}
	b, err := embedded.Start(embedded.Options{
		Brokers:       len(f.ports),
		Ports:         f.ports,
		AdminUser:     f.adminUser,
		AdminPassword: password,
		DataDir:       f.dataDir,
		Logger:        kfake.BasicLogger(a.errOut, level),
		LogLevel:      level,
	})
	if err != nil {
		return err
	}
	state := "in memory (lost on exit; use --data-dir to keep it)"
	if f.dataDir != "" {
		state = f.dataDir
	}
	// Status lines for a person watching; a closed stdout must not stop the broker.
	_, _ = fmt.Fprintf(a.out, "broker running\n  bootstrap:           %s\n  admin user:          %s (%s)\n  admin password file: %s\n  state:               %s\n",
		b.Bootstrap(), b.AdminUser, embedded.AdminMechanism, f.passwordFile, state)
	<-cmd.Context().Done()
	// Close writes the state to the data dir before the ports are freed.
	b.Close()
	_, _ = fmt.Fprintln(a.out, "broker stopped")
	return nil
}

func defaultPasswordFile() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("finding a place for the admin password file (set --admin-password-file): %w", err)
	}
	return filepath.Join(dir, "hmsbus", "admin-password"), nil
}

func parseLogLevel(s string) (kfake.LogLevel, error) {
	switch strings.ToLower(s) {
	case "none":
		return kfake.LogLevelNone, nil
	case "error":
		return kfake.LogLevelError, nil
	case "warn", "warning":
		return kfake.LogLevelWarn, nil
	case "info":
		return kfake.LogLevelInfo, nil
	case "debug":
		return kfake.LogLevelDebug, nil
	}
	return 0, fmt.Errorf("--log-level %q: want none, error, warn, info or debug", s)
}
