package localstack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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

// bindOperatorRole installs the generated ClusterRole as it is, binds it to
// the operator's user and nothing else, and waits until the API server's
// authorizer has caught up. If the role lacks a rule, the operator's log
// shows "forbidden" errors and its objects never become Ready: the role is
// never widened here.
func (s *Stack) bindOperatorRole(ctx context.Context, timeout time.Duration) error {
	begin := s.begin("binding ClusterRole " + OperatorRole + " (" + roleFile + ") to user " + OperatorUser)
	path := filepath.Join(s.RootDir, roleFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading the operator's role: %w", err)
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.UnmarshalStrict(data, role); err != nil {
		return fmt.Errorf("parsing %s: %w", path, err)
	}
	if role.Name != OperatorRole {
		return fmt.Errorf("%s defines ClusterRole %q; want %q", path, role.Name, OperatorRole)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: OperatorRole},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: OperatorUser}},
	}
	for _, obj := range []client.Object{role, binding} {
		if err := s.Env.Client.Create(ctx, obj); err != nil {
			return fmt.Errorf("creating %T %s: %w", obj, obj.GetName(), err)
		}
	}
	if err := s.waitForOperatorAccess(ctx, timeout); err != nil {
		return err
	}
	s.ready(begin)
	return nil
}

// waitForOperatorAccess waits until the operator user may list Topics: the
// authorizer reads bindings from an informer, so a new one takes a moment.
func (s *Stack) waitForOperatorAccess(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: OperatorUser,
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: "list", Group: busv1.GroupVersion.Group, Resource: "topics",
			},
		}}
		err := s.Env.Client.Create(ctx, sar)
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
