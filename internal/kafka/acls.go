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
func (c *Client) DescribeACLs(ctx context.Context, principal string) ([]ACL, error) {
	op := "describing ACLs of " + principal
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	req := kmsg.NewPtrDescribeACLsRequest()
	req.ResourceType = kmsg.ACLResourceTypeAny
	req.ResourcePatternType = kmsg.ACLResourcePatternTypeAny
	req.Principal = kmsg.StringPtr(principal)
	req.Operation = kmsg.ACLOperationAny
	req.PermissionType = kmsg.ACLPermissionTypeAny
	resp, err := req.RequestWith(ctx, c.cl)
	if err != nil {
		return nil, opErr(op, classify(err, ""))
	}
	if err := codeErr(resp.ErrorCode, resp.ErrorMessage); err != nil {
		return nil, opErr(op, err)
	}
	var out []ACL
	for _, r := range resp.Resources {
		for _, a := range r.ACLs {
			out = append(out, ACL{
				Principal:    a.Principal,
				Host:         a.Host,
				ResourceType: kafkaName(r.ResourceType.String()),
				ResourceName: r.ResourceName,
				PatternType:  kafkaName(r.ResourcePatternType.String()),
				Operation:    kafkaName(a.Operation.String()),
				Permission:   kafkaName(a.PermissionType.String()),
			})
		}
	}
	slices.SortFunc(out, func(a, b ACL) int { return strings.Compare(a.Key(), b.Key()) })
	return out, nil
}

// CreateACLs creates ACLs in one request; existing ones stay as they are.
func (c *Client) CreateACLs(ctx context.Context, acls []ACL) error {
	if len(acls) == 0 {
		return nil
	}
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	req := kmsg.NewPtrCreateACLsRequest()
	for _, a := range acls {
		w, err := toWire(a)
		if err != nil {
			return fmt.Errorf("creating ACL %s: %w", a, err)
		}
		cr := kmsg.NewCreateACLsRequestCreation()
		cr.ResourceType, cr.ResourceName, cr.ResourcePatternType = w.resourceType, a.ResourceName, w.pattern
		cr.Principal, cr.Host, cr.Operation, cr.PermissionType = a.Principal, a.Host, w.operation, w.permission
		req.Creations = append(req.Creations, cr)
	}
	resp, err := req.RequestWith(ctx, c.cl)
	if err != nil {
		return opErr(fmt.Sprintf("creating %d ACLs", len(acls)), classify(err, ""))
	}
	var errs []error
	for i, r := range resp.Results {
		if i < len(acls) {
			errs = append(errs, opErr("creating ACL "+acls[i].String(), codeErr(r.ErrorCode, r.ErrorMessage)))
		}
	}
	return errors.Join(errs...)
}

// DeleteACLs deletes exactly the given ACLs: every filter field is set, so
// nothing else matches, and a malformed entry is refused rather than sent
// as a wildcard.
func (c *Client) DeleteACLs(ctx context.Context, acls []ACL) error {
	if len(acls) == 0 {
		return nil
	}
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	req := kmsg.NewPtrDeleteACLsRequest()
	for _, a := range acls {
		w, err := toWire(a)
		if err != nil {
			return fmt.Errorf("deleting ACL %s: %w", a, err)
		}
		f := kmsg.NewDeleteACLsRequestFilter()
		f.ResourceType, f.ResourceName, f.ResourcePatternType = w.resourceType, kmsg.StringPtr(a.ResourceName), w.pattern
		f.Principal, f.Host, f.Operation, f.PermissionType = kmsg.StringPtr(a.Principal), kmsg.StringPtr(a.Host), w.operation, w.permission
		req.Filters = append(req.Filters, f)
	}
	resp, err := req.RequestWith(ctx, c.cl)
	if err != nil {
		return opErr(fmt.Sprintf("deleting %d ACLs", len(acls)), classify(err, ""))
	}
	var errs []error
	for i, r := range resp.Results {
		if i < len(acls) {
			errs = append(errs, opErr("deleting ACL "+acls[i].String(), codeErr(r.ErrorCode, r.ErrorMessage)))
		}
	}
	return errors.Join(errs...)
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
