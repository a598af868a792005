// Package controllers holds one reconciler per kind. Every Reconcile has the
// same shape (after Flux's kustomize-controller): get the object, defer a
// single status patch, handle deletion through the finalizer, then take
// small steps. Ready is always set; Reconciling and Stalled exist only while
// true (kstatus), and observedGeneration advances only on success.
package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/audit"
	"github.com/hms-platform/bus-operator/internal/governance"
)

// Index names for the field indexes the controllers register.
const (
	// indexTicket maps Topics and Subscriptions to "namespace/name" of the
	// ChangeTicket they reference, so a ticket change wakes exactly them.
	indexTicket = "spec.changeTicket"
	// indexTopicRef maps Subscriptions to "namespace/name" of each Topic
	// they use, so a Topic change wakes its Subscriptions.
	indexTopicRef = "spec.topics"
)

// Options shared by the reconcilers.
type Options struct {
	// Policy is the operator's governance policy.
	Policy governance.Policy
	// ResyncPeriod is how often broker state is re-read to repair drift;
	// each requeue is jittered by up to 10% so objects spread out.
	ResyncPeriod time.Duration
	// AuditTopic is reserved: no Topic may manage it.
	AuditTopic string
	// Now returns the current time; tests replace it.
	Now func() time.Time
	// WatchNamespaces are the namespaces the operator watches (empty:
	// all); objects elsewhere are invisible to it.
	WatchNamespaces []string
}

// watches reports whether the operator sees objects in namespace.
func (o Options) watches(namespace string) bool {
	return len(o.WatchNamespaces) == 0 || slices.Contains(o.WatchNamespaces, namespace)
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// resync returns the jittered drift-repair interval.
func (o Options) resync() time.Duration {
	p := o.ResyncPeriod
	if p <= 0 {
		p = 5 * time.Minute
	}
	// Up to a quarter of the period: objects created together (a bulk
	// apply) drift apart over a few periods instead of resyncing in one
	// burst every time.
	return p + time.Duration(rand.Int64N(int64(p)/4+1))
}

// resyncResult requeues for the next drift check (after d, or the jittered
// resync period when d is zero) at low priority: the work queue serves new
// changes first, so a resync of thousands of objects never delays a Topic
// someone is waiting for.
func (o Options) resyncResult(d time.Duration) reconcile.Result {
	if d <= 0 {
		d = o.resync()
	}
	return reconcile.Result{RequeueAfter: d, Priority: ptr.To(handler.LowPriority)}
}

// decide answers whether obj's current spec may be applied for op, reading
// the ticket and the namespace's minimum approvals through the cache.
func decide(ctx context.Context, c client.Reader, o Options, kind busv1.CoveredKind, obj client.Object, spec any, ticketRef string, op busv1.Operation) (governance.Decision, error) {
	hash, err := governance.SpecHash(spec)
	if err != nil {
		return governance.Decision{}, err
	}
	subject := governance.Subject{Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName(), Operation: op, TicketRef: ticketRef, SpecHash: hash, UID: string(obj.GetUID())}
	ns, name := governance.TicketKey(obj.GetNamespace(), ticketRef)
	var ticket *busv1.ChangeTicket
	if ticketRef != "" && ns == obj.GetNamespace() {
		t := &busv1.ChangeTicket{}
		err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, t)
		switch {
		case err == nil:
			ticket = t
		case !apierrors.IsNotFound(err):
			return governance.Decision{}, fmt.Errorf("getting ChangeTicket %s/%s: %w", ns, name, err)
		}
	}
	nsMin, err := namespaceMinApprovals(ctx, c, obj.GetNamespace())
	if err != nil {
		return governance.Decision{}, err
	}
	return governance.Evaluate(ticket, subject, o.Policy, nsMin, o.now()), nil
}

// namespaceMinApprovals reads the namespace's bus.hms.io/min-approvals; a
// value that is not a positive number is ignored rather than lowering the
// bar.
func namespaceMinApprovals(ctx context.Context, c client.Reader, namespace string) (int32, error) {
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, types.NamespacedName{Name: namespace}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("getting namespace %s: %w", namespace, err)
	}
	n, err := strconv.ParseInt(ns.Annotations[busv1.AnnotationMinApprovals], 10, 32)
	if err != nil || n < 0 {
		return 0, nil
	}
	return int32(n), nil
}

// setCondition sets a condition, keeping its transition time when the
// status is unchanged, so an unchanged resync writes nothing.
func setCondition(conds *[]metav1.Condition, gen int64, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(conds, metav1.Condition{Type: typ, Status: status, Reason: reason, Message: truncate(msg), ObservedGeneration: gen})
}

// setTransient sets a kstatus abnormal-true condition (Reconciling,
// Stalled, Drifted) while on, and removes it otherwise.
func setTransient(conds *[]metav1.Condition, gen int64, typ string, on bool, reason, msg string) {
	if !on {
		meta.RemoveStatusCondition(conds, typ)
		return
	}
	setCondition(conds, gen, typ, metav1.ConditionTrue, reason, msg)
}

// conditionsFor is the common condition bookkeeping of a reconcile result.
type result struct {
	ready   bool
	reason  string
	message string
	// stalled marks an error only a human can fix; reconciling marks
	// progress still under way (waiting for the broker, for instance).
	stalled     bool
	reconciling bool
}

func applyResult(conds *[]metav1.Condition, gen int64, r result) {
	status := metav1.ConditionFalse
	if r.ready {
		status = metav1.ConditionTrue
	}
	setCondition(conds, gen, busv1.ConditionReady, status, r.reason, r.message)
	setTransient(conds, gen, busv1.ConditionStalled, r.stalled, r.reason, r.message)
	setTransient(conds, gen, busv1.ConditionReconciling, r.reconciling, r.reason, r.message)
}

// reconcileShape is the Reconcile every kind shares: get the object, defer
// one status patch, run finalize when it is being deleted, otherwise make
// sure the finalizer is there (unless finalize is nil) and run apply.
func reconcileShape[T client.Object](ctx context.Context, c client.Client, live client.Reader, req reconcile.Request, obj T, status func(T) any,
	finalize, apply func(context.Context, T) (reconcile.Result, error)) (res reconcile.Result, retErr error) {
	if err := c.Get(ctx, req.NamespacedName, obj); err != nil {
		if apierrors.IsNotFound(err) {
			writtenStatus.forget(obj, req.NamespacedName)
		}
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if live != nil && writtenStatus.stale(obj, status(obj)) {
		// The cache has not caught up with this process's own last
		// status write: deciding from the older status would, for
		// example, take an approved state for an unapproved one.
		if err := live.Get(ctx, req.NamespacedName, obj); err != nil {
			return reconcile.Result{}, client.IgnoreNotFound(err)
		}
	}
	before := obj.DeepCopyObject().(T)
	defer func() {
		markFailure(obj, retErr)
		if err := patchStatus(ctx, c, before, obj, status(before), status(obj)); err != nil {
			// The status did not land: retry with back-off rather than
			// wait for the resync.
			res, retErr = reconcile.Result{}, errors.Join(retErr, err)
		}
	}()
	if finalize != nil {
		if !obj.GetDeletionTimestamp().IsZero() {
			return finalize(ctx, obj)
		}
		if controllerutil.AddFinalizer(obj, busv1.Finalizer) {
			if err := c.Update(ctx, obj); err != nil {
				return reconcile.Result{}, fmt.Errorf("adding finalizer: %w", err)
			}
		}
	}
	return apply(ctx, obj)
}

// audited makes one broker write complete-by-construction in the audit
// trail: the intent is stored before the write, and the write is not made
// if it cannot be (the error is transient, like an unreachable broker); the
// outcome, success or failure, is stored after it, with what the broker
// reported (write's first result). The intent's key comes from the object's
// UID and resourceVersion, so a write retried after a crash adopts the
// intent its first attempt left open instead of counting as two changes.
func audited(ctx context.Context, rec *audit.Recorder, obj client.Object, kind busv1.CoveredKind, r audit.Record, write func() (any, error)) error {
	p, err := rec.Begin(ctx, obj, string(kind), r)
	if err != nil {
		return err
	}
	after, err := write()
	p.DoneWith(ctx, err, after)
	return err
}

// unavailableReason tells an audit trail that cannot be written (which
// holds the broker write back) from a broker that cannot be reached.
func unavailableReason(err error) string {
	if errors.Is(err, audit.ErrAuditUnavailable) {
		return busv1.ReasonAuditUnavailable
	}
	return busv1.ReasonBrokerUnavailable
}

// conditioned is an object whose conditions kstatus reads.
type conditioned interface {
	GetConditions() *[]metav1.Condition
}

// markFailure keeps Ready from claiming success, or an old reason, while a
// reconcile fails: an error the failing step did not explain in the
// conditions itself (see explained) turns Ready False with the error, and
// Reconciling True, until a reconcile succeeds again. Optimistic-lock
// conflicts are only a retry, not a failure to report.
func markFailure(obj client.Object, err error) {
	c, ok := obj.(conditioned)
	if err == nil || !ok || apierrors.IsConflict(err) || errors.As(err, new(*explainedError)) {
		return
	}
	applyResult(c.GetConditions(), obj.GetGeneration(), result{reason: busv1.ReasonReconcileError, message: err.Error(), reconciling: true})
}

// explainedError is an error whose step already set the conditions that
// explain it (BrokerUnavailable, BrokerRejected, ...).
type explainedError struct{ err error }

func (e *explainedError) Error() string { return e.err.Error() }
func (e *explainedError) Unwrap() error { return e.err }

// explained marks err as already told in the conditions.
func explained(err error) error {
	if err == nil {
		return nil
	}
	return &explainedError{err}
}

// patchStatus writes the status once, and only when it changed: a resync
// that finds nothing to do costs no API write.
func patchStatus(ctx context.Context, c client.Client, before, after client.Object, beforeStatus, afterStatus any) error {
	if equality.Semantic.DeepEqual(beforeStatus, afterStatus) {
		return nil
	}
	// No resourceVersion precondition: one reconcile of an object runs at a
	// time, so this status is the newest account of the broker writes this
	// reconcile made, even if its cached copy of the object was older than
	// the previous status write; a conflict would drop that account (the
	// grants just made would go unrecorded). The merge patch sends only the
	// fields this reconcile changed.
	if err := c.Status().Patch(ctx, after, client.MergeFrom(before)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil // deleted meanwhile: nothing left to report on
		}
		return fmt.Errorf("patching status of %s/%s: %w", after.GetNamespace(), after.GetName(), err)
	}
	writtenStatus.remember(after, afterStatus)
	return nil
}

// writtenStatus remembers, per object, the resourceVersion and a hash of
// the status this process last wrote, so a reconcile can tell a cache that
// has not caught up with that write (see reconcileShape). A hash, not the
// status: 20,000 objects cost about 2 MB.
var writtenStatus statusMemo

type statusMemo struct{ m sync.Map } // memoKey -> writtenMark

type memoKey struct {
	kind string
	name types.NamespacedName
}

type writtenMark struct {
	uid             types.UID
	resourceVersion string
	hash            [sha256.Size]byte
}

func keyOf(obj client.Object, name types.NamespacedName) memoKey {
	return memoKey{kind: fmt.Sprintf("%T", obj), name: name}
}

func statusHash(status any) ([sha256.Size]byte, bool) {
	b, err := json.Marshal(status)
	if err != nil {
		return [sha256.Size]byte{}, false
	}
	return sha256.Sum256(b), true
}

func (s *statusMemo) remember(obj client.Object, status any) {
	if h, ok := statusHash(status); ok {
		s.m.Store(keyOf(obj, client.ObjectKeyFromObject(obj)), writtenMark{uid: obj.GetUID(), resourceVersion: obj.GetResourceVersion(), hash: h})
	}
}

// stale reports whether obj, as read, carries a status other than the one
// this process last wrote, in another version than that write produced:
// an older copy (or someone else's status write, which a live read shows
// as well).
func (s *statusMemo) stale(obj client.Object, status any) bool {
	v, ok := s.m.Load(keyOf(obj, client.ObjectKeyFromObject(obj)))
	if !ok {
		return false
	}
	mark := v.(writtenMark)
	if mark.uid != obj.GetUID() || obj.GetResourceVersion() == mark.resourceVersion {
		return false
	}
	h, ok := statusHash(status)
	return ok && h != mark.hash
}

// forget drops an object's mark once it is gone.
func (s *statusMemo) forget(obj client.Object, name types.NamespacedName) {
	s.m.Delete(keyOf(obj, name))
}

// isPaused reads the pause annotation. Any value strconv.ParseBool reads as
// true pauses; a value that is not a boolean at all ("yes", "on") pauses
// too, since a person who wrote it meant to stop the operator and a broker
// write is the one thing that cannot be taken back; pauseTypo says so.
func isPaused(obj client.Object) bool {
	v, ok := obj.GetAnnotations()[busv1.AnnotationPaused]
	if !ok {
		return false
	}
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	return err != nil || b
}

// pauseMessage explains a pause, pointing out a value that is not a
// boolean.
func pauseMessage(obj client.Object) string {
	v := obj.GetAnnotations()[busv1.AnnotationPaused]
	if _, err := strconv.ParseBool(strings.TrimSpace(v)); err != nil {
		return fmt.Sprintf("broker writes are paused: the %s annotation is %q, which is not true or false; it is taken as true until corrected", busv1.AnnotationPaused, v)
	}
	return fmt.Sprintf("broker writes are paused by the %s annotation", busv1.AnnotationPaused)
}

func truncate(s string) string {
	const limit = 1024
	if len(s) > limit {
		return s[:limit-3] + "..."
	}
	return s
}

// specOrMetaChanged lets through what a reconcile must react to: spec
// (generation), annotations (pause, rotate), finalizers and deletion. It
// drops the operator's own status writes, which would otherwise cost a
// broker read each.
var specOrMetaChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld, e.ObjectNew
		return o.GetGeneration() != n.GetGeneration() ||
			!equality.Semantic.DeepEqual(o.GetAnnotations(), n.GetAnnotations()) ||
			!equality.Semantic.DeepEqual(o.GetFinalizers(), n.GetFinalizers()) ||
			!o.GetDeletionTimestamp().Equal(n.GetDeletionTimestamp())
	},
}

func key(namespace, name string) string { return namespace + "/" + name }
