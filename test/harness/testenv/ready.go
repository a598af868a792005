package testenv

import (
	"context"
	"fmt"
	"slices"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
)

// probeUser is the identity used to check that the policies are enforced.
const probeUser = "hmsbus-testenv-probe"

const pollInterval = 100 * time.Millisecond

// poll calls check until it reports done, or fails with its last error when
// ctx ends. RBAC and admission policies are served from informers, so they
// take effect a moment after they are written.
func poll(ctx context.Context, what string, check func() (bool, error)) error {
	var last error
	for {
		done, err := check()
		if done {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			if last == nil {
				return fmt.Errorf("waiting until %s: %w", what, ctx.Err())
			}
			return fmt.Errorf("waiting until %s: %w (last error: %w)", what, ctx.Err(), last)
		case <-time.After(pollInterval):
		}
	}
}

// waitForRBAC waits until each persona group holds its key permission.
func (e *Env) waitForRBAC(ctx context.Context) error {
	checks := []struct {
		group string
		attrs authorizationv1.ResourceAttributes
	}{
		{RequestersGroup, authorizationv1.ResourceAttributes{Namespace: "default", Verb: "create", Group: busv1.GroupVersion.Group, Resource: "changetickets"}},
		{ReviewersGroup, authorizationv1.ResourceAttributes{Namespace: "default", Verb: "update", Group: busv1.GroupVersion.Group, Resource: "changetickets", Subresource: "status"}},
		{AuditorsGroup, authorizationv1.ResourceAttributes{Namespace: "default", Verb: "list", Resource: "events"}},
	}
	for _, chk := range checks {
		err := poll(ctx, "group "+chk.group+" is bound to its persona role", func() (bool, error) {
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User: probeUser, Groups: []string{chk.group}, ResourceAttributes: &chk.attrs,
			}}
			if err := e.Client.Create(ctx, sar); err != nil {
				return false, err
			}
			return sar.Status.Allowed, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// waitForPolicies waits until both ChangeTicket policies reject what they
// must and, with their params loaded, accept what they must.
func (e *Env) waitForPolicies(ctx context.Context) error {
	if err := e.waitForRequesterPolicy(ctx); err != nil {
		return err
	}
	probe := probeTicket(AdminUser)
	if err := e.Client.Create(ctx, probe); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating probe ChangeTicket: %w", err)
	}
	defer func() { _ = e.Client.Delete(context.Background(), probe) }()
	if err := e.waitForReviewPolicy(ctx); err != nil {
		return err
	}
	if err := e.waitForGroupPolicy(ctx); err != nil {
		return err
	}
	return e.waitForFinalizerPolicy(ctx)
}

// waitForFinalizerPolicy waits until a new Topic gets the operator's
// finalizer at admission.
func (e *Env) waitForFinalizerPolicy(ctx context.Context) error {
	return poll(ctx, "policy hmsbus-finalizer adds the finalizer", func() (bool, error) {
		tp := &busv1.Topic{ObjectMeta: metav1.ObjectMeta{Name: probeUser, Namespace: SystemNamespace},
			Spec: busv1.TopicSpec{Partitions: 1, ChangeTicket: "probe"}}
		if err := e.Client.Create(ctx, tp, client.DryRunAll); err != nil {
			return false, err
		}
		return slices.Contains(tp.Finalizers, busv1.Finalizer), fmt.Errorf("finalizers %v", tp.Finalizers)
	})
}

// waitForGroupPolicy waits until a Subscription naming another namespace's
// consumer group is refused.
func (e *Env) waitForGroupPolicy(ctx context.Context) error {
	sub := &busv1.Subscription{
		ObjectMeta: metav1.ObjectMeta{Name: probeUser, Namespace: SystemNamespace},
		Spec: busv1.SubscriptionSpec{Topics: []busv1.TopicReference{{Name: "probe"}}, ChangeTicket: "probe",
			Role: busv1.RoleConsume, ConsumerGroup: "elsewhere.probe"},
	}
	return poll(ctx, "policy hmsbus-subscription rejects another namespace's group", func() (bool, error) {
		err := e.Client.Create(ctx, sub, client.DryRunAll)
		return apierrors.IsInvalid(err), err
	})
}

func probeTicket(requester string) *busv1.ChangeTicket {
	return &busv1.ChangeTicket{
		ObjectMeta: metav1.ObjectMeta{Name: probeUser, Namespace: SystemNamespace},
		Spec: busv1.ChangeTicketSpec{
			Reference:   "PROBE-1",
			Summary:     "checks that the admission policies are enforced",
			RequestedBy: requester,
			Covers:      []busv1.CoveredObject{{Kind: busv1.KindTopic, Name: "probe"}},
			NotAfter:    metav1.NewTime(time.Now().Add(time.Hour)),
		},
	}
}

func (e *Env) waitForRequesterPolicy(ctx context.Context) error {
	err := poll(ctx, "policy hmsbus-ticket-requester rejects a forged requester", func() (bool, error) {
		err := e.Client.Create(ctx, probeTicket(probeUser), client.DryRunAll)
		return apierrors.IsInvalid(err), err
	})
	if err != nil {
		return err
	}
	// The same ticket in the admin's own name must pass: that shows the
	// rejection above came from the policy, not from the schema.
	if err := e.Client.Create(ctx, probeTicket(AdminUser), client.DryRunAll); err != nil {
		return fmt.Errorf("policy hmsbus-ticket-requester rejects a valid ticket: %w", err)
	}
	return nil
}

func (e *Env) waitForReviewPolicy(ctx context.Context) error {
	err := poll(ctx, "policy hmsbus-ticket-review rejects a forged approval", func() (bool, error) {
		err := addApproval(ctx, e.Client, probeUser+"-other", client.DryRunAll)
		return apierrors.IsInvalid(err), err
	})
	if err != nil {
		return err
	}
	reviewer, err := e.As(probeUser, ReviewersGroup)
	if err != nil {
		return err
	}
	// The governance ConfigMap is read through an informer too; a reviewer's
	// own approval passes only once it is loaded.
	return poll(ctx, "policy hmsbus-ticket-review accepts a reviewer's approval", func() (bool, error) {
		err := addApproval(ctx, reviewer, probeUser, client.DryRunAll)
		return err == nil, err
	})
}

// addApproval adds an approval naming reviewer to the probe ticket.
func addApproval(ctx context.Context, c client.Client, reviewer string, opts ...client.SubResourceUpdateOption) error {
	t := &busv1.ChangeTicket{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: SystemNamespace, Name: probeUser}, t); err != nil {
		return err
	}
	t.Status.Approvals = append(t.Status.Approvals, busv1.Review{Reviewer: reviewer, Time: metav1.Now()})
	return c.Status().Update(ctx, t, opts...)
}
