package kafka

import (
	"errors"
	"fmt"
	"testing"
)

func TestReadRecordsAndOffsets(t *testing.T) {
	topic := uniqueName(t, "records")
	if _, err := admin.CreateTopic(testCtx(t), NewTopic{Name: topic, Partitions: 1, ReplicationFactor: -1}); err != nil {
		t.Fatal(err)
	}
	offs, err := admin.PartitionOffsets(testCtx(t), topic, 0)
	if err != nil || offs.Start != 0 || offs.End != 0 {
		t.Fatalf("empty partition: %+v, %v", offs, err)
	}
	for i := range 5 {
		res := <-admin.AppendAsync(testCtx(t), topic, []byte("k"), fmt.Appendf(nil, `{"n":%d}`, i))
		if res.Err != nil || res.Offset != int64(i) || res.Partition != 0 {
			t.Fatalf("append %d: %+v", i, res)
		}
	}
	offs, err = admin.PartitionOffsets(testCtx(t), topic, 0)
	if err != nil || offs.Start != 0 || offs.End != 5 {
		t.Fatalf("offsets %+v, %v", offs, err)
	}
	got, err := admin.ReadRecords(testCtx(t), topic, 0, 1, 4, 0)
	if err != nil || len(got) != 3 || got[0].Offset != 1 || string(got[2].Value) != `{"n":3}` || string(got[0].Key) != "k" {
		t.Fatalf("records 1..3: %+v, %v", got, err)
	}
	got, err = admin.ReadRecords(testCtx(t), topic, 0, 0, 5, 2)
	if err != nil || len(got) != 2 {
		t.Fatalf("max 2: %+v, %v", got, err)
	}
	if got, err := admin.ReadRecords(testCtx(t), topic, 0, 5, 5, 0); err != nil || len(got) != 0 {
		t.Fatalf("empty range: %+v, %v", got, err)
	}
	if _, err := admin.PartitionOffsets(testCtx(t), uniqueName(t, "missing"), 0); !errors.Is(err, ErrTopicNotFound) {
		t.Fatalf("missing topic: %v, want ErrTopicNotFound", err)
	}
}
