// Package manifests checks what `kubectl apply -k config/default` installs:
// the rendered objects, and that a real kube-apiserver accepts them.
package manifests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/hms-platform/bus-operator/test/harness/testenv"
)

const (
	systemNS       = "hmsbus-system"
	operatorName   = "hmsbus-operator"
	operatorSA     = "system:serviceaccount:hmsbus-system:hmsbus-operator"
	credentialsArg = "--kafka-credentials-secret=hmsbus-system/hmsbus-broker-admin"
)

// rendered is config/default as kustomize renders it, indexed by kind/name.
type rendered struct {
	raw  []byte
	objs map[string]*unstructured.Unstructured
}

func (r rendered) get(t *testing.T, kind, name string) *unstructured.Unstructured {
	t.Helper()
	o, ok := r.objs[kind+"/"+name]
	if !ok {
		t.Fatalf("config/default renders no %s %s", kind, name)
	}
	return o
}

func (r rendered) ofKind(kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range r.objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found at %s: %v", root, err)
	}
	return root
}

func kustomize(t *testing.T, dir string) rendered {
	t.Helper()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not on PATH")
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(kubectl, "kustomize", filepath.Join(repoRoot(t), dir))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, stderr.String())
	}
	r := rendered{raw: stdout.Bytes(), objs: map[string]*unstructured.Unstructured{}}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(stdout.Bytes()), 4096)
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decoding kustomize output of %s: %v", dir, err)
		}
		if len(m) == 0 {
			continue
		}
		o := &unstructured.Unstructured{Object: m}
		r.objs[o.GetKind()+"/"+o.GetName()] = o
	}
	return r
}

func convert[T any](t *testing.T, o *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, out, true); err != nil {
		t.Fatalf("converting %s %s: %v", o.GetKind(), o.GetName(), err)
	}
	return out
}

func TestSubKustomizationsRender(t *testing.T) {
	for _, dir := range []string{"config/crd", "config/rbac", "config/rbac/namespaced", "config/manager", "config/admission", "config/namespaced"} {
		t.Run(dir, func(t *testing.T) {
			if r := kustomize(t, dir); len(r.objs) == 0 {
				t.Fatalf("%s renders no objects", dir)
			}
		})
	}
}

func TestDefaultInstallsEverything(t *testing.T) {
	r := kustomize(t, "config/default")
	for _, crd := range []string{"changetickets.bus.hms.io", "topics.bus.hms.io", "subscriptions.bus.hms.io"} {
		r.get(t, "CustomResourceDefinition", crd)
	}
	for _, p := range []string{"hmsbus-ticket-requester", "hmsbus-ticket-review"} {
		r.get(t, "ValidatingAdmissionPolicy", p)
		b := r.get(t, "ValidatingAdmissionPolicyBinding", p)
		if got, _, _ := unstructured.NestedString(b.Object, "spec", "policyName"); got != p {
			t.Errorf("binding %s refers to policy %q", p, got)
		}
	}
	cm := r.get(t, "ConfigMap", "hmsbus-governance")
	if cm.GetNamespace() != systemNS {
		t.Errorf("governance ConfigMap in namespace %q, want %s (the review policy's paramRef)", cm.GetNamespace(), systemNS)
	}
	r.get(t, "Namespace", systemNS)
	for _, persona := range []string{"hmsbus-requester", "hmsbus-reviewer", "hmsbus-auditor"} {
		r.get(t, "ClusterRole", persona)
	}
	// The example credentials must never be rendered: the cluster admin
	// creates the Secret.
	if s := r.ofKind("Secret"); len(s) != 0 {
		t.Errorf("config/default renders Secrets %v; credentials must come from the cluster admin", s[0].GetName())
	}
}

func TestOperatorRunsAsItsBoundServiceAccount(t *testing.T) {
	r := kustomize(t, "config/default")
	dep := convert[appsv1.Deployment](t, r.get(t, "Deployment", operatorName))
	sa := dep.Spec.Template.Spec.ServiceAccountName
	if sa != operatorName {
		t.Fatalf("Deployment runs as ServiceAccount %q, want %s", sa, operatorName)
	}
	if got := r.get(t, "ServiceAccount", sa).GetNamespace(); got != dep.Namespace {
		t.Fatalf("ServiceAccount %s is in namespace %q, the Deployment in %q", sa, got, dep.Namespace)
	}
	crb := convert[rbacv1.ClusterRoleBinding](t, r.get(t, "ClusterRoleBinding", operatorName))
	if crb.RoleRef.Kind != "ClusterRole" || crb.RoleRef.Name != operatorName {
		t.Fatalf("ClusterRoleBinding %s grants %s %s, want ClusterRole %s", crb.Name, crb.RoleRef.Kind, crb.RoleRef.Name, operatorName)
	}
	r.get(t, "ClusterRole", operatorName)
	if !hasSASubject(crb.Subjects, sa, dep.Namespace) {
		t.Fatalf("ClusterRoleBinding %s subjects %+v do not include ServiceAccount %s/%s", crb.Name, crb.Subjects, dep.Namespace, sa)
	}

	rb := convert[rbacv1.RoleBinding](t, r.get(t, "RoleBinding", "hmsbus-leader-election"))
	role := convert[rbacv1.Role](t, r.get(t, "Role", rb.RoleRef.Name))
	if rb.Namespace != dep.Namespace || role.Namespace != dep.Namespace || !hasSASubject(rb.Subjects, sa, dep.Namespace) {
		t.Fatalf("leader election RoleBinding %s/%s does not bind %s in the operator's namespace", rb.Namespace, rb.Name, sa)
	}
	if !grants(role.Rules, "coordination.k8s.io", "leases", "create", "update", "get") {
		t.Fatalf("leader election Role cannot manage leases: %+v", role.Rules)
	}
}

func hasSASubject(subjects []rbacv1.Subject, name, ns string) bool {
	for _, s := range subjects {
		if s.Kind == rbacv1.ServiceAccountKind && s.Name == name && s.Namespace == ns {
			return true
		}
	}
	return false
}

func grants(rules []rbacv1.PolicyRule, group, resource string, verbs ...string) bool {
	for _, v := range verbs {
		found := false
		for _, r := range rules {
			if contains(r.APIGroups, group) && contains(r.Resources, resource) && contains(r.Verbs, v) {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestOperatorDeployment(t *testing.T) {
	r := kustomize(t, "config/default")
	dep := convert[appsv1.Deployment](t, r.get(t, "Deployment", operatorName))
	pod := dep.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]

	if dep.Spec.Replicas == nil || *dep.Spec.Replicas < 2 || !contains(c.Args, "--leader-elect") {
		t.Errorf("want at least 2 replicas with --leader-elect; replicas=%v args=%v", dep.Spec.Replicas, c.Args)
	}
	if !contains(c.Args, credentialsArg) {
		t.Errorf("args %v lack %s", c.Args, credentialsArg)
	}
	if c.Image != "hmsbus-operator:dev" {
		t.Errorf("image %q, want the placeholder hmsbus-operator:dev", c.Image)
	}

	// Liveness must not depend on the broker, or a broker outage would
	// restart the operator in a loop; readiness does.
	if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.String() != "health" {
		t.Errorf("liveness probe %+v, want GET /healthz on port health", p)
	}
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" || p.HTTPGet.Port.String() != "health" {
		t.Errorf("readiness probe %+v, want GET /readyz on port health", p)
	}
	if p := c.ReadinessProbe; p != nil && p.TimeoutSeconds <= 3 {
		t.Errorf("readiness timeout %ds is not longer than the 3s broker ping it runs", p.TimeoutSeconds)
	}
	if port := containerPort(c, "health"); port != 8081 || !contains(c.Args, "--health-probe-bind-address=:8081") {
		t.Errorf("health port %d and args %v disagree with :8081", port, c.Args)
	}
	if port := containerPort(c, "metrics"); port != 8080 || !contains(c.Args, "--metrics-bind-address=:8080") {
		t.Errorf("metrics port %d and args %v disagree with :8080", port, c.Args)
	}

	checkSecurityContext(t, pod, c)
	if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
		t.Errorf("resources %+v lack cpu/memory requests or a memory limit", c.Resources)
	}
	checkBrokerSettings(t, r, c)
}

func containerPort(c corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

func checkSecurityContext(t *testing.T, pod corev1.PodSpec, c corev1.Container) {
	t.Helper()
	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("pod securityContext %+v lacks runAsNonRoot: true", psc)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext lacks seccompProfile RuntimeDefault")
	}
	if sc == nil {
		t.Fatal("container has no securityContext")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("container root filesystem is writable")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("container allows privilege escalation")
	}
	if sc.Capabilities == nil || len(sc.Capabilities.Add) != 0 || !containsCap(sc.Capabilities.Drop, "ALL") {
		t.Errorf("container capabilities %+v, want drop ALL and add none", sc.Capabilities)
	}
}

func containsCap(caps []corev1.Capability, c corev1.Capability) bool {
	for _, x := range caps {
		if x == c {
			return true
		}
	}
	return false
}

// secretLike matches environment variable names that would carry a secret.
var secretLike = regexp.MustCompile(`(?i)(password|passwd|secret_key|token)`)

// checkBrokerSettings: the bootstrap address comes from the environment, and
// no password is passed in args, env or the ConfigMap the env comes from.
func checkBrokerSettings(t *testing.T, r rendered, c corev1.Container) {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			t.Errorf("env %s reads a Secret into the environment; the operator reads its credentials itself", e.Name)
		}
		env[e.Name] = e.Value
	}
	for _, from := range c.EnvFrom {
		if from.SecretRef != nil {
			t.Errorf("envFrom Secret %s puts secrets in the environment", from.SecretRef.Name)
		}
		if from.ConfigMapRef == nil {
			continue
		}
		cm := convert[corev1.ConfigMap](t, r.get(t, "ConfigMap", from.ConfigMapRef.Name))
		for k, v := range cm.Data {
			env[k] = v
		}
	}
	if env["HMSBUS_KAFKA_BOOTSTRAP"] == "" {
		t.Errorf("HMSBUS_KAFKA_BOOTSTRAP is not set (env: %v)", keys(env))
	}
	for k, v := range env {
		if secretLike.MatchString(k) && !strings.HasSuffix(k, "_FILE") {
			t.Errorf("environment variable %s looks like it carries a secret (value length %d)", k, len(v))
		}
	}
	for _, a := range c.Args {
		if secretLike.MatchString(a) && !strings.HasPrefix(a, "--kafka-password-file=") {
			t.Errorf("argument %q passes a secret on the command line", a)
		}
	}
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestDefaultAppliesToAPIServer applies config/default to a real
// kube-apiserver as `kubectl apply -k` would: every object must pass the
// API server's schema checks, the Deployment the namespace's "restricted"
// Pod Security admission, and the ServiceAccount must end up with exactly
// the permissions the operator needs.
func TestDefaultAppliesToAPIServer(t *testing.T) {
	r := kustomize(t, "config/default")
	logf.SetLogger(logr.Discard())
	env := testenv.StartT(t)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := env.WriteKubeconfig(kubeconfig); err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(t.TempDir(), "default.yaml")
	if err := os.WriteFile(manifest, r.raw, 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("kubectl", "--kubeconfig", kubeconfig, "apply", "--server-side", "--force-conflicts",
		"--field-manager", "manifests-test", "-f", manifest)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	// Pod Security admission only warns about a Deployment's pod template;
	// a warning here means the operator's pods would be refused.
	if strings.Contains(stderr.String(), "PodSecurity") {
		t.Fatalf("Pod Security admission warns about the operator:\n%s", stderr.String())
	}
	checkAccess(t, env)
}

func checkAccess(t *testing.T, env *testenv.Env) {
	t.Helper()
	cases := []struct {
		ns, group, resource, sub, verb string
		allowed                        bool
	}{
		{systemNS, "coordination.k8s.io", "leases", "", "update", true},
		{systemNS, "", "secrets", "", "get", true}, // --kafka-credentials-secret
		{"team-a", "bus.hms.io", "topics", "status", "patch", true},
		{"team-a", "bus.hms.io", "topics", "finalizers", "update", true},
		{"team-a", "", "secrets", "", "create", true}, // issued credentials
		{"team-a", "bus.hms.io", "topics", "", "delete", false},
		{"team-a", "bus.hms.io", "changetickets", "status", "update", true},
		{"team-a", "bus.hms.io", "changetickets", "", "create", false},
		{"team-a", "coordination.k8s.io", "leases", "", "update", false},
		{"", "rbac.authorization.k8s.io", "clusterroles", "", "create", false},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range cases {
		name := fmt.Sprintf("%s %s/%s %s in %q", tc.verb, tc.resource, tc.sub, tc.group, tc.ns)
		// RBAC changes reach the authorizer's cache asynchronously.
		deadline := time.Now().Add(20 * time.Second)
		for {
			got, err := allowed(ctx, env, tc.ns, tc.group, tc.resource, tc.sub, tc.verb)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if got == tc.allowed {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("operator ServiceAccount may %s: %v, want %v", name, got, tc.allowed)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func allowed(ctx context.Context, env *testenv.Env, ns, group, resource, sub, verb string) (bool, error) {
	sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User:   operatorSA,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + systemNS, "system:authenticated"},
		ResourceAttributes: &authzv1.ResourceAttributes{
			Namespace: ns, Group: group, Resource: resource, Subresource: sub, Verb: verb,
		},
	}}
	if err := env.Client.Create(ctx, sar); err != nil {
		return false, fmt.Errorf("creating SubjectAccessReview: %w", err)
	}
	return sar.Status.Allowed, nil
}

// The namespaced mode's RBAC (config/rbac/namespaced, written by hand) must
// grant every rule the generated cluster-wide role grants, only split: the
// cluster-scoped kinds cluster-wide, the namespaced ones per namespace, the
// operator's own namespace in its Role. A rule added to the controllers'
// markers without a counterpart here fails this test.
func TestNamespacedRBACCoversTheGeneratedRole(t *testing.T) {
	generated := kustomize(t, "config/rbac")
	namespaced := kustomize(t, "config/rbac/namespaced")
	clusterScoped := map[string]bool{"nameclaims": true, "namespaces": true}
	grants := func(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
		for _, r := range rules {
			if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) {
				return true
			}
		}
		return false
	}
	perNamespace := convert[rbacv1.ClusterRole](t, namespaced.get(t, "ClusterRole", "hmsbus-operator-namespace")).Rules
	cluster := convert[rbacv1.ClusterRole](t, namespaced.get(t, "ClusterRole", "hmsbus-operator-cluster")).Rules
	system := convert[rbacv1.Role](t, namespaced.get(t, "Role", "hmsbus-operator-system")).Rules
	check := func(rules []rbacv1.PolicyRule, where func(resource string) []rbacv1.PolicyRule, from string) {
		for _, r := range rules {
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						if !grants(where(res), g, res, v) {
							t.Errorf("%s grants %s %s/%s; the namespaced RBAC does not", from, v, g, res)
						}
					}
				}
			}
		}
	}
	check(convert[rbacv1.ClusterRole](t, generated.get(t, "ClusterRole", operatorName)).Rules, func(res string) []rbacv1.PolicyRule {
		if clusterScoped[res] {
			return cluster
		}
		return perNamespace
	}, "the generated ClusterRole")
	check(convert[rbacv1.Role](t, generated.get(t, "Role", operatorName)).Rules, func(string) []rbacv1.PolicyRule { return system }, "the generated Role")
	// And nothing namespaced is granted cluster-wide.
	for _, r := range cluster {
		for _, res := range r.Resources {
			if !clusterScoped[res] {
				t.Errorf("the cluster-wide part of the namespaced RBAC grants %s", res)
			}
		}
	}
}
