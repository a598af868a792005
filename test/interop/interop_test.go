package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hms-platform/bus-operator/pkg/bus"
)

// runTool runs a client program with stdin, bounded so a client that
// hangs fails the test instead of the run, and returns its output (stdout
// and stderr together).
func runTool(t *testing.T, stdin string, name string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := runToolTo(t, stdin, &out, &out, name, args...)
	return out.String(), err
}

func runToolTo(t *testing.T, stdin string, stdout, stderr *bytes.Buffer, name string, args ...string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %s: no exit within 2 minutes:\n%s\n%s", filepath.Base(name), strings.Join(args, " "), stdout, stderr)
	}
	return err
}

// javaTool runs one of Kafka's own command-line clients with the client
// config file props and nothing else: the bootstrap address it needs on
// the command line is read from that file too.
func javaTool(t *testing.T, stdin, class, props string, args ...string) (string, error) {
	t.Helper()
	bootstrap := property(t, props, "bootstrap.servers")
	full := append([]string{"-Xms32m", "-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", kafkaLibs(t), class,
		"--bootstrap-server", bootstrap, "--command-config", props}, args...)
	return runTool(t, stdin, "java", full...)
}

const (
	consoleProducer = "org.apache.kafka.tools.ConsoleProducer"
	consoleConsumer = "org.apache.kafka.tools.consumer.ConsoleConsumer"
)

// TestJavaConsoleClients: Kafka's own console producer and consumer with
// the issued client.properties as their whole configuration.
func TestJavaConsoleClients(t *testing.T) {
	lines := []string{"java-1", "java-2", "java-3"}
	before := endOffset(t, issued.orders)

	// The producer writes its topic (synchronously, so a refused send is
	// an error, not a log line).
	out, err := javaTool(t, strings.Join(lines, "\n")+"\n", consoleProducer, issued.writerJava, "--topic", issued.orders, "--sync")
	if err != nil || strings.Contains(out, "Exception") {
		t.Fatalf("the console producer with the writer's client.properties failed: %v\n%s", err, out)
	}
	if got := endOffset(t, issued.orders) - before; got != int64(len(lines)) {
		t.Fatalf("the console producer reported success, but %s got %d records, want %d\n%s", issued.orders, got, len(lines), out)
	}

	// The consumer reads them in its own group (group.id is in its
	// client.properties).
	out, err = javaTool(t, "", consoleConsumer, issued.readerJava, "--topic", issued.orders, "--from-beginning",
		"--max-messages", "3", "--timeout-ms", "60000")
	if err != nil {
		t.Fatalf("the console consumer with the reader's client.properties failed: %v\n%s", err, out)
	}
	for _, l := range lines {
		if !slices.Contains(strings.Split(out, "\n"), l) {
			t.Fatalf("the console consumer did not print %q:\n%s", l, out)
		}
	}

	// The consumer may not produce: the broker refuses, nothing is written.
	before = endOffset(t, issued.orders)
	out, err = javaTool(t, "forged\n", consoleProducer, issued.readerJava, "--topic", issued.orders, "--sync")
	if !strings.Contains(out, "TopicAuthorizationException") && !strings.Contains(out, "ClusterAuthorizationException") {
		t.Fatalf("the consumer's credentials produced (err %v) without an authorization error:\n%s", err, out)
	}
	if got := endOffset(t, issued.orders) - before; got != 0 {
		t.Fatalf("the consumer's credentials wrote %d records", got)
	}

	// The consumer may not read a topic it was not granted.
	out, err = javaTool(t, "", consoleConsumer, issued.readerJava, "--topic", issued.ledger, "--from-beginning",
		"--max-messages", "1", "--timeout-ms", "20000")
	// The console consumer reports the refusal and ends, with exit status
	// 0 (its choice): the output is the evidence.
	if !strings.Contains(out, "TopicAuthorizationException") || !strings.Contains(out, "Processed a total of 0 messages") {
		t.Fatalf("the consumer read a topic it was not granted (err %v):\n%s", err, out)
	}

	// The producer may not read its own topic either.
	out, err = javaTool(t, "", consoleConsumer, issued.writerJava, "--topic", issued.orders, "--from-beginning",
		"--max-messages", "1", "--timeout-ms", "20000")
	if !strings.Contains(out, "AuthorizationException") || !strings.Contains(out, "Processed a total of 0 messages") {
		t.Fatalf("the producer's credentials read (err %v):\n%s", err, out)
	}

	// A wrong password gets the broker's refusal, so the successes above
	// were the issued credential's doing.
	password, err := os.ReadFile(filepath.Join(issued.readerDir, bus.SecretKeyPassword))
	if err != nil {
		t.Fatal(err)
	}
	wrong := withPassword(t, issued.readerJava, string(password), "not-the-password")
	out, err = javaTool(t, "", consoleConsumer, wrong, "--topic", issued.orders, "--from-beginning",
		"--max-messages", "1", "--timeout-ms", "20000")
	if !strings.Contains(out, "SaslAuthenticationException") || !strings.Contains(out, "Processed a total of 0 messages") {
		t.Fatalf("a wrong password was not refused (err %v):\n%s", err, out)
	}
}

// rdkafkaResult is what test/interop/rdkafka_client.py prints.
type rdkafkaResult struct {
	OK        bool     `json:"ok"`
	What      string   `json:"what"`
	Error     string   `json:"error"`
	Message   string   `json:"message"`
	Delivered int      `json:"delivered"`
	Values    []string `json:"values"`
}

// Exit codes of rdkafka_client.py.
const (
	rdkafkaRefusedACL  = 3
	rdkafkaRefusedAuth = 4
)

// rdkafka runs the librdkafka client with props (a Secret's
// librdkafka.properties) as its whole broker configuration.
func rdkafka(t *testing.T, command, props, topic string, n int) (rdkafkaResult, int) {
	t.Helper()
	python := filepath.Join(repoRoot(t), "bin", "pyclients", "bin", "python")
	if _, err := os.Stat(python); err != nil {
		t.Fatalf("confluent-kafka is installed into bin/pyclients by `make pyclients`: %v", err)
	}
	// librdkafka logs to stderr; the result is stdout's last line.
	var stdout, stderr bytes.Buffer
	err := runToolTo(t, "", &stdout, &stderr, python, "rdkafka_client.py", command, props, topic, strconv.Itoa(n))
	out := stdout.String()
	code := 0
	if exit, ok := errors.AsType[*exec.ExitError](err); ok {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("running the librdkafka client: %v\n%s%s", err, out, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var r rdkafkaResult
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &r); jerr != nil {
		t.Fatalf("the librdkafka client printed no result (exit %d): %v\n%s", code, jerr, out)
	}
	t.Logf("rdkafka %s %s: exit %d %s", command, topic, code, lines[len(lines)-1])
	return r, code
}

// TestLibrdkafkaClients: confluent-kafka (librdkafka) with the issued
// librdkafka.properties as its whole configuration.
func TestLibrdkafkaClients(t *testing.T) {
	writer := filepath.Join(issued.writerDir, bus.SecretKeyLibrdkafkaConfig)
	reader := filepath.Join(issued.readerDir, bus.SecretKeyLibrdkafkaConfig)
	if got := property(t, reader, "group.id"); got != issued.readerGroup {
		t.Fatalf("librdkafka.properties has group.id %q, the Secret %q", got, issued.readerGroup)
	}
	before := endOffset(t, issued.orders)

	r, code := rdkafka(t, "produce", writer, issued.orders, 3)
	if code != 0 || !r.OK || r.Delivered != 3 {
		t.Fatalf("the writer's librdkafka producer failed: exit %d %+v", code, r)
	}
	if got := endOffset(t, issued.orders) - before; got != 3 {
		t.Fatalf("librdkafka reported 3 deliveries, %s got %d records", issued.orders, got)
	}

	// The reader's group reads from where it left off (from the start
	// the first time) until it has read this test's three records.
	r, code = rdkafka(t, "consume", reader, issued.orders, 3)
	if code != 0 || !r.OK {
		t.Fatalf("the reader's librdkafka consumer failed: exit %d %+v", code, r)
	}
	for _, v := range []string{"rdkafka-0", "rdkafka-1", "rdkafka-2"} {
		if !slices.Contains(r.Values, v) {
			t.Fatalf("the consumer did not read %q: %v", v, r.Values)
		}
	}

	before = endOffset(t, issued.orders)
	if r, code = rdkafka(t, "produce", reader, issued.orders, 1); code != rdkafkaRefusedACL || r.Error != "TOPIC_AUTHORIZATION_FAILED" {
		t.Fatalf("the consumer's credentials produced: exit %d %+v", code, r)
	}
	if got := endOffset(t, issued.orders) - before; got != 0 {
		t.Fatalf("the consumer's credentials wrote %d records", got)
	}
	if r, code = rdkafka(t, "consume", reader, issued.ledger, 1); code != rdkafkaRefusedACL || r.Error != "TOPIC_AUTHORIZATION_FAILED" {
		t.Fatalf("the consumer read a topic it was not granted: exit %d %+v", code, r)
	}

	password, err := os.ReadFile(filepath.Join(issued.readerDir, bus.SecretKeyPassword))
	if err != nil {
		t.Fatal(err)
	}
	wrong := withPassword(t, reader, string(password), "not-the-password")
	if r, code = rdkafka(t, "consume", wrong, issued.orders, 1); code != rdkafkaRefusedAuth {
		t.Fatalf("a wrong password was not refused: exit %d %+v", code, r)
	}
}

// repoRoot is the repository root, two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}
