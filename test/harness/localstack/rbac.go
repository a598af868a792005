package localstack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
)

// roleFile is the operator's ClusterRole as controller-gen generates it.
var roleFile = filepath.Join("config", "rbac", "role.yaml")

// bindOperatorRole installs the generated role and binds it to the
// operator's user (see BindOperatorRole), with a progress line.
func (s *Stack) bindOperatorRole(ctx context.Context, timeout time.Duration) error {
	begin := s.begin("binding ClusterRole " + OperatorRole + " (" + roleFile + ") to user " + OperatorUser)
	if err := BindOperatorRole(ctx, s.Env.Client, s.RootDir, timeout); err != nil {
		return err
	}
	s.ready(begin)
	return nil
}

// BindOperatorRole installs the operator's generated RBAC as it is (the
// ClusterRole and, for what it writes in its own namespace only, the Role of
// config/rbac/role.yaml) and binds both to OperatorUser and nobody else,
// then waits (up to timeout) until the authorizer applies them. The roles
// are never widened here: a rule they lack shows up as "forbidden" in the
// operator's log.
func BindOperatorRole(ctx context.Context, c client.Client, rootDir string, timeout time.Duration) error {
	path := filepath.Join(rootDir, roleFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading the operator's role: %w", err)
	}
	subjects := []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: OperatorUser}}
	var objs []client.Object
	for i, doc := range strings.Split(string(data), "\n---\n") {
		var kind struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &kind); err != nil {
			return fmt.Errorf("parsing document %d of %s: %w", i+1, path, err)
		}
		switch kind.Kind {
		case "ClusterRole":
			role := &rbacv1.ClusterRole{}
			if err := yaml.UnmarshalStrict([]byte(doc), role); err != nil {
				return fmt.Errorf("parsing %s: %w", path, err)
			}
			if role.Name != OperatorRole {
				return fmt.Errorf("%s defines ClusterRole %q; want %q", path, role.Name, OperatorRole)
			}
			objs = append(objs, role, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: OperatorRole},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
				Subjects:   subjects,
			})
		case "Role":
			role := &rbacv1.Role{}
			if err := yaml.UnmarshalStrict([]byte(doc), role); err != nil {
				return fmt.Errorf("parsing %s: %w", path, err)
			}
			objs = append(objs, role, &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: role.Name, Namespace: role.Namespace},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
				Subjects:   subjects,
			})
		default:
			return fmt.Errorf("%s: unexpected %q document", path, kind.Kind)
		}
	}
	for _, obj := range objs {
		if err := c.Create(ctx, obj); err != nil {
			return fmt.Errorf("creating %T %s: %w", obj, obj.GetName(), err)
		}
	}
	return waitForOperatorAccess(ctx, c, timeout)
}

// waitForOperatorAccess waits until the operator user may list Topics: the
// authorizer reads bindings from an informer, so a new one takes a moment.
func waitForOperatorAccess(ctx context.Context, c client.Client, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: OperatorUser,
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: "list", Group: busv1.GroupVersion.Group, Resource: "topics",
			},
		}}
		err := c.Create(ctx, sar)
		if err == nil && sar.Status.Allowed {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("not allowed yet: %s", sar.Status.Reason)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting until user %s may list topics: %w (last error: %w)", OperatorUser, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
