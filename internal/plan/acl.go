package plan

import (
	"slices"
	"strings"

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
	want := aclSet(desired)
	have := aclSet(observed)
	mine := aclSet(owned)
	var d ACLDiff
	for _, a := range desired {
		if !have[a] {
			d.Create = append(d.Create, a)
		}
	}
	for _, a := range observed {
		switch {
		case want[a]:
		case mine[a]:
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
	slices.SortFunc(acls, compareACLs)
}

// compareACLs orders by Key, then field by field: two different ACLs can
// share a Key when a field holds the Key's "|" separator.
func compareACLs(a, b kafka.ACL) int {
	if c := strings.Compare(a.Key(), b.Key()); c != 0 {
		return c
	}
	for _, f := range [][2]string{{a.Principal, b.Principal}, {a.Host, b.Host}, {a.ResourceType, b.ResourceType}, {a.ResourceName, b.ResourceName},
		{a.PatternType, b.PatternType}, {a.Operation, b.Operation}} {
		if c := strings.Compare(f[0], f[1]); c != 0 {
			return c
		}
	}
	return strings.Compare(a.Permission, b.Permission)
}

// aclSet compares ACLs field by field, not by Key: ACL.Key joins the
// fields with "|", which a host or group name may contain, so two different
// ACLs could share a Key and a hand-made one pass for one the operator owns
// (found by FuzzDiffACLs).
func aclSet(acls []kafka.ACL) map[kafka.ACL]bool {
	m := make(map[kafka.ACL]bool, len(acls))
	for _, a := range acls {
		m[a] = true
	}
	return m
}
