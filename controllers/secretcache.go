package controllers

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/hms-platform/bus-operator/pkg/bus"
)

// The operator caches the credentials Secrets it manages (one per
// Subscription) to see them change, but it needs only a few of their
// keys to decide anything: the password (reused, and checked against its
// digest), and a certificate with its key (reused until renewal). The rest
// (client configs that repeat the password, the CA, the bootstrap) is
// derived from those and rewritten whole when anything differs. So the
// cache keeps those keys and a digest of all the data: about a tenth of
// the bytes, and fewer copies of credentials in the operator's memory.

// annotationCachedDataDigest is set by TrimCachedSecret on the cached copy
// only, never written to the API server: the SHA-256 of the Secret's whole
// data as the API server has it.
const annotationCachedDataDigest = "bus.hms.io/cached-data-sha256"

// cachedSecretKeys are the data keys a reconcile reads from the Secret.
var cachedSecretKeys = []string{bus.SecretKeyPassword, bus.SecretKeyCert, bus.SecretKeyKey}

// TrimCachedSecret is the cache transform for the operator's Secrets: it
// drops managedFields and every data key a reconcile does not read,
// recording the digest of the whole data (see annotationCachedDataDigest).
func TrimCachedSecret(obj any) (any, error) {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return obj, nil
	}
	s.ManagedFields = nil
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[annotationCachedDataDigest] = dataDigest(s.Data)
	kept := make(map[string][]byte, len(cachedSecretKeys))
	for _, k := range cachedSecretKeys {
		if v, has := s.Data[k]; has {
			kept[k] = v
		}
	}
	s.Data = kept
	return s, nil
}

// dataDigest is a digest of a Secret's data that no two different maps
// share: keys in order, each key and value length-prefixed.
func dataDigest(data map[string][]byte) string {
	h := sha256.New()
	var n [8]byte
	for _, k := range slices.Sorted(maps.Keys(data)) {
		for _, b := range [][]byte{[]byte(k), data[k]} {
			binary.BigEndian.PutUint64(n[:], uint64(len(b)))
			h.Write(n[:])
			h.Write(b)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// trustedDataDigest is the digest a cached Secret carries, "" for a Secret
// read from the API server (whose annotation, if someone set one, is not
// ours: currentSecret removes it).
func trustedDataDigest(s *corev1.Secret) string { return s.Annotations[annotationCachedDataDigest] }

// withoutCacheAnnotation is s's annotations as the API server has them.
func withoutCacheAnnotation(annotations map[string]string) map[string]string {
	if _, has := annotations[annotationCachedDataDigest]; !has {
		return annotations
	}
	out := maps.Clone(annotations)
	delete(out, annotationCachedDataDigest)
	if len(out) == 0 {
		return nil
	}
	return out
}

// sameSecretData says whether current (cached or live) holds data.
func sameSecretData(current *corev1.Secret, data map[string][]byte) bool {
	if d := trustedDataDigest(current); d != "" {
		return d == dataDigest(data)
	}
	return equality.Semantic.DeepEqual(current.Data, data)
}
