package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/review"
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
Covered objects that do not exist yet are not approved by it. Run "tickets"
first to see what each object would change.`,
		Example: fmt.Sprintf(`  %[1]s approve chg-1042 -n fees --comment "checked retention with the data owner"
  %[1]s approve CHG-1042 -n fees --as alice --as-group hms:bus-reviewers`, a.name),
		Args: namedArgs("TICKET"),
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
		Args:    namedArgs("TICKET"),
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

// approveTicket records r as an approval that pins the covered specs.
func approveTicket(ctx context.Context, c client.Client, key client.ObjectKey, r busv1.Review) (string, error) {
	msg, err := review.Approve(ctx, c, key, r)
	return msg, rejected(err)
}

// denyTicket records r as the ticket's denial.
func denyTicket(ctx context.Context, c client.Client, key client.ObjectKey, r busv1.Review) (string, error) {
	msg, err := review.Deny(ctx, c, key, r)
	return msg, rejected(err)
}

func reviewable(t *busv1.ChangeTicket, now time.Time) error { return review.Reviewable(t, now) }

func requiredApprovals(t *busv1.ChangeTicket) int32 { return review.RequiredApprovals(t) }

func ticketExpiry(t *busv1.ChangeTicket) time.Time { return review.Expiry(t) }
