package kafka

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// topicAlter is one AlterTopicConfig call.
type topicAlter struct {
	topic string
	alter ConfigAlter
}

// partitionCount is one SetPartitions call.
type partitionCount struct {
	topic string
	total int32
}

// DescribeTopics returns the named topics that exist. Concurrent calls share
// one Metadata and one DescribeConfigs request.
func (c *Client) DescribeTopics(ctx context.Context, names ...string) (map[string]Topic, error) {
	if len(names) == 0 {
		return map[string]Topic{}, nil
	}
	got, err := c.describes.do(ctx, names)
	if err != nil {
		return nil, opErr("describing topics "+nameList(names), err)
	}
	return c.recent.topicView(names, maps.Clone(got)), nil
}

// nameList renders names for an error without listing a whole resync.
func nameList(names []string) string {
	if len(names) <= 3 {
		return fmt.Sprint(names)
	}
	return fmt.Sprintf("[%s and %d more]", names[0], len(names)-1)
}

// CreateTopic creates a topic; ErrTopicExists if it is already there.
// Concurrent calls share one CreateTopics request.
func (c *Client) CreateTopic(ctx context.Context, t NewTopic) (Topic, error) {
	got, err := c.creates.do(ctx, t)
	if err != nil {
		return Topic{}, opErr("creating topic "+t.Name, err)
	}
	c.recent.topicWritten(t.Name, &got)
	return got, nil
}

// AlterTopicConfig sets and deletes topic config keys incrementally.
// Concurrent calls share one IncrementalAlterConfigs request.
func (c *Client) AlterTopicConfig(ctx context.Context, topic string, alter ConfigAlter) error {
	if len(alter.Set) == 0 && len(alter.Delete) == 0 {
		return nil
	}
	_, err := c.alters.do(ctx, topicAlter{topic, alter})
	if err == nil {
		c.recent.topicChanged(topic, func(t *Topic) {
			if t.Configs == nil {
				t.Configs = map[string]string{}
			}
			maps.Copy(t.Configs, alter.Set)
			for _, k := range alter.Delete {
				delete(t.Configs, k)
			}
		})
	}
	return opErr("altering config of topic "+topic, err)
}

// SetPartitions raises a topic's partition count to total. Concurrent calls
// share one CreatePartitions request.
func (c *Client) SetPartitions(ctx context.Context, topic string, total int32) error {
	_, err := c.partitions.do(ctx, partitionCount{topic, total})
	if err == nil {
		c.recent.topicChanged(topic, func(t *Topic) { t.Partitions = max(t.Partitions, total) })
	}
	return opErr(fmt.Sprintf("setting partitions of topic %s to %d", topic, total), err)
}

// DeleteTopic deletes a topic; a missing topic is no error.
func (c *Client) DeleteTopic(ctx context.Context, topic string) error {
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	resp, err := c.adm.DeleteTopic(ctx, topic)
	if err == nil {
		err = resp.Err
	}
	err = classify(err, resp.ErrMessage)
	if err == nil || errors.Is(err, ErrTopicNotFound) {
		c.recent.topicWritten(topic, nil)
		return nil
	}
	return opErr("deleting topic "+topic, err)
}

// describeBatch answers many DescribeTopics calls with one Metadata and one
// DescribeConfigs request for the union of their names, sent in parallel.
func (c *Client) describeBatch(ctx context.Context, calls [][]string) []outcome[map[string]Topic] {
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	var names []string
	for _, ns := range calls {
		names = append(names, ns...)
	}
	slices.Sort(names)
	names = slices.Compact(names)

	topics, topicErrs, err := c.describeNames(ctx, names)
	outs := make([]outcome[map[string]Topic], len(calls))
	for i, want := range calls {
		outs[i] = pickTopics(want, topics, topicErrs, err)
	}
	return outs
}

// pickTopics is one caller's share of a describe batch: its topics, or the
// first error that touched one of them.
func pickTopics(want []string, topics map[string]Topic, topicErrs map[string]error, err error) outcome[map[string]Topic] {
	if err != nil {
		return outcome[map[string]Topic]{err: err}
	}
	got := make(map[string]Topic, len(want))
	for _, n := range want {
		if e := topicErrs[n]; e != nil {
			return outcome[map[string]Topic]{err: fmt.Errorf("topic %s: %w", n, e)}
		}
		if t, ok := topics[n]; ok {
			t.Configs = maps.Clone(t.Configs) // callers own their maps
			got[n] = t
		}
	}
	return outcome[map[string]Topic]{val: got}
}

// describeNames describes topics; absent ones are in neither map.
func (c *Client) describeNames(ctx context.Context, names []string) (map[string]Topic, map[string]error, error) {
	var (
		wg      sync.WaitGroup
		meta    *kmsg.MetadataResponse
		cfgs    *kmsg.DescribeConfigsResponse
		metaErr error
		cfgErr  error
	)
	wg.Go(func() { meta, metaErr = metadataRequest(names).RequestWith(ctx, c.cl) })
	wg.Go(func() { cfgs, cfgErr = describeConfigsRequest(names).RequestWith(ctx, c.cl) })
	wg.Wait()
	if metaErr != nil {
		return nil, nil, classify(metaErr, "")
	}
	if cfgErr != nil {
		return nil, nil, classify(cfgErr, "")
	}

	topics := make(map[string]Topic)
	errs := make(map[string]error)
	for _, mt := range meta.Topics {
		name := deref(mt.Topic)
		switch err := codeErr(mt.ErrorCode, nil); {
		case errors.Is(err, ErrTopicNotFound):
		case err != nil:
			errs[name] = err
		default:
			topics[name] = topicFromMetadata(name, &mt)
		}
	}
	answered := make(map[string]bool, len(cfgs.Resources))
	for _, r := range cfgs.Resources {
		t, exists := topics[r.ResourceName]
		if !exists || r.ResourceType != kmsg.ConfigResourceTypeTopic {
			continue // absent, or its metadata error is already recorded
		}
		answered[r.ResourceName] = true
		err := codeErr(r.ErrorCode, r.ErrorMessage)
		if errors.Is(err, ErrTopicNotFound) {
			// Created or deleted between the two requests: ask again.
			err = fmt.Errorf("%w: topic changed while being described", ErrUnavailable)
		}
		if err != nil {
			delete(topics, r.ResourceName)
			errs[r.ResourceName] = err
			continue
		}
		t.Configs = overrides(r.Configs)
		topics[r.ResourceName] = t
	}
	// Reporting a topic without its overrides would make a diff re-set
	// them, so a topic the broker sent no configs for is an error.
	for name := range topics {
		if !answered[name] {
			delete(topics, name)
			errs[name] = fmt.Errorf("%w: broker sent no configs for the topic", ErrUnavailable)
		}
	}
	return topics, errs, nil
}

func metadataRequest(names []string) *kmsg.MetadataRequest {
	req := kmsg.NewPtrMetadataRequest()
	for _, n := range names {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(n)
		req.Topics = append(req.Topics, rt)
	}
	return req
}

func describeConfigsRequest(names []string) *kmsg.DescribeConfigsRequest {
	req := kmsg.NewPtrDescribeConfigsRequest()
	for _, n := range names {
		rr := kmsg.NewDescribeConfigsRequestResource()
		rr.ResourceType = kmsg.ConfigResourceTypeTopic
		rr.ResourceName = n
		req.Resources = append(req.Resources, rr)
	}
	return req
}

func topicFromMetadata(name string, mt *kmsg.MetadataResponseTopic) Topic {
	t := Topic{
		Name:       name,
		ID:         topicID(mt.TopicID),
		Partitions: int32(len(mt.Partitions)),
		Configs:    map[string]string{},
	}
	if len(mt.Partitions) > 0 {
		t.ReplicationFactor = int32(len(mt.Partitions[0].Replicas))
	}
	return t
}

// overrides keeps the configs set on the topic itself: broker defaults and
// broker-wide dynamic settings are not the topic's to diff.
func overrides(cfgs []kmsg.DescribeConfigsResponseResourceConfig) map[string]string {
	out := make(map[string]string)
	for _, rc := range cfgs {
		if rc.Source == kmsg.ConfigSourceDynamicTopicConfig && rc.Value != nil {
			out[rc.Name] = *rc.Value
		}
	}
	return out
}

// topicID renders a topic ID as Kafka's tools do (URL-safe base64, no
// padding); "" when the broker sent none.
func topicID(id [16]byte) string {
	if id == [16]byte{} {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(id[:])
}

// createBatch creates the topics of many CreateTopic calls, one request per
// round of distinct names.
func (c *Client) createBatch(ctx context.Context, ts []NewTopic) []outcome[Topic] {
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	outs := make([]outcome[Topic], len(ts))
	for _, round := range rounds(len(ts), func(i int) string { return ts[i].Name }) {
		c.createRound(ctx, ts, round, outs)
	}
	return outs
}

func (c *Client) createRound(ctx context.Context, ts []NewTopic, idx []int, outs []outcome[Topic]) {
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = int32(c.cfg.RequestTimeout.Milliseconds())
	for _, i := range idx {
		req.Topics = append(req.Topics, createTopicsTopic(ts[i]))
	}
	resp, err := req.RequestWith(ctx, c.cl)
	if err != nil {
		fail(outs, idx, classify(err, ""))
		return
	}
	byName := make(map[string]*kmsg.CreateTopicsResponseTopic, len(resp.Topics))
	for i := range resp.Topics {
		byName[resp.Topics[i].Topic] = &resp.Topics[i]
	}
	for _, i := range idx {
		rt, ok := byName[ts[i].Name]
		switch {
		case !ok:
			outs[i].err = fmt.Errorf("%w: broker did not answer for the topic", ErrUnavailable)
		case rt.ErrorCode != 0:
			outs[i].err = codeErr(rt.ErrorCode, rt.ErrorMessage)
		default:
			outs[i].val = createdTopic(ts[i], rt)
		}
	}
}

func createTopicsTopic(t NewTopic) kmsg.CreateTopicsRequestTopic {
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic = t.Name
	rt.NumPartitions = t.Partitions
	rt.ReplicationFactor = int16(t.ReplicationFactor)
	for _, k := range slices.Sorted(maps.Keys(t.Configs)) {
		rc := kmsg.NewCreateTopicsRequestTopicConfig()
		rc.Name = k
		rc.Value = kmsg.StringPtr(t.Configs[k])
		rt.Configs = append(rt.Configs, rc)
	}
	return rt
}

// createdTopic is what the broker says it created. Configs are the
// requested ones: on success those are exactly the topic's overrides.
func createdTopic(t NewTopic, rt *kmsg.CreateTopicsResponseTopic) Topic {
	out := Topic{
		Name:              t.Name,
		ID:                topicID(rt.TopicID),
		Partitions:        rt.NumPartitions,
		ReplicationFactor: int32(rt.ReplicationFactor),
		Configs:           maps.Clone(t.Configs),
	}
	if out.Configs == nil {
		out.Configs = map[string]string{}
	}
	// Responses before v5 carry no counts (-1).
	if out.Partitions < 0 {
		out.Partitions = t.Partitions
	}
	if out.ReplicationFactor < 0 {
		out.ReplicationFactor = t.ReplicationFactor
	}
	return out
}

// alterBatch applies many AlterTopicConfig calls, one IncrementalAlterConfigs
// request per round of distinct topics.
func (c *Client) alterBatch(ctx context.Context, as []topicAlter) []outcome[struct{}] {
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	outs := make([]outcome[struct{}], len(as))
	for _, round := range rounds(len(as), func(i int) string { return as[i].topic }) {
		c.alterRound(ctx, as, round, outs)
	}
	return outs
}

func (c *Client) alterRound(ctx context.Context, as []topicAlter, idx []int, outs []outcome[struct{}]) {
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	for _, i := range idx {
		req.Resources = append(req.Resources, alterResource(as[i]))
	}
	resp, err := req.RequestWith(ctx, c.cl)
	if err != nil {
		fail(outs, idx, classify(err, ""))
		return
	}
	byName := make(map[string]*kmsg.IncrementalAlterConfigsResponseResource, len(resp.Resources))
	for i := range resp.Resources {
		if resp.Resources[i].ResourceType == kmsg.ConfigResourceTypeTopic {
			byName[resp.Resources[i].ResourceName] = &resp.Resources[i]
		}
	}
	for _, i := range idx {
		rr, ok := byName[as[i].topic]
		if !ok {
			outs[i].err = fmt.Errorf("%w: broker did not answer for the topic", ErrUnavailable)
			continue
		}
		outs[i].err = codeErr(rr.ErrorCode, rr.ErrorMessage)
	}
}

func alterResource(a topicAlter) kmsg.IncrementalAlterConfigsRequestResource {
	rr := kmsg.NewIncrementalAlterConfigsRequestResource()
	rr.ResourceType = kmsg.ConfigResourceTypeTopic
	rr.ResourceName = a.topic
	for _, k := range slices.Sorted(maps.Keys(a.alter.Set)) {
		rc := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		rc.Name = k
		rc.Op = kmsg.IncrementalAlterConfigOpSet
		rc.Value = kmsg.StringPtr(a.alter.Set[k])
		rr.Configs = append(rr.Configs, rc)
	}
	for _, k := range a.alter.Delete {
		rc := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		rc.Name = k
		rc.Op = kmsg.IncrementalAlterConfigOpDelete
		rr.Configs = append(rr.Configs, rc)
	}
	return rr
}

// partitionsBatch applies many SetPartitions calls, one CreatePartitions
// request per round of distinct topics.
func (c *Client) partitionsBatch(ctx context.Context, ps []partitionCount) []outcome[struct{}] {
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	outs := make([]outcome[struct{}], len(ps))
	for _, round := range rounds(len(ps), func(i int) string { return ps[i].topic }) {
		c.partitionsRound(ctx, ps, round, outs)
	}
	return outs
}

func (c *Client) partitionsRound(ctx context.Context, ps []partitionCount, idx []int, outs []outcome[struct{}]) {
	req := kmsg.NewPtrCreatePartitionsRequest()
	req.TimeoutMillis = int32(c.cfg.RequestTimeout.Milliseconds())
	for _, i := range idx {
		rt := kmsg.NewCreatePartitionsRequestTopic()
		rt.Topic = ps[i].topic
		rt.Count = ps[i].total
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, c.cl)
	if err != nil {
		fail(outs, idx, classify(err, ""))
		return
	}
	byName := make(map[string]*kmsg.CreatePartitionsResponseTopic, len(resp.Topics))
	for i := range resp.Topics {
		byName[resp.Topics[i].Topic] = &resp.Topics[i]
	}
	for _, i := range idx {
		rt, ok := byName[ps[i].topic]
		if !ok {
			outs[i].err = fmt.Errorf("%w: broker did not answer for the topic", ErrUnavailable)
			continue
		}
		outs[i].err = codeErr(rt.ErrorCode, rt.ErrorMessage)
	}
}

// fail gives every item of a round the same error.
func fail[Out any](outs []outcome[Out], idx []int, err error) {
	for _, i := range idx {
		outs[i].err = err
	}
}
