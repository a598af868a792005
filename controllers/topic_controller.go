package controllers

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
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
	ctrl "sigs.k8s.io/controller-runtime"
)

// TopicReconciler turns approved Topics into broker topics and keeps them
// in the last approved state.
type TopicReconciler struct {
	client.Client
	// waiting holds the objects waiting for a name someone else holds.
	waiting waitlist
	// APIReader reads around the cache, to judge claims and their owners
	// from the API server itself.
	APIReader client.Reader
	Admin     kafka.Admin
	Audit     *audit.Recorder
	Events    events.EventRecorder
	Options
	// MaxConcurrentReconciles lets many Topics wait on the broker at once,
	// which is what lets the adapter batch their requests.
	MaxConcurrentReconciles int
}

// +kubebuilder:rbac:groups=bus.hms.io,resources=topics,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=bus.hms.io,resources=topics/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=bus.hms.io,resources=topics/finalizers,verbs=update
// +kubebuilder:rbac:groups=bus.hms.io,resources=changetickets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one Topic's broker topic to its last approved state.
func (r *TopicReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	return reconcileShape(ctx, r.Client, r.liveReader(), req, &busv1.Topic{}, func(t *busv1.Topic) any { return t.Status }, r.finalize, r.reconcileTopic)
}

func (r *TopicReconciler) reconcileTopic(ctx context.Context, topic *busv1.Topic) (reconcile.Result, error) {
	gen := topic.Generation
	conds := &topic.Status.Conditions
	name := topic.BrokerTopicName()

	// Decide what the broker should hold: the spec when it is approved
	// (or is the spec approved before), otherwise the last approved state.
	target, decision, approved, err := r.target(ctx, topic)
	if err != nil {
		return reconcile.Result{}, err
	}
	if approved {
		setCondition(conds, gen, busv1.ConditionApproved, metav1.ConditionTrue, busv1.ReasonTicketApproved, approvalMessage(topic.Status.AppliedTicket, decision))
	} else {
		setCondition(conds, gen, busv1.ConditionApproved, metav1.ConditionFalse, decision.Reason, decision.Message)
	}

	if reason := r.reservedName(name); reason != "" {
		applyResult(conds, gen, result{reason: busv1.ReasonNotAllowed, message: reason, stalled: true})
		return reconcile.Result{}, nil
	}
	if target == nil {
		// Not approved, never applied: claim nothing, so an unapproved
		// Topic can never keep an approved one from its name.
		applyResult(conds, gen, result{reason: decision.Reason, message: "nothing is created on the broker until the ticket allows it: " + decision.Message + r.claimNote(ctx, topic)})
		return reconcile.Result{}, nil
	}
	claim, err := r.claims().claim(ctx, busv1.ClaimBrokerTopic, name, busv1.KindTopic, topic)
	if err != nil {
		return reconcile.Result{}, err
	}
	if !claim.owned {
		// Whatever this Topic recorded before is not its own: it holds no
		// ID of the winner's topic, so it can never alter or delete it.
		forgetBrokerTopic(topic)
		msg := fmt.Sprintf("broker topic %s is claimed by %s (%s); this Topic changes nothing on the broker and takes the name over only when that Topic is deleted", name, claim.holder(), r.ownerState(ctx, claim.claim))
		applyResult(conds, gen, result{reason: busv1.ReasonConflict, message: msg, stalled: true})
		return reconcile.Result{}, nil
	}
	if topic.Status.ClaimedAt == nil {
		at := claim.claim.CreationTimestamp
		topic.Status.ClaimedAt = &at
	}
	if isPaused(topic) {
		applyResult(conds, gen, result{reason: busv1.ReasonPaused, message: pauseMessage(topic)})
		return reconcile.Result{}, nil
	}

	observed, err := r.Admin.DescribeTopics(ctx, name)
	if err != nil {
		return r.brokerError(topic, err)
	}
	current, exists := observed[name]
	var cur *kafka.Topic
	if exists {
		cur = &current
	}
	confirmInterrupted(ctx, r.Audit, topic, func(u audit.Unfinished) bool { return topicWriteHolds(u, name, cur) })
	p := plan.PlanTopic(*target, cur)
	if p.ReplicationMismatch {
		msg := fmt.Sprintf("broker topic %s has replication factor %d but the spec asks for %d; changing it needs partition reassignment, which this operator does not do", name, cur.ReplicationFactor, target.ReplicationFactor)
		applyResult(conds, gen, result{reason: busv1.ReasonBrokerRejected, message: msg, stalled: true})
		return reconcile.Result{}, nil
	}
	cause, ticket := audit.CauseApproved, decision.Ticket
	if decision.Ticket == nil {
		// Restoring the approved state needs no new ticket: the record
		// names the ticket that approved it.
		cause, ticket = audit.CauseDrift, topic.Status.AppliedTicket
	}
	after, err := r.apply(ctx, topic, p, cur, target, cause, ticket)
	if err != nil {
		return r.brokerError(topic, err)
	}

	topic.Status.TopicName = name
	topic.Status.TopicID = after.ID
	topic.Status.Partitions = after.Partitions
	topic.Status.ReplicationFactor = after.ReplicationFactor
	topic.Status.Config = maps.Clone(after.Configs)
	if len(topic.Status.Config) == 0 {
		topic.Status.Config = nil
	}
	drift := ""
	if p.ExtraPartitions > 0 {
		drift = fmt.Sprintf("broker topic %s has %d partitions, %d more than approved; Kafka cannot remove partitions, so they stay (raise spec.partitions to %d to acknowledge)", name, after.Partitions, p.ExtraPartitions, after.Partitions)
	}
	setTransient(conds, gen, busv1.ConditionDrifted, drift != "", busv1.ReasonPartitionsAdded, drift)

	if !approved {
		applyResult(conds, gen, result{reason: decision.Reason, message: fmt.Sprintf("the broker keeps the last approved state (generation %d); the current spec waits: %s", topic.Status.ObservedGeneration, decision.Message)})
		return r.resyncResult(0), nil
	}
	if decision.Ticket != nil {
		topic.Status.AppliedTicket = decision.Ticket
		topic.Status.ApprovedSpecHash = decision.SpecHash
	}
	topic.Status.AllowedNamespaces = topic.Spec.AllowedNamespaces
	topic.Status.ObservedGeneration = gen
	applyResult(conds, gen, result{ready: true, reason: busv1.ReasonSucceeded, message: fmt.Sprintf("topic %s: %d partitions, replication factor %d, %d config overrides", name, after.Partitions, after.ReplicationFactor, len(after.Configs))})
	return r.resyncResult(0), nil
}

// forgetBrokerTopic clears what a Topic recorded of a broker topic it does
// not own.
func forgetBrokerTopic(t *busv1.Topic) {
	t.Status.TopicName, t.Status.TopicID = "", ""
	t.Status.Partitions, t.Status.ReplicationFactor = 0, 0
	t.Status.Config, t.Status.AllowedNamespaces = nil, nil
	t.Status.ClaimedAt, t.Status.ApprovedSpecHash, t.Status.AppliedTicket = nil, "", nil
	meta.RemoveStatusCondition(&t.Status.Conditions, busv1.ConditionDrifted)
}

// claimNote tells an unapproved Topic whether its broker name is already
// taken, so its requester learns it before asking for a review.
func (r *TopicReconciler) claimNote(ctx context.Context, topic *busv1.Topic) string {
	held, err := r.claims().held(ctx, busv1.ClaimBrokerTopic, topic.BrokerTopicName(), topic)
	if err != nil || held.claim == nil || held.owned {
		return ""
	}
	return fmt.Sprintf("; note that broker topic %s is claimed by %s", topic.BrokerTopicName(), held.holder())
}

// ownerState says what the claim's owner holds on the broker, in words.
func (r *TopicReconciler) ownerState(ctx context.Context, nc *busv1.NameClaim) string {
	if nc == nil {
		return "unknown owner"
	}
	owner := &busv1.Topic{}
	err := r.Get(ctx, types.NamespacedName{Namespace: nc.Spec.Owner.Namespace, Name: nc.Spec.Owner.Name}, owner)
	switch {
	case err != nil || string(owner.UID) != nc.Spec.Owner.UID:
		return "its owner is going away"
	case owner.Status.TopicID != "":
		return "it holds topic ID " + owner.Status.TopicID
	}
	return "nothing exists on the broker for it yet"
}

func (r *TopicReconciler) claims() claims {
	return claims{c: r.Client, live: r.liveReader(), waiting: &r.waiting}
}

func (r *TopicReconciler) liveReader() client.Reader {
	if r.APIReader != nil {
		return r.APIReader
	}
	return r.Client
}

// target returns the state the broker should hold, or nil when nothing may
// be created yet. The spec approved before (same hash) needs no ticket:
// repairing drift restores what was approved. Anything else needs a ticket
// that allows it now.
func (r *TopicReconciler) target(ctx context.Context, topic *busv1.Topic) (*plan.TopicTarget, governance.Decision, bool, error) {
	applied := topic.Status.TopicID != ""
	hash, err := governance.SpecHash(topic.Spec)
	if err != nil {
		return nil, governance.Decision{}, false, err
	}
	if applied && topic.Status.ApprovedSpecHash == hash {
		return specTarget(topic), governance.Decision{SpecHash: hash}, true, nil
	}
	d, err := decide(ctx, r.Client, r.Options, busv1.KindTopic, topic, topic.Spec, topic.Spec.ChangeTicket, busv1.OperationApply)
	if err != nil {
		return nil, d, false, err
	}
	switch {
	case d.Allowed:
		return specTarget(topic), d, true, nil
	case applied:
		return &plan.TopicTarget{
			Name:              topic.Status.TopicName,
			Partitions:        topic.Status.Partitions,
			ReplicationFactor: ptrValue(topic.Spec.ReplicationFactor),
			Configs:           topic.Status.Config,
		}, d, false, nil
	}
	return nil, d, false, nil
}

func specTarget(t *busv1.Topic) *plan.TopicTarget {
	return &plan.TopicTarget{Name: t.BrokerTopicName(), Partitions: t.Spec.Partitions, ReplicationFactor: ptrValue(t.Spec.ReplicationFactor), Configs: t.Spec.Configs()}
}

// apply performs the plan's writes in order, each one behind its audit
// intent (see audited). It returns the topic as it now stands on the broker.
func (r *TopicReconciler) apply(ctx context.Context, topic *busv1.Topic, p plan.TopicPlan, cur *kafka.Topic, target *plan.TopicTarget, cause string, ticket *busv1.AppliedTicket) (kafka.Topic, error) {
	name := target.Name
	record := func(op string, before, after any) audit.Record {
		return audit.Record{Operation: op, Resource: name, Cause: cause, Ticket: ticket, Before: before, After: after}
	}
	if p.Create != nil {
		want := map[string]any{"partitions": p.Create.Partitions, "replicationFactor": p.Create.ReplicationFactor, "config": p.Create.Configs}
		var created kafka.Topic
		err := audited(ctx, r.Audit, topic, busv1.KindTopic, record(audit.OpCreateTopic, nil, want), func() (any, error) {
			// The adapter's errors name the operation ("creating topic
			// X"); they are returned as they are, so messages say it once.
			var err error
			if created, err = r.Admin.CreateTopic(ctx, *p.Create); err != nil {
				return nil, err
			}
			return topicView(created), nil
		})
		if err != nil {
			return kafka.Topic{}, err
		}
		log.FromContext(ctx).Info("created broker topic", "topic", name, "partitions", created.Partitions)
		return created, nil
	}
	after := *cur
	after.Configs = maps.Clone(cur.Configs)
	if p.Partitions > 0 {
		rec := record(audit.OpAddPartitions, map[string]int32{"partitions": cur.Partitions}, map[string]int32{"partitions": p.Partitions})
		if err := audited(ctx, r.Audit, topic, busv1.KindTopic, rec, func() (any, error) {
			return nil, r.Admin.SetPartitions(ctx, name, p.Partitions)
		}); err != nil {
			return kafka.Topic{}, err
		}
		after.Partitions = p.Partitions
	}
	if p.Alter != nil {
		changed := map[string]any{}
		for k, v := range p.Alter.Set {
			changed[k] = v
		}
		for _, k := range p.Alter.Delete {
			changed[k] = nil // back to the broker default
		}
		rec := record(audit.OpAlterTopicConfig, pick(cur.Configs, slices.Collect(maps.Keys(changed))), changed)
		if err := audited(ctx, r.Audit, topic, busv1.KindTopic, rec, func() (any, error) {
			return nil, r.Admin.AlterTopicConfig(ctx, name, *p.Alter)
		}); err != nil {
			return kafka.Topic{}, err
		}
		after.Configs = maps.Clone(target.Configs)
	}
	return after, nil
}

// brokerError turns a broker failure into status: a rejection is Stalled
// with the broker's own words and is not retried until the spec changes; an
// unreachable broker backs off and retries.
func (r *TopicReconciler) brokerError(topic *busv1.Topic, err error) (reconcile.Result, error) {
	gen := topic.Generation
	if kafka.IsRejected(err) {
		msg := err.Error()
		if kafka.DependsOnCluster(err) {
			msg += fmt.Sprintf("; asked again every %s, since the cluster's brokers decide it", clusterRecheck)
		}
		applyResult(&topic.Status.Conditions, gen, result{reason: busv1.ReasonBrokerRejected, message: msg, stalled: true})
		r.Events.Eventf(topic, nil, corev1.EventTypeWarning, busv1.ReasonBrokerRejected, "Reconcile", "%s", err.Error())
		if kafka.DependsOnCluster(err) {
			return reconcile.Result{RequeueAfter: clusterRecheck}, nil
		}
		return reconcile.Result{}, reconcile.TerminalError(explained(err))
	}
	applyResult(&topic.Status.Conditions, gen, result{reason: unavailableReason(err), message: err.Error(), reconciling: true})
	return reconcile.Result{}, explained(err)
}

// clusterRecheck is how often a request the cluster refused for its
// current state (a replication factor its live brokers cannot hold) is
// asked again.
const clusterRecheck = 30 * time.Second

// reservedName refuses the audit topic and Kafka's internal topics: a Topic
// managing them could grant others write access to the audit trail.
func (r *TopicReconciler) reservedName(name string) string {
	switch {
	case r.AuditTopic != "" && name == r.AuditTopic:
		return fmt.Sprintf("%s is the operator's audit topic; only the operator may manage and write it", name)
	case strings.HasPrefix(name, "__"):
		return fmt.Sprintf("%s is a Kafka internal topic name (prefix __) and cannot be managed", name)
	}
	return ""
}

// finalize releases the Topic. Broker data is deleted only with
// deletionPolicy Delete and a ticket covering Delete; a paused Topic, a
// Retain policy or a Topic that never owned a broker topic is released
// without touching the broker, so namespace deletion never hangs on it.
func (r *TopicReconciler) finalize(ctx context.Context, topic *busv1.Topic) (reconcile.Result, error) {
	if !controllerutil.ContainsFinalizer(topic, busv1.Finalizer) {
		return reconcile.Result{}, nil
	}
	name := topic.Status.TopicName
	// Only the claim's owner records the broker topic's ID; a conflicting
	// Topic never does, so it can never delete the winner's data. The claim
	// is checked again, in case it was taken away by hand.
	owned := topic.Status.TopicID != ""
	if owned {
		held, err := r.claims().held(ctx, busv1.ClaimBrokerTopic, topic.BrokerTopicName(), topic)
		if err != nil {
			return reconcile.Result{}, err
		}
		owned = held.owned
	}
	if topic.Spec.DeletionPolicy == busv1.DeletionDelete && owned && !isPaused(topic) {
		d, err := decide(ctx, r.Client, r.Options, busv1.KindTopic, topic, topic.Spec, topic.Spec.ChangeTicket, busv1.OperationDelete)
		if err != nil {
			return reconcile.Result{}, err
		}
		if !d.Allowed {
			msg := fmt.Sprintf("deleting broker topic %s needs a ChangeTicket covering Topic %s with operation Delete (%s); or set deletionPolicy: Retain to keep the data and release this Topic", name, topic.Name, d.Message)
			applyResult(&topic.Status.Conditions, topic.Generation, result{reason: d.Reason, message: msg})
			return reconcile.Result{}, nil
		}
		if err := r.deleteOwned(ctx, topic, d.Ticket); err != nil {
			return r.brokerError(topic, err)
		}
	}
	// The name is free for the next approved claimant only once this Topic
	// is done with the broker.
	if err := r.claims().release(ctx, busv1.ClaimBrokerTopic, topic.BrokerTopicName(), topic); err != nil {
		return reconcile.Result{}, err
	}
	controllerutil.RemoveFinalizer(topic, busv1.Finalizer)
	if err := r.Update(ctx, topic); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(fmt.Errorf("removing finalizer: %w", err))
	}
	return reconcile.Result{}, nil
}

// deleteOwned deletes the broker topic only if it is the very topic this
// object created (same topic ID): a topic recreated by someone else under
// the same name is not ours to delete.
func (r *TopicReconciler) deleteOwned(ctx context.Context, topic *busv1.Topic, ticket *busv1.AppliedTicket) error {
	name := topic.Status.TopicName
	observed, err := r.Admin.DescribeTopics(ctx, name)
	if err != nil {
		return err
	}
	cur, ok := observed[name]
	if !ok || cur.ID != topic.Status.TopicID {
		// Gone (perhaps by a delete this object's last operator sent
		// before it was killed): settle that delete's record.
		confirmInterrupted(ctx, r.Audit, topic, func(u audit.Unfinished) bool {
			return !ok && u.Operation == audit.OpDeleteTopic && topicWriteHolds(u, name, nil)
		})
		return nil
	}
	rec := audit.Record{Operation: audit.OpDeleteTopic, Resource: name, Cause: audit.CauseDeletion, Ticket: ticket, Before: topicView(cur)}
	return audited(ctx, r.Audit, topic, busv1.KindTopic, rec, func() (any, error) { return nil, r.Admin.DeleteTopic(ctx, name) })
}

// SetupWithManager registers the controller, its indexes and watches.
func (r *TopicReconciler) SetupWithManager(mgr ctrl.Manager) error {
	ctx := context.Background()
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &busv1.Topic{}, indexTicket, func(o client.Object) []string {
		t := o.(*busv1.Topic)
		ns, name := governance.TicketKey(t.Namespace, t.Spec.ChangeTicket)
		return []string{key(ns, name)}
	}); err != nil {
		return fmt.Errorf("indexing Topics by ticket: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&busv1.Topic{}, builder.WithPredicates(specOrMetaChanged)).
		Watches(&busv1.ChangeTicket{}, handler.EnqueueRequestsFromMapFunc(r.topicsForTicket)).
		// A released claim wakes the Topics that want the name; a new one
		// tells waiting unapproved Topics who holds it.
		Watches(&busv1.NameClaim{}, handler.EnqueueRequestsFromMapFunc(wakeWaiters(&r.waiting, busv1.ClaimBrokerTopic))).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.MaxConcurrentReconciles, 1)}).
		Named("topic").
		Complete(r)
}

func (r *TopicReconciler) topicsForTicket(ctx context.Context, o client.Object) []reconcile.Request {
	var list busv1.TopicList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{indexTicket: key(o.GetNamespace(), o.GetName())}); err != nil {
		log.FromContext(ctx).Error(err, "listing Topics for ticket", "ticket", o.GetName())
		return nil
	}
	return requestsFor(list.Items)
}

func requestsFor(items []busv1.Topic) []reconcile.Request {
	out := make([]reconcile.Request, 0, len(items))
	for _, t := range items {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: t.Namespace, Name: t.Name}})
	}
	return out
}

// approvalMessage names the ticket behind the broker state. It reads the
// same before and after the spec is applied, so applying it costs no
// second status write.
func approvalMessage(applied *busv1.AppliedTicket, d governance.Decision) string {
	t := applied
	if d.Allowed {
		t = d.Ticket
	}
	if t == nil {
		return "current spec was applied"
	}
	return fmt.Sprintf("authorised by ChangeTicket %s (%s), approved by %s", t.Name, t.Reference, strings.Join(t.ApprovedBy, ", "))
}

// topicView is what audit records show of a topic.
func topicView(t kafka.Topic) map[string]any {
	return map[string]any{"topicID": t.ID, "partitions": t.Partitions, "replicationFactor": t.ReplicationFactor, "config": t.Configs}
}

func pick(m map[string]string, keys []string) map[string]any {
	out := map[string]any{}
	for _, k := range keys {
		if v, ok := m[k]; ok {
			out[k] = v
		} else {
			out[k] = nil
		}
	}
	return out
}

func ptrValue(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}
