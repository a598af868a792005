package localstack

import (
	"context"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hms-platform/bus-operator/internal/pki"
	"github.com/hms-platform/bus-operator/test/harness/kafkabroker"
	"github.com/hms-platform/bus-operator/test/harness/testenv"
)

// On Apache Kafka the stack also serves the identities without shared
// passwords (Subscription spec.authentication tls and serviceAccount):
//
//   - the cluster admin provides the operator's clients CA as a Secret
//     before the operator starts (the alternative to letting the operator
//     create one), and the broker's MTLS listener trusts that CA from the
//     start;
//   - the API server publishes its ServiceAccount issuer discovery to
//     anonymous clients, and the broker's OAUTH listener validates tokens
//     with audience TokenAudience against its JWKS.
const (
	// ClientsCASecret is the clients CA Secret (and the ConfigMap the
	// operator publishes its certificate in), in testenv.SystemNamespace:
	// the operator's --clients-ca-secret default.
	ClientsCASecret = "hmsbus-clients-ca"
	// TokenAudience is the audience workloads request for their
	// ServiceAccount tokens: the operator's --client-token-audience default.
	TokenAudience = "kafka"
	// brokerCAFile is the broker's TLS CA, which issued credentials carry.
	brokerCAFile = "broker-ca.pem"
	// clientsCAValidity outlives any demo.
	clientsCAValidity = 365 * 24 * time.Hour
)

// identityOptions makes the clients CA and learns the API server's
// ServiceAccount issuer: what the broker's MTLS and OAUTH listeners trust.
func (s *Stack) identityOptions(ctx context.Context) (kafkabroker.Options, error) {
	issuer, err := s.Env.ServiceAccountIssuer(ctx)
	if err != nil {
		return kafkabroker.Options{}, err
	}
	certPEM, keyPEM, err := pki.NewCA("hmsbus clients CA (local stack)", clientsCAValidity, time.Now())
	if err != nil {
		return kafkabroker.Options{}, fmt.Errorf("making the clients CA: %w", err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: testenv.SystemNamespace, Name: ClientsCASecret},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM},
	}
	if err := s.Env.Client.Create(ctx, secret); err != nil && !apierrors.IsAlreadyExists(err) {
		return kafkabroker.Options{}, fmt.Errorf("creating the clients CA Secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	return kafkabroker.Options{
		ClientCAPEM: certPEM,
		OAuth: &kafkabroker.OAuth{
			JWKSURL:   issuer.JWKSURI,
			JWKSCAPEM: s.Env.ServingCAPEM(),
			Issuer:    issuer.URL,
			Audience:  []string{TokenAudience},
		},
	}, nil
}

// identityArgs are the operator flags for both identity listeners.
func (s *Stack) identityArgs() ([]string, error) {
	path := s.Path(brokerCAFile)
	if err := os.WriteFile(path, s.kafka.CAPEM(), 0o600); err != nil {
		return nil, fmt.Errorf("writing the broker CA: %w", err)
	}
	s.MTLSBootstrap, s.OAuthBootstrap = s.kafka.MTLSBootstrap(), s.kafka.OAuthBootstrap()
	return []string{
		"--client-tls-ca-file", path,
		"--client-tls-bootstrap", s.MTLSBootstrap,
		"--client-oauth-bootstrap", s.OAuthBootstrap,
		"--clients-ca-secret", ClientsCASecret,
		"--client-token-audience", TokenAudience,
	}, nil
}
