// Package review records reviewers' decisions on ChangeTickets: the one
// implementation behind `hmsbus approve`/`deny`, the test harness and the
// operator's own pins. An approval pins the spec of every covered object as
// it is at that moment, so it approves exactly what the reviewer saw.
package review

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/governance"
)

// Pins hashes the spec of every covered object that exists (the same
// governance.SpecHash the operator compares), with its UID, and lists the
// covered objects that do not. It reads exactly the covered objects, a few
// at a time: a ticket covers at most 100, while its namespace may hold
// thousands, so reading them by name costs the API server far less than
// listing the namespace.
func Pins(ctx context.Context, c client.Reader, t *busv1.ChangeTicket) ([]busv1.PinnedSpec, []busv1.CoveredObject, error) {
	type result struct {
		pin     *busv1.PinnedSpec
		missing bool
		err     error
	}
	results := make([]result, len(t.Spec.Covers))
	sem := make(chan struct{}, pinReaders)
	var wg sync.WaitGroup
	for i, cov := range t.Spec.Covers {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			pin, found, err := pinOne(ctx, c, t.Namespace, cov)
			results[i] = result{pin: pin, missing: !found, err: err}
		})
	}
	wg.Wait()
	var pins []busv1.PinnedSpec
	var missing []busv1.CoveredObject
	for i, r := range results {
		switch {
		case r.err != nil:
			return nil, nil, r.err
		case r.missing:
			missing = append(missing, t.Spec.Covers[i])
		default:
			pins = append(pins, *r.pin)
		}
	}
	return pins, missing, nil
}

// pinReaders bounds the reads Pins makes at once.
const pinReaders = 16

// pinOne reads one covered object and pins it. Objects being deleted are
// pinned too: a ticket covering Delete approves exactly such an object.
func pinOne(ctx context.Context, c client.Reader, namespace string, cov busv1.CoveredObject) (*busv1.PinnedSpec, bool, error) {
	key := client.ObjectKey{Namespace: namespace, Name: cov.Name}
	var obj client.Object
	var spec func() any
	switch cov.Kind {
	case busv1.KindTopic:
		tp := &busv1.Topic{}
		obj, spec = tp, func() any { return tp.Spec }
	case busv1.KindSubscription:
		sub := &busv1.Subscription{}
		obj, spec = sub, func() any { return sub.Spec }
	default:
		return nil, false, fmt.Errorf("cannot pin objects of kind %q", cov.Kind)
	}
	if err := c.Get(ctx, key, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("reading %s %s/%s to pin its spec: %w", cov.Kind, namespace, cov.Name, err)
	}
	hash, err := governance.SpecHash(spec())
	if err != nil {
		return nil, false, fmt.Errorf("pinning %s %s/%s: %w", cov.Kind, namespace, cov.Name, err)
	}
	return &busv1.PinnedSpec{Kind: cov.Kind, Name: cov.Name, SpecHash: hash, UID: string(obj.GetUID())}, true, nil
}

// Approve appends r to the ticket's approvals, pinning the covered specs as
// they are now, and says what happened in a sentence.
//
// The approval is appended with a patch that names no resourceVersion:
// the operator writes the ticket's status too (state, counters), and an
// optimistic-lock write would lose that race nearly every time on a ticket
// just filed. Appending is safe without the lock: the CRD's append-only rule
// refuses any write that would drop or change a recorded approval, and the
// review policy checks the new entry.
func Approve(ctx context.Context, c client.Client, key client.ObjectKey, r busv1.Review) (string, error) {
	var outcome string
	err := retry.OnError(retry.DefaultRetry, func(err error) bool { return apierrors.IsConflict(err) || errors.Is(err, errRaced) }, func() error {
		t := &busv1.ChangeTicket{}
		if err := c.Get(ctx, key, t); err != nil {
			return err
		}
		if err := Reviewable(t, r.Time.Time); err != nil {
			return err
		}
		for _, existing := range t.Status.Approvals {
			if existing.Reviewer == r.Reviewer {
				outcome = fmt.Sprintf("%s already approved ChangeTicket %s/%s at %s", r.Reviewer, key.Namespace, key.Name, existing.Time.UTC().Format(time.RFC3339))
				return nil
			}
		}
		pins, missing, err := Pins(ctx, c, t)
		if err != nil {
			return err
		}
		if len(pins) == 0 {
			names := make([]string, 0, len(missing))
			for _, m := range missing {
				names = append(names, fmt.Sprintf("%s %s", m.Kind, m.Name))
			}
			return fmt.Errorf("none of the objects it covers exists yet (%s): an approval approves what exists, so review once they are created", strings.Join(names, ", "))
		}
		r.Pinned = pins
		recorded := len(t.Status.Approvals) + 1
		if err := appendApproval(ctx, c, t, r); err != nil {
			return err
		}
		outcome = fmt.Sprintf("approved ChangeTicket %s/%s (%s) as %s: %d of %d approvals recorded; pinned the spec of %d object(s): a later edit needs a new ticket",
			key.Namespace, key.Name, t.Spec.Reference, r.Reviewer, recorded, RequiredApprovals(t), len(pins))
		if len(missing) > 0 {
			names := make([]string, 0, len(missing))
			for _, m := range missing {
				names = append(names, fmt.Sprintf("%s %s", m.Kind, m.Name))
			}
			outcome += fmt.Sprintf("\nnot approved by this review, since they do not exist yet: %s (they need a new review once created)", strings.Join(names, ", "))
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("approving ChangeTicket %s/%s: %w", key.Namespace, key.Name, err)
	}
	return outcome, nil
}

// errRaced: the approvals changed between the read and the patch.
var errRaced = errors.New("the ticket's approvals changed meanwhile")

// appendApproval sets the status's approvals to those read plus r, with a
// merge patch that carries no resourceVersion. If another reviewer added an
// approval since the read, the patch would drop it, and the CRD's
// append-only rule refuses it: the refusal is then reported as a race, so the
// caller reads the ticket again and retries.
func appendApproval(ctx context.Context, c client.Client, t *busv1.ChangeTicket, r busv1.Review) error {
	orig := t.DeepCopy()
	t.Status.Approvals = append(slices.Clone(t.Status.Approvals), r)
	err := c.Status().Patch(ctx, t, client.MergeFrom(orig))
	if !apierrors.IsInvalid(err) {
		return err
	}
	now := &busv1.ChangeTicket{}
	if gerr := c.Get(ctx, client.ObjectKeyFromObject(t), now); gerr == nil && len(now.Status.Approvals) != len(orig.Status.Approvals) {
		return fmt.Errorf("%w: %w", errRaced, err)
	}
	return err
}

// Deny sets the ticket's denial to r.
func Deny(ctx context.Context, c client.Client, key client.ObjectKey, r busv1.Review) (string, error) {
	var outcome string
	err := UpdateStatus(ctx, c, key, func(t *busv1.ChangeTicket) (bool, error) {
		if err := Reviewable(t, r.Time.Time); err != nil {
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

// Reviewable refuses decisions that can no longer matter.
func Reviewable(t *busv1.ChangeTicket, now time.Time) error {
	if d := t.Status.Denial; d != nil {
		return fmt.Errorf("it was denied by %s at %s; file a new ticket", d.Reviewer, d.Time.UTC().Format(time.RFC3339))
	}
	if end := Expiry(t); !end.IsZero() && !now.Before(end) {
		return fmt.Errorf("its change window closed at %s; file a new ticket", end.UTC().Format(time.RFC3339))
	}
	return nil
}

// UpdateStatus applies mutate to the current ticket and patches its status
// subresource. The patch carries the resourceVersion read, so a concurrent
// review makes it fail with a conflict, and it is redone on the fresh ticket
// rather than overwriting the other reviewer's entry.
func UpdateStatus(ctx context.Context, c client.Client, key client.ObjectKey, mutate func(*busv1.ChangeTicket) (bool, error)) error {
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
		return c.Status().Patch(ctx, &t, patch)
	})
}

// RequiredApprovals is the operator's figure once it has evaluated the
// ticket, the spec's until then.
func RequiredApprovals(t *busv1.ChangeTicket) int32 {
	if t.Status.RequiredApprovals > 0 {
		return t.Status.RequiredApprovals
	}
	if t.Spec.RequiredApprovals > 0 {
		return t.Spec.RequiredApprovals
	}
	return 1
}

// Expiry is the effective end of the change window.
func Expiry(t *busv1.ChangeTicket) time.Time {
	if t.Status.ExpiresAt != nil {
		return t.Status.ExpiresAt.Time
	}
	return t.Spec.NotAfter.Time
}
