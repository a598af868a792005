package kafkabroker

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// ListenerOAuth is the SASL_SSL listener Options.OAuth adds: OAUTHBEARER
// only, serving the broker certificate like the TLS listener.
const ListenerOAuth = "OAUTH"

// OAuthValidatorHandler is Kafka's built-in validator of OAUTHBEARER
// tokens: it checks the JWT's signature against the issuer's JWKS, its
// expiry, and the expected audience and issuer, and takes the principal
// from the subject claim.
const OAuthValidatorHandler = "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"

// AllowedURLsProperty is the JVM system property that lists the URLs
// Kafka's OAuth code may contact. Kafka 4 allows none by default, so a
// broker validating against a JWKS endpoint must name it here.
const AllowedURLsProperty = "org.apache.kafka.sasl.oauthbearer.allowed.urls"

// OAuth configures ListenerOAuth, whose OAUTHBEARER tokens are validated
// with Kafka's built-in validator against an OIDC issuer, for example the
// Kubernetes API server's ServiceAccount issuer (whose tokens then log in
// as User:system:serviceaccount:<namespace>:<name>).
type OAuth struct {
	// JWKSURL is where the issuer serves its verification keys
	// (https://<apiserver>/openid/v1/jwks for Kubernetes).
	JWKSURL string
	// JWKSCAPEM is the CA the JWKS endpoint's certificate chains to; empty
	// means the JVM's default trust store.
	JWKSCAPEM []byte
	// Issuer is the expected iss claim; empty skips the check.
	Issuer string
	// Audience lists the accepted aud claims (a token needs one of them);
	// empty skips the check.
	Audience []string
	// SubClaim names the claim the principal comes from (default sub).
	SubClaim string
}

// listener renders the OAUTH listener and the JVM options it needs.
func (o *OAuth) listener() (Listener, []string, error) {
	u, err := url.Parse(o.JWKSURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return Listener{}, nil, fmt.Errorf("OAuth.JWKSURL %q: want an http(s) URL", o.JWKSURL)
	}
	if strings.ContainsAny(o.JWKSURL, ",\n") {
		// The allowed-URLs property is a comma-separated list.
		return Listener{}, nil, fmt.Errorf("OAuth.JWKSURL %q: no commas or line breaks", o.JWKSURL)
	}
	// Kafka's JWKS client builds its TLS settings from the JAAS options of
	// the OAUTHBEARER login module (the client ssl.* configs, read as JAAS
	// options): a PEM trust store given inline keeps the JWKS CA out of the
	// JVM's global trust.
	//
	// Kafka also logs the broker itself in on every SASL listener, with
	// the unsecured login handler unless told otherwise, and refuses to
	// start if that login has no subject. The token it makes is never
	// sent (brokers talk over INTERNAL with PLAIN) and would fail the
	// validator anyway (unsigned), so a fixed subject is all it needs.
	jaas := `org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="kafka-broker"`
	if len(o.JWKSCAPEM) > 0 {
		if !strings.Contains(string(o.JWKSCAPEM), "-----BEGIN CERTIFICATE-----") {
			return Listener{}, nil, errors.New("OAuth.JWKSCAPEM holds no PEM certificate")
		}
		jaas += ` ssl.truststore.type="PEM" ssl.truststore.certificates=` + jaasQuoted(string(o.JWKSCAPEM))
	}
	jaas += ";"
	props := map[string]string{
		"sasl.enabled.mechanisms":                        "OAUTHBEARER",
		"oauthbearer.sasl.jaas.config":                   jaas,
		"oauthbearer.sasl.server.callback.handler.class": OAuthValidatorHandler,
		"sasl.oauthbearer.jwks.endpoint.url":             o.JWKSURL,
	}
	if o.Issuer != "" {
		props["sasl.oauthbearer.expected.issuer"] = o.Issuer
	}
	if len(o.Audience) > 0 {
		if slices.ContainsFunc(o.Audience, func(a string) bool { return a == "" || strings.Contains(a, ",") }) {
			return Listener{}, nil, fmt.Errorf("OAuth.Audience %q: no empty entries or commas", o.Audience)
		}
		props["sasl.oauthbearer.expected.audience"] = strings.Join(o.Audience, ",")
	}
	if o.SubClaim != "" {
		props["sasl.oauthbearer.sub.claim.name"] = o.SubClaim
	}
	l := Listener{Name: ListenerOAuth, SecurityProtocol: "SASL_SSL", Properties: props}
	return l, []string{"-D" + AllowedURLsProperty + "=" + o.JWKSURL}, nil
}

// withOAuth adds the OAUTH listener and its JVM option to o when o.OAuth
// is set.
func withOAuth(o Options) (Options, error) {
	if o.OAuth == nil {
		return o, nil
	}
	if slices.ContainsFunc(o.ExtraListeners, func(l Listener) bool { return l.Name == ListenerOAuth }) {
		return o, fmt.Errorf("extra listener %s: Options.OAuth adds that listener", ListenerOAuth)
	}
	l, args, err := o.OAuth.listener()
	if err != nil {
		return o, err
	}
	o.ExtraListeners = append(slices.Clone(o.ExtraListeners), l)
	o.ExtraJVMArgs = append(slices.Clone(o.ExtraJVMArgs), args...)
	return o, nil
}

// jaasQuoted quotes a JAAS option value: Kafka's JAAS parser honours
// backslash escapes (\n among them) inside double quotes, and a quoted
// string must not span lines.
func jaasQuoted(v string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`).Replace(v) + `"`
}

// OAuthBootstrap is the OAUTH listener's address (Options.OAuth).
func (b *Broker) OAuthBootstrap() string { return b.AdvertisedAddr(ListenerOAuth) }
