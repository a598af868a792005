package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
)

func (a *app) statusCmd() *cobra.Command {
	f := &listFlags{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show Topics, Subscriptions and ChangeTickets with their readiness at a glance",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ns, err := a.kube.connect()
			if err != nil {
				return err
			}
			v, err := loadStatusView(cmd.Context(), c, f.namespace(ns))
			if err != nil {
				return err
			}
			return renderStatus(a.out, v, time.Now(), f.all)
		},
	}
	cmd.Flags().BoolVarP(&f.all, "all-namespaces", "A", false, "show every namespace")
	return cmd
}

type statusView struct {
	topics  []busv1.Topic
	subs    []busv1.Subscription
	tickets []busv1.ChangeTicket
}

func loadStatusView(ctx context.Context, c client.Client, ns string) (*statusView, error) {
	var topics busv1.TopicList
	if err := c.List(ctx, &topics, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing Topics: %w", err)
	}
	var subs busv1.SubscriptionList
	if err := c.List(ctx, &subs, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing Subscriptions: %w", err)
	}
	var tickets busv1.ChangeTicketList
	if err := c.List(ctx, &tickets, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing ChangeTickets: %w", err)
	}
	v := &statusView{topics: topics.Items, subs: subs.Items, tickets: tickets.Items}
	slices.SortFunc(v.topics, func(a, b busv1.Topic) int { return compareKeys(&a, &b) })
	slices.SortFunc(v.subs, func(a, b busv1.Subscription) int { return compareKeys(&a, &b) })
	slices.SortFunc(v.tickets, func(a, b busv1.ChangeTicket) int { return compareKeys(&a, &b) })
	return v, nil
}

func compareKeys(a, b client.Object) int {
	return strings.Compare(a.GetNamespace()+"/"+a.GetName(), b.GetNamespace()+"/"+b.GetName())
}

// renderStatus writes one table per kind.
func renderStatus(w io.Writer, v *statusView, now time.Time, showNS bool) error {
	var b bytes.Buffer
	if len(v.topics)+len(v.subs)+len(v.tickets) == 0 {
		b.WriteString("No Topics, Subscriptions or ChangeTickets found.\n")
	}
	tables := []struct {
		title  string
		header string
		rows   [][]string
	}{
		{"Topics", "NAME\tBROKER TOPIC\tPARTITIONS\tTICKET\tREADY\tREASON\tMESSAGE", topicRows(v.topics)},
		{"Subscriptions", "NAME\tROLE\tTOPICS\tPRINCIPAL\tTICKET\tREADY\tREASON\tMESSAGE", subscriptionRows(v.subs)},
		{"ChangeTickets", "NAME\tREFERENCE\tSTATE\tAPPROVALS\tREQUESTER\tEXPIRES", ticketRows(v.tickets, now)},
	}
	for _, tb := range tables {
		if len(tb.rows) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		b.WriteString(tb.title + ":\n")
		writeTable(&b, tb.header, tb.rows, showNS)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// writeTable aligns rows whose first cell is the namespace, dropped unless
// showNS.
func writeTable(b *bytes.Buffer, header string, rows [][]string, showNS bool) {
	tw := tabwriter.NewWriter(b, 0, 4, 2, ' ', 0)
	if showNS {
		header = "NAMESPACE\t" + header
	}
	_, _ = fmt.Fprintln(tw, header)
	for _, r := range rows {
		if !showNS {
			r = r[1:]
		}
		_, _ = fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	// Writes into a bytes.Buffer cannot fail.
	_ = tw.Flush()
}

// Each row starts with the namespace; renderStatus drops it when not
// showing namespaces.
func topicRows(topics []busv1.Topic) [][]string {
	var rows [][]string
	for i := range topics {
		t := &topics[i]
		partitions := "-"
		if t.Status.Partitions > 0 {
			partitions = fmt.Sprint(t.Status.Partitions)
		}
		rows = append(rows, append([]string{t.Namespace, t.Name, t.BrokerTopicName(), partitions, t.Spec.ChangeTicket}, readiness(t.Status.Conditions)...))
	}
	return rows
}

func subscriptionRows(subs []busv1.Subscription) [][]string {
	var rows [][]string
	for i := range subs {
		s := &subs[i]
		role := s.Spec.Role
		if role == "" {
			role = busv1.RoleConsume
		}
		topics := strings.Join(s.Status.Topics, ",")
		if topics == "" {
			topics = "-"
		}
		principal := s.Status.Principal
		if principal == "" {
			principal = "-"
		}
		rows = append(rows, append([]string{s.Namespace, s.Name, string(role), topics, principal, s.Spec.ChangeTicket}, readiness(s.Status.Conditions)...))
	}
	return rows
}

func ticketRows(tickets []busv1.ChangeTicket, now time.Time) [][]string {
	var rows [][]string
	for i := range tickets {
		t := &tickets[i]
		rows = append(rows, []string{t.Namespace, t.Name, t.Spec.Reference, string(ticketState(t, now)),
			fmt.Sprintf("%d/%d", approvalsCounted(t), requiredApprovals(t)), t.Spec.RequestedBy, formatExpiry(ticketExpiry(t), now)})
	}
	return rows
}

// readiness is the Ready condition's status, reason and message; a missing
// Ready condition means the operator has not reconciled the object yet.
func readiness(conds []metav1.Condition) []string {
	c := meta.FindStatusCondition(conds, busv1.ConditionReady)
	if c == nil {
		return []string{"Unknown", "-", "not reconciled yet"}
	}
	return []string{string(c.Status), orDash(c.Reason), orDash(oneLine(c.Message, 100))}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a table row on one line: newlines and tabs would break it.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > max {
		return string(r[:max-1]) + "…"
	}
	return s
}
