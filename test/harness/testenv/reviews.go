package testenv

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/review"
)

// Approve records an approval of a ChangeTicket by reviewer, acting as that
// user in the reviewers group, the way `hmsbus approve` does: the approval
// pins the spec of every covered object that exists now.
func (e *Env) Approve(ctx context.Context, namespace, ticket, reviewer string) error {
	c, err := e.As(reviewer, ReviewersGroup)
	if err != nil {
		return err
	}
	_, err = review.Approve(ctx, c, client.ObjectKey{Namespace: namespace, Name: ticket}, busv1.Review{Reviewer: reviewer, Time: metav1.Now(), Comment: "recorded by testenv"})
	return err
}

// ApproveUnpinned records an approval without pins, as a reviewer using
// plain kubectl would; the operator then pins what exists when it first sees
// the approval.
func (e *Env) ApproveUnpinned(ctx context.Context, namespace, ticket, reviewer string) error {
	return e.review(ctx, namespace, ticket, reviewer, func(t *busv1.ChangeTicket, r busv1.Review) {
		t.Status.Approvals = append(t.Status.Approvals, r)
	})
}

// Deny records a denial of a ChangeTicket by reviewer (see Approve).
func (e *Env) Deny(ctx context.Context, namespace, ticket, reviewer string) error {
	return e.review(ctx, namespace, ticket, reviewer, func(t *busv1.ChangeTicket, r busv1.Review) {
		t.Status.Denial = &r
	})
}

func (e *Env) review(ctx context.Context, namespace, ticket, reviewer string, record func(*busv1.ChangeTicket, busv1.Review)) error {
	c, err := e.As(reviewer, ReviewersGroup)
	if err != nil {
		return err
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		t := &busv1.ChangeTicket{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: ticket}, t); err != nil {
			return err
		}
		record(t, busv1.Review{Reviewer: reviewer, Time: metav1.Now(), Comment: "recorded by testenv"})
		return c.Status().Update(ctx, t)
	})
	if err != nil {
		return fmt.Errorf("recording review of ChangeTicket %s/%s by %s: %w", namespace, ticket, reviewer, err)
	}
	return nil
}
