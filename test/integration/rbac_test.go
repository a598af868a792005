package integration

import (
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/cel/openapi/resolver"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
)

func TestRequesterPersona(t *testing.T) {
	ns := env.NamespaceT(t, "rq")
	ctx := testContext(t)
	c := as(t, alice)
	mustSucceed(t, c.Create(ctx, newTopic(ns, "fee-updated")), "requester creating a Topic")
	mustSucceed(t, c.Create(ctx, newSubscription(ns, "payments")), "requester creating a Subscription")
	mustSucceed(t, c.List(ctx, &busv1.ChangeTicketList{}, client.InNamespace(ns)), "requester listing tickets")

	tk := newTicket(ns, "chg-1", alice)
	mustSucceed(t, c.Create(ctx, tk), "requester creating a ticket")
	wantForbidden(t, approveAs(t, alice, bob, tk), `User "alice" cannot update resource "changetickets/status"`)
	wantForbidden(t, c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "payments-bus-credentials"}, &corev1.Secret{}),
		`User "alice" cannot get resource "secrets"`)
}

func TestReviewerPersona(t *testing.T) {
	ns := env.NamespaceT(t, "rv")
	ctx := testContext(t)
	c := as(t, bob)
	mustSucceed(t, c.List(ctx, &busv1.TopicList{}, client.InNamespace(ns)), "reviewer listing Topics")
	mustSucceed(t, c.List(ctx, &busv1.SubscriptionList{}), "reviewer listing Subscriptions cluster-wide")
	wantForbidden(t, c.Create(ctx, newTopic(ns, "fee-updated")), `User "bob" cannot create resource "topics"`)
	wantForbidden(t, c.Create(ctx, newTicket(ns, "chg-1", bob)), `User "bob" cannot create resource "changetickets"`)
}

func TestAuditorPersona(t *testing.T) {
	ns := env.NamespaceT(t, "au")
	ctx := testContext(t)
	c := as(t, erin)
	mustSucceed(t, c.List(ctx, &busv1.ChangeTicketList{}), "auditor listing tickets cluster-wide")
	mustSucceed(t, c.List(ctx, &corev1.EventList{}, client.InNamespace(ns)), "auditor listing Events")
	wantForbidden(t, c.Create(ctx, newTicket(ns, "chg-1", erin)), `User "erin" cannot create resource "changetickets"`)
	wantForbidden(t, c.Create(ctx, newTopic(ns, "fee-updated")), `User "erin" cannot create resource "topics"`)

	tk := createTicket(t, alice)
	wantForbidden(t, approveAs(t, erin, erin, tk), `User "erin" cannot update resource "changetickets/status"`)
}

// Type-check the policies against the CRD schemas as the
// kube-controller-manager's policy status controller does (envtest runs no
// controller manager, so status.typeChecking is never filled in here). A
// warning means an expression can never work as written. The checker skips
// rules on subresources, so they are checked as the main resource, which
// has the same object schema.
func TestPoliciesTypeCheckCleanly(t *testing.T) {
	disco, err := discovery.NewDiscoveryClientForConfig(env.Config)
	mustSucceed(t, err, "creating discovery client")
	checker := &validating.TypeChecker{
		SchemaResolver: &resolver.ClientDiscoveryResolver{Discovery: disco},
		RestMapper:     env.Client.RESTMapper(),
	}
	for _, name := range []string{"hmsbus-ticket-requester", "hmsbus-ticket-review"} {
		p := &admissionregistrationv1.ValidatingAdmissionPolicy{}
		mustSucceed(t, env.Client.Get(testContext(t), client.ObjectKey{Name: name}, p), "reading policy "+name)
		for i, rule := range p.Spec.MatchConstraints.ResourceRules {
			for j, r := range rule.Resources {
				p.Spec.MatchConstraints.ResourceRules[i].Resources[j], _, _ = strings.Cut(r, "/")
			}
		}
		// Canary: the checker resolves schemas silently or not at all, so
		// prove it sees this policy's kinds by breaking a copy.
		broken := p.DeepCopy()
		broken.Spec.Validations[0].Expression = "object.spec.noSuchField == ''"
		if len(checker.Check(broken)) == 0 {
			t.Fatalf("policy %s: the type checker did not resolve the ChangeTicket schema", name)
		}
		for _, w := range checker.Check(p) {
			t.Errorf("policy %s: %s: %s", name, w.FieldRef, w.Warning)
		}
	}
}
