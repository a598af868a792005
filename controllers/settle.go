package controllers

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/hms-platform/bus-operator/internal/audit"
	"github.com/hms-platform/bus-operator/internal/kafka"
)

// Interrupted writes. An operator killed (or a leader replaced) after a
// broker write was sent but before its outcome was recorded leaves an
// audit intent without outcome. When the next reconcile of the object finds
// the write's effect on the broker it has nothing left to write, so no
// retry adopts the intent; these predicates let it confirm the intent
// instead (audit.Recorder.Confirm), so the trail says "succeeded" for a
// change that is on the broker rather than "interrupted". Each answers, from
// what the reconcile just read, whether the broker shows the effect of one
// unfinished write; anything they do not recognise is left alone.

// confirmInterrupted settles obj's interrupted writes that holds recognises.
// A failure leaves them to the audit Keeper (closed as interrupted), so it
// is logged, not returned: it must not fail a reconcile that writes nothing.
func confirmInterrupted(ctx context.Context, rec *audit.Recorder, obj client.Object, holds func(audit.Unfinished) bool) {
	if rec == nil {
		return
	}
	if _, err := rec.Confirm(ctx, obj, holds); err != nil {
		log.FromContext(ctx).Error(err, "settling interrupted audit intents; the audit keeper will close them as interrupted")
	}
}

// topicWriteHolds: the broker topic name (cur, nil when absent) shows the
// effect of u.
func topicWriteHolds(u audit.Unfinished, name string, cur *kafka.Topic) bool {
	if u.Resource != name {
		return false
	}
	switch u.Operation {
	case audit.OpCreateTopic:
		return cur != nil
	case audit.OpDeleteTopic:
		return cur == nil
	case audit.OpAddPartitions:
		var after struct {
			Partitions int32 `json:"partitions"`
		}
		return cur != nil && decodes(u.After, &after) && after.Partitions > 0 && cur.Partitions >= after.Partitions
	case audit.OpAlterTopicConfig:
		var after map[string]*string
		if cur == nil || !decodes(u.After, &after) || len(after) == 0 {
			return false
		}
		for k, v := range after {
			have, set := cur.Configs[k]
			if (v == nil && set) || (v != nil && (!set || have != *v)) {
				return false
			}
		}
		return true
	}
	return false
}

// aclWriteHolds: the principal's ACLs on the broker show the effect of u
// (every ACL it created is there, or every ACL it deleted is gone).
func aclWriteHolds(u audit.Unfinished, principal string, observed []kafka.ACL) bool {
	if u.Resource != principal {
		return false
	}
	var acls []string
	switch u.Operation {
	case audit.OpCreateACL:
		if !decodes(u.After, &acls) {
			return false
		}
	case audit.OpDeleteACL:
		if !decodes(u.Before, &acls) {
			return false
		}
	default:
		return false
	}
	if len(acls) == 0 {
		return false
	}
	have := aclStrings(observed)
	for _, a := range acls {
		if slices.Contains(have, a) != (u.Operation == audit.OpCreateACL) {
			return false
		}
	}
	return true
}

// credentialWriteHolds: the user's SCRAM mechanisms show the effect of u.
// An upsert counts only when the Secret is not waiting for its password to
// reach the broker (pending): then the password the broker holds is not
// known to be the Secret's, and the retried upsert adopts the intent.
func credentialWriteHolds(u audit.Unfinished, user string, mechanisms []string, pending bool) bool {
	if u.Resource != user {
		return false
	}
	var m struct {
		Mechanism string `json:"mechanism"`
	}
	switch u.Operation {
	case audit.OpUpsertCredential:
		return !pending && decodes(u.After, &m) && m.Mechanism != "" && slices.Contains(mechanisms, m.Mechanism)
	case audit.OpDeleteCredential:
		return decodes(u.Before, &m) && m.Mechanism != "" && !slices.Contains(mechanisms, m.Mechanism)
	}
	return false
}

// quotaWriteHolds: the user's quota on the broker is what u set.
func quotaWriteHolds(u audit.Unfinished, user string, have kafka.Quota) bool {
	if u.Resource != user || u.Operation != audit.OpSetQuota {
		return false
	}
	var want kafka.Quota
	if u.After != nil && !decodes(u.After, &want) {
		return false
	}
	return reflect.DeepEqual(want, have) // by value: the rates are pointers
}

func decodes(raw json.RawMessage, v any) bool {
	return raw != nil && json.Unmarshal(raw, v) == nil
}
