package governance

import (
	"strings"
	"testing"
	"time"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
)

// Every refusal names the ticket once: messages are read by people and a
// repeated piece of context hides what matters.
func TestDecisionMessagesSayEachThingOnce(t *testing.T) {
	subjects := []Subject{topicSubject(busv1.OperationApply), topicSubject(busv1.OperationDelete)}
	tickets := []*busv1.ChangeTicket{
		nil, ticket(), ticket(approvedBy("rita")), ticket(unpinnedApproval("rita")),
		ticket(approvedBy("rita"), deniedBy("raj", created.Add(time.Minute))), ticket(approvedBy("rita"), notAfter(time.Minute)),
		ticket(pinnedApproval("rita", pin(busv1.KindTopic, "fee-updated", "sha256:other"))),
		ticket(pinnedApproval("rita", pin(busv1.KindTopic, "another", "sha256:other"))),
	}
	for _, tk := range tickets {
		for _, s := range subjects {
			d := Evaluate(tk, s, Policy{}, 0, now)
			if n := strings.Count(d.Message, "ChangeTicket chg-1042"); n > 1 {
				t.Errorf("%s names the ticket %d times: %s", d.Reason, n, d.Message)
			}
		}
	}
}
