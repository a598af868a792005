package controllers

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
)

// A name that carries data or identity (a broker topic, a consumer group, a
// credentials Secret) is claimed once, by an approved object, through a
// NameClaim created on the API server. Create is atomic, so of several
// objects racing for one name exactly one wins, whatever their namespaces,
// creation times or names; the claim then never moves while its owner
// exists. An object that is not approved claims nothing, so it can block no
// one. The owner releases the claim when it goes away.

// +kubebuilder:rbac:groups=bus.hms.io,resources=nameclaims,verbs=get;list;watch;create;delete

// claims takes, checks and releases NameClaims for one controller.
type claims struct {
	c client.Client
	// live reads around the cache: whether a claim exists, or its owner
	// still does, must not be judged from a cache that lags behind.
	live client.Reader
}

// claimOutcome is what claiming a name came to.
type claimOutcome struct {
	// owned is true when the caller holds the claim.
	owned bool
	// claim is the NameClaim: the caller's, or the winner's.
	claim *busv1.NameClaim
}

// holder describes who holds a claim, for messages.
func (o claimOutcome) holder() string {
	if o.claim == nil {
		return "another object"
	}
	ow := o.claim.Spec.Owner
	return fmt.Sprintf("%s %s/%s since %s", ow.Kind, ow.Namespace, ow.Name, o.claim.CreationTimestamp.UTC().Format(time.RFC3339))
}

// claim makes sure owner holds the name, creating the claim if nobody
// does. A claim whose owner no longer exists (deleted without releasing it,
// for instance with its finalizer removed by hand) is stale: it is deleted
// with a precondition on its UID, so of several objects finding it stale
// only one removes it, and the race to create the next one is decided by
// the API server again.
func (k claims) claim(ctx context.Context, kind busv1.ClaimKind, name string, ownerKind busv1.CoveredKind, owner client.Object) (claimOutcome, error) {
	objName := busv1.ClaimObjectName(kind, name)
	for attempt := 0; attempt < 3; attempt++ {
		existing := &busv1.NameClaim{}
		err := k.c.Get(ctx, types.NamespacedName{Name: objName}, existing)
		if apierrors.IsNotFound(err) && attempt > 0 {
			// The cache may not have seen a claim made a moment ago; the
			// first attempt goes straight to the create, which settles it
			// (one request for the common case of a new name).
			err = k.live.Get(ctx, types.NamespacedName{Name: objName}, existing)
		}
		switch {
		case err == nil:
			if existing.Spec.Owner.UID == string(owner.GetUID()) {
				return claimOutcome{owned: true, claim: existing}, nil
			}
			stale, err := k.stale(ctx, existing)
			if err != nil {
				return claimOutcome{}, err
			}
			if !stale {
				return claimOutcome{claim: existing}, nil
			}
			uid, rv := existing.UID, existing.ResourceVersion
			err = k.c.Delete(ctx, existing, client.Preconditions{UID: &uid, ResourceVersion: &rv})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				return claimOutcome{}, fmt.Errorf("removing stale claim on %s %s: %w", kind, name, err)
			}
			log.FromContext(ctx).Info("removed a stale name claim", "kind", kind, "name", name, "formerOwner", existing.Spec.Owner.Namespace+"/"+existing.Spec.Owner.Name)
			continue
		case !apierrors.IsNotFound(err):
			return claimOutcome{}, fmt.Errorf("reading claim on %s %s: %w", kind, name, err)
		}
		nc := &busv1.NameClaim{
			ObjectMeta: metav1.ObjectMeta{Name: objName, Labels: map[string]string{LabelManagedBy: ManagedByValue}},
			Spec: busv1.NameClaimSpec{Kind: kind, Name: name, Owner: busv1.ClaimOwner{
				Kind: ownerKind, Namespace: owner.GetNamespace(), Name: owner.GetName(), UID: string(owner.GetUID()),
			}},
		}
		err = k.c.Create(ctx, nc)
		switch {
		case err == nil:
			log.FromContext(ctx).Info("claimed name", "kind", kind, "name", name)
			return claimOutcome{owned: true, claim: nc}, nil
		case apierrors.IsAlreadyExists(err):
			continue // lost the race, or the claim is stale: look again
		default:
			return claimOutcome{}, fmt.Errorf("claiming %s %s: %w", kind, name, err)
		}
	}
	return claimOutcome{}, fmt.Errorf("claiming %s %s: the claim kept changing; retrying", kind, name)
}

// held reports, without creating anything, who holds name: the outcome's
// claim is nil when nobody does.
func (k claims) held(ctx context.Context, kind busv1.ClaimKind, name string, owner client.Object) (claimOutcome, error) {
	nc := &busv1.NameClaim{}
	err := k.c.Get(ctx, types.NamespacedName{Name: busv1.ClaimObjectName(kind, name)}, nc)
	switch {
	case apierrors.IsNotFound(err):
		return claimOutcome{}, nil
	case err != nil:
		return claimOutcome{}, fmt.Errorf("reading claim on %s %s: %w", kind, name, err)
	}
	return claimOutcome{owned: nc.Spec.Owner.UID == string(owner.GetUID()), claim: nc}, nil
}

// stale reports whether a claim's owner is gone.
func (k claims) stale(ctx context.Context, nc *busv1.NameClaim) (bool, error) {
	ow := nc.Spec.Owner
	var obj client.Object
	switch ow.Kind {
	case busv1.KindTopic:
		obj = &busv1.Topic{}
	case busv1.KindSubscription:
		obj = &busv1.Subscription{}
	default:
		return false, nil
	}
	err := k.live.Get(ctx, types.NamespacedName{Namespace: ow.Namespace, Name: ow.Name}, obj)
	switch {
	case apierrors.IsNotFound(err):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("reading %s %s/%s, holder of a claim: %w", ow.Kind, ow.Namespace, ow.Name, err)
	}
	return string(obj.GetUID()) != ow.UID, nil
}

// release deletes owner's claim on name, if it holds one. Someone else's
// claim is never touched.
func (k claims) release(ctx context.Context, kind busv1.ClaimKind, name string, owner client.Object) error {
	nc := &busv1.NameClaim{}
	err := k.live.Get(ctx, types.NamespacedName{Name: busv1.ClaimObjectName(kind, name)}, nc)
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("reading claim on %s %s: %w", kind, name, err)
	}
	if nc.Spec.Owner.UID != string(owner.GetUID()) {
		return nil
	}
	uid := nc.UID
	if err := k.c.Delete(ctx, nc, client.Preconditions{UID: &uid}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("releasing claim on %s %s: %w", kind, name, err)
	}
	log.FromContext(ctx).Info("released name", "kind", kind, "name", name)
	return nil
}

// claimIndexValue is how objects are indexed by the names they claim or
// want, so that releasing a claim wakes exactly the objects waiting for it.
func claimIndexValue(kind busv1.ClaimKind, name string) string {
	return string(kind) + "/" + busv1.ClaimKey(kind, name)
}

// indexClaimKeys is the field index of the claim keys an object wants.
const indexClaimKeys = "claimKeys"

// claimWaiters maps a NameClaim event to the objects that want its name.
func claimWaiters(ctx context.Context, c client.Reader, list client.ObjectList, nc *busv1.NameClaim, items func() []client.Object) []reconcile.Request {
	if err := c.List(ctx, list, client.MatchingFields{indexClaimKeys: claimIndexValue(nc.Spec.Kind, nc.Spec.Name)}); err != nil {
		log.FromContext(ctx).Error(err, "listing objects waiting for a name", "claim", nc.Name)
		return nil
	}
	var out []reconcile.Request
	for _, o := range items() {
		if string(o.GetUID()) != nc.Spec.Owner.UID {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}})
		}
	}
	return out
}
