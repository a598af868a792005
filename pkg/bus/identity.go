package bus

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
)

// Identities besides SCRAM: a client certificate from the operator's
// clients CA (security protocol SSL), or the workload's own ServiceAccount
// token over SASL/OAUTHBEARER. Both are read from files again whenever a
// connection authenticates, so a certificate renewed by the operator or a
// token refreshed by the kubelet is picked up without a restart.

// Keys of the credentials Secret for the other identities.
const (
	// SecretKeyCert is the client certificate (PEM), for certificate
	// identities; SecretKeyKey its private key.
	SecretKeyCert = "tls.crt"
	SecretKeyKey  = "tls.key"
	// SecretKeyTokenFile is where the workload's projected ServiceAccount
	// token is mounted, for OAUTHBEARER identities; SecretKeyTokenAudience
	// is the audience that token must be requested with.
	SecretKeyTokenFile     = "token.file"
	SecretKeyTokenAudience = "token.audience"
	// SecretKeyLibrdkafkaConfig is a ready librdkafka config (for example
	// confluent-kafka in Python), key=value lines.
	SecretKeyLibrdkafkaConfig = "librdkafka.properties"
)

// MechanismOAuthBearer is SASL/OAUTHBEARER: a JWT as the credential.
const MechanismOAuthBearer = "OAUTHBEARER"

// SecurityProtocolSSL is TLS with a client certificate and no SASL.
const SecurityProtocolSSL = "SSL"

// DefaultTokenFile is where a pod mounts its projected ServiceAccount token
// for the bus (see the README's pod spec).
const DefaultTokenFile = "/var/run/secrets/bus.hms.io/serviceaccount/token"

// Environment variables for the other identities.
const (
	// EnvCertFile and EnvKeyFile are paths of the client certificate and
	// key (PEM).
	EnvCertFile = "HMSBUS_CERT_FILE"
	EnvKeyFile  = "HMSBUS_KEY_FILE"
	// EnvTokenFile is the path of the ServiceAccount token.
	EnvTokenFile = "HMSBUS_TOKEN_FILE"
)

// usesCertificate reports a certificate identity (no SASL).
func (c Credentials) usesCertificate() bool {
	return len(c.CertPEM) > 0 || c.CertFile != ""
}

// usesToken reports an OAUTHBEARER identity.
func (c Credentials) usesToken() bool { return c.Mechanism == MechanismOAuthBearer }

// identityOpts are the kgo options that authenticate c.
func identityOpts(c Credentials) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	switch {
	case c.usesCertificate():
	case c.usesToken():
		file := c.TokenFile
		opts = append(opts, kgo.SASL(oauth.Oauth(func(context.Context) (oauth.Auth, error) {
			// Read on every authentication: the kubelet replaces the
			// file before the token expires.
			token, err := readToken(file)
			return oauth.Auth{Token: token}, err
		})))
	default:
		opts = append(opts, kgo.SASL(scramMechanism(c)))
	}
	if c.TLS || c.usesCertificate() {
		cfg, err := tlsConfig(c.CACert)
		if err != nil {
			return nil, err
		}
		if c.usesCertificate() {
			cfg.GetClientCertificate = c.clientCertificate
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	return opts, nil
}

// clientCertificate loads the key pair for a TLS handshake: from the files
// when the credentials came from a mounted Secret (so a renewal reaches a
// running client), else from the PEM held in memory.
func (c Credentials) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	certPEM, keyPEM := c.CertPEM, c.KeyPEM
	if c.CertFile != "" {
		var err error
		if certPEM, err = os.ReadFile(c.CertFile); err != nil {
			return nil, fmt.Errorf("reading client certificate: %w", err)
		}
		if keyPEM, err = os.ReadFile(c.KeyFile); err != nil {
			return nil, fmt.Errorf("reading client key: %w", err)
		}
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading client certificate: %w", err)
	}
	return &pair, nil
}

// readToken reads a JWT from a file.
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the ServiceAccount token: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("the ServiceAccount token file %s is empty", path)
	}
	return token, nil
}

// validateIdentity checks the non-SCRAM identities; it returns handled
// false for SCRAM credentials, which Validate checks itself.
func (c Credentials) validateIdentity() (handled bool, err error) {
	switch {
	case c.usesCertificate():
		if c.CertFile == "" {
			if _, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM); err != nil {
				return true, fmt.Errorf("%w: client certificate and key do not form a pair: %w", ErrIncompleteCredentials, err)
			}
		} else if c.KeyFile == "" {
			return true, fmt.Errorf("%w: a client certificate file needs its key file", ErrIncompleteCredentials)
		}
		return true, nil
	case c.usesToken():
		if c.TokenFile == "" {
			return true, fmt.Errorf("%w: missing the ServiceAccount token file", ErrIncompleteCredentials)
		}
		return true, nil
	}
	return false, nil
}

// identityData renders the Secret keys of a certificate or token identity:
// the material and ready configs for Java, librdkafka and this package.
func identityData(c Credentials, data map[string][]byte) {
	switch {
	case c.usesCertificate():
		data[SecretKeyCert] = c.CertPEM
		data[SecretKeyKey] = c.KeyPEM
	case c.usesToken():
		data[SecretKeyTokenFile] = []byte(c.TokenFile)
		data[SecretKeyTokenAudience] = []byte(c.TokenAudience)
	}
}

// javaIdentity writes the Java client properties that authenticate c.
func javaIdentity(c Credentials, prop func(k, v string)) {
	switch {
	case c.usesCertificate():
		// KIP-651: PEM key stores inline, so the Secret alone suffices.
		prop("ssl.keystore.type", "PEM")
		prop("ssl.keystore.certificate.chain", string(c.CertPEM))
		prop("ssl.keystore.key", string(c.KeyPEM))
	case c.usesToken():
		// KIP-768: a file:// token endpoint makes the client read the
		// token from the file, again at each refresh. Kafka 4 also needs
		// the JVM flag -Dorg.apache.kafka.sasl.oauthbearer.allowed.urls=
		// file:///that/path (see the README).
		prop("sasl.mechanism", MechanismOAuthBearer)
		prop("sasl.login.callback.handler.class", "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler")
		prop("sasl.oauthbearer.token.endpoint.url", "file://"+c.TokenFile)
		prop("sasl.jaas.config", "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required ;")
	default:
		prop("sasl.mechanism", c.mechanism())
		prop("sasl.jaas.config", fmt.Sprintf(`org.apache.kafka.common.security.scram.ScramLoginModule required username=%s password=%s;`, jaasQuote(c.Username), jaasQuote(c.Password)))
	}
}

// librdkafkaConfig renders a librdkafka config (key=value lines). A token
// identity needs the application to hand librdkafka the token from the file
// (an oauth_cb in confluent-kafka): librdkafka cannot read it itself.
func librdkafkaConfig(c Credentials) string {
	var b strings.Builder
	prop := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s=%s\n", k, strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(v))
		}
	}
	prop("bootstrap.servers", strings.Join(c.Bootstrap, ","))
	prop("security.protocol", strings.ToLower(c.SecurityProtocol()))
	switch {
	case c.usesCertificate():
		prop("ssl.certificate.pem", string(c.CertPEM))
		prop("ssl.key.pem", string(c.KeyPEM))
	case c.usesToken():
		prop("sasl.mechanisms", MechanismOAuthBearer)
	default:
		prop("sasl.mechanisms", c.mechanism())
		prop("sasl.username", c.Username)
		prop("sasl.password", c.Password)
	}
	if len(c.CACert) > 0 {
		prop("ssl.ca.pem", string(c.CACert))
	}
	prop("group.id", c.ConsumerGroup)
	return b.String()
}
