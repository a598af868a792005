package bus

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"unicode/utf16"
)

// Keys of the credentials Secret the operator writes for a Subscription. The
// operator and every client (this package, `hmsbus`, a mounted volume read by
// CredentialsFromDir) use these constants, so the two sides cannot drift.
const (
	// SecretKeyBootstrap holds the comma-separated bootstrap addresses.
	SecretKeyBootstrap = "bootstrap.servers"
	// SecretKeySecurityProtocol is SASL_PLAINTEXT or SASL_SSL.
	SecretKeySecurityProtocol = "security.protocol"
	// SecretKeyMechanism is SCRAM-SHA-512 or SCRAM-SHA-256.
	SecretKeyMechanism = "sasl.mechanism"
	// SecretKeyUsername is the SCRAM user name, <namespace>.<name>.
	SecretKeyUsername = "username"
	// SecretKeyPassword is the SCRAM password.
	SecretKeyPassword = "password"
	// SecretKeyGroup is the consumer group a consuming Subscription may use.
	SecretKeyGroup = "group.id"
	// SecretKeyTopics lists the granted broker topic names, comma-separated.
	SecretKeyTopics = "topics"
	// SecretKeyCACert is the PEM CA bundle that signs the brokers'
	// certificates, present only when the brokers use TLS with a private CA.
	SecretKeyCACert = "ca.crt"
	// SecretKeyJavaConfig is a ready Java client config (client.properties).
	SecretKeyJavaConfig = "client.properties"
	// SecretKeyEnvConfig is the same settings as HMSBUS_* environment
	// variables, read by CredentialsFromEnv (and so by Go clients built on
	// this package and by `hmsbus`).
	SecretKeyEnvConfig = "hmsbus.env"
)

// Security protocols, as Kafka clients name them.
const (
	SecurityProtocolSASLPlaintext = "SASL_PLAINTEXT"
	SecurityProtocolSASLSSL       = "SASL_SSL"
)

// SCRAM mechanisms.
const (
	MechanismSCRAMSHA512 = "SCRAM-SHA-512"
	MechanismSCRAMSHA256 = "SCRAM-SHA-256"
)

// Environment variables read by CredentialsFromEnv.
const (
	EnvBootstrap        = "HMSBUS_BOOTSTRAP"
	EnvSecurityProtocol = "HMSBUS_SECURITY_PROTOCOL"
	EnvMechanism        = "HMSBUS_MECHANISM"
	EnvUsername         = "HMSBUS_USERNAME"
	EnvPassword         = "HMSBUS_PASSWORD"
	EnvGroup            = "HMSBUS_GROUP"
	EnvTopics           = "HMSBUS_TOPICS"
	// EnvCAFile is a path to a PEM CA bundle: a PEM in an environment
	// variable is awkward, a mounted file is not.
	EnvCAFile = "HMSBUS_CA_FILE"
)

// ErrIncompleteCredentials is returned when a required credential is missing.
var ErrIncompleteCredentials = errors.New("incomplete bus credentials")

// Credentials are what a client needs to reach the bus as one Subscription.
type Credentials struct {
	// Bootstrap addresses, host:port.
	Bootstrap []string
	// Mechanism is MechanismSCRAMSHA512 (the default when empty) or
	// MechanismSCRAMSHA256.
	Mechanism string
	Username  string
	Password  string
	// ConsumerGroup the credentials may consume as (consumers only).
	ConsumerGroup string
	// Topics granted (informational; the broker's ACLs decide).
	Topics []string
	// TLS turns on TLS to the brokers; CACert, if set, is the PEM bundle to
	// trust instead of the system roots.
	TLS    bool
	CACert []byte
	// CertPEM and KeyPEM are a client certificate identity (security
	// protocol SSL, no SASL); CertFile and KeyFile, when set, are read
	// instead at every handshake, so a renewed certificate is picked up.
	CertPEM, KeyPEM   []byte
	CertFile, KeyFile string
	// TokenFile holds the workload's ServiceAccount token, for Mechanism
	// OAUTHBEARER; it is read at every authentication. TokenAudience is
	// the audience the token must be requested with (informational).
	TokenFile, TokenAudience string
}

// String never shows the password, so a Credentials can be logged.
func (c Credentials) String() string {
	return fmt.Sprintf("%s@%s (%s, group %q)", c.Username, strings.Join(c.Bootstrap, ","), c.mechanism(), c.ConsumerGroup)
}

// SecurityProtocol is SSL for a certificate identity, otherwise SASL_SSL
// with TLS and SASL_PLAINTEXT without.
func (c Credentials) SecurityProtocol() string {
	if c.usesCertificate() {
		return SecurityProtocolSSL
	}
	if c.TLS {
		return SecurityProtocolSASLSSL
	}
	return SecurityProtocolSASLPlaintext
}

func (c Credentials) mechanism() string {
	if c.Mechanism == "" {
		return MechanismSCRAMSHA512
	}
	return c.Mechanism
}

// Validate reports what is missing or malformed.
func (c Credentials) Validate() error {
	if handled, err := c.validateIdentity(); handled {
		if err == nil && len(c.Bootstrap) == 0 {
			err = fmt.Errorf("%w: missing bootstrap servers", ErrIncompleteCredentials)
		}
		return err
	}
	var missing []string
	if len(c.Bootstrap) == 0 {
		missing = append(missing, "bootstrap servers")
	}
	if c.Username == "" {
		missing = append(missing, "username")
	}
	if c.Password == "" {
		missing = append(missing, "password")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing %s", ErrIncompleteCredentials, strings.Join(missing, ", "))
	}
	switch c.mechanism() {
	case MechanismSCRAMSHA512, MechanismSCRAMSHA256:
	default:
		return fmt.Errorf("%w: unsupported SASL mechanism %q (want %s or %s)", ErrIncompleteCredentials, c.Mechanism, MechanismSCRAMSHA512, MechanismSCRAMSHA256)
	}
	return nil
}

// CredentialsFromSecretData reads credentials from the data of the Secret the
// operator writes (the keys are the SecretKey* constants).
func CredentialsFromSecretData(data map[string][]byte) (Credentials, error) {
	c, err := credentialsFromData(data)
	if err != nil {
		return Credentials{}, fmt.Errorf("reading credentials from secret data: %w", err)
	}
	return c, nil
}

func credentialsFromData(data map[string][]byte) (Credentials, error) {
	get := func(k string) string { return strings.TrimSpace(string(data[k])) }
	return credentialsFrom(get, data[SecretKeyCACert])
}

// CredentialsFromDir reads credentials from a directory holding one file per
// Secret key, as Kubernetes mounts a Secret volume.
func CredentialsFromDir(dir string) (Credentials, error) {
	// A mistyped path must say so, not look like a Secret missing keys.
	if info, err := os.Stat(dir); err != nil {
		return Credentials{}, fmt.Errorf("credentials directory: %w", err)
	} else if !info.IsDir() {
		return Credentials{}, fmt.Errorf("credentials directory %s is not a directory", dir)
	}
	data := map[string][]byte{}
	for _, k := range []string{SecretKeyBootstrap, SecretKeySecurityProtocol, SecretKeyMechanism, SecretKeyUsername, SecretKeyPassword, SecretKeyGroup, SecretKeyTopics, SecretKeyCACert,
		SecretKeyCert, SecretKeyKey, SecretKeyTokenFile, SecretKeyTokenAudience} {
		b, err := os.ReadFile(filepath.Join(dir, k))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return Credentials{}, fmt.Errorf("reading credentials from %s: %w", dir, err)
		}
		data[k] = b
	}
	c, err := credentialsFromData(data)
	if err != nil {
		return Credentials{}, fmt.Errorf("reading credentials from %s: %w", dir, err)
	}
	if c.usesCertificate() {
		// The kubelet replaces the mounted files when the operator renews
		// the certificate: read them again at each handshake.
		c.CertFile, c.KeyFile = filepath.Join(dir, SecretKeyCert), filepath.Join(dir, SecretKeyKey)
	}
	return c, nil
}

// CredentialsFromEnv reads credentials from the HMSBUS_* environment
// variables (the Env* constants).
func CredentialsFromEnv() (Credentials, error) {
	var ca []byte
	if path := os.Getenv(EnvCAFile); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return Credentials{}, fmt.Errorf("reading %s: %w", EnvCAFile, err)
		}
		ca = b
	}
	env := map[string]string{
		SecretKeyBootstrap:        EnvBootstrap,
		SecretKeySecurityProtocol: EnvSecurityProtocol,
		SecretKeyMechanism:        EnvMechanism,
		SecretKeyUsername:         EnvUsername,
		SecretKeyPassword:         EnvPassword,
		SecretKeyGroup:            EnvGroup,
		SecretKeyTopics:           EnvTopics,
	}
	get := func(k string) string { return strings.TrimSpace(os.Getenv(env[k])) }
	if certFile, keyFile, tokenFile := os.Getenv(EnvCertFile), os.Getenv(EnvKeyFile), os.Getenv(EnvTokenFile); certFile != "" || tokenFile != "" {
		c := Credentials{Bootstrap: splitList(get(SecretKeyBootstrap)), ConsumerGroup: get(SecretKeyGroup), Topics: splitList(get(SecretKeyTopics)),
			CACert: ca, CertFile: certFile, KeyFile: keyFile, TokenFile: tokenFile, TLS: len(ca) > 0 || get(SecretKeySecurityProtocol) == SecurityProtocolSASLSSL}
		if tokenFile != "" {
			c.Mechanism = MechanismOAuthBearer
		}
		if err := c.Validate(); err != nil {
			return Credentials{}, fmt.Errorf("reading credentials from environment: %w", err)
		}
		return c, nil
	}
	c, err := credentialsFrom(get, ca)
	if err != nil {
		return Credentials{}, fmt.Errorf("reading credentials from environment: %w", err)
	}
	return c, nil
}

// credentialsFrom builds Credentials from a lookup by Secret key.
func credentialsFrom(get func(key string) string, ca []byte) (Credentials, error) {
	c := Credentials{
		Bootstrap:     splitList(get(SecretKeyBootstrap)),
		Mechanism:     get(SecretKeyMechanism),
		Username:      get(SecretKeyUsername),
		Password:      get(SecretKeyPassword),
		ConsumerGroup: get(SecretKeyGroup),
		Topics:        splitList(get(SecretKeyTopics)),
		CACert:        ca,
	}
	if cert := get(SecretKeyCert); cert != "" {
		c.CertPEM, c.KeyPEM = []byte(cert+"\n"), []byte(get(SecretKeyKey)+"\n")
		c.Mechanism = ""
	}
	if c.Mechanism == MechanismOAuthBearer {
		c.TokenFile, c.TokenAudience = get(SecretKeyTokenFile), get(SecretKeyTokenAudience)
	}
	switch p := get(SecretKeySecurityProtocol); p {
	case "", SecurityProtocolSASLPlaintext:
		// A CA bundle without an explicit protocol can only mean TLS.
		c.TLS = len(ca) > 0
	case SecurityProtocolSASLSSL, SecurityProtocolSSL:
		c.TLS = true
	default:
		return Credentials{}, fmt.Errorf("%w: unsupported security protocol %q", ErrIncompleteCredentials, p)
	}
	if c.Mechanism == "" && !c.usesCertificate() {
		c.Mechanism = MechanismSCRAMSHA512
	}
	if err := c.Validate(); err != nil {
		return Credentials{}, err
	}
	return c, nil
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// SecretData renders the whole Secret payload for c: the single keys, the
// Java client config and the env file. The operator writes exactly this.
func SecretData(c Credentials) map[string][]byte {
	env, java := ClientConfig(c)
	data := map[string][]byte{
		SecretKeyBootstrap:        []byte(strings.Join(c.Bootstrap, ",")),
		SecretKeySecurityProtocol: []byte(c.SecurityProtocol()),
		SecretKeyJavaConfig:       []byte(java),
		SecretKeyEnvConfig:        []byte(env),
		SecretKeyLibrdkafkaConfig: []byte(librdkafkaConfig(c)),
	}
	switch {
	case c.usesCertificate():
		data[SecretKeyUsername] = []byte(c.Username) // the certificate's CN
	case c.usesToken():
		data[SecretKeyMechanism] = []byte(MechanismOAuthBearer)
	default:
		data[SecretKeyMechanism] = []byte(c.mechanism())
		data[SecretKeyUsername] = []byte(c.Username)
		data[SecretKeyPassword] = []byte(c.Password)
	}
	identityData(c, data)
	if c.ConsumerGroup != "" {
		data[SecretKeyGroup] = []byte(c.ConsumerGroup)
	}
	if len(c.Topics) > 0 {
		data[SecretKeyTopics] = []byte(strings.Join(c.Topics, ","))
	}
	if len(c.CACert) > 0 {
		data[SecretKeyCACert] = c.CACert
	}
	return data
}

// ClientConfig renders ready client configs for c: an env file of HMSBUS_*
// variables (for Go clients on this package, franz-go underneath) and a Java
// client.properties. Both contain the password: they belong in a Secret only.
func ClientConfig(c Credentials) (envFile string, javaProperties string) {
	return envConfig(c), javaConfig(c)
}

func envConfig(c Credentials) string {
	var b strings.Builder
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s=%s\n", k, shellQuote(v))
		}
	}
	line(EnvBootstrap, strings.Join(c.Bootstrap, ","))
	line(EnvSecurityProtocol, c.SecurityProtocol())
	switch {
	case c.usesCertificate():
		// PEM does not fit an env file: point at the mounted files.
		line(EnvCertFile, "./"+SecretKeyCert)
		line(EnvKeyFile, "./"+SecretKeyKey)
	case c.usesToken():
		line(EnvMechanism, MechanismOAuthBearer)
		line(EnvTokenFile, c.TokenFile)
	default:
		line(EnvMechanism, c.mechanism())
		line(EnvUsername, c.Username)
		line(EnvPassword, c.Password)
	}
	line(EnvGroup, c.ConsumerGroup)
	line(EnvTopics, strings.Join(c.Topics, ","))
	return b.String()
}

// shellQuote leaves plain values bare, so the file also works as a Docker or
// systemd env file, and single-quotes anything else so a shell can source
// it (set -a; . hmsbus.env) without expanding or splitting the value.
func shellQuote(v string) string {
	if plainValue.MatchString(v) {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}

var plainValue = regexp.MustCompile(`^[A-Za-z0-9._,:/@+=-]*$`)

func javaConfig(c Credentials) string {
	var b strings.Builder
	prop := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s=%s\n", k, propertiesEscape(v))
		}
	}
	prop("bootstrap.servers", strings.Join(c.Bootstrap, ","))
	prop("security.protocol", c.SecurityProtocol())
	javaIdentity(c, prop)
	prop("group.id", c.ConsumerGroup)
	if len(c.CACert) > 0 {
		// KIP-651: a PEM trust store inline, so the Secret alone suffices.
		prop("ssl.truststore.type", "PEM")
		prop("ssl.truststore.certificates", string(c.CACert))
	}
	return b.String()
}

// jaasQuote quotes a JAAS option value. Kafka's JAAS parser (Java's
// StreamTokenizer) honours backslash escapes inside double quotes and ends
// a quoted string at a line break, so line breaks are escaped too: a raw
// one would let the rest of the value be read as further options (found by
// FuzzClientConfigQuoting).
func jaasQuote(v string) string {
	return `"` + jaasEscaper.Replace(v) + `"`
}

var jaasEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`)

// propertiesEscape escapes a value for java.util.Properties.load, which
// reads ISO-8859-1: backslashes, line breaks, a leading space and anything
// outside Latin-1 printable ASCII must be escaped.
func propertiesEscape(v string) string {
	var b strings.Builder
	for i, r := range v {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == ' ' && i == 0:
			b.WriteString(`\ `)
		case r < 0x20 || r > 0x7e:
			if r > 0xffff {
				hi, lo := utf16.EncodeRune(r)
				fmt.Fprintf(&b, `\u%04x\u%04x`, hi, lo)
				continue
			}
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
