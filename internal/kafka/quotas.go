package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
)

// Client quota keys and entity type Kafka uses for byte-rate quotas.
const (
	quotaProducerByteRate = "producer_byte_rate"
	quotaConsumerByteRate = "consumer_byte_rate"
	quotaEntityUser       = "user"
)

// DescribeQuota returns the byte-rate quotas set for exactly user=<user>
// (not the user default, nor user+client-id pairs).
func (c *Client) DescribeQuota(ctx context.Context, user string) (Quota, error) {
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	match := []kadm.DescribeClientQuotaComponent{{Type: quotaEntityUser, MatchName: &user}}
	described, err := c.adm.DescribeClientQuotas(ctx, true, match)
	if err != nil {
		return Quota{}, opErr("describing quota of user "+user, classifyAdm(err))
	}
	var q Quota
	for _, d := range described {
		if !isUserEntity(d.Entity, user) {
			continue
		}
		for _, v := range d.Values {
			rate := int64(v.Value)
			switch v.Key {
			case quotaProducerByteRate:
				q.ProducerByteRate = &rate
			case quotaConsumerByteRate:
				q.ConsumerByteRate = &rate
			}
		}
	}
	return q, nil
}

// SetQuota sets user's byte-rate quotas; a nil rate removes that quota.
func (c *Client) SetQuota(ctx context.Context, user string, q Quota) error {
	op := "setting quota of user " + user
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	entry := kadm.AlterClientQuotaEntry{
		Entity: kadm.ClientQuotaEntity{{Type: quotaEntityUser, Name: &user}},
		Ops: []kadm.AlterClientQuotaOp{
			quotaOp(quotaProducerByteRate, q.ProducerByteRate),
			quotaOp(quotaConsumerByteRate, q.ConsumerByteRate),
		},
	}
	altered, err := c.adm.AlterClientQuotas(ctx, []kadm.AlterClientQuotaEntry{entry})
	if err != nil {
		return opErr(op, classifyAdm(err))
	}
	var errs []error
	for _, a := range altered {
		errs = append(errs, opErr(op, classify(a.Err, a.ErrMessage)))
	}
	if len(altered) == 0 {
		errs = append(errs, fmt.Errorf("%s: %w: broker did not answer for the user", op, ErrUnavailable))
	}
	return errors.Join(errs...)
}

func quotaOp(key string, rate *int64) kadm.AlterClientQuotaOp {
	if rate == nil {
		return kadm.AlterClientQuotaOp{Key: key, Remove: true}
	}
	return kadm.AlterClientQuotaOp{Key: key, Value: float64(*rate)}
}

func isUserEntity(e kadm.ClientQuotaEntity, user string) bool {
	return len(e) == 1 && e[0].Type == quotaEntityUser && e[0].Name != nil && *e[0].Name == user
}
