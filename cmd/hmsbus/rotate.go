package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
)

func (a *app) rotateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rotate SUBSCRIPTION",
		Short: "Ask the operator for a new password for a Subscription",
		Long: `Set the ` + busv1.AnnotationRotate + ` annotation on a Subscription to
the current time. The operator issues a new password, updates the credentials
Secret, and records the rotation in the Subscription's status; clients must
reload the Secret.`,
		Args: namedArgs("SUBSCRIPTION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := a.kube.connect()
			if err != nil {
				return err
			}
			ns, name, err := splitRef(args[0], ns)
			if err != nil {
				return err
			}
			stamp, err := requestRotation(cmd.Context(), c, client.ObjectKey{Namespace: ns, Name: name}, time.Now())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.out, "requested new credentials for Subscription %s/%s (%s=%s)\n", ns, name, busv1.AnnotationRotate, stamp)
			return err
		},
	}
}

// requestRotation sets the rotate annotation with a merge patch, which
// touches nothing else on the object and needs no read first.
func requestRotation(ctx context.Context, c client.Client, key client.ObjectKey, now time.Time) (string, error) {
	stamp := now.UTC().Format(time.RFC3339)
	body, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{busv1.AnnotationRotate: stamp}},
	})
	if err != nil {
		return "", err
	}
	sub := &busv1.Subscription{}
	sub.Namespace, sub.Name = key.Namespace, key.Name
	if err := c.Patch(ctx, sub, client.RawPatch(types.MergePatchType, body)); err != nil {
		return "", fmt.Errorf("requesting rotation of Subscription %s: %w", key, rejected(err))
	}
	return stamp, nil
}
