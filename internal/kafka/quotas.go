package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kadm"
)

// Client quota keys and entity type Kafka uses for byte-rate quotas.
const (
	quotaProducerByteRate = "producer_byte_rate"
	quotaConsumerByteRate = "consumer_byte_rate"
	quotaEntityUser       = "user"
)

// DescribeQuota returns the byte-rate quotas set for exactly user=<user>
// (not the user default, nor user+client-id pairs). Concurrent calls share
// a batch (see security_batch.go).
func (c *Client) DescribeQuota(ctx context.Context, user string) (Quota, error) {
	q, err := c.security().quotaDescribes.do(ctx, user)
	if err != nil {
		return Quota{}, opErr("describing quota of user "+user, err)
	}
	return c.recent.quotaView(user, q), nil
}

// quotaValues reads the byte rates of one described entity.
func quotaValues(values []kadm.ClientQuotaValue) Quota {
	var q Quota
	for _, v := range values {
		rate := int64(v.Value)
		switch v.Key {
		case quotaProducerByteRate:
			q.ProducerByteRate = &rate
		case quotaConsumerByteRate:
			q.ConsumerByteRate = &rate
		}
	}
	return q
}

// SetQuota sets user's byte-rate quotas; a nil rate removes that quota.
// Concurrent calls share one AlterClientQuotas request.
func (c *Client) SetQuota(ctx context.Context, user string, q Quota) error {
	_, err := c.security().quotaAlters.do(ctx, quotaAlter{user: user, quota: q})
	if err == nil {
		c.recent.quotaWritten(user, q)
	}
	return opErr("setting quota of user "+user, err)
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
