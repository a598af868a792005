// Command hmsbus-broker runs the embedded event-bus broker (franz-go's kfake
// with SASL/SCRAM and ACLs enforced) for the demo and for development. It is
// part of the development harness, not of what ships: production points the
// operator at a real Kafka-protocol cluster.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/hms-platform/bus-operator/test/harness/embedded"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "hmsbus-broker:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("hmsbus-broker", flag.ContinueOnError)
	fs.Usage = func() {
		_, _ = fmt.Fprintln(fs.Output(), `Usage: hmsbus-broker [flags]

Runs the embedded broker: a Kafka-protocol cluster with SASL/SCRAM and ACLs
enforced. The superuser's password is read from --admin-password-file, which
is created with a random password when missing; it is never a flag. Stop it
with Ctrl-C or SIGTERM; with --data-dir its state is saved and reloaded.`)
		fs.PrintDefaults()
	}
	ports := fs.String("ports", "9092,9093,9094", "one listen port per broker, comma-separated; 0 picks a free port")
	dataDir := fs.String("data-dir", "", "directory to persist topics, events, users and ACLs (default: in memory)")
	adminUser := fs.String("admin-user", "admin", "superuser name (SCRAM-SHA-512)")
	passwordFile := fs.String("admin-password-file", "", "file holding the superuser password, created if missing (default: <user config dir>/hmsbus/admin-password)")
	logLevel := fs.String("log-level", "warn", "broker log level: none, error, warn, info or debug")
	if err := fs.Parse(args); err != nil {
		return err
	}
	level, err := parseLogLevel(*logLevel)
	if err != nil {
		return err
	}
	portList, err := parsePorts(*ports)
	if err != nil {
		return err
	}
	if *passwordFile == "" {
		if *passwordFile, err = defaultPasswordFile(); err != nil {
			return err
		}
	}
	password, err := embedded.LoadOrCreatePassword(*passwordFile)
	if err != nil {
		return err
	}
	b, err := embedded.Start(embedded.Options{
		Brokers:       len(portList),
		Ports:         portList,
		AdminUser:     *adminUser,
		AdminPassword: password,
		DataDir:       *dataDir,
		Logger:        kfake.BasicLogger(os.Stderr, level),
		LogLevel:      level,
	})
	if err != nil {
		return err
	}
	state := "in memory (lost on exit; use --data-dir to keep it)"
	if *dataDir != "" {
		state = *dataDir
	}
	fmt.Printf("broker running\n  bootstrap:           %s\n  admin user:          %s (%s)\n  admin password file: %s\n  state:               %s\n",
		b.Bootstrap(), b.AdminUser, embedded.AdminMechanism, *passwordFile, state)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	// Close writes the state to the data dir before the ports are freed.
	b.Close()
	fmt.Println("broker stopped")
	return nil
}

func parsePorts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || p < 0 || p > 65535 {
			return nil, fmt.Errorf("--ports %q: want comma-separated port numbers", s)
		}
		out = append(out, p)
	}
	return out, nil
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
