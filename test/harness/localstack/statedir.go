package localstack

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// stateMarker marks a directory as a localstack state dir, the only kind
// of non-empty directory Start agrees to wipe: a mistyped --state-dir must
// not delete somebody's files.
const stateMarker = ".hmsbus-localstack"

// prepareStateDir empties dir (creating it if needed) and marks it. It
// reports whether there was an earlier run's state to wipe.
func prepareStateDir(dir string) (wiped bool, err error) {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return false, fmt.Errorf("reading state dir %s: %w", dir, err)
	case len(entries) > 0:
		if _, err := os.Stat(filepath.Join(dir, stateMarker)); err != nil {
			return false, fmt.Errorf("refusing to wipe state dir %s: it is not empty and holds no %s file, so it is not one this tool created; pick another dir or empty it", dir, stateMarker)
		}
		if err := os.RemoveAll(dir); err != nil {
			return false, fmt.Errorf("wiping state dir %s: %w", dir, err)
		}
		wiped = true
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return wiped, fmt.Errorf("creating state dir %s: %w", dir, err)
	}
	marker := []byte("State of a local hms-bus stack (kubeconfigs, logs, credentials). Wiped at every start.\n")
	if err := os.WriteFile(filepath.Join(dir, stateMarker), marker, 0o600); err != nil {
		return wiped, fmt.Errorf("marking state dir %s: %w", dir, err)
	}
	return wiped, nil
}
