package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeACLs lists every ACL of principal, on any resource and pattern.
// Concurrent calls share a batch (see security_batch.go).
func (c *Client) DescribeACLs(ctx context.Context, principal string) ([]ACL, error) {
	acls, err := c.security().aclDescribes.do(ctx, principal)
	if err != nil {
		return nil, opErr("describing ACLs of "+principal, err)
	}
	return c.recent.aclView(principal, acls), nil
}

// sortedACLs orders ACLs by key, so callers and tests see a stable list.
func sortedACLs(acls []ACL) []ACL {
	out := slices.Clone(acls)
	slices.SortFunc(out, func(a, b ACL) int { return strings.Compare(a.Key(), b.Key()) })
	return out
}

// CreateACLs creates ACLs; existing ones stay as they are. Concurrent calls
// share one CreateACLs request, and each gets the results of its own ACLs.
func (c *Client) CreateACLs(ctx context.Context, acls []ACL) error {
	if len(acls) == 0 {
		return nil
	}
	// A malformed ACL fails its own call before it can join a batch.
	for _, a := range acls {
		if _, err := toWire(a); err != nil {
			return fmt.Errorf("creating ACL %s: %w", a, err)
		}
	}
	_, err := c.security().aclCreates.do(ctx, slices.Clone(acls))
	if err == nil {
		c.recent.aclsWritten(acls, true)
	}
	return err
}

// DeleteACLs deletes exactly the given ACLs: every filter field is set, so
// nothing else matches, and a malformed entry is refused rather than sent
// as a wildcard. Concurrent calls share one DeleteACLs request.
func (c *Client) DeleteACLs(ctx context.Context, acls []ACL) error {
	if len(acls) == 0 {
		return nil
	}
	for _, a := range acls {
		if _, err := toWire(a); err != nil {
			return fmt.Errorf("deleting ACL %s: %w", a, err)
		}
	}
	_, err := c.security().aclDeletes.do(ctx, slices.Clone(acls))
	if err == nil {
		c.recent.aclsWritten(acls, false)
	}
	return err
}

// wireACL holds an ACL's enums as the protocol numbers them.
type wireACL struct {
	resourceType kmsg.ACLResourceType
	pattern      kmsg.ACLResourcePatternType
	operation    kmsg.ACLOperation
	permission   kmsg.ACLPermissionType
}

// toWire parses an ACL's names. Only concrete values pass: the "any" and
// "match" filter values would turn a create or an exact delete into a
// wildcard.
func toWire(a ACL) (wireACL, error) {
	var w wireACL
	var err error
	if a.Principal == "" || a.Host == "" || a.ResourceName == "" {
		return w, errors.New("principal, host and resource name must be set")
	}
	if w.resourceType, err = kmsg.ParseACLResourceType(a.ResourceType); err != nil || w.resourceType <= kmsg.ACLResourceTypeAny {
		return w, fmt.Errorf("bad resource type %q", a.ResourceType)
	}
	if w.pattern, err = kmsg.ParseACLResourcePatternType(a.PatternType); err != nil ||
		(w.pattern != kmsg.ACLResourcePatternTypeLiteral && w.pattern != kmsg.ACLResourcePatternTypePrefixed) {
		return w, fmt.Errorf("bad pattern type %q", a.PatternType)
	}
	if w.operation, err = kmsg.ParseACLOperation(a.Operation); err != nil || w.operation <= kmsg.ACLOperationAny {
		return w, fmt.Errorf("bad operation %q", a.Operation)
	}
	if w.permission, err = kmsg.ParseACLPermissionType(a.Permission); err != nil || w.permission <= kmsg.ACLPermissionTypeAny {
		return w, fmt.Errorf("bad permission %q", a.Permission)
	}
	return w, nil
}

// kafkaName turns a protocol enum name (IDEMPOTENT_WRITE) into the name
// Kafka's tools and our constants use (IdempotentWrite).
func kafkaName(wire string) string {
	parts := strings.Split(strings.ToLower(wire), "_")
	for i, p := range parts {
		if p != "" {
			parts[i] = strings.ToUpper(p[:1]) + p[1:]
		}
	}
	return strings.Join(parts, "")
}
