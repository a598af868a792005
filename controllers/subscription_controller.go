package controllers

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/audit"
	"github.com/hms-platform/bus-operator/internal/governance"
	"github.com/hms-platform/bus-operator/internal/kafka"
	"github.com/hms-platform/bus-operator/internal/pki"
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
	// annotationPasswordDigest is the SHA-256 of the Secret's password, as
	// the operator wrote it: a mismatch means it was edited out of band.
	annotationPasswordDigest = "bus.hms.io/password-sha256"
)

// SubscriptionReconciler issues SCRAM credentials and least-privilege ACLs.
type SubscriptionReconciler struct {
	client.Client
	// waiting holds the objects waiting for a name someone else holds.
	waiting waitlist
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
	ClientTLS bool
	ClientCA  []byte
	// ClientMTLSBootstrap is the brokers' listener that authenticates by
	// client certificate (authentication type tls); CA issues them, valid
	// for CertValidity.
	ClientMTLSBootstrap []string
	CA                  *pki.Store
	CertValidity        time.Duration
	// ClientOAuthBootstrap is the brokers' SASL/OAUTHBEARER listener
	// (authentication type serviceAccount), TLS when ClientOAuthTLS; the
	// workload's token must carry TokenAudience.
	ClientOAuthBootstrap []string
	ClientOAuthTLS       bool
	TokenAudience        string

	MaxConcurrentReconciles int

	// upserted remembers the pending Secret versions (UID/resourceVersion)
	// whose password this process has already set on the broker, for the
	// moment until the Secret is marked synced: if marking it fails (the
	// API server away), the retry only marks it and does not send, and
	// audit, the same password a second time.
	upserted sync.Map
}

// Defaults of the identity settings.
const (
	// DefaultTokenAudience is the audience a workload's projected
	// ServiceAccount token must carry for the broker to accept it.
	DefaultTokenAudience = "kafka"
	// DefaultCertValidity of issued client certificates; they are renewed
	// after two thirds of it.
	DefaultCertValidity = 30 * 24 * time.Hour
	// OpIssueCertificate audits a client certificate issued.
	OpIssueCertificate = "IssueCertificate"
	// causeRenewal: a certificate replaced before it expires.
	causeRenewal = "certificate renewal"
)

// +kubebuilder:rbac:groups=bus.hms.io,resources=subscriptions,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=bus.hms.io,resources=subscriptions/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=bus.hms.io,resources=subscriptions/finalizers,verbs=update
// +kubebuilder:rbac:groups=bus.hms.io,resources=topics,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get
// +kubebuilder:rbac:groups="",namespace=hmsbus-system,resources=configmaps,verbs=get;create;update
// The operator's own ConfigMaps in its namespace: the clients CA certificate
// and the audit chain's head.

// Reconcile brings one Subscription's credentials and grants in line.
func (r *SubscriptionReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	return reconcileShape(ctx, r.Client, r.liveReader(), req, &busv1.Subscription{}, func(s *busv1.Subscription) any { return s.Status }, r.finalize, r.reconcileSubscription)
}

// grantPlan is what a reconcile decided the broker should hold.
type grantPlan struct {
	// approved is true when the plan's state is approved: it is the
	// current spec with a ticket that allows it now, or exactly the state
	// approved before (nothing to add, only to restore or revoke).
	approved bool
	// record is true when a ticket approved a new state just now: the
	// status then records it as the approved state.
	record   bool
	specHash string
	decision governance.Decision
	// role, auth, quota, group and topics are the spec's when it is
	// approved, otherwise the last approved ones from status (narrowed to
	// grants that still hold): nothing unapproved reaches the broker.
	role           busv1.Role
	auth           busv1.AuthenticationType
	serviceAccount string
	quota          *busv1.QuotaSpec
	group          string
	topics         []busv1.GrantedTopic
	// problem explains topics withheld (missing, not allowed, not ready).
	problem *result
	// waiting explains why the current spec or state is not applied.
	waiting *result
}

func (g grantPlan) topicNames() []string {
	out := make([]string, 0, len(g.topics))
	for _, t := range g.topics {
		out = append(out, t.TopicName)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// principal is the broker principal of the plan's identity.
func (g grantPlan) principal(sub *busv1.Subscription) string {
	return busv1.PrincipalFor(sub.Namespace, sub.Name, g.auth, g.serviceAccount)
}

// mechanism is the SCRAM mechanism of a SCRAM plan, "" otherwise.
func (g grantPlan) mechanism() string { return string(g.auth.SCRAMMechanism()) }

func (r *SubscriptionReconciler) desiredACLs(sub *busv1.Subscription, g grantPlan) []kafka.ACL {
	return plan.DesiredACLs(g.principal(sub), string(g.role), g.topicNames(), g.group)
}

func (r *SubscriptionReconciler) reconcileSubscription(ctx context.Context, sub *busv1.Subscription) (reconcile.Result, error) {
	gen := sub.Generation
	conds := &sub.Status.Conditions

	if group := sub.ConsumerGroupName(); roleOf(sub) == busv1.RoleConsume && !strings.HasPrefix(group, sub.Namespace+".") {
		// The admission policy refuses this too; the operator does not rely
		// on the policy being installed.
		applyResult(conds, gen, result{reason: busv1.ReasonNotAllowed, stalled: true,
			message: fmt.Sprintf("consumer group %s does not belong to namespace %s: a group must start with %q, and no group is granted across namespaces", group, sub.Namespace, sub.Namespace+".")})
		return reconcile.Result{}, nil
	}
	g, err := r.plan(ctx, sub)
	if err != nil {
		return reconcile.Result{}, err
	}
	if g.approved {
		setCondition(conds, gen, busv1.ConditionApproved, metav1.ConditionTrue, busv1.ReasonTicketApproved, approvalMessage(sub.Status.AppliedTicket, g.decision))
	} else {
		setCondition(conds, gen, busv1.ConditionApproved, metav1.ConditionFalse, g.waiting.reason, g.waiting.message)
	}
	issued := sub.Status.Principal != ""
	if !g.approved && !issued {
		applyResult(conds, gen, result{reason: g.waiting.reason, message: "no credentials or grants are issued until the ticket allows it: " + g.waiting.message})
		return reconcile.Result{}, nil
	}
	// Claims are taken only for an approved state; an issued Subscription
	// already holds the claims of its approved state.
	if res, done, err := r.claimNames(ctx, sub, &g); done || err != nil {
		return res, err
	}
	if isPaused(sub) {
		applyResult(conds, gen, result{reason: busv1.ReasonPaused, message: pauseMessage(sub)})
		return reconcile.Result{}, nil
	}

	cause, ticket := audit.CauseApproved, g.decision.Ticket
	if !g.record {
		// Restoring or narrowing an approved state needs no new ticket:
		// the record names the ticket that approved it.
		cause, ticket = audit.CauseDrift, sub.Status.AppliedTicket
	}
	// A new identity (another authentication type or ServiceAccount) takes
	// its grants with it: the old principal's are revoked first.
	if old := sub.Status.Principal; old != "" && old != g.principal(sub) {
		if _, err := r.syncACLs(ctx, sub, old, nil, audit.CauseRevocation, ticket); err != nil {
			return r.brokerError(sub, err)
		}
		sub.Status.GrantedACLs = nil
	}
	// The ACL and quota reads do not depend on the credential step: they
	// start now and are ready when their steps need them.
	pre := r.prefetch(ctx, g.principal(sub), sub.Username(), g.auth != busv1.AuthServiceAccount)
	renewAt, res, err, done := r.syncCredentials(ctx, sub, g, cause, ticket)
	if done {
		return res, err
	}
	desired := r.desiredACLs(sub, g)
	unmanaged, err := r.syncACLsFrom(ctx, sub, g.principal(sub), desired, cause, ticket, pre.acls)
	if err != nil {
		return r.brokerError(sub, err)
	}
	if err := r.syncQuotaFrom(ctx, sub, g, cause, ticket, pre.quota); err != nil {
		return r.brokerError(sub, err)
	}

	sub.Status.Principal = g.principal(sub)
	sub.Status.Username = ""
	if g.auth != busv1.AuthServiceAccount {
		sub.Status.Username = sub.Username()
	}
	sub.Status.SecretName = sub.SecretName()
	sub.Status.Role, sub.Status.Mechanism, sub.Status.Quota = g.role, busv1.Mechanism(g.mechanism()), g.quota
	sub.Status.Authentication, sub.Status.ServiceAccountName = g.auth, g.serviceAccount
	sub.Status.ConsumerGroup = g.group
	sub.Status.GrantedTopics = g.topics
	sub.Status.Topics = g.topicNames()
	sub.Status.TopicsSummary = strings.Join(sub.Status.Topics, ",")
	sub.Status.GrantedACLs = toEntries(desired)
	if g.record {
		sub.Status.ApprovedSpecHash = g.specHash
		if g.decision.Ticket != nil {
			sub.Status.AppliedTicket = g.decision.Ticket
		}
	}
	setTransient(conds, gen, busv1.ConditionDrifted, len(unmanaged) > 0, busv1.ReasonUnmanagedACLs, unmanagedMessage(unmanaged))

	switch {
	case !g.approved:
		applyResult(conds, gen, *g.waiting)
	case g.problem != nil:
		applyResult(conds, gen, *g.problem)
	default:
		sub.Status.ObservedGeneration = gen
		applyResult(conds, gen, result{ready: true, reason: busv1.ReasonSucceeded, message: fmt.Sprintf("%s may %s %s; credentials in Secret %s", sub.Status.Principal, strings.ToLower(string(roleOf(sub))), sub.Status.TopicsSummary, sub.SecretName())})
	}
	next := r.resync()
	if !renewAt.IsZero() {
		// Wake in time to renew the client certificate.
		next = min(next, max(time.Until(renewAt), time.Second))
	}
	return r.resyncResult(next), nil
}

// plan decides the grants. The grants are exactly what an approval
// covered: the state approved before (its spec hash, and its topics by
// Topic UID and broker name, still valid now) is restored without a ticket;
// anything else the current state of the spec or of other objects would
// give (a new spec, a Topic created or recreated later, a namespace newly
// allowed) needs a ticket that allows it now. Without one, the grants
// approved before that still hold stay, and the rest waits.
func (r *SubscriptionReconciler) plan(ctx context.Context, sub *busv1.Subscription) (grantPlan, error) {
	hash, err := governance.SpecHash(sub.Spec)
	if err != nil {
		return grantPlan{}, err
	}
	g := grantPlan{specHash: hash}
	current, problem, err := r.resolveTopics(ctx, sub, specRefs(sub))
	if err != nil {
		return g, err
	}
	kept, lost, err := r.validGrants(ctx, sub, sub.Status.GrantedTopics)
	if err != nil {
		return g, err
	}
	issued := sub.Status.Principal != ""
	if issued && hash == sub.Status.ApprovedSpecHash && sameGrants(current, kept) {
		g.approved = true
		g.role, g.auth, g.serviceAccount, g.quota = roleOf(sub), sub.AuthType(), sub.ServiceAccountName(), sub.Spec.Quota
		g.group = consumerGroup(sub)
		g.topics, g.problem = current, problem
		return g, nil
	}
	d, err := decide(ctx, r.Client, r.Options, busv1.KindSubscription, sub, sub.Spec, sub.Spec.ChangeTicket, busv1.OperationApply)
	if err != nil {
		return g, err
	}
	g.decision = d
	if d.Allowed {
		g.approved, g.record = true, true
		g.role, g.auth, g.serviceAccount, g.quota = roleOf(sub), sub.AuthType(), sub.ServiceAccountName(), sub.Spec.Quota
		g.group = consumerGroup(sub)
		g.topics, g.problem = current, problem
		return g, nil
	}
	// Keep the last approved state, narrowed to the grants still true.
	g.role, g.quota, g.group = sub.Status.Role, sub.Status.Quota, sub.Status.ConsumerGroup
	g.auth, g.serviceAccount = sub.Status.Authentication, sub.Status.ServiceAccountName
	if g.role == "" {
		g.role = roleOf(sub)
	}
	if g.auth == "" {
		// Recorded before authentication types existed: SCRAM.
		g.auth = busv1.AuthSCRAMSHA512
		if sub.Status.Mechanism == busv1.MechanismSCRAMSHA256 {
			g.auth = busv1.AuthSCRAMSHA256
		}
	}
	g.topics = kept
	switch {
	case !issued:
		g.waiting = &result{reason: d.Reason, message: d.Message}
	case hash == sub.Status.ApprovedSpecHash:
		// The spec is the approved one; other objects changed what it
		// would grant.
		msg := fmt.Sprintf("granting %s needs a currently valid ticket (%s); the broker keeps the grants approved before that still hold", describeGrants(newGrants(current, kept)), d.Message)
		if len(lost) > 0 {
			msg = lost + "; " + msg
		}
		g.waiting = &result{reason: busv1.ReasonGrantNeedsTicket, message: msg}
	default:
		msg := fmt.Sprintf("the broker keeps the last approved grants (generation %d); the current spec waits: %s", sub.Status.ObservedGeneration, d.Message)
		if len(lost) > 0 {
			msg = lost + "; " + msg
		}
		g.waiting = &result{reason: d.Reason, message: msg}
	}
	return g, nil
}

func consumerGroup(sub *busv1.Subscription) string {
	if roleOf(sub) != busv1.RoleConsume {
		return ""
	}
	return sub.ConsumerGroupName()
}

func specRefs(sub *busv1.Subscription) []types.NamespacedName {
	out := make([]types.NamespacedName, 0, len(sub.Spec.Topics))
	for _, ref := range sub.Spec.Topics {
		ns := ref.Namespace
		if ns == "" {
			ns = sub.Namespace
		}
		out = append(out, types.NamespacedName{Namespace: ns, Name: ref.Name})
	}
	return out
}

// grantKey is what identifies a grant: the Topic object and the broker name
// it carried. A Topic deleted and recreated (new UID) or another broker name
// is another grant.
func grantKey(t busv1.GrantedTopic) string { return t.UID + "/" + t.TopicName }

// sameGrants reports whether two grant lists hold the same grants.
func sameGrants(a, b []busv1.GrantedTopic) bool {
	return len(newGrants(a, b)) == 0 && len(newGrants(b, a)) == 0
}

// newGrants returns the grants in a that b does not hold.
func newGrants(a, b []busv1.GrantedTopic) []busv1.GrantedTopic {
	have := map[string]bool{}
	for _, t := range b {
		have[grantKey(t)] = true
	}
	var out []busv1.GrantedTopic
	for _, t := range a {
		if !have[grantKey(t)] {
			out = append(out, t)
		}
	}
	return out
}

func describeGrants(ts []busv1.GrantedTopic) string {
	if len(ts) == 0 {
		return "these grants"
	}
	parts := make([]string, 0, len(ts))
	for _, t := range ts {
		parts = append(parts, fmt.Sprintf("topic %s (Topic %s/%s)", t.TopicName, t.Namespace, t.Name))
	}
	return strings.Join(parts, ", ")
}

// resolveTopics returns the grants the referenced Topics would give now. A
// Topic is usable once it owns its broker topic (it records the topic ID),
// allows this namespace in its approved allowedNamespaces, and is not being
// deleted; the others are withheld and explained.
func (r *SubscriptionReconciler) resolveTopics(ctx context.Context, sub *busv1.Subscription, refs []types.NamespacedName) ([]busv1.GrantedTopic, *result, error) {
	var out []busv1.GrantedTopic
	var problem *result
	note := func(reason, msg string) {
		if problem == nil {
			problem = &result{reason: reason, message: msg}
		} else {
			problem.message += "; " + msg
		}
	}
	for _, ref := range refs {
		if !r.watches(ref.Namespace) {
			note(busv1.ReasonTopicNotFound, fmt.Sprintf("Topic %s is in namespace %s, which this operator does not watch (--watch-namespaces)", ref, ref.Namespace))
			continue
		}
		t := &busv1.Topic{}
		if err := r.Get(ctx, ref, t); err != nil {
			if !apierrors.IsNotFound(err) {
				return nil, nil, fmt.Errorf("getting Topic %s: %w", ref, err)
			}
			note(busv1.ReasonTopicNotFound, fmt.Sprintf("Topic %s not found", ref))
			continue
		}
		switch {
		case !allowsNamespace(t, sub.Namespace):
			note(busv1.ReasonNotAllowed, fmt.Sprintf("Topic %s does not allow Subscriptions from namespace %s (its approved allowedNamespaces)", ref, sub.Namespace))
		case !t.DeletionTimestamp.IsZero():
			note(busv1.ReasonTopicNotReady, fmt.Sprintf("Topic %s is being deleted", ref))
		case t.Status.TopicID == "":
			// Say why, in the Topic's own words: a Topic whose ticket
			// was denied or expired will not come, and its requester
			// needs to know that here.
			msg := fmt.Sprintf("Topic %s has not been created on the broker yet", ref)
			if c := meta.FindStatusCondition(t.Status.Conditions, busv1.ConditionReady); c != nil && c.Status == metav1.ConditionFalse && c.Reason != "" {
				msg += fmt.Sprintf(" (%s: %s)", c.Reason, c.Message)
			}
			note(busv1.ReasonTopicNotReady, msg)
		default:
			out = append(out, busv1.GrantedTopic{Namespace: t.Namespace, Name: t.Name, UID: string(t.UID), TopicName: t.Status.TopicName, TopicID: t.Status.TopicID})
		}
	}
	slices.SortFunc(out, func(a, b busv1.GrantedTopic) int {
		return strings.Compare(a.TopicName+"/"+a.UID, b.TopicName+"/"+b.UID)
	})
	return out, problem, nil
}

// validGrants returns the recorded grants that still hold: the same Topic
// object (UID) still names the same broker topic, owns it, still allows
// this namespace and is not being deleted. lost explains the others, which
// are revoked: revoking needs no ticket.
func (r *SubscriptionReconciler) validGrants(ctx context.Context, sub *busv1.Subscription, recorded []busv1.GrantedTopic) (kept []busv1.GrantedTopic, lost string, err error) {
	var why []string
	for _, g := range recorded {
		t := &busv1.Topic{}
		err := r.Get(ctx, types.NamespacedName{Namespace: g.Namespace, Name: g.Name}, t)
		switch {
		case apierrors.IsNotFound(err):
			why = append(why, fmt.Sprintf("Topic %s/%s was deleted", g.Namespace, g.Name))
			continue
		case err != nil:
			return nil, "", fmt.Errorf("getting Topic %s/%s: %w", g.Namespace, g.Name, err)
		}
		switch {
		case string(t.UID) != g.UID:
			why = append(why, fmt.Sprintf("Topic %s/%s was deleted and recreated", g.Namespace, g.Name))
		case t.Status.TopicName != g.TopicName || t.Status.TopicID == "":
			why = append(why, fmt.Sprintf("Topic %s/%s no longer holds broker topic %s", g.Namespace, g.Name, g.TopicName))
		case !allowsNamespace(t, sub.Namespace):
			why = append(why, fmt.Sprintf("Topic %s/%s no longer allows namespace %s", g.Namespace, g.Name, sub.Namespace))
		case !t.DeletionTimestamp.IsZero():
			why = append(why, fmt.Sprintf("Topic %s/%s is being deleted", g.Namespace, g.Name))
		default:
			// The same Topic object keeps its grant when it recreates its
			// own broker topic: only the claim's owner can create it.
			g.TopicID = t.Status.TopicID
			kept = append(kept, g)
			continue
		}
	}
	if len(why) > 0 {
		lost = "grants revoked: " + strings.Join(why, "; ")
	}
	return kept, lost, nil
}

// allowsNamespace judges by the Topic's approved allowedNamespaces (its
// status), never by an edit of its spec still waiting for a ticket.
func allowsNamespace(t *busv1.Topic, ns string) bool {
	allowed := t.Status.AllowedNamespaces
	return t.Namespace == ns || slices.Contains(allowed, ns) || slices.Contains(allowed, "*")
}

// claimNames makes sure the Subscription holds the names it writes under:
// its credentials Secret and, for a consumer, its consumer group. done is
// true when the reconcile must stop (a name is someone else's).
func (r *SubscriptionReconciler) claimNames(ctx context.Context, sub *busv1.Subscription, g *grantPlan) (reconcile.Result, bool, error) {
	k := r.claims()
	// The two names are claimed at once: each claim is an API round trip,
	// and both belong to this approved Subscription either way.
	var group claimOutcome
	var groupErr error
	var wg sync.WaitGroup
	if g.group != "" {
		wg.Go(func() { group, groupErr = k.claim(ctx, busv1.ClaimConsumerGroup, g.group, busv1.KindSubscription, sub) })
	}
	secret, err := k.claim(ctx, busv1.ClaimCredentialsSecret, sub.Namespace+"/"+sub.SecretName(), busv1.KindSubscription, sub)
	wg.Wait()
	if err == nil {
		err = groupErr
	}
	if err != nil {
		return reconcile.Result{}, true, err
	}
	if !secret.owned {
		applyResult(&sub.Status.Conditions, sub.Generation, result{reason: busv1.ReasonConflict, stalled: true,
			message: fmt.Sprintf("Secret name %s is claimed by %s for its credentials; choose another spec.credentials.secretName", sub.SecretName(), secret.holder())})
		return reconcile.Result{}, true, nil
	}
	if g.group != "" {
		if !group.owned {
			if sub.Status.Principal == "" {
				applyResult(&sub.Status.Conditions, sub.Generation, result{reason: busv1.ReasonConflict, stalled: true,
					message: fmt.Sprintf("consumer group %s is claimed by %s: members of a group share its offsets and split its events, so each group belongs to one Subscription; set another spec.consumerGroup (starting with %q)", g.group, group.holder(), sub.Namespace+".")})
				return reconcile.Result{}, true, nil
			}
			// An issued Subscription that lost its group (its claim was
			// removed by hand and taken) loses the group's ACL with it.
			g.group = ""
			g.problem = &result{reason: busv1.ReasonConflict, stalled: true,
				message: fmt.Sprintf("consumer group %s is claimed by %s; this Subscription's grant on it was revoked", sub.ConsumerGroupName(), group.holder())}
		}
	}
	// A consumer that became a producer gives its group back once approved.
	if g.approved && g.group == "" && sub.Status.ConsumerGroup != "" && roleOf(sub) == busv1.RoleProduce {
		if err := k.release(ctx, busv1.ClaimConsumerGroup, sub.Status.ConsumerGroup, sub); err != nil {
			return reconcile.Result{}, true, err
		}
	}
	return reconcile.Result{}, false, nil
}

func (r *SubscriptionReconciler) claims() claims {
	return claims{c: r.Client, live: r.liveReader(), waiting: &r.waiting}
}

// syncCredentials writes the Secret, then, for SCRAM, the broker's
// credential. A SCRAM credential the operator made earlier and no longer
// wants (another mechanism, or another authentication type) is deleted: it
// would still let the old password in. renewAt is when a client
// certificate must be renewed (zero for other types); done is true when the
// reconcile must stop here.
func (r *SubscriptionReconciler) syncCredentials(ctx context.Context, sub *busv1.Subscription, g grantPlan, cause string, ticket *busv1.AppliedTicket) (renewAt time.Time, res reconcile.Result, err error, done bool) {
	stall := func(reason string, err error) (time.Time, reconcile.Result, error, bool) {
		var stalled *stalledError
		if errors.As(err, &stalled) {
			applyResult(&sub.Status.Conditions, sub.Generation, result{reason: reason, message: stalled.msg, stalled: true})
			// A foreign Secret or SCRAM user is outside what the operator
			// watches: look again at the resync to notice it is gone.
			return time.Time{}, r.resyncResult(0), nil, true
		}
		return time.Time{}, reconcile.Result{}, err, true
	}
	brokerFailed := func(err error) (time.Time, reconcile.Result, error, bool) {
		res, err := r.brokerError(sub, err)
		return time.Time{}, res, err, true
	}
	if msg := r.authUnavailable(g.auth); msg != "" {
		return stall(busv1.ReasonAuthUnavailable, &stalledError{msg})
	}
	if g.auth == busv1.AuthServiceAccount {
		if err := r.checkServiceAccount(ctx, sub.Namespace, g.serviceAccount); err != nil {
			var stalled *stalledError
			if errors.As(err, &stalled) {
				applyResult(&sub.Status.Conditions, sub.Generation, result{reason: busv1.ReasonServiceAccountNotFound, message: stalled.msg})
				return time.Time{}, r.resyncResult(0), nil, true
			}
			return time.Time{}, reconcile.Result{}, err, true
		}
	}
	user, mech := sub.Username(), g.mechanism()
	have, err := r.Admin.SCRAMMechanisms(ctx, user)
	if err != nil {
		return brokerFailed(err)
	}
	if mech != "" {
		if err := r.guardForeignUser(ctx, sub, len(have[user]) > 0); err != nil {
			return stall(busv1.ReasonConflict, err)
		}
	}
	secret, issued, err := r.ensureSecret(ctx, sub, g, len(have[user]) > 0)
	if err != nil {
		return stall(busv1.ReasonConflict, err)
	}
	pending := secret.Annotations[annotationBrokerSync] == "pending"
	confirmInterrupted(ctx, r.Audit, sub, func(u audit.Unfinished) bool { return credentialWriteHolds(u, user, have[user], pending) })
	version := string(secret.UID) + "/" + secret.ResourceVersion
	if _, sent := r.upserted.Load(version); sent && pending && slices.Contains(have[user], mech) {
		// This Secret version's password is on the broker already; only
		// the marker is left to clear.
		pending = false
		if err := r.clearPending(ctx, secret, version); err != nil {
			return time.Time{}, reconcile.Result{}, err, true
		}
	}
	if mech != "" && (pending || !slices.Contains(have[user], mech)) {
		rec := audit.Record{Operation: audit.OpUpsertCredential, Resource: user, Cause: cause, Ticket: ticket,
			After: map[string]any{"mechanism": mech, "secret": secret.Name, "passwordChanged": pending || issued.why != issueNone}}
		switch issued.why {
		case issueRotation:
			rec.Cause = audit.CauseRotation
		case issueTampered:
			rec.Cause, rec.Ticket = audit.CauseDrift, sub.Status.AppliedTicket
			rec.After = map[string]any{"mechanism": mech, "secret": secret.Name, "passwordChanged": true, "reason": "the Secret's password was changed or its marker removed out of band; a new password was issued"}
		}
		if err := audited(ctx, r.Audit, sub, busv1.KindSubscription, rec, func() (any, error) {
			return nil, r.Admin.UpsertSCRAM(ctx, user, mech, string(secret.Data[bus.SecretKeyPassword]))
		}); err != nil {
			return brokerFailed(err)
		}
		if pending {
			r.upserted.Store(version, struct{}{})
			if err := r.clearPending(ctx, secret, version); err != nil {
				return time.Time{}, reconcile.Result{}, err, true
			}
		}
	}
	if issued.cert != nil {
		r.recordCertificate(ctx, sub, secret, issued, cause, ticket)
	}
	// Only SCRAM credentials the operator made are removed: this
	// Subscription's user (it has issued credentials, or holds the Secret
	// written before the broker).
	if len(have[user]) > 0 && (sub.Status.Username != "" || mech != "") {
		for _, old := range have[user] {
			if old == mech {
				continue
			}
			rec := audit.Record{Operation: audit.OpDeleteCredential, Resource: user, Cause: cause, Ticket: ticket, Before: map[string]any{"mechanism": old}}
			if err := audited(ctx, r.Audit, sub, busv1.KindSubscription, rec, func() (any, error) {
				return nil, r.Admin.DeleteSCRAM(ctx, user, old)
			}); err != nil {
				return brokerFailed(err)
			}
		}
	}
	sub.Status.CredentialsRotation = secret.Annotations[annotationRotation]
	sub.Status.SecretUID = string(secret.UID)
	switch {
	case mech == "":
		sub.Status.PasswordChangedAt = nil
	case pending || issued.why != issueNone || sub.Status.PasswordChangedAt == nil:
		// A new password (new Secret, lost Secret or rotation) is always
		// pending.
		now := metav1.NewTime(r.now().UTC().Truncate(time.Second))
		sub.Status.PasswordChangedAt = &now
	}
	sub.Status.Certificate = nil
	if cert := issued.current; cert != nil {
		sub.Status.Certificate = &busv1.CertificateStatus{
			Subject: cert.Subject.String(), SerialNumber: cert.SerialNumber.Text(16),
			NotAfter: ptr.To(metav1.NewTime(cert.NotAfter.UTC())), RenewAt: ptr.To(metav1.NewTime(pki.RenewAt(cert).UTC().Truncate(time.Second))),
		}
		renewAt = pki.RenewAt(cert)
	}
	return renewAt, reconcile.Result{}, nil, false
}

// clearPending marks the Secret's password as set on the broker.
func (r *SubscriptionReconciler) clearPending(ctx context.Context, secret *corev1.Secret, version string) error {
	delete(secret.Annotations, annotationBrokerSync)
	if err := r.Update(ctx, secret); err != nil {
		return fmt.Errorf("marking Secret %s synced: %w", secret.Name, err)
	}
	r.upserted.Delete(version)
	return nil
}

// authUnavailable says why the operator cannot serve an authentication
// type with its configuration, or "".
func (r *SubscriptionReconciler) authUnavailable(auth busv1.AuthenticationType) string {
	switch auth {
	case busv1.AuthTLS:
		if r.CA == nil {
			return "authentication type tls needs a clients CA: the operator runs without one (--clients-ca-secret)"
		}
		if len(r.ClientMTLSBootstrap) == 0 {
			return "authentication type tls needs the brokers' client-certificate listener: start the operator with --client-tls-bootstrap"
		}
	case busv1.AuthServiceAccount:
		if len(r.ClientOAuthBootstrap) == 0 {
			return "authentication type serviceAccount needs the brokers' OAUTHBEARER listener: start the operator with --client-oauth-bootstrap"
		}
	}
	return ""
}

// checkServiceAccount makes sure the ServiceAccount exists: tokens of a
// ServiceAccount that does not exist cannot be issued, and granting its
// principal would wait for whoever creates it later.
func (r *SubscriptionReconciler) checkServiceAccount(ctx context.Context, ns, name string) error {
	err := r.liveReader().Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &corev1.ServiceAccount{})
	switch {
	case apierrors.IsNotFound(err):
		return &stalledError{fmt.Sprintf("ServiceAccount %s/%s not found: create it, then the workload authenticates with its token (audience %q)", ns, name, r.tokenAudience())}
	case err != nil:
		return fmt.Errorf("getting ServiceAccount %s/%s: %w", ns, name, err)
	}
	return nil
}

func (r *SubscriptionReconciler) tokenAudience() string {
	if r.TokenAudience != "" {
		return r.TokenAudience
	}
	return DefaultTokenAudience
}

// recordCertificate audits a newly issued client certificate: not a
// broker change, but a credential that will open the broker.
func (r *SubscriptionReconciler) recordCertificate(ctx context.Context, sub *busv1.Subscription, secret *corev1.Secret, issued issuedMaterial, cause string, ticket *busv1.AppliedTicket) {
	rec := audit.Record{Operation: OpIssueCertificate, Resource: issued.cert.Subject.String(), Cause: cause, Ticket: ticket,
		After: map[string]any{"serialNumber": issued.cert.SerialNumber.Text(16), "notAfter": issued.cert.NotAfter.UTC(), "issuer": issued.cert.Issuer.String(), "secret": secret.Name}}
	switch issued.why {
	case issueRotation:
		rec.Cause = audit.CauseRotation
	case issueRenewal:
		rec.Cause, rec.Ticket = causeRenewal, sub.Status.AppliedTicket
	case issueTampered:
		rec.Cause, rec.Ticket = audit.CauseDrift, sub.Status.AppliedTicket
	}
	r.Audit.Record(ctx, sub, string(busv1.KindSubscription), rec)
}

// guardForeignUser refuses to take over a SCRAM user the operator did not
// create. The operator's users always have its Secret (written before the
// broker) or a recorded status.username; a user with neither was made by
// someone else, and overwriting its password would lock its owner out.
func (r *SubscriptionReconciler) guardForeignUser(ctx context.Context, sub *busv1.Subscription, userExists bool) error {
	if !userExists || sub.Status.Username != "" {
		return nil
	}
	live := &corev1.Secret{}
	err := r.liveReader().Get(ctx, types.NamespacedName{Namespace: sub.Namespace, Name: sub.SecretName()}, live)
	switch {
	case err == nil && metav1.IsControlledBy(live, sub):
		return nil
	case err != nil && !apierrors.IsNotFound(err):
		return fmt.Errorf("getting Secret %s: %w", sub.SecretName(), err)
	}
	return &stalledError{fmt.Sprintf("SCRAM user %s already exists on the broker and was not created by this operator; it is left untouched (remove it, or rename this Subscription)", sub.Username())}
}

func (r *SubscriptionReconciler) liveReader() client.Reader {
	if r.APIReader != nil {
		return r.APIReader
	}
	return r.Client
}

type stalledError struct{ msg string }

func (e *stalledError) Error() string { return e.msg }

// issueReason says why new credential material was issued.
type issueReason int

const (
	issueNone issueReason = iota
	issueNew
	issueRotation
	issueTampered
	// issueRenewal: a client certificate reached its renewal time.
	issueRenewal
)

// issuedMaterial is what ensureSecret did with the credential material.
type issuedMaterial struct {
	why issueReason
	// cert is the client certificate issued just now, if any; current is
	// the one the Secret holds after the call (tls only).
	cert, current *x509.Certificate
}

// passwordDigest is the SHA-256 of a password, kept as an annotation on the
// Secret that holds the password itself (so it reveals nothing to anyone
// who cannot already read the password). It tells the operator that the
// password was edited out of band: then a new one is issued, since the
// broker does not know the edited one and it may be known to others.
func passwordDigest(pw []byte) string {
	sum := sha256.Sum256(pw)
	return hex.EncodeToString(sum[:])
}

// ensureSecret creates the credentials Secret, or repairs it: whatever was
// changed out of band in it (labels, annotations, owner reference, data) is
// put back. New material is issued when the Secret is new, lost, asked to
// rotate, edited out of band, or (a certificate) due for renewal. A new
// SCRAM password marks the Secret pending until the broker has it; a
// certificate needs nothing on the broker (it trusts the CA).
//
// Ownership is decided by UID: the operator records the UID of the Secret
// it created, so a Secret of that name that someone else made (before, or
// after deleting the operator's) is never written to, whatever its owner
// references say.
func (r *SubscriptionReconciler) ensureSecret(ctx context.Context, sub *busv1.Subscription, g grantPlan, userExists bool) (*corev1.Secret, issuedMaterial, error) {
	// A Subscription that never had a Secret goes straight to creating it
	// when the cache has none; an AlreadyExists answer sends it round again
	// with the API server's view.
	live := sub.Status.SecretUID != ""
	for attempt := 0; ; attempt++ {
		secret, out, err := r.ensureSecretOnce(ctx, sub, g, userExists, live)
		if !errors.Is(err, errSecretAppeared) || attempt > 0 {
			return secret, out, err
		}
		live = true
	}
}

// errSecretAppeared: the Secret did not exist when read, but creating it
// found one.
var errSecretAppeared = errors.New("the Secret appeared meanwhile")

func (r *SubscriptionReconciler) ensureSecretOnce(ctx context.Context, sub *busv1.Subscription, g grantPlan, userExists, live bool) (*corev1.Secret, issuedMaterial, error) {
	var out issuedMaterial
	name := sub.SecretName()
	secret, exists, err := r.currentSecret(ctx, sub.Namespace, name, live)
	if err != nil {
		return nil, out, err
	}
	adopted := false
	if exists && sub.Status.SecretUID == "" {
		// The cached Subscription may predate the status write that
		// recorded the Secret: ask the API server before concluding the
		// Secret is unrecorded (adopting it would issue a new password).
		live := &busv1.Subscription{}
		if err := r.liveReader().Get(ctx, client.ObjectKeyFromObject(sub), live); err != nil {
			return nil, out, fmt.Errorf("reading Subscription %s: %w", sub.Name, err)
		}
		if live.UID == sub.UID {
			sub.Status.SecretUID = live.Status.SecretUID
		}
	}
	if exists {
		switch {
		case sub.Status.SecretUID != "" && string(secret.UID) == sub.Status.SecretUID:
		case sub.Status.SecretUID == "" && metav1.IsControlledBy(secret, sub):
			// Written by this operator for this Subscription just before a
			// restart lost the status that records it. Adopting it issues
			// new material, so nothing chosen by whoever else could have
			// written it survives.
			adopted = true
		default:
			return nil, out, &stalledError{foreignSecretMessage(sub, secret)}
		}
	}
	request := sub.Annotations[busv1.AnnotationRotate]
	rotate := request != "" && request != secret.Annotations[annotationRotation]
	creds := bus.Credentials{Topics: g.topicNames(), ConsumerGroup: g.group, CACert: r.ClientCA}
	switch g.auth {
	case busv1.AuthTLS:
		if err := r.clientCertificate(ctx, sub, secret, exists && !adopted, rotate, &creds, &out); err != nil {
			return nil, out, err
		}
	case busv1.AuthServiceAccount:
		creds.Bootstrap, creds.TLS = r.ClientOAuthBootstrap, r.ClientOAuthTLS
		creds.Mechanism, creds.TokenFile, creds.TokenAudience = bus.MechanismOAuthBearer, bus.DefaultTokenFile, r.tokenAudience()
	default:
		password := secret.Data[bus.SecretKeyPassword]
		switch {
		case !exists || len(password) == 0 || adopted:
			out.why = issueNew
		case rotate:
			out.why = issueRotation
		case secret.Annotations[annotationPasswordDigest] != passwordDigest(password):
			out.why = issueTampered
		}
		if out.why != issueNone {
			pw, err := generatePassword()
			if err != nil {
				return nil, out, err
			}
			password = []byte(pw)
		}
		creds.Bootstrap, creds.TLS = r.ClientBootstrap, r.ClientTLS
		creds.Mechanism, creds.Username, creds.Password = g.mechanism(), sub.Username(), string(password)
	}
	if !creds.TLS {
		// The brokers' CA goes only with a TLS listener: clients read a
		// ca.crt as "speak TLS", which a plaintext listener refuses.
		creds.CACert = nil
	}
	desired := secret.DeepCopy()
	delete(desired.Annotations, annotationCachedDataDigest) // the cache's, never written
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
	delete(desired.Annotations, annotationPasswordDigest)
	delete(desired.Annotations, annotationBrokerSync)
	if creds.Password != "" {
		desired.Annotations[annotationPasswordDigest] = passwordDigest([]byte(creds.Password))
		// A new password for a user the broker already has must reach it
		// even after a crash: mark it pending until it does. For a user the
		// broker does not have yet, its absence says the same.
		if out.why != issueNone && userExists {
			desired.Annotations[annotationBrokerSync] = "pending"
		} else if out.why == issueNone && secret.Annotations[annotationBrokerSync] != "" {
			desired.Annotations[annotationBrokerSync] = secret.Annotations[annotationBrokerSync]
		}
	}
	if request != "" {
		desired.Annotations[annotationRotation] = request
	}
	// Another controller reference put on our Secret would make it follow
	// someone else's lifecycle: only the Subscription controls it.
	desired.OwnerReferences = slices.DeleteFunc(desired.OwnerReferences, func(o metav1.OwnerReference) bool {
		return o.Controller != nil && *o.Controller && o.UID != sub.UID
	})
	if err := controllerutil.SetControllerReference(sub, desired, r.Scheme()); err != nil {
		return nil, out, fmt.Errorf("owning Secret %s: %w", name, err)
	}
	switch {
	case !exists:
		if err := r.Create(ctx, desired); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return nil, out, fmt.Errorf("creating Secret %s: %w", name, errSecretAppeared)
			}
			return nil, out, fmt.Errorf("creating Secret %s: %w", name, err)
		}
		log.FromContext(ctx).Info("created credentials Secret", "secret", name)
	case secret.Type != desired.Type:
		// A Secret's type cannot change; one of another type is not ours.
		return nil, out, &stalledError{foreignSecretMessage(sub, secret)}
	case !sameSecretData(secret, desired.Data) || !equality.Semantic.DeepEqual(withoutCacheAnnotation(secret.Annotations), desired.Annotations) ||
		!equality.Semantic.DeepEqual(secret.Labels, desired.Labels) || !equality.Semantic.DeepEqual(secret.OwnerReferences, desired.OwnerReferences):
		if err := r.Update(ctx, desired); err != nil {
			return nil, out, fmt.Errorf("updating Secret %s: %w", name, err)
		}
		if out.why == issueTampered || tamperedMeta(secret, sub, creds.Password != "") {
			log.FromContext(ctx).Info("repaired credentials Secret changed out of band", "secret", name, "newMaterial", out.why == issueTampered)
			r.Events.Eventf(sub, nil, corev1.EventTypeWarning, "SecretRepaired", "Reconcile", "Secret %s was changed out of band and was repaired%s", name, map[bool]string{true: "; new credentials were issued", false: ""}[out.why == issueTampered])
		}
	}
	return desired, out, nil
}

// clientCertificate keeps the Secret's client certificate, or issues a new
// one when there is none, when rotation is asked, when it is due for
// renewal, or when what the Secret holds is not a certificate of the
// clients CA for this Subscription with its own key (edited out of band).
func (r *SubscriptionReconciler) clientCertificate(ctx context.Context, sub *busv1.Subscription, secret *corev1.Secret, keep, rotate bool, creds *bus.Credentials, out *issuedMaterial) error {
	ca, err := r.CA.CA(ctx)
	if err != nil {
		return err
	}
	now := r.now()
	certPEM, keyPEM := secret.Data[bus.SecretKeyCert], secret.Data[bus.SecretKeyKey]
	cn := sub.Username()
	current, verr := ca.Verify(certPEM, keyPEM, now)
	switch {
	case !keep || len(certPEM) == 0:
		out.why = issueNew
	case rotate:
		out.why = issueRotation
	case verr != nil || current.Subject.CommonName != cn:
		out.why = issueTampered
	case !now.Before(pki.RenewAt(current)):
		out.why = issueRenewal
	}
	if out.why != issueNone {
		if certPEM, keyPEM, err = ca.IssueClient(cn, r.certValidity(), now); err != nil {
			return err
		}
		if current, err = pki.ParseCertificate(certPEM); err != nil {
			return err
		}
		out.cert = current
	}
	out.current = current
	creds.Bootstrap, creds.TLS, creds.Username = r.ClientMTLSBootstrap, true, cn
	creds.CertPEM, creds.KeyPEM = certPEM, keyPEM
	return nil
}

func (r *SubscriptionReconciler) certValidity() time.Duration {
	if r.CertValidity > 0 {
		return r.CertValidity
	}
	return DefaultCertValidity
}

// tamperedMeta reports whether the operator's label, owner reference or
// password marker was missing from a Secret it owns.
func tamperedMeta(have *corev1.Secret, sub *busv1.Subscription, password bool) bool {
	return have.Labels[LabelManagedBy] != ManagedByValue || !metav1.IsControlledBy(have, sub) ||
		(password && have.Annotations[annotationPasswordDigest] == "")
}

func foreignSecretMessage(sub *busv1.Subscription, s *corev1.Secret) string {
	advice := "delete it (the operator then issues fresh credentials) or set spec.credentials.secretName"
	if sub.Spec.Credentials != nil && sub.Spec.Credentials.SecretName != "" {
		advice = "delete it (the operator then issues fresh credentials) or choose another spec.credentials.secretName"
	}
	return fmt.Sprintf("Secret %s exists but was not created by the operator for this Subscription (UID %s); it is left untouched: %s", s.Name, s.UID, advice)
}

// currentSecret reads the credentials Secret. The cache holds only Secrets
// labelled as the operator's, so when live is set a Secret the cache lacks
// (its label removed, or made by someone else) is read from the API server.
func (r *SubscriptionReconciler) currentSecret(ctx context.Context, ns, name string, live bool) (*corev1.Secret, bool, error) {
	secret := &corev1.Secret{}
	err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, secret)
	if apierrors.IsNotFound(err) && live {
		err = r.liveReader().Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, secret)
		// Only the cache's own copy carries a digest the operator made
		// (TrimCachedSecret); on a Secret read from the API server the
		// annotation is whatever someone wrote, and is not believed.
		delete(secret.Annotations, annotationCachedDataDigest)
	}
	switch {
	case apierrors.IsNotFound(err):
		return &corev1.Secret{}, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("getting Secret %s: %w", name, err)
	}
	return secret, true, nil
}

// syncACLs applies the ACL diff and returns ACLs for the principal that
// the operator did not grant (reported, never touched).
func (r *SubscriptionReconciler) syncACLs(ctx context.Context, sub *busv1.Subscription, principal string, desired []kafka.ACL, cause string, ticket *busv1.AppliedTicket) ([]kafka.ACL, error) {
	return r.syncACLsFrom(ctx, sub, principal, desired, cause, ticket, func() ([]kafka.ACL, error) { return r.Admin.DescribeACLs(ctx, principal) })
}

// prefetched holds reads started ahead of the steps that use them.
type prefetched struct {
	acls  func() ([]kafka.ACL, error)
	quota func() (kafka.Quota, error)
}

// prefetch starts the ACL and (for a user with quotas) quota reads of a
// reconcile concurrently; each result is waited for only by its step.
func (r *SubscriptionReconciler) prefetch(ctx context.Context, principal, user string, quota bool) prefetched {
	type aclResult struct {
		acls []kafka.ACL
		err  error
	}
	type quotaResult struct {
		q   kafka.Quota
		err error
	}
	ac := make(chan aclResult, 1)
	go func() {
		acls, err := r.Admin.DescribeACLs(ctx, principal)
		ac <- aclResult{acls, err}
	}()
	qc := make(chan quotaResult, 1)
	if quota {
		go func() {
			q, err := r.Admin.DescribeQuota(ctx, user)
			qc <- quotaResult{q, err}
		}()
	} else {
		qc <- quotaResult{}
	}
	return prefetched{
		acls:  sync.OnceValues(func() ([]kafka.ACL, error) { res := <-ac; return res.acls, res.err }),
		quota: sync.OnceValues(func() (kafka.Quota, error) { res := <-qc; return res.q, res.err }),
	}
}

// syncACLsFrom is syncACLs with the broker's ACLs of the principal read by
// describe.
func (r *SubscriptionReconciler) syncACLsFrom(ctx context.Context, sub *busv1.Subscription, principal string, desired []kafka.ACL, cause string, ticket *busv1.AppliedTicket, describe func() ([]kafka.ACL, error)) ([]kafka.ACL, error) {
	// The adapter's errors name the operation; they are passed on as they
	// are, so a message says it once.
	observed, err := describe()
	if err != nil {
		return nil, err
	}
	confirmInterrupted(ctx, r.Audit, sub, func(u audit.Unfinished) bool { return aclWriteHolds(u, principal, observed) })
	// What this Subscription recorded is only its own if its recorded
	// principal is this one.
	var owned []kafka.ACL
	if sub.Status.Principal == "" || sub.Status.Principal == principal {
		owned = fromEntries(principal, sub.Status.GrantedACLs)
	}
	// Subscriptions naming one ServiceAccount share its principal: what the
	// others were granted is neither revoked nor reported here.
	shared, err := r.siblingACLs(ctx, sub, principal)
	if err != nil {
		return nil, err
	}
	d := plan.DiffACLs(desired, observed, owned)
	d.Delete = slices.DeleteFunc(d.Delete, func(a kafka.ACL) bool { return shared[a] })
	d.Unmanaged = slices.DeleteFunc(d.Unmanaged, func(a kafka.ACL) bool { return shared[a] })
	if len(d.Create) > 0 {
		rec := audit.Record{Operation: audit.OpCreateACL, Resource: principal, Cause: cause, Ticket: ticket, After: aclStrings(d.Create)}
		if err := audited(ctx, r.Audit, sub, busv1.KindSubscription, rec, func() (any, error) {
			return nil, r.Admin.CreateACLs(ctx, d.Create)
		}); err != nil {
			return nil, err
		}
	}
	if len(d.Delete) > 0 {
		revocation := audit.CauseRevocation
		if cause == audit.CauseDeletion {
			revocation = cause
		}
		rec := audit.Record{Operation: audit.OpDeleteACL, Resource: principal, Cause: revocation, Ticket: ticket, Before: aclStrings(d.Delete)}
		if err := audited(ctx, r.Audit, sub, busv1.KindSubscription, rec, func() (any, error) {
			return nil, r.Admin.DeleteACLs(ctx, d.Delete)
		}); err != nil {
			return nil, err
		}
	}
	if len(d.Unmanaged) > 0 {
		r.Events.Eventf(sub, nil, corev1.EventTypeWarning, busv1.ReasonUnmanagedACLs, "Reconcile", "%s", unmanagedMessage(d.Unmanaged))
	}
	return d.Unmanaged, nil
}

// siblingACLs are the ACLs other Subscriptions of the namespace granted to
// the same principal (only a ServiceAccount principal can be shared).
func (r *SubscriptionReconciler) siblingACLs(ctx context.Context, sub *busv1.Subscription, principal string) (map[kafka.ACL]bool, error) {
	if !sharedPrincipal(principal) {
		return nil, nil
	}
	var list busv1.SubscriptionList
	if err := r.List(ctx, &list, client.InNamespace(sub.Namespace)); err != nil {
		return nil, fmt.Errorf("listing Subscriptions sharing %s: %w", principal, err)
	}
	out := map[kafka.ACL]bool{}
	for i := range list.Items {
		o := &list.Items[i]
		if o.UID == sub.UID || o.Status.Principal != principal {
			continue
		}
		for _, a := range fromEntries(principal, o.Status.GrantedACLs) {
			out[a] = true
		}
	}
	return out, nil
}

// syncQuota sets or clears the client quota of the plan's user. Quotas
// apply to SCRAM and certificate identities (<namespace>.<name>); a
// ServiceAccount's principal may be shared, so it carries none (the CRD
// refuses a quota there).
func (r *SubscriptionReconciler) syncQuotaFrom(ctx context.Context, sub *busv1.Subscription, g grantPlan, cause string, ticket *busv1.AppliedTicket, describe func() (kafka.Quota, error)) error {
	if g.auth == busv1.AuthServiceAccount {
		return nil
	}
	want := kafka.Quota{}
	if q := g.quota; q != nil {
		want = kafka.Quota{ProducerByteRate: q.ProducerByteRate, ConsumerByteRate: q.ConsumerByteRate}
	}
	user := sub.Username()
	have, err := describe()
	if err != nil {
		return err
	}
	confirmInterrupted(ctx, r.Audit, sub, func(u audit.Unfinished) bool { return quotaWriteHolds(u, user, have) })
	if equality.Semantic.DeepEqual(have, want) {
		return nil
	}
	rec := audit.Record{Operation: audit.OpSetQuota, Resource: user, Cause: cause, Ticket: ticket, Before: have, After: want}
	return audited(ctx, r.Audit, sub, busv1.KindSubscription, rec, func() (any, error) { return nil, r.Admin.SetQuota(ctx, user, want) })
}

func (r *SubscriptionReconciler) brokerError(sub *busv1.Subscription, err error) (reconcile.Result, error) {
	if kafka.IsRejected(err) {
		applyResult(&sub.Status.Conditions, sub.Generation, result{reason: busv1.ReasonBrokerRejected, message: err.Error(), stalled: true})
		r.Events.Eventf(sub, nil, corev1.EventTypeWarning, busv1.ReasonBrokerRejected, "Reconcile", "%s", err.Error())
		return reconcile.Result{}, reconcile.TerminalError(explained(err))
	}
	applyResult(&sub.Status.Conditions, sub.Generation, result{reason: unavailableReason(err), message: err.Error(), reconciling: true})
	return reconcile.Result{}, explained(err)
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
	if sub.Status.Principal != "" && !isPaused(sub) {
		if err := r.revoke(ctx, sub); err != nil {
			return r.brokerError(sub, err)
		}
	}
	// The Secret and the names go before the finalizer: whoever claims the
	// names next must find them free, not a Secret waiting for the garbage
	// collector.
	if err := r.deleteOwnSecret(ctx, sub); err != nil {
		return reconcile.Result{}, err
	}
	k := r.claims()
	if err := k.release(ctx, busv1.ClaimCredentialsSecret, sub.Namespace+"/"+sub.SecretName(), sub); err != nil {
		return reconcile.Result{}, err
	}
	for _, group := range slices.Compact([]string{sub.Status.ConsumerGroup, consumerGroup(sub)}) {
		if group == "" {
			continue
		}
		if err := k.release(ctx, busv1.ClaimConsumerGroup, group, sub); err != nil {
			return reconcile.Result{}, err
		}
	}
	controllerutil.RemoveFinalizer(sub, busv1.Finalizer)
	if err := r.Update(ctx, sub); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(fmt.Errorf("removing finalizer: %w", err))
	}
	return reconcile.Result{}, nil
}

// deleteOwnSecret deletes the credentials Secret the operator created for
// this Subscription (by UID: a Secret someone else made is left alone).
func (r *SubscriptionReconciler) deleteOwnSecret(ctx context.Context, sub *busv1.Subscription) error {
	secret, exists, err := r.currentSecret(ctx, sub.Namespace, sub.SecretName(), true)
	if err != nil || !exists {
		return err
	}
	if string(secret.UID) != sub.Status.SecretUID && (sub.Status.SecretUID != "" || !metav1.IsControlledBy(secret, sub)) {
		return nil
	}
	uid := secret.UID
	if err := r.Delete(ctx, secret, client.Preconditions{UID: &uid}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting Secret %s: %w", secret.Name, err)
	}
	return nil
}

func (r *SubscriptionReconciler) revoke(ctx context.Context, sub *busv1.Subscription) error {
	if _, err := r.syncACLs(ctx, sub, sub.Status.Principal, nil, audit.CauseDeletion, nil); err != nil {
		return err
	}
	user := sub.Status.Username
	if user == "" {
		return nil // a ServiceAccount identity: nothing but ACLs to revoke
	}
	have, err := r.Admin.SCRAMMechanisms(ctx, user)
	if err != nil {
		return err
	}
	confirmInterrupted(ctx, r.Audit, sub, func(u audit.Unfinished) bool { return credentialWriteHolds(u, user, have[user], false) })
	for _, mech := range have[user] {
		rec := audit.Record{Operation: audit.OpDeleteCredential, Resource: user, Cause: audit.CauseDeletion, Before: map[string]any{"mechanism": mech}}
		if err := audited(ctx, r.Audit, sub, busv1.KindSubscription, rec, func() (any, error) { return nil, r.Admin.DeleteSCRAM(ctx, user, mech) }); err != nil {
			return err
		}
	}
	q, err := r.Admin.DescribeQuota(ctx, user)
	if err != nil {
		return err
	}
	confirmInterrupted(ctx, r.Audit, sub, func(u audit.Unfinished) bool { return quotaWriteHolds(u, user, q) })
	if q.ProducerByteRate != nil || q.ConsumerByteRate != nil {
		rec := audit.Record{Operation: audit.OpSetQuota, Resource: user, Cause: audit.CauseDeletion, Before: q}
		if err := audited(ctx, r.Audit, sub, busv1.KindSubscription, rec, func() (any, error) { return nil, r.Admin.SetQuota(ctx, user, kafka.Quota{}) }); err != nil {
			return err
		}
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
		// Only what others do to the Secret wakes its Subscription: the
		// operator's own create, and its update that only clears the
		// pending mark, would each cost a second reconcile with all its
		// broker reads.
		Owns(&corev1.Secret{}, builder.WithPredicates(notOwnSecretWrite)).
		// A released claim wakes the Subscriptions waiting for the name.
		Watches(&busv1.NameClaim{}, handler.EnqueueRequestsFromMapFunc(wakeWaiters(&r.waiting, busv1.ClaimConsumerGroup, busv1.ClaimCredentialsSecret))).
		// Subscriptions sharing a ServiceAccount principal judge the ACLs
		// they find by each other's recorded grants: a sibling recording
		// (or dropping) grants wakes the others, so none reports them as
		// unmanaged for a whole resync.
		Watches(&busv1.Subscription{}, handler.EnqueueRequestsFromMapFunc(r.principalSiblings), builder.WithPredicates(sharedGrantsChanged)).
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

// notOwnSecretWrite drops the Secret events the operator causes itself in
// the normal course: its create, and the update that only removes the
// pending mark once the broker has the password. Deletions and every other
// change (an edit, a label removed, which the label-filtered cache sees as a
// deletion) still wake the owner to repair it.
var notOwnSecretWrite = predicate.Funcs{
	CreateFunc: func(event.CreateEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld.(*corev1.Secret), e.ObjectNew.(*corev1.Secret)
		if o.Annotations[annotationBrokerSync] == "" || n.Annotations[annotationBrokerSync] != "" {
			return true
		}
		// Only the pending mark went away?
		oa := maps.Clone(o.Annotations)
		delete(oa, annotationBrokerSync)
		return !equality.Semantic.DeepEqual(oa, n.Annotations) || !equality.Semantic.DeepEqual(o.Data, n.Data) ||
			!equality.Semantic.DeepEqual(o.Labels, n.Labels) || !equality.Semantic.DeepEqual(o.OwnerReferences, n.OwnerReferences)
	},
}

// sharedGrantsChanged lets through changes of the grants recorded for a
// ServiceAccount principal, which other Subscriptions may share.
var sharedGrantsChanged = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld.(*busv1.Subscription), e.ObjectNew.(*busv1.Subscription)
		return (sharedPrincipal(o.Status.Principal) || sharedPrincipal(n.Status.Principal)) &&
			(o.Status.Principal != n.Status.Principal || !equality.Semantic.DeepEqual(o.Status.GrantedACLs, n.Status.GrantedACLs))
	},
	DeleteFunc: func(e event.DeleteEvent) bool {
		s, ok := e.Object.(*busv1.Subscription)
		return ok && sharedPrincipal(s.Status.Principal)
	},
}

func sharedPrincipal(p string) bool { return strings.HasPrefix(p, "User:system:serviceaccount:") }

// principalSiblings maps a Subscription to the others of its namespace with
// the same principal.
func (r *SubscriptionReconciler) principalSiblings(ctx context.Context, o client.Object) []reconcile.Request {
	sub := o.(*busv1.Subscription)
	var list busv1.SubscriptionList
	if err := r.List(ctx, &list, client.InNamespace(sub.Namespace)); err != nil {
		log.FromContext(ctx).Error(err, "listing Subscriptions sharing a principal")
		return nil
	}
	var out []reconcile.Request
	for _, s := range list.Items {
		if s.UID != sub.UID && s.Status.Principal == sub.Status.Principal {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: s.Namespace, Name: s.Name}})
		}
	}
	return out
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
