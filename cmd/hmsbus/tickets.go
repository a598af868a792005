package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/governance"
)

type listFlags struct {
	all bool
}

func (f *listFlags) namespace(current string) string {
	if f.all {
		return ""
	}
	return current
}

func (a *app) ticketsCmd() *cobra.Command {
	f := &listFlags{}
	cmd := &cobra.Command{
		Use:   "tickets",
		Short: "List ChangeTickets, and what each pending one would change",
		Long: `List ChangeTickets with their state, approvals, requester and change window.
For each pending ticket, show what it would change on the broker: for every
object it covers, the difference between the object's spec and what its
status says the broker holds.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ns, err := a.kube.connect()
			if err != nil {
				return err
			}
			v, err := loadTicketView(cmd.Context(), c, f.namespace(ns))
			if err != nil {
				return err
			}
			return renderTickets(a.out, v, time.Now(), f.all)
		},
	}
	cmd.Flags().BoolVarP(&f.all, "all-namespaces", "A", false, "list in every namespace")
	return cmd
}

// ticketView is what `tickets` shows, read with a few List calls.
type ticketView struct {
	tickets []busv1.ChangeTicket
	topics  map[client.ObjectKey]*busv1.Topic
	subs    map[client.ObjectKey]*busv1.Subscription
}

// loadTicketView lists tickets, Topics and Subscriptions in ns ("" for
// all), then fetches Topics in other namespaces that covered Subscriptions
// reference, so their broker names can be shown.
func loadTicketView(ctx context.Context, c client.Client, ns string) (*ticketView, error) {
	var tickets busv1.ChangeTicketList
	var topics busv1.TopicList
	var subs busv1.SubscriptionList
	for what, list := range map[string]client.ObjectList{"ChangeTickets": &tickets, "Topics": &topics, "Subscriptions": &subs} {
		if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
			return nil, fmt.Errorf("listing %s: %w", what, err)
		}
	}
	v := &ticketView{tickets: tickets.Items, topics: map[client.ObjectKey]*busv1.Topic{}, subs: map[client.ObjectKey]*busv1.Subscription{}}
	for i := range topics.Items {
		v.topics[client.ObjectKeyFromObject(&topics.Items[i])] = &topics.Items[i]
	}
	for i := range subs.Items {
		v.subs[client.ObjectKeyFromObject(&subs.Items[i])] = &subs.Items[i]
	}
	for _, s := range v.subs {
		for _, ref := range s.Spec.Topics {
			key := topicKey(s.Namespace, ref)
			if _, ok := v.topics[key]; ok {
				continue
			}
			var tp busv1.Topic
			err := c.Get(ctx, key, &tp)
			switch {
			case err == nil:
				v.topics[key] = &tp
			case apierrors.IsNotFound(err), apierrors.IsForbidden(err):
				// Shown as not found: the diff is all the user can act on.
			default:
				return nil, fmt.Errorf("reading Topic %s: %w", key, err)
			}
		}
	}
	slices.SortFunc(v.tickets, func(a, b busv1.ChangeTicket) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return v, nil
}

func topicKey(subNamespace string, ref busv1.TopicReference) client.ObjectKey {
	ns := ref.Namespace
	if ns == "" {
		ns = subNamespace
	}
	return client.ObjectKey{Namespace: ns, Name: ref.Name}
}

// renderTickets writes the ticket table, then the pending changes.
func renderTickets(w io.Writer, v *ticketView, now time.Time, showNS bool) error {
	// Rendered in memory, written once: one error to check, no half table.
	var b bytes.Buffer
	if len(v.tickets) == 0 {
		b.WriteString("No ChangeTickets found.\n")
	} else {
		ticketTable(&b, v.tickets, now, showNS)
		pendingChanges(&b, v, now)
		editedSinceApproval(&b, v, now)
	}
	_, err := w.Write(b.Bytes())
	return err
}

func ticketTable(b *bytes.Buffer, tickets []busv1.ChangeTicket, now time.Time, showNS bool) {
	tw := tabwriter.NewWriter(b, 0, 4, 2, ' ', 0)
	header := "NAME\tREFERENCE\tSTATE\tAPPROVALS\tREQUESTER\tEXPIRES\tSUMMARY"
	if showNS {
		header = "NAMESPACE\t" + header
	}
	_, _ = fmt.Fprintln(tw, header)
	for i := range tickets {
		t := &tickets[i]
		row := fmt.Sprintf("%s\t%s\t%s\t%d/%d\t%s\t%s\t%s", t.Name, t.Spec.Reference, ticketState(t, now),
			approvalsCounted(t), requiredApprovals(t), t.Spec.RequestedBy, formatExpiry(ticketExpiry(t), now), t.Spec.Summary)
		if showNS {
			row = t.Namespace + "\t" + row
		}
		_, _ = fmt.Fprintln(tw, row)
	}
	// Writes into a bytes.Buffer cannot fail.
	_ = tw.Flush()
}

func pendingChanges(b *bytes.Buffer, v *ticketView, now time.Time) {
	for i := range v.tickets {
		t := &v.tickets[i]
		if ticketState(t, now) != busv1.TicketPending {
			continue
		}
		fmt.Fprintf(b, "\n%s/%s (%s) would change:\n", t.Namespace, t.Name, t.Spec.Reference)
		for _, line := range coveredChanges(t, v) {
			b.WriteString("  " + line + "\n")
		}
	}
}

// editedSinceApproval lists, for approved tickets, the covered objects that
// the approvals do not approve as they are now: edited after a reviewer (or
// the operator, for an approval without pins) pinned their spec, or created
// after the approval. They wait for a new ticket (reasons
// SpecChangedSinceApproval and NotReviewed), and the requester should know.
func editedSinceApproval(b *bytes.Buffer, v *ticketView, now time.Time) {
	for i := range v.tickets {
		t := &v.tickets[i]
		if ticketState(t, now) != busv1.TicketApproved {
			continue
		}
		var edited, unreviewed []string
		for _, c := range t.Spec.Covers {
			key := client.ObjectKey{Namespace: t.Namespace, Name: c.Name}
			var spec any
			var uid string
			switch {
			case c.Kind == busv1.KindTopic && v.topics[key] != nil:
				spec, uid = v.topics[key].Spec, string(v.topics[key].UID)
			case c.Kind == busv1.KindSubscription && v.subs[key] != nil:
				spec, uid = v.subs[key].Spec, string(v.subs[key].UID)
			default:
				continue
			}
			hash, err := governance.SpecHash(spec)
			if err != nil {
				continue
			}
			switch pinState(t, c, hash, uid) {
			case pinOther:
				edited = append(edited, fmt.Sprintf("%s %s", c.Kind, c.Name))
			case pinMissing:
				unreviewed = append(unreviewed, fmt.Sprintf("%s %s", c.Kind, c.Name))
			}
		}
		if len(edited) > 0 {
			fmt.Fprintf(b, "\n%s/%s (%s) is approved, but these were edited after their spec was pinned by the approval; they wait for a new ticket:\n", t.Namespace, t.Name, t.Spec.Reference)
			for _, e := range edited {
				b.WriteString("  " + e + "\n")
			}
		}
		if len(unreviewed) > 0 {
			fmt.Fprintf(b, "\n%s/%s (%s) is approved, but these did not exist when it was approved, so no reviewer saw them; they need a new review:\n", t.Namespace, t.Name, t.Spec.Reference)
			for _, e := range unreviewed {
				b.WriteString("  " + e + "\n")
			}
		}
	}
}

// What the approvals of a ticket pinned of one covered object.
const (
	pinNone    = iota // nothing pinned yet (an approval the operator has not pinned)
	pinSame           // an approval pinned this very spec
	pinOther          // approvals pinned another spec only
	pinMissing        // approvals pinned other objects, not this one
)

func pinState(t *busv1.ChangeTicket, c busv1.CoveredObject, hash, uid string) int {
	state := pinNone
	for _, a := range t.Status.Approvals {
		pins, pinned := governance.PinsOf(t, a)
		if !pinned {
			continue
		}
		i := slices.IndexFunc(pins, func(p busv1.PinnedSpec) bool {
			return p.Kind == c.Kind && p.Name == c.Name && (p.UID == "" || uid == "" || p.UID == uid)
		})
		switch {
		case i >= 0 && pins[i].SpecHash == hash:
			return pinSame
		case i >= 0:
			state = pinOther
		case state == pinNone:
			state = pinMissing
		}
	}
	return state
}

// ticketState is the operator's verdict; before the operator has looked,
// it is worked out from the ticket itself.
func ticketState(t *busv1.ChangeTicket, now time.Time) busv1.TicketState {
	switch {
	case t.Status.State != "":
		return t.Status.State
	case t.Status.Denial != nil:
		return busv1.TicketDenied
	case !ticketExpiry(t).IsZero() && !now.Before(ticketExpiry(t)):
		return busv1.TicketExpired
	}
	return busv1.TicketPending
}

// approvalsCounted is the operator's count once it has evaluated the
// ticket; before that, distinct reviewers other than the requester.
func approvalsCounted(t *busv1.ChangeTicket) int32 {
	if t.Status.ObservedGeneration > 0 {
		return t.Status.ValidApprovals
	}
	seen := map[string]bool{}
	for _, a := range t.Status.Approvals {
		if a.Reviewer != t.Spec.RequestedBy {
			seen[a.Reviewer] = true
		}
	}
	return int32(len(seen))
}

func formatExpiry(end, now time.Time) string {
	if end.IsZero() {
		return "-"
	}
	at := end.UTC().Format("2006-01-02T15:04Z")
	if now.Before(end) {
		return fmt.Sprintf("%s (in %s)", at, duration.HumanDuration(end.Sub(now)))
	}
	return fmt.Sprintf("%s (%s ago)", at, duration.HumanDuration(now.Sub(end)))
}

// coveredChanges lists, per covered object, what approving would change.
func coveredChanges(t *busv1.ChangeTicket, v *ticketView) []string {
	var out []string
	for _, cov := range t.Spec.Covers {
		key := client.ObjectKey{Namespace: t.Namespace, Name: cov.Name}
		var head string
		var lines []string
		switch cov.Kind {
		case busv1.KindTopic:
			tp, ok := v.topics[key]
			if !ok {
				out = append(out, fmt.Sprintf("Topic %s: not found (create it before the ticket is approved)", cov.Name))
				continue
			}
			head = fmt.Sprintf("Topic %s (broker topic %s):", cov.Name, tp.BrokerTopicName())
			lines = topicChanges(tp, cov.Operations)
		case busv1.KindSubscription:
			s, ok := v.subs[key]
			if !ok {
				out = append(out, fmt.Sprintf("Subscription %s: not found (create it before the ticket is approved)", cov.Name))
				continue
			}
			head = fmt.Sprintf("Subscription %s (%s):", cov.Name, s.Principal())
			lines = subscriptionChanges(s, v.topics)
		default:
			out = append(out, fmt.Sprintf("%s %s: kind not understood by this version of hmsbus", cov.Kind, cov.Name))
			continue
		}
		out = append(out, head)
		for _, l := range lines {
			out = append(out, "  "+l)
		}
	}
	return out
}

// topicChanges compares a Topic's spec with what its status says the broker
// holds.
func topicChanges(tp *busv1.Topic, ops []busv1.Operation) []string {
	spec, st := tp.Spec, tp.Status
	var out []string
	if st.TopicName == "" {
		rf := "broker default"
		if spec.ReplicationFactor != nil {
			rf = fmt.Sprint(*spec.ReplicationFactor)
		}
		out = append(out, fmt.Sprintf("create topic: %d partitions, replication factor %s", spec.Partitions, rf))
		cfg := spec.Configs()
		for _, k := range slices.Sorted(maps.Keys(cfg)) {
			out = append(out, fmt.Sprintf("+ %s=%s", k, cfg[k]))
		}
	} else {
		if spec.Partitions != st.Partitions {
			out = append(out, fmt.Sprintf("partitions %d -> %d", st.Partitions, spec.Partitions))
		}
		if spec.ReplicationFactor != nil && *spec.ReplicationFactor != st.ReplicationFactor {
			out = append(out, fmt.Sprintf("replication factor %d -> %d", st.ReplicationFactor, *spec.ReplicationFactor))
		}
		out = append(out, configChanges(st.Config, spec.Configs())...)
	}
	// Who may subscribe is part of what the reviewer approves.
	if !slices.Equal(sortedCopy(spec.AllowedNamespaces), sortedCopy(st.AllowedNamespaces)) && (st.TopicName != "" || len(spec.AllowedNamespaces) > 0) {
		out = append(out, fmt.Sprintf("Subscriptions allowed from namespaces %s -> %s (besides %s)", namespaceList(st.AllowedNamespaces), namespaceList(spec.AllowedNamespaces), tp.Namespace))
	}
	if slices.Contains(ops, busv1.OperationDelete) {
		out = append(out, fmt.Sprintf("may delete topic %s and its data when the Topic is deleted (deletionPolicy %s)", tp.BrokerTopicName(), deletionPolicy(tp)))
	}
	if len(out) == 0 {
		out = append(out, "no change on the broker")
	}
	return out
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

func namespaceList(ns []string) string {
	if len(ns) == 0 {
		return "[none]"
	}
	return "[" + strings.Join(sortedCopy(ns), ", ") + "]"
}

func deletionPolicy(tp *busv1.Topic) busv1.DeletionPolicy {
	if tp.Spec.DeletionPolicy == "" {
		return busv1.DeletionRetain
	}
	return tp.Spec.DeletionPolicy
}

// configChanges diffs topic config overrides: + added, - removed (back to
// the broker default), ~ changed.
func configChanges(have, want map[string]string) []string {
	keys := slices.Sorted(maps.Keys(have))
	for k := range want {
		if _, ok := have[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []string
	for _, k := range keys {
		h, inHave := have[k]
		n, inWant := want[k]
		switch {
		case !inHave:
			out = append(out, fmt.Sprintf("+ %s=%s", k, n))
		case !inWant:
			out = append(out, fmt.Sprintf("- %s (was %s; back to the broker default)", k, h))
		case h != n:
			out = append(out, fmt.Sprintf("~ %s: %s -> %s", k, h, n))
		}
	}
	return out
}

// subscriptionChanges compares a Subscription's spec with the grants its
// status records.
func subscriptionChanges(s *busv1.Subscription, topics map[client.ObjectKey]*busv1.Topic) []string {
	role := s.Spec.Role
	if role == "" {
		role = busv1.RoleConsume
	}
	var want, missing []string
	for _, ref := range s.Spec.Topics {
		key := topicKey(s.Namespace, ref)
		tp, ok := topics[key]
		if !ok {
			missing = append(missing, key.String())
			continue
		}
		if !slices.Contains(want, tp.BrokerTopicName()) {
			want = append(want, tp.BrokerTopicName())
		}
	}
	var out []string
	st := s.Status
	if st.Principal == "" && len(st.GrantedACLs) == 0 {
		out = append(out, fmt.Sprintf("create user %s (%s) and its credentials Secret %s", s.Username(), s.MechanismName(), s.SecretName()))
		if len(want) > 0 {
			out = append(out, fmt.Sprintf("grant %s on %s", role, strings.Join(want, ", ")))
		}
		if role == busv1.RoleConsume {
			out = append(out, fmt.Sprintf("grant consumer group %s", s.ConsumerGroupName()))
		}
	} else {
		if have := grantedRole(st.GrantedACLs); have != "" && have != role {
			out = append(out, fmt.Sprintf("role %s -> %s", have, role))
		}
		for _, t := range want {
			if !slices.Contains(st.Topics, t) {
				out = append(out, fmt.Sprintf("+ grant %s on %s", role, t))
			}
		}
		for _, t := range st.Topics {
			if !slices.Contains(want, t) {
				out = append(out, fmt.Sprintf("- revoke %s", t))
			}
		}
	}
	for _, m := range missing {
		out = append(out, fmt.Sprintf("! Topic %s not found: nothing is granted for it", m))
	}
	if len(out) == 0 {
		out = append(out, "no change on the broker")
	}
	return out
}

// grantedRole infers the role from the ACLs granted: Write on a topic is a
// producer, Read a consumer.
func grantedRole(acls []busv1.ACLEntry) busv1.Role {
	for _, a := range acls {
		if a.ResourceType != "Topic" {
			continue
		}
		switch a.Operation {
		case "Write":
			return busv1.RoleProduce
		case "Read":
			return busv1.RoleConsume
		}
	}
	return ""
}
