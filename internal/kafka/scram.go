package kafka

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"maps"
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
// Concurrent calls share one DescribeUserSCRAMCredentials request.
func (c *Client) SCRAMMechanisms(ctx context.Context, users ...string) (map[string][]string, error) {
	if len(users) == 0 {
		return map[string][]string{}, nil // no users would describe every user
	}
	got, err := c.security().scramDescribes.do(ctx, slices.Clone(users))
	if err != nil {
		return nil, opErr("describing SCRAM credentials of "+nameList(users), err)
	}
	return c.recent.scramView(users, maps.Clone(got)), nil
}

// scramResults splits a describe answer into mechanisms per user and
// per-user errors; a user without credentials is in neither.
func scramResults(described kadm.DescribedUserSCRAMs) (map[string][]string, map[string]error) {
	mechs := make(map[string][]string, len(described))
	errs := make(map[string]error)
	for user, d := range described {
		err := classify(d.Err, d.ErrMessage)
		if isRejectedCode(err, kerr.ResourceNotFound) {
			continue
		}
		if err != nil {
			errs[user] = err
			continue
		}
		var ms []string
		for _, ci := range d.CredInfos {
			ms = append(ms, ci.Mechanism.String())
		}
		slices.Sort(ms)
		mechs[user] = ms
	}
	return mechs, errs
}

// UpsertSCRAM creates or replaces a user's credential for one mechanism,
// with a fresh random salt. The password never leaves this call except
// salted and hashed: the key derivation runs here, in the caller's
// goroutine, so concurrent upserts derive in parallel and then share one
// AlterUserSCRAMCredentials request.
func (c *Client) UpsertSCRAM(ctx context.Context, user, mechanism, password string) error {
	op := fmt.Sprintf("setting %s credential of user %s", mechanism, user)
	mech, err := scramMechanism(mechanism)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if password == "" {
		return fmt.Errorf("%s: empty password", op)
	}
	iterations := int32(c.cfg.SCRAMIterations)
	salt, salted, err := saltPassword(mech, password, iterations)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	_, err = c.security().scramAlters.do(ctx, scramAlter{user: user, mechanism: mech, iterations: iterations, salt: salt, salted: salted})
	if err == nil {
		c.recent.scramWritten(user, mechanism, true)
	}
	return opErr(op, err)
}

// saltPassword derives the SCRAM salted password (RFC 5802 Hi()) with a
// fresh 24-byte salt, as kadm would, so the batch only carries the result.
func saltPassword(mech kadm.ScramMechanism, password string, iterations int32) ([]byte, []byte, error) {
	salt := make([]byte, 24)
	if _, err := rand.Read(salt); err != nil {
		return nil, nil, fmt.Errorf("generating salt: %w", err)
	}
	h, size := sha512.New, sha512.Size
	if mech == kadm.ScramSha256 {
		h, size = sha256.New, sha256.Size
	}
	salted, err := pbkdf2.Key(h, password, salt, int(iterations), size)
	if err != nil {
		return nil, nil, fmt.Errorf("deriving salted password: %w", err)
	}
	return salt, salted, nil
}

// DeleteSCRAM deletes a user's credential for one mechanism; a missing one
// is no error. Concurrent calls share a request with upserts of other users.
func (c *Client) DeleteSCRAM(ctx context.Context, user, mechanism string) error {
	op := fmt.Sprintf("deleting %s credential of user %s", mechanism, user)
	mech, err := scramMechanism(mechanism)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	_, err = c.security().scramAlters.do(ctx, scramAlter{user: user, mechanism: mech, delete: true})
	if err == nil || isRejectedCode(err, kerr.ResourceNotFound) {
		c.recent.scramWritten(user, mechanism, false)
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
