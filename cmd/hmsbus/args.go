package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// namedArgs checks that exactly the named arguments were given and that
// none is empty, naming what is missing: "missing TICKET" says more than
// "accepts 1 arg(s), received 0", and an empty name must never reach the
// API server as a request for "".
func namedArgs(names ...string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) < len(names) {
			return fmt.Errorf("missing %s", strings.Join(names[len(args):], " and "))
		}
		if len(args) > len(names) {
			return fmt.Errorf("too many arguments: want %s, got %d", strings.Join(names, " "), len(args))
		}
		for i, a := range args {
			if strings.TrimSpace(a) == "" {
				return fmt.Errorf("%s must not be empty", names[i])
			}
		}
		return nil
	}
}
