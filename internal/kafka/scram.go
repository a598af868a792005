package kafka

import (
	"context"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// SCRAM iteration counts Kafka accepts, and our default: twice the minimum.
const (
	MinSCRAMIterations     = 4096
	MaxSCRAMIterations     = 16384
	DefaultSCRAMIterations = 8192
)

// SCRAMMechanisms returns, per user that has SCRAM credentials, their
// mechanisms (e.g. SCRAM-SHA-512), sorted. Users without any are absent.
func (c *Client) SCRAMMechanisms(ctx context.Context, users ...string) (map[string][]string, error) {
	out := make(map[string][]string)
	if len(users) == 0 {
		return out, nil // no users would describe every user
	}
	op := "describing SCRAM credentials of " + nameList(users)
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	described, err := c.adm.DescribeUserSCRAMs(ctx, users...)
	if err != nil {
		return nil, opErr(op, classifyAdm(err))
	}
	for user, d := range described {
		err := classify(d.Err, d.ErrMessage)
		if isRejectedCode(err, kerr.ResourceNotFound) {
			continue
		}
		if err != nil {
			return nil, opErr(op, err)
		}
		var mechs []string
		for _, ci := range d.CredInfos {
			mechs = append(mechs, ci.Mechanism.String())
		}
		slices.Sort(mechs)
		out[user] = mechs
	}
	return out, nil
}

// UpsertSCRAM creates or replaces a user's credential for one mechanism,
// with a fresh random salt. The password never leaves this call except
// salted and hashed.
func (c *Client) UpsertSCRAM(ctx context.Context, user, mechanism, password string) error {
	op := fmt.Sprintf("setting %s credential of user %s", mechanism, user)
	mech, err := scramMechanism(mechanism)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	// An empty Salt makes kadm draw 24 bytes from crypto/rand.
	up := kadm.UpsertSCRAM{User: user, Mechanism: mech, Iterations: int32(c.cfg.SCRAMIterations), Password: password}
	altered, err := c.adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{up})
	if err != nil {
		return opErr(op, classifyAdm(err))
	}
	return opErr(op, alteredErr(altered, user))
}

// DeleteSCRAM deletes a user's credential for one mechanism; a missing one
// is no error.
func (c *Client) DeleteSCRAM(ctx context.Context, user, mechanism string) error {
	op := fmt.Sprintf("deleting %s credential of user %s", mechanism, user)
	mech, err := scramMechanism(mechanism)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	altered, err := c.adm.AlterUserSCRAMs(ctx, []kadm.DeleteSCRAM{{User: user, Mechanism: mech}}, nil)
	if err != nil {
		return opErr(op, classifyAdm(err))
	}
	err = alteredErr(altered, user)
	if isRejectedCode(err, kerr.ResourceNotFound) {
		return nil
	}
	return opErr(op, err)
}

func alteredErr(altered kadm.AlteredUserSCRAMs, user string) error {
	a, ok := altered[user]
	if !ok {
		return fmt.Errorf("%w: broker did not answer for the user", ErrUnavailable)
	}
	return classify(a.Err, a.ErrMessage)
}

func scramMechanism(name string) (kadm.ScramMechanism, error) {
	switch name {
	case MechanismSCRAMSHA256:
		return kadm.ScramSha256, nil
	case MechanismSCRAMSHA512:
		return kadm.ScramSha512, nil
	default:
		return 0, fmt.Errorf("unknown SCRAM mechanism %q", name)
	}
}
