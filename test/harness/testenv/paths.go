package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// resolveRoot returns dir, or the nearest directory at or above the working
// directory that holds go.mod: tests run in their package's directory and
// the demo in the repository root.
func resolveRoot(dir string) (string, error) {
	if dir != "" {
		return filepath.Abs(dir)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding repository root: %w", err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("finding repository root: no go.mod at or above %s", wd)
		}
	}
}

// resolveAssets picks the directory envtest takes its binaries from, in
// envtest's own order of precedence, and checks they are there so a missing
// build gives an actionable error instead of an exec failure.
func resolveAssets(root, dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv("KUBEBUILDER_ASSETS")
	}
	if dir == "" {
		dir = filepath.Join(root, "bin")
	}
	for _, b := range []struct{ name, override string }{
		{"kube-apiserver", "TEST_ASSET_KUBE_APISERVER"},
		{"etcd", "TEST_ASSET_ETCD"},
	} {
		path := filepath.Join(dir, b.name)
		if p := os.Getenv(b.override); p != "" {
			path = p
		}
		info, err := os.Stat(path)
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("%s not found at %s: run make controlplane (or set KUBEBUILDER_ASSETS)", b.name, path)
		}
		if err != nil {
			return "", fmt.Errorf("checking %s: %w", path, err)
		}
		if info.IsDir() || info.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%s at %s is not an executable file: run make controlplane", b.name, path)
		}
	}
	return dir, nil
}
