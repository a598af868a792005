package plan

import (
	"slices"

	"github.com/hms-platform/bus-operator/internal/kafka"
)

// Role names as in the Subscription API.
const (
	RoleConsume = "Consume"
	RoleProduce = "Produce"
)

// DesiredACLs is the least-privilege grant for a role: consumers read and
// describe their topics and read their own consumer group (literal, so no
// other group matches); producers write and describe their topics and
// write idempotently on the cluster.
func DesiredACLs(principal, role string, topics []string, group string) []kafka.ACL {
	allow := func(resType, name, op string) kafka.ACL {
		return kafka.ACL{
			Principal: principal, Host: "*",
			ResourceType: resType, ResourceName: name, PatternType: kafka.PatternLiteral,
			Operation: op, Permission: kafka.PermissionAllow,
		}
	}
	var out []kafka.ACL
	for _, t := range topics {
		if role == RoleProduce {
			out = append(out, allow(kafka.ResourceTopic, t, kafka.OpWrite), allow(kafka.ResourceTopic, t, kafka.OpDescribe))
		} else {
			out = append(out, allow(kafka.ResourceTopic, t, kafka.OpRead), allow(kafka.ResourceTopic, t, kafka.OpDescribe))
		}
	}
	switch {
	case role == RoleProduce && len(topics) > 0:
		out = append(out, allow(kafka.ResourceCluster, kafka.ClusterResourceName, kafka.OpIdempotentWrite))
	case role != RoleProduce && len(topics) > 0 && group != "":
		out = append(out, allow(kafka.ResourceGroup, group, kafka.OpRead))
	}
	SortACLs(out)
	return out
}

// ACLDiff is what to create and delete for one principal.
type ACLDiff struct {
	// Create holds desired ACLs missing on the broker (new, or removed out
	// of band).
	Create []kafka.ACL
	// Delete holds ACLs the operator granted earlier that are no longer
	// desired.
	Delete []kafka.ACL
	// Unmanaged holds ACLs for the principal that the operator neither
	// wants nor granted: added by hand, reported and left alone.
	Unmanaged []kafka.ACL
}

// DiffACLs compares desired grants with those observed on the broker.
// owned lists what the operator recorded as granted; only those are ever
// deleted, so ACLs someone else created are never touched.
func DiffACLs(desired, observed, owned []kafka.ACL) ACLDiff {
	want := keySet(desired)
	have := keySet(observed)
	mine := keySet(owned)
	var d ACLDiff
	for _, a := range desired {
		if !have[a.Key()] {
			d.Create = append(d.Create, a)
		}
	}
	for _, a := range observed {
		switch {
		case want[a.Key()]:
		case mine[a.Key()]:
			d.Delete = append(d.Delete, a)
		default:
			d.Unmanaged = append(d.Unmanaged, a)
		}
	}
	SortACLs(d.Create)
	SortACLs(d.Delete)
	SortACLs(d.Unmanaged)
	return d
}

// SortACLs orders ACLs by key, so results and status are stable.
func SortACLs(acls []kafka.ACL) {
	slices.SortFunc(acls, func(a, b kafka.ACL) int {
		switch ka, kb := a.Key(), b.Key(); {
		case ka < kb:
			return -1
		case ka > kb:
			return 1
		}
		return 0
	})
}

func keySet(acls []kafka.ACL) map[string]bool {
	m := make(map[string]bool, len(acls))
	for _, a := range acls {
		m[a.Key()] = true
	}
	return m
}
