package integration

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hms-platform/bus-operator/test/harness/testenv"
)

// kubectl runs kubectl against a kubeconfig and returns its trimmed output.
func kubectl(t *testing.T, kubeconfig string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// The demo and the e2e suite drive the control plane with kubectl, as the
// admin and as personas authenticated by client certificate.
func TestKubeconfigsWorkWithKubectl(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl not on PATH")
	}
	dir := t.TempDir()
	admin := filepath.Join(dir, "admin.kubeconfig")
	mustSucceed(t, env.WriteKubeconfig(admin), "writing admin kubeconfig")
	out, err := kubectl(t, admin, "get", "validatingadmissionpolicies", "-o", "name")
	mustSucceed(t, err, "kubectl as admin: "+out)
	if !strings.Contains(out, "hmsbus-ticket-review") {
		t.Fatalf("admin sees policies %q; want hmsbus-ticket-review among them", out)
	}

	reviewer := filepath.Join(dir, "bob.kubeconfig")
	mustSucceed(t, env.WriteUserKubeconfig(reviewer, bob, testenv.ReviewersGroup), "writing bob's kubeconfig")
	out, err = kubectl(t, reviewer, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username} {.status.userInfo.groups}")
	mustSucceed(t, err, "kubectl auth whoami as bob: "+out)
	if !strings.HasPrefix(out, "bob ") || !strings.Contains(out, testenv.ReviewersGroup) {
		t.Fatalf("whoami = %q; want bob in %s", out, testenv.ReviewersGroup)
	}
	for _, c := range []struct{ verb, resource, want string }{
		{"update", "changetickets.bus.hms.io --subresource=status", "yes"},
		{"create", "topics.bus.hms.io", "no"},
	} {
		args := append([]string{"auth", "can-i", c.verb}, strings.Fields(c.resource)...)
		out, _ := kubectl(t, reviewer, args...) // can-i exits 1 for "no"
		if out != c.want {
			t.Errorf("bob can-i %s %s = %q; want %q", c.verb, c.resource, out, c.want)
		}
	}
}
