package kafkabroker

import (
	"archive/zip"
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// HomeEnv overrides where the launcher looks for Kafka: a directory holding
// libs/ with the jars (what `make kafka` writes to <repo>/bin/kafka).
const HomeEnv = "HMSBUS_KAFKA_HOME"

// ErrNotFetched means Kafka's jars are not where the launcher looks: run
// make kafka.
var ErrNotFetched = errors.New("kafka jars not fetched")

// ResolveHome returns the Kafka home to use: dir if set, else $HMSBUS_KAFKA_HOME,
// else bin/kafka in the repository (found by walking up from the working
// directory to go.mod, as tests run in their package directory). It checks
// the jars are there, so a missing fetch says what to do instead of failing
// deep inside java.
func ResolveHome(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv(HomeEnv)
	}
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "bin", "kafka")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("resolving kafka home: %w", err)
	}
	core, err := filepath.Glob(filepath.Join(dir, "libs", "kafka_2.13-*.jar"))
	if err != nil {
		return "", fmt.Errorf("looking for kafka jars in %s: %w", dir, err)
	}
	if len(core) == 0 {
		return "", fmt.Errorf("%w: no kafka_2.13 jar in %s/libs: run make kafka (or set %s)", ErrNotFetched, dir, HomeEnv)
	}
	return dir, nil
}

func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding repository root: %w", err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("finding repository root: no go.mod at or above %s (set %s)", wd, HomeEnv)
		}
	}
}

// HomeVersion is the Kafka version whose jars are in home: the version the
// kafka-clients jar records about itself (kafka/kafka-version.properties,
// what the broker logs as "Kafka version" and AppInfo reports).
func HomeVersion(home string) (string, error) {
	jars, err := filepath.Glob(filepath.Join(home, "libs", "kafka-clients-*.jar"))
	if err != nil || len(jars) == 0 {
		return "", fmt.Errorf("%w: no kafka-clients jar in %s/libs: run make kafka", ErrNotFetched, home)
	}
	if len(jars) > 1 {
		return "", fmt.Errorf("several kafka-clients jars in %s/libs (%s): run make kafka to refetch", home, strings.Join(jars, ", "))
	}
	zr, err := zip.OpenReader(jars[0])
	if err != nil {
		return "", fmt.Errorf("opening %s: %w", jars[0], err)
	}
	defer func() { _ = zr.Close() }()
	f, err := zr.Open("kafka/kafka-version.properties")
	if err != nil {
		return "", fmt.Errorf("reading the version from %s: %w", jars[0], err)
	}
	defer func() { _ = f.Close() }()
	v, err := propertyValue(f, "version")
	if err != nil {
		return "", fmt.Errorf("reading the version from %s: %w", jars[0], err)
	}
	return v, nil
}

func propertyValue(r io.Reader, key string) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New(key + " not set")
}

// javaBinary picks java: the given path, $JAVA_HOME/bin/java, or java on PATH.
func javaBinary(given string) (string, error) {
	if given != "" {
		return given, nil
	}
	if jh := os.Getenv("JAVA_HOME"); jh != "" {
		p := filepath.Join(jh, "bin", "java")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("java")
	if err != nil {
		return "", fmt.Errorf("finding java (Kafka needs Java 17 or newer): %w", err)
	}
	return p, nil
}
