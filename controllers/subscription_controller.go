package controllers

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/audit"
	"github.com/hms-platform/bus-operator/internal/governance"
	"github.com/hms-platform/bus-operator/internal/kafka"
	"github.com/hms-platform/bus-operator/internal/plan"
	"github.com/hms-platform/bus-operator/pkg/bus"
)

const (
	// LabelManagedBy marks the Secrets this operator writes; the manager
	// caches only Secrets with it, not every Secret in the cluster.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is LabelManagedBy's value.
	ManagedByValue = "hmsbus-operator"
	// annotationBrokerSync is "pending" on a Secret whose password has not
	// reached the broker yet. The Secret is written first, so a crash
	// between the two writes is finished by the next reconcile.
	annotationBrokerSync = "bus.hms.io/broker-sync"
	// annotationRotation on the Secret holds the rotation request (the
	// Subscription's rotate annotation) its password answers. It lives on
	// the Secret, written before the broker, so a reconcile that reads a
	// status not yet updated cannot rotate a second time.
	annotationRotation = "bus.hms.io/rotation"
)

// SubscriptionReconciler issues SCRAM credentials and least-privilege ACLs.
type SubscriptionReconciler struct {
	client.Client
	// APIReader reads around the cache. It decides, rarely, whether a
	// Secret or SCRAM user belongs to someone else: a cache that has not
	// yet seen the operator's own new Secret must not make it look foreign.
	APIReader client.Reader
	Admin     kafka.Admin
	Audit     *audit.Recorder
	Events    events.EventRecorder
	Options
	// ClientBootstrap is the bootstrap address written into credentials:
	// what workloads use, which may differ from the operator's own.
	ClientBootstrap []string
	// ClientTLS says the brokers speak TLS; ClientCA is the PEM bundle
	// clients must trust when the brokers' certificates use a private CA.
	ClientTLS               bool
	ClientCA                []byte
	MaxConcurrentReconciles int
}

// +kubebuilder:rbac:groups=bus.hms.io,resources=subscriptions,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=bus.hms.io,resources=subscriptions/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=bus.hms.io,resources=subscriptions/finalizers,verbs=update
// +kubebuilder:rbac:groups=bus.hms.io,resources=topics,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch

// Reconcile brings one Subscription's credentials and grants in line.
func (r *SubscriptionReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	return reconcileShape(ctx, r.Client, req, &busv1.Subscription{}, func(s *busv1.Subscription) any { return s.Status }, r.finalize, r.reconcileSubscription)
}

// grantPlan is what a reconcile decided to grant.
type grantPlan struct {
	approved bool
	decision governance.Decision
	// role, mechanism, quota, topics and desired are the spec's when it
	// is approved, otherwise the last approved ones from status: nothing of
	// an unapproved spec reaches the broker.
	role      busv1.Role
	mechanism string
	quota     *busv1.QuotaSpec
	topics    []string
	desired   []kafka.ACL
	// problem explains topics withheld (missing, not allowed, not ready).
	problem *result
}

func (r *SubscriptionReconciler) reconcileSubscription(ctx context.Context, sub *busv1.Subscription) (reconcile.Result, error) {
	gen := sub.Generation
	conds := &sub.Status.Conditions

	g, err := r.plan(ctx, sub)
	if err != nil {
		return reconcile.Result{}, err
	}
	if g.approved {
		setCondition(conds, gen, busv1.ConditionApproved, metav1.ConditionTrue, busv1.ReasonTicketApproved, approvalMessage(sub.Status.AppliedTicket, g.decision))
	} else {
		setCondition(conds, gen, busv1.ConditionApproved, metav1.ConditionFalse, g.decision.Reason, g.decision.Message)
	}
	applied := sub.Status.Username != ""
	if !g.approved && !applied {
		applyResult(conds, gen, result{reason: g.decision.Reason, message: "no credentials or grants are issued until the ticket allows it: " + g.decision.Message})
		return reconcile.Result{}, nil
	}
	if isPaused(sub) {
		applyResult(conds, gen, result{reason: busv1.ReasonPaused, message: fmt.Sprintf("broker writes are paused by the %s annotation", busv1.AnnotationPaused)})
		return reconcile.Result{}, nil
	}

	cause, ticket := audit.CauseApproved, g.decision.Ticket
	if !g.approved || sub.Status.ObservedGeneration == gen {
		// Repairing drift restores grants approved earlier: the record
		// names the ticket that approved them.
		cause, ticket = audit.CauseDrift, sub.Status.AppliedTicket
	}
	if res, err, done := r.syncCredentials(ctx, sub, g, cause, ticket); done {
		return res, err
	}
	unmanaged, err := r.syncACLs(ctx, sub, g.desired, cause, ticket)
	if err != nil {
		return r.brokerError(sub, err)
	}
	if err := r.syncQuota(ctx, sub, g.quota, cause, ticket); err != nil {
		return r.brokerError(sub, err)
	}

	sub.Status.Principal = sub.Principal()
	sub.Status.Username = sub.Username()
	sub.Status.SecretName = sub.SecretName()
	sub.Status.Role, sub.Status.Mechanism, sub.Status.Quota = g.role, busv1.Mechanism(g.mechanism), g.quota
	sub.Status.ConsumerGroup = ""
	if g.role == busv1.RoleConsume {
		sub.Status.ConsumerGroup = sub.ConsumerGroupName()
	}
	sub.Status.Topics = g.topics
	sub.Status.TopicsSummary = strings.Join(g.topics, ",")
	sub.Status.GrantedACLs = toEntries(g.desired)
	setTransient(conds, gen, busv1.ConditionDrifted, len(unmanaged) > 0, busv1.ReasonUnmanagedACLs, unmanagedMessage(unmanaged))

	switch {
	case !g.approved:
		applyResult(conds, gen, result{reason: g.decision.Reason, message: fmt.Sprintf("the broker keeps the last approved grants (generation %d); the current spec waits: %s", sub.Status.ObservedGeneration, g.decision.Message)})
	case g.problem != nil:
		applyResult(conds, gen, *g.problem)
	default:
		if g.decision.Ticket != nil {
			sub.Status.AppliedTicket = g.decision.Ticket
		}
		sub.Status.ObservedGeneration = gen
		applyResult(conds, gen, result{ready: true, reason: busv1.ReasonSucceeded, message: fmt.Sprintf("%s may %s %s; credentials in Secret %s", sub.Principal(), strings.ToLower(string(roleOf(sub))), sub.Status.TopicsSummary, sub.SecretName())})
	}
	return reconcile.Result{RequeueAfter: r.resync()}, nil
}

// plan decides the grants: the spec's when approved, otherwise the last
// approved grants recorded in status.
func (r *SubscriptionReconciler) plan(ctx context.Context, sub *busv1.Subscription) (grantPlan, error) {
	applied := sub.Status.Username != ""
	g := grantPlan{approved: applied && sub.Status.ObservedGeneration == sub.Generation}
	if !g.approved {
		d, err := decide(ctx, r.Client, r.Options, busv1.KindSubscription, sub, sub.Spec, sub.Spec.ChangeTicket, busv1.OperationApply)
		if err != nil {
			return g, err
		}
		g.decision, g.approved = d, d.Allowed
	}
	if !g.approved {
		g.role, g.mechanism, g.quota = sub.Status.Role, string(sub.Status.Mechanism), sub.Status.Quota
		if g.mechanism == "" {
			g.mechanism = string(busv1.MechanismSCRAMSHA512)
		}
		g.topics = sub.Status.Topics
		g.desired = fromEntries(sub.Principal(), sub.Status.GrantedACLs)
		return g, nil
	}
	g.role, g.mechanism, g.quota = roleOf(sub), string(sub.MechanismName()), sub.Spec.Quota
	topics, problem, err := r.resolveTopics(ctx, sub)
	if err != nil {
		return g, err
	}
	g.topics, g.problem = topics, problem
	g.desired = plan.DesiredACLs(sub.Principal(), string(g.role), topics, sub.ConsumerGroupName())
	return g, nil
}

// resolveTopics returns the broker names of the referenced Topics this
// Subscription may use. A Topic is usable once it has been applied to the
// broker and allows this namespace; the others are withheld and explained.
func (r *SubscriptionReconciler) resolveTopics(ctx context.Context, sub *busv1.Subscription) ([]string, *result, error) {
	var names []string
	var problem *result
	note := func(reason, msg string) {
		if problem == nil {
			problem = &result{reason: reason, message: msg}
		} else {
			problem.message += "; " + msg
		}
	}
	for _, ref := range sub.Spec.Topics {
		ns := ref.Namespace
		if ns == "" {
			ns = sub.Namespace
		}
		t := &busv1.Topic{}
		if err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name}, t); err != nil {
			if !apierrors.IsNotFound(err) {
				return nil, nil, fmt.Errorf("getting Topic %s/%s: %w", ns, ref.Name, err)
			}
			note(busv1.ReasonTopicNotFound, fmt.Sprintf("Topic %s/%s not found", ns, ref.Name))
			continue
		}
		switch {
		case !allowsNamespace(t, sub.Namespace):
			note(busv1.ReasonNotAllowed, fmt.Sprintf("Topic %s/%s does not allow Subscriptions from namespace %s (its approved allowedNamespaces)", ns, ref.Name, sub.Namespace))
		case !t.DeletionTimestamp.IsZero():
			note(busv1.ReasonTopicNotReady, fmt.Sprintf("Topic %s/%s is being deleted", ns, ref.Name))
		case t.Status.TopicID == "":
			note(busv1.ReasonTopicNotReady, fmt.Sprintf("Topic %s/%s has not been created on the broker yet", ns, ref.Name))
		default:
			names = append(names, t.Status.TopicName)
		}
	}
	slices.Sort(names)
	return slices.Compact(names), problem, nil
}

// allowsNamespace judges by the Topic's approved allowedNamespaces (its
// status), never by an edit of its spec still waiting for a ticket.
func allowsNamespace(t *busv1.Topic, ns string) bool {
	allowed := t.Status.AllowedNamespaces
	return t.Namespace == ns || slices.Contains(allowed, ns) || slices.Contains(allowed, "*")
}

// syncCredentials writes the Secret, then the broker's SCRAM credential.
// done is true when the reconcile must stop here.
func (r *SubscriptionReconciler) syncCredentials(ctx context.Context, sub *busv1.Subscription, g grantPlan, cause string, ticket *busv1.AppliedTicket) (reconcile.Result, error, bool) {
	stall := func(err error) (reconcile.Result, error, bool) {
		var stalled *stalledError
		if errors.As(err, &stalled) {
			applyResult(&sub.Status.Conditions, sub.Generation, result{reason: busv1.ReasonConflict, message: stalled.msg, stalled: true})
			return reconcile.Result{}, nil, true
		}
		return reconcile.Result{}, err, true
	}
	user, mech := sub.Username(), g.mechanism
	have, err := r.Admin.SCRAMMechanisms(ctx, user)
	if err != nil {
		res, err := r.brokerError(sub, fmt.Errorf("describing SCRAM user %s: %w", user, err))
		return res, err, true
	}
	if err := r.guardForeignUser(ctx, sub, len(have[user]) > 0); err != nil {
		return stall(err)
	}
	secret, rotated, err := r.ensureSecret(ctx, sub, g)
	if err != nil {
		return stall(err)
	}
	pending := secret.Annotations[annotationBrokerSync] == "pending"
	if pending || !slices.Contains(have[user], mech) {
		if err := r.Admin.UpsertSCRAM(ctx, user, mech, string(secret.Data[bus.SecretKeyPassword])); err != nil {
			res, err := r.brokerError(sub, fmt.Errorf("writing SCRAM credential for %s: %w", user, err))
			return res, err, true
		}
		why := cause
		if rotated {
			why = audit.CauseRotation
		}
		r.Audit.Record(ctx, sub, string(busv1.KindSubscription), audit.Record{Operation: audit.OpUpsertCredential, Resource: user, Cause: why, Ticket: ticket,
			After: map[string]any{"mechanism": mech, "secret": secret.Name, "passwordChanged": pending}})
		if pending {
			delete(secret.Annotations, annotationBrokerSync)
			if err := r.Update(ctx, secret); err != nil {
				return reconcile.Result{}, fmt.Errorf("marking Secret %s synced: %w", secret.Name, err), true
			}
		}
	}
	// A mechanism switched in the spec leaves the old credential behind:
	// remove it, since it would still let the old password in.
	for _, old := range have[user] {
		if old == mech {
			continue
		}
		if err := r.Admin.DeleteSCRAM(ctx, user, old); err != nil {
			res, err := r.brokerError(sub, fmt.Errorf("deleting old %s credential of %s: %w", old, user, err))
			return res, err, true
		}
		r.Audit.Record(ctx, sub, string(busv1.KindSubscription), audit.Record{Operation: audit.OpDeleteCredential, Resource: user, Cause: cause, Ticket: ticket, Before: map[string]any{"mechanism": old}})
	}
	sub.Status.CredentialsRotation = secret.Annotations[annotationRotation]
	// A new password (new Secret, lost Secret or rotation) is always pending.
	if pending || sub.Status.PasswordChangedAt == nil {
		now := metav1.NewTime(r.now().UTC().Truncate(time.Second))
		sub.Status.PasswordChangedAt = &now
	}
	return reconcile.Result{}, nil, false
}

// guardForeignUser refuses to take over a SCRAM user the operator did not
// create. The operator's users always have its Secret (written before the
// broker) or a recorded status.username; a user with neither was made by
// someone else, and overwriting its password would lock its owner out.
func (r *SubscriptionReconciler) guardForeignUser(ctx context.Context, sub *busv1.Subscription, userExists bool) error {
	if !userExists || sub.Status.Username != "" {
		return nil
	}
	err := r.liveReader().Get(ctx, types.NamespacedName{Namespace: sub.Namespace, Name: sub.SecretName()}, &corev1.Secret{})
	switch {
	case err == nil:
		return nil
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("getting Secret %s: %w", sub.SecretName(), err)
	}
	return &stalledError{fmt.Sprintf("SCRAM user %s already exists on the broker and was not created by this operator; it is left untouched (remove it, or rename this Subscription)", sub.Username())}
}

// existingSecretError explains a Secret that exists but is not in the
// cache: either the cache lags behind the operator's own write (retry), or
// the Secret lacks the operator's label because someone else made it.
func (r *SubscriptionReconciler) existingSecretError(ctx context.Context, sub *busv1.Subscription, name string) error {
	live := &corev1.Secret{}
	if err := r.liveReader().Get(ctx, types.NamespacedName{Namespace: sub.Namespace, Name: name}, live); err != nil {
		return fmt.Errorf("reading Secret %s: %w", name, err)
	}
	if metav1.IsControlledBy(live, sub) {
		return fmt.Errorf("secret %s was just written and is not in the cache yet; retrying", name)
	}
	return &stalledError{fmt.Sprintf("Secret %s already exists and was not created by this operator; choose another spec.credentials.secretName", name)}
}

func (r *SubscriptionReconciler) liveReader() client.Reader {
	if r.APIReader != nil {
		return r.APIReader
	}
	return r.Client
}

type stalledError struct{ msg string }

func (e *stalledError) Error() string { return e.msg }

// ensureSecret creates or updates the credentials Secret. A new password
// is generated when the Secret is new or lost, or when rotation is asked
// for; the Secret is then marked pending until the broker has it.
func (r *SubscriptionReconciler) ensureSecret(ctx context.Context, sub *busv1.Subscription, g grantPlan) (*corev1.Secret, bool, error) {
	name := sub.SecretName()
	secret := &corev1.Secret{}
	err := r.Get(ctx, types.NamespacedName{Namespace: sub.Namespace, Name: name}, secret)
	exists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, false, fmt.Errorf("getting Secret %s: %w", name, err)
	}
	if exists && !metav1.IsControlledBy(secret, sub) {
		return nil, false, &stalledError{fmt.Sprintf("Secret %s exists and is not owned by this Subscription; choose another spec.credentials.secretName", name)}
	}
	request := sub.Annotations[busv1.AnnotationRotate]
	rotate := exists && request != "" && request != secret.Annotations[annotationRotation]
	password := string(secret.Data[bus.SecretKeyPassword])
	newPassword := !exists || password == "" || rotate
	if newPassword {
		pw, err := generatePassword()
		if err != nil {
			return nil, false, err
		}
		password = pw
	}
	creds := bus.Credentials{
		Bootstrap: r.ClientBootstrap, Mechanism: g.mechanism,
		Username: sub.Username(), Password: password, Topics: g.topics, TLS: r.ClientTLS, CACert: r.ClientCA,
	}
	if g.role == busv1.RoleConsume {
		creds.ConsumerGroup = sub.ConsumerGroupName()
	}
	desired := secret.DeepCopy()
	desired.Name, desired.Namespace = name, sub.Namespace
	desired.Type = corev1.SecretTypeOpaque
	desired.Data = bus.SecretData(creds)
	if desired.Labels == nil {
		desired.Labels = map[string]string{}
	}
	desired.Labels[LabelManagedBy] = ManagedByValue
	if desired.Annotations == nil {
		desired.Annotations = map[string]string{}
	}
	if newPassword {
		desired.Annotations[annotationBrokerSync] = "pending"
	}
	if request != "" {
		desired.Annotations[annotationRotation] = request
	}
	if err := controllerutil.SetControllerReference(sub, desired, r.Scheme()); err != nil {
		return nil, false, fmt.Errorf("owning Secret %s: %w", name, err)
	}
	switch {
	case !exists:
		if err := r.Create(ctx, desired); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return nil, false, r.existingSecretError(ctx, sub, name)
			}
			return nil, false, fmt.Errorf("creating Secret %s: %w", name, err)
		}
		log.FromContext(ctx).Info("created credentials Secret", "secret", name)
	case !equality.Semantic.DeepEqual(secret.Data, desired.Data) || !equality.Semantic.DeepEqual(secret.Annotations, desired.Annotations) || !equality.Semantic.DeepEqual(secret.Labels, desired.Labels):
		if err := r.Update(ctx, desired); err != nil {
			return nil, false, fmt.Errorf("updating Secret %s: %w", name, err)
		}
	}
	return desired, rotate, nil
}

// syncACLs applies the ACL diff and returns ACLs for the principal that
// the operator did not grant (reported, never touched).
func (r *SubscriptionReconciler) syncACLs(ctx context.Context, sub *busv1.Subscription, desired []kafka.ACL, cause string, ticket *busv1.AppliedTicket) ([]kafka.ACL, error) {
	principal := sub.Principal()
	observed, err := r.Admin.DescribeACLs(ctx, principal)
	if err != nil {
		return nil, fmt.Errorf("describing ACLs of %s: %w", principal, err)
	}
	d := plan.DiffACLs(desired, observed, fromEntries(sub.Principal(), sub.Status.GrantedACLs))
	if len(d.Create) > 0 {
		if err := r.Admin.CreateACLs(ctx, d.Create); err != nil {
			return nil, fmt.Errorf("creating ACLs for %s: %w", principal, err)
		}
		r.Audit.Record(ctx, sub, string(busv1.KindSubscription), audit.Record{Operation: audit.OpCreateACL, Resource: principal, Cause: cause, Ticket: ticket, After: aclStrings(d.Create)})
	}
	if len(d.Delete) > 0 {
		if err := r.Admin.DeleteACLs(ctx, d.Delete); err != nil {
			return nil, fmt.Errorf("deleting ACLs of %s: %w", principal, err)
		}
		r.Audit.Record(ctx, sub, string(busv1.KindSubscription), audit.Record{Operation: audit.OpDeleteACL, Resource: principal, Cause: audit.CauseRevocation, Ticket: ticket, Before: aclStrings(d.Delete)})
	}
	if len(d.Unmanaged) > 0 {
		r.Events.Eventf(sub, nil, corev1.EventTypeWarning, busv1.ReasonUnmanagedACLs, "Reconcile", "%s", unmanagedMessage(d.Unmanaged))
	}
	return d.Unmanaged, nil
}

// syncQuota sets or clears the client quota.
func (r *SubscriptionReconciler) syncQuota(ctx context.Context, sub *busv1.Subscription, quota *busv1.QuotaSpec, cause string, ticket *busv1.AppliedTicket) error {
	want := kafka.Quota{}
	if q := quota; q != nil {
		want = kafka.Quota{ProducerByteRate: q.ProducerByteRate, ConsumerByteRate: q.ConsumerByteRate}
	}
	user := sub.Username()
	have, err := r.Admin.DescribeQuota(ctx, user)
	if err != nil {
		return fmt.Errorf("describing quota of %s: %w", user, err)
	}
	if equality.Semantic.DeepEqual(have, want) {
		return nil
	}
	if err := r.Admin.SetQuota(ctx, user, want); err != nil {
		return fmt.Errorf("setting quota of %s: %w", user, err)
	}
	r.Audit.Record(ctx, sub, string(busv1.KindSubscription), audit.Record{Operation: audit.OpSetQuota, Resource: user, Cause: cause, Ticket: ticket, Before: have, After: want})
	return nil
}

func (r *SubscriptionReconciler) brokerError(sub *busv1.Subscription, err error) (reconcile.Result, error) {
	if kafka.IsRejected(err) {
		applyResult(&sub.Status.Conditions, sub.Generation, result{reason: busv1.ReasonBrokerRejected, message: err.Error(), stalled: true})
		r.Events.Eventf(sub, nil, corev1.EventTypeWarning, busv1.ReasonBrokerRejected, "Reconcile", "%s", err.Error())
		return reconcile.Result{}, reconcile.TerminalError(err)
	}
	applyResult(&sub.Status.Conditions, sub.Generation, result{reason: busv1.ReasonBrokerUnavailable, message: err.Error(), reconciling: true})
	return reconcile.Result{}, err
}

// finalize revokes exactly what the operator granted: its ACLs, its SCRAM
// user and its quota. The Secret goes with the Subscription (owner
// reference). Revoking needs no ticket: it only takes access away. A paused
// Subscription is released without touching the broker, which is the way
// out when the broker is gone for good.
func (r *SubscriptionReconciler) finalize(ctx context.Context, sub *busv1.Subscription) (reconcile.Result, error) {
	if !controllerutil.ContainsFinalizer(sub, busv1.Finalizer) {
		return reconcile.Result{}, nil
	}
	if sub.Status.Username != "" && !isPaused(sub) {
		if err := r.revoke(ctx, sub); err != nil {
			return r.brokerError(sub, err)
		}
	}
	controllerutil.RemoveFinalizer(sub, busv1.Finalizer)
	if err := r.Update(ctx, sub); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(fmt.Errorf("removing finalizer: %w", err))
	}
	return reconcile.Result{}, nil
}

func (r *SubscriptionReconciler) revoke(ctx context.Context, sub *busv1.Subscription) error {
	if _, err := r.syncACLs(ctx, sub, nil, audit.CauseDeletion, nil); err != nil {
		return err
	}
	user := sub.Status.Username
	have, err := r.Admin.SCRAMMechanisms(ctx, user)
	if err != nil {
		return fmt.Errorf("describing SCRAM user %s: %w", user, err)
	}
	for _, mech := range have[user] {
		if err := r.Admin.DeleteSCRAM(ctx, user, mech); err != nil {
			return fmt.Errorf("deleting SCRAM credential of %s: %w", user, err)
		}
		r.Audit.Record(ctx, sub, string(busv1.KindSubscription), audit.Record{Operation: audit.OpDeleteCredential, Resource: user, Cause: audit.CauseDeletion, Before: map[string]any{"mechanism": mech}})
	}
	q, err := r.Admin.DescribeQuota(ctx, user)
	if err != nil {
		return fmt.Errorf("describing quota of %s: %w", user, err)
	}
	if q.ProducerByteRate != nil || q.ConsumerByteRate != nil {
		if err := r.Admin.SetQuota(ctx, user, kafka.Quota{}); err != nil {
			return fmt.Errorf("removing quota of %s: %w", user, err)
		}
		r.Audit.Record(ctx, sub, string(busv1.KindSubscription), audit.Record{Operation: audit.OpSetQuota, Resource: user, Cause: audit.CauseDeletion, Before: q})
	}
	return nil
}

// SetupWithManager registers the controller, its indexes and watches.
func (r *SubscriptionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	ctx := context.Background()
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &busv1.Subscription{}, indexTicket, func(o client.Object) []string {
		s := o.(*busv1.Subscription)
		ns, name := governance.TicketKey(s.Namespace, s.Spec.ChangeTicket)
		return []string{key(ns, name)}
	}); err != nil {
		return fmt.Errorf("indexing Subscriptions by ticket: %w", err)
	}
	if err := idx.IndexField(ctx, &busv1.Subscription{}, indexTopicRef, func(o client.Object) []string {
		s := o.(*busv1.Subscription)
		var out []string
		for _, t := range s.Spec.Topics {
			ns := t.Namespace
			if ns == "" {
				ns = s.Namespace
			}
			out = append(out, key(ns, t.Name))
		}
		return out
	}); err != nil {
		return fmt.Errorf("indexing Subscriptions by Topic: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&busv1.Subscription{}, builder.WithPredicates(specOrMetaChanged)).
		Owns(&corev1.Secret{}).
		Watches(&busv1.ChangeTicket{}, handler.EnqueueRequestsFromMapFunc(r.byIndex(indexTicket, true))).
		Watches(&busv1.Topic{}, handler.EnqueueRequestsFromMapFunc(r.byIndex(indexTopicRef, false))).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.MaxConcurrentReconciles, 1)}).
		Named("subscription").
		Complete(r)
}

// byIndex maps a ticket or Topic to the Subscriptions that reference it.
// Tickets only authorise their own namespace; Topics may be used across
// namespaces.
func (r *SubscriptionReconciler) byIndex(index string, sameNamespace bool) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		opts := []client.ListOption{client.MatchingFields{index: key(o.GetNamespace(), o.GetName())}}
		if sameNamespace {
			opts = append(opts, client.InNamespace(o.GetNamespace()))
		}
		var list busv1.SubscriptionList
		if err := r.List(ctx, &list, opts...); err != nil {
			log.FromContext(ctx).Error(err, "listing Subscriptions", "index", index)
			return nil
		}
		out := make([]reconcile.Request, 0, len(list.Items))
		for _, s := range list.Items {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: s.Namespace, Name: s.Name}})
		}
		return out
	}
}

func roleOf(s *busv1.Subscription) busv1.Role {
	if s.Spec.Role == "" {
		return busv1.RoleConsume
	}
	return s.Spec.Role
}

func toEntries(acls []kafka.ACL) []busv1.ACLEntry {
	out := make([]busv1.ACLEntry, 0, len(acls))
	for _, a := range acls {
		out = append(out, busv1.ACLEntry{ResourceType: a.ResourceType, ResourceName: a.ResourceName, PatternType: a.PatternType, Operation: a.Operation})
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func fromEntries(principal string, entries []busv1.ACLEntry) []kafka.ACL {
	out := make([]kafka.ACL, 0, len(entries))
	for _, e := range entries {
		out = append(out, kafka.ACL{Principal: principal, Host: "*", ResourceType: e.ResourceType, ResourceName: e.ResourceName, PatternType: e.PatternType, Operation: e.Operation, Permission: kafka.PermissionAllow})
	}
	return out
}

func aclStrings(acls []kafka.ACL) []string {
	out := make([]string, 0, len(acls))
	for _, a := range acls {
		out = append(out, a.String())
	}
	return out
}

func unmanagedMessage(acls []kafka.ACL) string {
	if len(acls) == 0 {
		return ""
	}
	return fmt.Sprintf("%d ACL(s) for this principal were not granted by the operator and are left alone: %s", len(acls), strings.Join(aclStrings(acls), "; "))
}

// generatePassword returns 32 random bytes, URL-safe base64: 256 bits of
// entropy, and no characters that need quoting in a JAAS config.
func generatePassword() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
