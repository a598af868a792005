package kafka

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Benchmarks run against the shared embedded broker, only when asked for:
//
//	go test ./internal/kafka/ -run '^$' -bench . -benchtime 2s
//
// Each operation is one wave of concurrent calls, the way a controller
// with many workers calls the adapter; topics/s is the throughput.

const benchWave = 64

func benchTopics(b *testing.B, c *Client, n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = uniqueName(b, "bench")
	}
	errs := concurrently(n, func(i int) error {
		_, err := c.CreateTopic(context.Background(), NewTopic{Name: names[i], Partitions: 1, ReplicationFactor: 1})
		return err
	})
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	return names
}

func benchDescribe(b *testing.B, batchMax int) {
	c := newClient(b, func(cfg *Config) { cfg.BatchMax = batchMax })
	names := benchTopics(b, c, benchWave)
	ctx := context.Background()
	requests := observe(b, kmsg.DescribeConfigs)
	for b.Loop() {
		errs := concurrently(benchWave, func(i int) error {
			_, err := c.DescribeTopics(ctx, names[i])
			return err
		})
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*benchWave)/b.Elapsed().Seconds(), "topics/s")
	b.ReportMetric(float64(requests.Hits())/float64(b.N), "DescribeConfigs/op")
}

// BenchmarkDescribeTopicsBatched: 64 concurrent single-topic describes,
// coalesced into shared requests.
func BenchmarkDescribeTopicsBatched(b *testing.B) { benchDescribe(b, DefaultBatchMax) }

// BenchmarkDescribeTopicsUnbatched is the same load with batching off
// (every call its own requests), for comparison.
func BenchmarkDescribeTopicsUnbatched(b *testing.B) { benchDescribe(b, 1) }

// BenchmarkCreateTopicsConcurrent: 64 concurrent creates of new topics per
// operation. The topics are deleted outside the timed part.
func BenchmarkCreateTopicsConcurrent(b *testing.B) {
	c := newClient(b, nil)
	ctx := context.Background()
	requests := observe(b, kmsg.CreateTopics)
	for b.Loop() {
		names := benchTopics(b, c, benchWave)
		b.StopTimer()
		concurrently(len(names), func(i int) error { return c.DeleteTopic(ctx, names[i]) })
		b.StartTimer()
	}
	b.ReportMetric(float64(b.N*benchWave)/b.Elapsed().Seconds(), "topics/s")
	b.ReportMetric(float64(requests.Hits())/float64(b.N), "CreateTopics/op")
}

func benchSecurity(b *testing.B, batchMax int) {
	c := newClient(b, func(cfg *Config) { cfg.BatchMax = batchMax })
	ctx := context.Background()
	upserts := observe(b, kmsg.AlterUserSCRAMCredentials)
	creates := observe(b, kmsg.CreateACLs)
	for b.Loop() {
		b.StopTimer()
		users := make([]string, benchWave)
		for i := range users {
			users[i] = uniqueName(b, "bench")
		}
		b.StartTimer()
		errs := concurrently(benchWave, func(i int) error {
			p := "User:" + users[i]
			if err := c.UpsertSCRAM(ctx, users[i], MechanismSCRAMSHA512, "bench-password"); err != nil {
				return err
			}
			return c.CreateACLs(ctx, []ACL{{Principal: p, Host: "*", ResourceType: ResourceGroup, ResourceName: users[i], PatternType: PatternLiteral, Operation: OpRead, Permission: PermissionAllow}})
		})
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*benchWave)/b.Elapsed().Seconds(), "users/s")
	b.ReportMetric(float64(upserts.Hits())/float64(b.N), "AlterUserSCRAMCredentials/op")
	b.ReportMetric(float64(creates.Hits())/float64(b.N), "CreateACLs/op")
}

// BenchmarkSecurityBatched: 64 concurrent credential upserts and ACL
// creates (what 64 new Subscriptions ask), coalesced.
func BenchmarkSecurityBatched(b *testing.B) { benchSecurity(b, DefaultBatchMax) }

// BenchmarkSecurityUnbatched is the same load with batching off.
func BenchmarkSecurityUnbatched(b *testing.B) { benchSecurity(b, 1) }
