package audit

import (
	"context"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Defaults for where the chain head is published.
const (
	DefaultHeadConfigMap = "hmsbus-audit-head"
	DefaultHeadNamespace = "hmsbus-system"
)

// Head is the chain head as published for verifiers: the last record the
// operator knew it had written when it published.
type Head struct {
	Topic     string
	Partition int32
	Seq       int64
	Offset    int64
	// Hash is the chain hash (HashRecord) of the record at Offset.
	Hash string
	// Time is when that record was written.
	Time time.Time
	// Checkpoint is an offset below which every intent has its outcome:
	// where the next writer starts reading to find intents left open.
	Checkpoint  int64
	PublishedAt time.Time
}

// HeadStore keeps the published head. Tests observe publications through
// it; the operator uses ConfigMapHeads.
type HeadStore interface {
	// LoadHead returns the published head, nil if none was published.
	LoadHead(ctx context.Context) (*Head, error)
	PublishHead(ctx context.Context, h Head) error
}

// ConfigMap keys of a published head.
const (
	headKeyTopic       = "topic"
	headKeyPartition   = "partition"
	headKeySeq         = "seq"
	headKeyOffset      = "offset"
	headKeyHash        = "hash"
	headKeyTime        = "recordTime"
	headKeyCheckpoint  = "checkpoint"
	headKeyPublishedAt = "publishedAt"
)

// HeadData renders a head as ConfigMap data.
func HeadData(h Head) map[string]string {
	return map[string]string{
		headKeyTopic:       h.Topic,
		headKeyPartition:   strconv.Itoa(int(h.Partition)),
		headKeySeq:         strconv.FormatInt(h.Seq, 10),
		headKeyOffset:      strconv.FormatInt(h.Offset, 10),
		headKeyHash:        h.Hash,
		headKeyTime:        h.Time.UTC().Format(time.RFC3339Nano),
		headKeyCheckpoint:  strconv.FormatInt(h.Checkpoint, 10),
		headKeyPublishedAt: h.PublishedAt.UTC().Format(time.RFC3339Nano),
	}
}

// HeadFromData reads a head from ConfigMap data.
func HeadFromData(data map[string]string) (*Head, error) {
	h := &Head{Topic: data[headKeyTopic], Hash: data[headKeyHash]}
	ints := []struct {
		key string
		dst *int64
	}{{headKeySeq, &h.Seq}, {headKeyOffset, &h.Offset}, {headKeyCheckpoint, &h.Checkpoint}}
	for _, f := range ints {
		v, err := strconv.ParseInt(data[f.key], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("audit head: key %s: %w", f.key, err)
		}
		*f.dst = v
	}
	if p := data[headKeyPartition]; p != "" {
		v, err := strconv.ParseInt(p, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("audit head: key %s: %w", headKeyPartition, err)
		}
		h.Partition = int32(v)
	}
	if !isHash(h.Hash) {
		return nil, fmt.Errorf("audit head: key %s is not a SHA-256 hex digest", headKeyHash)
	}
	for key, dst := range map[string]*time.Time{headKeyTime: &h.Time, headKeyPublishedAt: &h.PublishedAt} {
		if v := data[key]; v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return nil, fmt.Errorf("audit head: key %s: %w", key, err)
			}
			*dst = t
		}
	}
	return h, nil
}

// ConfigMapHeads publishes the head in a ConfigMap. Reader should be
// uncached (the manager's API reader): caching ConfigMaps would watch every
// ConfigMap in the cluster.
type ConfigMapHeads struct {
	Reader    client.Reader
	Writer    client.Writer
	Namespace string
	Name      string
}

func (s *ConfigMapHeads) key() client.ObjectKey {
	ns, name := s.Namespace, s.Name
	if ns == "" {
		ns = DefaultHeadNamespace
	}
	if name == "" {
		name = DefaultHeadConfigMap
	}
	return client.ObjectKey{Namespace: ns, Name: name}
}

// LoadHead reads the published head; nil when the ConfigMap is missing.
func (s *ConfigMapHeads) LoadHead(ctx context.Context) (*Head, error) {
	var cm corev1.ConfigMap
	if err := s.Reader.Get(ctx, s.key(), &cm); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading ConfigMap %s: %w", s.key(), err)
	}
	h, err := HeadFromData(cm.Data)
	if err != nil {
		return nil, fmt.Errorf("ConfigMap %s: %w", s.key(), err)
	}
	return h, nil
}

// PublishHead writes the head, creating the ConfigMap if needed.
func (s *ConfigMapHeads) PublishHead(ctx context.Context, h Head) error {
	key := s.key()
	var cm corev1.ConfigMap
	err := s.Reader.Get(ctx, key, &cm)
	switch {
	case apierrors.IsNotFound(err):
		cm = corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, Labels: map[string]string{"app.kubernetes.io/managed-by": "hmsbus-operator"}},
			Data:       HeadData(h),
		}
		if err := s.Writer.Create(ctx, &cm); err != nil {
			return fmt.Errorf("creating ConfigMap %s: %w", key, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("reading ConfigMap %s: %w", key, err)
	}
	cm.Data = HeadData(h)
	if err := s.Writer.Update(ctx, &cm); err != nil {
		return fmt.Errorf("updating ConfigMap %s: %w", key, err)
	}
	return nil
}
