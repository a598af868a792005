package controllers

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
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
	// waiting is the controller's waitlist: an object that does not hold
	// the name it wants is woken by the next event on its claim.
	waiting *waitlist
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
func (k claims) claim(ctx context.Context, kind busv1.ClaimKind, name string, ownerKind busv1.CoveredKind, owner client.Object) (out claimOutcome, err error) {
	objName := busv1.ClaimObjectName(kind, name)
	defer k.wait(kind, name, owner)(&out, &err)
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
func (k claims) held(ctx context.Context, kind busv1.ClaimKind, name string, owner client.Object) (out claimOutcome, err error) {
	defer k.wait(kind, name, owner)(&out, &err)
	nc := &busv1.NameClaim{}
	err = k.c.Get(ctx, types.NamespacedName{Name: busv1.ClaimObjectName(kind, name)}, nc)
	switch {
	case apierrors.IsNotFound(err):
		return claimOutcome{}, nil
	case err != nil:
		return claimOutcome{}, fmt.Errorf("reading claim on %s %s: %w", kind, name, err)
	}
	return claimOutcome{owned: nc.Spec.Owner.UID == string(owner.GetUID()), claim: nc}, nil
}

// wait signs owner up for events on the name now, before the claim is
// read; the returned func, deferred, takes it off again once it holds the
// name. Without a waitlist (tests of the claim logic alone) it does
// nothing.
func (k claims) wait(kind busv1.ClaimKind, name string, owner client.Object) func(*claimOutcome, *error) {
	if k.waiting == nil {
		return func(*claimOutcome, *error) {}
	}
	key := claimWaitKey(kind, name)
	k.waiting.add(key, owner)
	return func(out *claimOutcome, err *error) {
		if *err == nil && out.owned {
			k.waiting.remove(key, owner)
		}
	}
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

// claimWaitKey names a claimable name in the waitlist.
func claimWaitKey(kind busv1.ClaimKind, name string) string {
	return string(kind) + "/" + busv1.ClaimKey(kind, name)
}

// waitlist remembers which objects found a name held by someone else (or
// by nobody yet, for an object that may not claim it), so that an event on
// that name's NameClaim wakes exactly them. It replaces a field index over
// every object: an index holds an entry for each of 20,000 objects, the
// waitlist only for the few that wait. It lives in memory: after a restart
// every object is reconciled once and those still waiting sign up again.
type waitlist struct {
	mu sync.Mutex
	m  map[string]map[types.NamespacedName]types.UID
}

// add signs obj up for events on key. Callers sign up before they read the
// claim, so an event between the read and the sign-up is not missed.
func (w *waitlist) add(key string, obj client.Object) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[string]map[types.NamespacedName]types.UID{}
	}
	if w.m[key] == nil {
		w.m[key] = map[types.NamespacedName]types.UID{}
	}
	w.m[key][client.ObjectKeyFromObject(obj)] = obj.GetUID()
}

// remove takes obj off key's list: it holds the name.
func (w *waitlist) remove(key string, obj client.Object) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.m[key], client.ObjectKeyFromObject(obj))
	if len(w.m[key]) == 0 {
		delete(w.m, key)
	}
}

// take returns the objects waiting on key and empties its list: each is
// reconciled, and signs up again if it still waits. The claim's owner is
// not woken by its own claim: it signed up just before creating it, and
// the create's event may come before it takes itself off.
func (w *waitlist) take(key string, owner types.UID) []reconcile.Request {
	w.mu.Lock()
	defer w.mu.Unlock()
	waiting := w.m[key]
	delete(w.m, key)
	out := make([]reconcile.Request, 0, len(waiting))
	for k, uid := range waiting {
		if uid != owner {
			out = append(out, reconcile.Request{NamespacedName: k})
		}
	}
	return out
}

// wakeWaiters maps a NameClaim event to the objects waiting for its name,
// for the claim kinds a controller handles.
func wakeWaiters(w *waitlist, kinds ...busv1.ClaimKind) handler.MapFunc {
	return func(_ context.Context, o client.Object) []reconcile.Request {
		nc, ok := o.(*busv1.NameClaim)
		if !ok || !slices.Contains(kinds, nc.Spec.Kind) {
			return nil
		}
		return w.take(claimWaitKey(nc.Spec.Kind, nc.Spec.Name), types.UID(nc.Spec.Owner.UID))
	}
}
