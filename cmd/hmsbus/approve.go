package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/governance"
)

type reviewFlags struct {
	comment string
}

func (a *app) approveCmd() *cobra.Command {
	f := &reviewFlags{}
	cmd := &cobra.Command{
		Use:   "approve TICKET",
		Short: "Approve a ChangeTicket as the current user",
		Long: `Record your approval on a ChangeTicket (by object name or by its reference,
e.g. CHG-1042). The reviewer recorded is the user the API server sees for your
kubeconfig (including --as). The admission policy refuses approvals from the
requester and from users outside the reviewers group; its message is shown.

The approval pins the spec of every covered object as it is now: the operator
applies exactly that, and an edit made after your approval needs a new ticket.
Run "tickets" first to see what each object would change.`,
		Example: fmt.Sprintf(`  %[1]s approve chg-1042 -n fees --comment "checked retention with the data owner"
  %[1]s approve CHG-1042 -n fees --as alice --as-group hms:bus-reviewers`, a.name),
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runReview(cmd, args[0], f.comment, approveTicket)
		},
	}
	cmd.Flags().StringVar(&f.comment, "comment", "", "comment recorded with the approval")
	return cmd
}

func (a *app) denyCmd() *cobra.Command {
	f := &reviewFlags{}
	cmd := &cobra.Command{
		Use:   "deny TICKET",
		Short: "Deny a ChangeTicket as the current user (final)",
		Long: `Record a denial on a ChangeTicket. A denial cannot be withdrawn: the ticket
authorises nothing from then on, and a new ticket must be filed.`,
		Example: fmt.Sprintf(`  %[1]s deny chg-1042 -n fees --comment "retention must not exceed 30 days"`, a.name),
		Args:    cobra.ExactArgs(1),
		RunE:    func(cmd *cobra.Command, args []string) error { return a.runReview(cmd, args[0], f.comment, denyTicket) },
	}
	cmd.Flags().StringVar(&f.comment, "comment", "", "reason recorded with the denial")
	return cmd
}

// reviewFunc records one decision on a ticket and describes the outcome.
type reviewFunc func(ctx context.Context, c client.Client, key client.ObjectKey, r busv1.Review) (string, error)

func (a *app) runReview(cmd *cobra.Command, ticket, comment string, review reviewFunc) error {
	ctx := cmd.Context()
	c, ns, err := a.kube.connect()
	if err != nil {
		return err
	}
	name, err := resolveTicket(ctx, c, ns, ticket)
	if err != nil {
		return err
	}
	user, err := currentUser(ctx, c)
	if err != nil {
		return err
	}
	msg, err := review(ctx, c, client.ObjectKey{Namespace: ns, Name: name}, busv1.Review{Reviewer: user, Time: metav1.Now(), Comment: comment})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(a.out, msg)
	return err
}

// resolveTicket finds a ticket by object name or, failing that, by its
// spec.reference, which is what people quote.
func resolveTicket(ctx context.Context, c client.Client, ns, nameOrRef string) (string, error) {
	var t busv1.ChangeTicket
	err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: nameOrRef}, &t)
	if err == nil {
		return nameOrRef, nil
	}
	if !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("reading ChangeTicket %s/%s: %w", ns, nameOrRef, err)
	}
	var list busv1.ChangeTicketList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return "", fmt.Errorf("listing ChangeTickets in %s: %w", ns, err)
	}
	var found []string
	for _, item := range list.Items {
		if item.Spec.Reference == nameOrRef {
			found = append(found, item.Name)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("no ChangeTicket named or referenced %q in namespace %s", nameOrRef, ns)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("reference %q matches several ChangeTickets in %s: %v; name one", nameOrRef, ns, found)
}

// approveTicket appends r to status.approvals.
func approveTicket(ctx context.Context, c client.Client, key client.ObjectKey, r busv1.Review) (string, error) {
	var outcome string
	err := updateTicketStatus(ctx, c, key, func(t *busv1.ChangeTicket) (bool, error) {
		if err := reviewable(t, r.Time.Time); err != nil {
			return false, err
		}
		for _, existing := range t.Status.Approvals {
			if existing.Reviewer == r.Reviewer {
				outcome = fmt.Sprintf("%s already approved ChangeTicket %s/%s at %s", r.Reviewer, key.Namespace, key.Name, existing.Time.UTC().Format(time.RFC3339))
				return false, nil
			}
		}
		pins, missing, err := pinCovered(ctx, c, t)
		if err != nil {
			return false, err
		}
		r.Pinned = pins
		t.Status.Approvals = append(t.Status.Approvals, r)
		outcome = fmt.Sprintf("approved ChangeTicket %s/%s (%s) as %s: %d of %d approvals recorded; pinned the spec of %d object(s): a later edit needs a new ticket",
			key.Namespace, key.Name, t.Spec.Reference, r.Reviewer, len(t.Status.Approvals), requiredApprovals(t), len(pins))
		if len(missing) > 0 {
			outcome += fmt.Sprintf("\nnot pinned, since they do not exist yet (any spec of them is approved until the ticket expires): %s", strings.Join(missing, ", "))
		}
		return true, nil
	})
	if err != nil {
		return "", fmt.Errorf("approving ChangeTicket %s/%s: %w", key.Namespace, key.Name, err)
	}
	return outcome, nil
}

// pinCovered hashes the spec of every covered object that exists, so the
// approval holds for exactly what the reviewer is approving now (the
// operator compares the same governance.SpecHash of the live spec).
func pinCovered(ctx context.Context, c client.Client, t *busv1.ChangeTicket) ([]busv1.PinnedSpec, []string, error) {
	var pins []busv1.PinnedSpec
	var missing []string
	for _, cov := range t.Spec.Covers {
		var spec any
		key := client.ObjectKey{Namespace: t.Namespace, Name: cov.Name}
		var err error
		switch cov.Kind {
		case busv1.KindTopic:
			var tp busv1.Topic
			err = c.Get(ctx, key, &tp)
			spec = tp.Spec
		case busv1.KindSubscription:
			var sub busv1.Subscription
			err = c.Get(ctx, key, &sub)
			spec = sub.Spec
		default:
			continue
		}
		if apierrors.IsNotFound(err) {
			missing = append(missing, fmt.Sprintf("%s %s", cov.Kind, cov.Name))
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("reading %s %s/%s to pin its spec: %w", cov.Kind, t.Namespace, cov.Name, err)
		}
		hash, err := governance.SpecHash(spec)
		if err != nil {
			return nil, nil, err
		}
		pins = append(pins, busv1.PinnedSpec{Kind: cov.Kind, Name: cov.Name, SpecHash: hash})
	}
	return pins, missing, nil
}

// denyTicket sets status.denial to r.
func denyTicket(ctx context.Context, c client.Client, key client.ObjectKey, r busv1.Review) (string, error) {
	var outcome string
	err := updateTicketStatus(ctx, c, key, func(t *busv1.ChangeTicket) (bool, error) {
		if err := reviewable(t, r.Time.Time); err != nil {
			return false, err
		}
		t.Status.Denial = &r
		outcome = fmt.Sprintf("denied ChangeTicket %s/%s (%s) as %s", key.Namespace, key.Name, t.Spec.Reference, r.Reviewer)
		return true, nil
	})
	if err != nil {
		return "", fmt.Errorf("denying ChangeTicket %s/%s: %w", key.Namespace, key.Name, err)
	}
	return outcome, nil
}

// reviewable refuses decisions that can no longer matter.
func reviewable(t *busv1.ChangeTicket, now time.Time) error {
	if d := t.Status.Denial; d != nil {
		return fmt.Errorf("it was denied by %s at %s; file a new ticket", d.Reviewer, d.Time.UTC().Format(time.RFC3339))
	}
	if end := ticketExpiry(t); !end.IsZero() && !now.Before(end) {
		return fmt.Errorf("its change window closed at %s; file a new ticket", end.UTC().Format(time.RFC3339))
	}
	return nil
}

// updateTicketStatus applies mutate to the current ticket and patches its
// status subresource. The patch carries the resourceVersion read, so a
// concurrent review makes it fail with a conflict, and it is redone on the
// fresh ticket rather than overwriting the other reviewer's entry.
func updateTicketStatus(ctx context.Context, c client.Client, key client.ObjectKey, mutate func(*busv1.ChangeTicket) (bool, error)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var t busv1.ChangeTicket
		if err := c.Get(ctx, key, &t); err != nil {
			return err
		}
		orig := t.DeepCopy()
		changed, err := mutate(&t)
		if err != nil || !changed {
			return err
		}
		patch := client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})
		if err := c.Status().Patch(ctx, &t, patch); err != nil {
			if apierrors.IsConflict(err) {
				return err
			}
			return rejected(err)
		}
		return nil
	})
}

// requiredApprovals is the operator's figure once it has evaluated the
// ticket, the spec's until then.
func requiredApprovals(t *busv1.ChangeTicket) int32 {
	if t.Status.RequiredApprovals > 0 {
		return t.Status.RequiredApprovals
	}
	if t.Spec.RequiredApprovals > 0 {
		return t.Spec.RequiredApprovals
	}
	return 1
}

// ticketExpiry is the effective end of the change window.
func ticketExpiry(t *busv1.ChangeTicket) time.Time {
	if t.Status.ExpiresAt != nil {
		return t.Status.ExpiresAt.Time
	}
	return t.Spec.NotAfter.Time
}
