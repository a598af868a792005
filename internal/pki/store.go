package pki

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// CA Secret and ConfigMap keys.
const (
	// KeyCACert is the CA certificate in the ConfigMap (and in Secrets of
	// type kubernetes.io/tls it is tls.crt).
	KeyCACert = "ca.crt"
	// caValidity of a CA the operator makes itself. Client certificates
	// are short-lived; the CA is replaced by hand, by deleting its Secret
	// (every client certificate is then re-issued at its next renewal).
	caValidity = 10 * 365 * 24 * time.Hour
)

// Store keeps the clients CA in a Secret (created on first use when it does
// not exist, or an existing one a cluster admin provides, with tls.crt and
// tls.key) and publishes its certificate in a ConfigMap (key ca.crt) that a
// broker's truststore can be built from.
type Store struct {
	// Client writes the Secret and the ConfigMap.
	Client client.Client
	// Reader reads around the cache: the CA Secret carries no label the
	// operator's Secret cache selects, and must not be cached cluster-wide.
	Reader client.Reader
	// Secret and ConfigMap name where the CA lives and is published.
	Secret, ConfigMap types.NamespacedName
	// KeepPrevious is how long a replaced CA stays in the published bundle
	// beside its successor, so brokers keep trusting the certificates it
	// issued until they are renewed: set it to the client certificates'
	// validity (default 30 days).
	KeepPrevious time.Duration
	// Now is the clock; tests replace it.
	Now func() time.Time

	mu sync.Mutex
	ca *CA
	rv string // resourceVersion of the Secret ca was read from
	// checked is when the published bundle was last compared with the CA.
	checked time.Time
}

// annotationPreviousUntil on the ConfigMap says until when the previous CA
// stays in the bundle.
const annotationPreviousUntil = "bus.hms.io/previous-ca-until"

// republishEvery bounds how often CA checks the published bundle when the
// CA did not change: dropping a previous CA is not urgent.
const republishEvery = 10 * time.Minute

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// CA returns the clients CA, creating it when its Secret does not exist.
// The Secret is read each time (cheap, uncached) so a CA replaced by an
// admin is picked up; it is parsed again only when it changed.
func (s *Store) CA(ctx context.Context) (*CA, error) {
	secret := &corev1.Secret{}
	err := s.Reader.Get(ctx, s.Secret, secret)
	switch {
	case apierrors.IsNotFound(err):
		if secret, err = s.create(ctx); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("reading clients CA Secret %s: %w", s.Secret, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := s.ca == nil || s.rv != secret.ResourceVersion
	if changed {
		ca, err := ParseCA(secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey])
		if err != nil {
			return nil, fmt.Errorf("clients CA Secret %s (keys tls.crt and tls.key): %w", s.Secret, err)
		}
		s.ca, s.rv = ca, secret.ResourceVersion
	}
	// The brokers' truststore follows the CA: a CA replaced in its Secret
	// is published before any certificate it issues reaches a client.
	if changed || s.now().Sub(s.checked) > republishEvery {
		if err := s.publish(ctx, s.ca); err != nil {
			return nil, err
		}
		s.checked = s.now()
	}
	return s.ca, nil
}

// create makes a new CA and stores it. Two operator replicas racing here
// are settled by the API server: the loser reads the winner's CA.
func (s *Store) create(ctx context.Context) (*corev1.Secret, error) {
	certPEM, keyPEM, err := NewCA("hms-bus clients CA", caValidity, s.now())
	if err != nil {
		return nil, err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Secret.Namespace, Name: s.Secret.Name,
			Labels: map[string]string{"app.kubernetes.io/part-of": "hmsbus"}},
		Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM},
	}
	err = s.Client.Create(ctx, secret)
	if apierrors.IsAlreadyExists(err) {
		if err := s.Reader.Get(ctx, s.Secret, secret); err != nil {
			return nil, fmt.Errorf("reading clients CA Secret %s: %w", s.Secret, err)
		}
		return secret, nil
	}
	if err != nil {
		return nil, fmt.Errorf("creating clients CA Secret %s: %w", s.Secret, err)
	}
	log.FromContext(ctx).Info("created the clients CA", "secret", s.Secret.String())
	return secret, nil
}

// Publish writes the CA certificate into the ConfigMap, creating or
// updating it, so the brokers' truststore can follow the CA.
func (s *Store) Publish(ctx context.Context) error {
	_, err := s.CA(ctx)
	return err
}

// publish makes the ConfigMap's bundle the current CA, followed by the
// previous one for KeepPrevious after a change: certificates the previous CA
// issued stay trusted until the operator has renewed them.
func (s *Store) publish(ctx context.Context, ca *CA) error {
	now := s.now()
	cm := &corev1.ConfigMap{}
	err := s.Reader.Get(ctx, s.ConfigMap, cm)
	switch {
	case apierrors.IsNotFound(err):
		cm = &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: s.ConfigMap.Namespace, Name: s.ConfigMap.Name,
				Labels: map[string]string{"app.kubernetes.io/part-of": "hmsbus"}},
			Data: map[string]string{KeyCACert: string(ca.CertPEM)},
		}
		if err := s.Client.Create(ctx, cm); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("publishing clients CA in ConfigMap %s: %w", s.ConfigMap, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("reading ConfigMap %s: %w", s.ConfigMap, err)
	}
	bundle, annotations := publishedBundle(cm, ca, now, s.keepPrevious())
	if bundle == cm.Data[KeyCACert] && equalAnnotation(cm.Annotations, annotations) {
		return nil
	}
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[KeyCACert] = bundle
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	delete(cm.Annotations, annotationPreviousUntil)
	for k, v := range annotations {
		cm.Annotations[k] = v
	}
	if err := s.Client.Update(ctx, cm); err != nil {
		return fmt.Errorf("publishing clients CA in ConfigMap %s: %w", s.ConfigMap, err)
	}
	log.FromContext(ctx).Info("published the clients CA", "configMap", s.ConfigMap.String(), "previousKeptUntil", annotations[annotationPreviousUntil])
	return nil
}

func (s *Store) keepPrevious() time.Duration {
	if s.KeepPrevious > 0 {
		return s.KeepPrevious
	}
	return 30 * 24 * time.Hour
}

// publishedBundle is what the ConfigMap should hold: the current CA first;
// after a change, the CA it replaced second, until the annotation's time.
func publishedBundle(cm *corev1.ConfigMap, ca *CA, now time.Time, keep time.Duration) (string, map[string]string) {
	current := string(ca.CertPEM)
	old := cm.Data[KeyCACert]
	first, err := ParseCertificate([]byte(old))
	switch {
	case err != nil:
		return current, nil
	case !first.Equal(ca.Cert):
		// The CA changed: keep the one published so far beside it.
		until := now.Add(keep).UTC().Format(time.RFC3339)
		return current + string(pemOf(first)), map[string]string{annotationPreviousUntil: until}
	}
	until, err := time.Parse(time.RFC3339, cm.Annotations[annotationPreviousUntil])
	if err != nil || !now.Before(until) {
		return current, nil
	}
	return old, map[string]string{annotationPreviousUntil: cm.Annotations[annotationPreviousUntil]}
}

func equalAnnotation(have, want map[string]string) bool {
	return have[annotationPreviousUntil] == want[annotationPreviousUntil]
}

func pemOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// Publisher is a manager runnable that publishes the CA at start, retrying
// with back-off while the API server refuses, so a broker can be configured
// to trust client certificates before the first one is issued.
type Publisher struct{ Store *Store }

// NeedLeaderElection: one replica writes.
func (p Publisher) NeedLeaderElection() bool { return true }

// Start publishes, then returns.
func (p Publisher) Start(ctx context.Context) error {
	lg := log.FromContext(ctx).WithName("clients-ca")
	delay := time.Second
	for {
		err := p.Store.Publish(ctx)
		if err == nil {
			lg.Info("clients CA published", "configMap", p.Store.ConfigMap.String())
			return nil
		}
		lg.Error(err, "publishing the clients CA; retrying", "retryIn", delay.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Minute)
	}
}

// ErrNoCA is returned when certificates are asked for but the operator was
// configured without a clients CA.
var ErrNoCA = errors.New("the operator has no clients CA configured (--clients-ca-secret)")
