package kafkabroker

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"
)

// The listeners every broker has. Clients use the first three; the last two
// carry the broker's own traffic and accept only its internal user.
const (
	// ListenerClient is SASL_PLAINTEXT with SCRAM-SHA-512 and SCRAM-SHA-256.
	ListenerClient = "CLIENT"
	// ListenerTLS is SASL_SSL with SCRAM, serving a certificate of the
	// broker's CA (Broker.CAPEM).
	ListenerTLS = "TLS"
	// ListenerMTLS is SSL with ssl.client.auth=required: the client
	// certificate is the identity (CN=x becomes User:x).
	ListenerMTLS = "MTLS"
	// ListenerInternal is the inter-broker listener (SASL_PLAINTEXT, PLAIN,
	// internal user only).
	ListenerInternal = "INTERNAL"
	// ListenerController is the KRaft controller listener (SASL_PLAINTEXT,
	// PLAIN, internal user only): Kafka 4 admin clients may talk to
	// controllers directly, so it must not be open to anonymous ones.
	ListenerController = "CONTROLLER"
)

// ScramMechanisms are the SASL mechanisms of the CLIENT and TLS listeners;
// the admin has credentials for both.
var ScramMechanisms = []string{"SCRAM-SHA-512", "SCRAM-SHA-256"}

// principalMappingRule maps a certificate subject whose first RDN (in
// RFC 2253 order, as Java prints it: the most specific first) is CN=x to x.
// The RDNs before CN are matched as whole RDNs, honouring \-escapes, so a
// value holding an escaped ",CN=" cannot smuggle a second CN in. With no
// DEFAULT rule, a certificate without a CN is refused rather than given a
// principal made of its whole subject.
const principalMappingRule = `RULE:^CN=((?:[^,\\]|\\.)+)(?:,.*)?$/$1/`

type listenerSpec struct {
	name     string
	protocol string
	port     int
	// advertised is host:port; empty for the controller, which is not
	// advertised (static quorum voters name it).
	advertised string
	props      map[string]string
}

// renderConfig writes server.properties for b's current settings.
func (b *Broker) renderConfig() (string, error) {
	props := map[string]string{}
	set := func(k, v string) { props[k] = v }

	set("process.roles", "broker,controller")
	set("node.id", "1")
	set("controller.quorum.voters", "1@"+net.JoinHostPort(loopback, strconv.Itoa(b.ports[ListenerController])))
	set("controller.listener.names", ListenerController)
	set("inter.broker.listener.name", ListenerInternal)
	set("sasl.mechanism.controller.protocol", "PLAIN")
	set("sasl.mechanism.inter.broker.protocol", "PLAIN")
	set("log.dirs", b.dataDir())

	var listeners, advertised, protocols []string
	for _, l := range b.listeners() {
		listeners = append(listeners, l.name+"://"+net.JoinHostPort(loopback, strconv.Itoa(l.port)))
		if l.advertised != "" {
			advertised = append(advertised, l.name+"://"+l.advertised)
		}
		protocols = append(protocols, l.name+":"+l.protocol)
		prefix := "listener.name." + strings.ToLower(l.name) + "."
		for k, v := range l.props {
			set(prefix+k, v)
		}
	}
	set("listeners", strings.Join(listeners, ","))
	set("advertised.listeners", strings.Join(advertised, ","))
	set("listener.security.protocol.map", strings.Join(protocols, ","))

	// TLS: every SSL or SASL_SSL listener serves the broker certificate
	// unless its own properties say otherwise; only MTLS asks for a client
	// certificate, checked against the configured client CAs.
	set("ssl.keystore.type", "PEM")
	set("ssl.keystore.location", filepath.Join(b.dir, "tls", "server.pem"))
	set("ssl.truststore.type", "PEM")
	set("ssl.truststore.location", filepath.Join(b.dir, "tls", "ca.pem"))
	set("ssl.client.auth", "none")
	set("ssl.principal.mapping.rules", principalMappingRule)

	// Authorization as production runs it: nothing is allowed without an
	// ACL, and only the admin and the internal user bypass ACLs.
	set("authorizer.class.name", "org.apache.kafka.metadata.authorizer.StandardAuthorizer")
	set("allow.everyone.if.no.acl.found", "false")
	supers := []string{"User:" + b.AdminUser, "User:" + b.internalUser}
	set("super.users", strings.Join(append(supers, b.opts.ExtraSuperUsers...), ";"))

	// One node: internal topics cannot have more than one replica; few
	// partitions and threads keep start-up and memory small.
	set("num.partitions", "1")
	set("default.replication.factor", "1")
	set("min.insync.replicas", "1")
	set("offsets.topic.replication.factor", "1")
	set("offsets.topic.num.partitions", "5")
	set("transaction.state.log.replication.factor", "1")
	set("transaction.state.log.min.isr", "1")
	set("transaction.state.log.num.partitions", "5")
	set("share.coordinator.state.topic.replication.factor", "1")
	set("share.coordinator.state.topic.min.isr", "1")
	set("share.coordinator.state.topic.num.partitions", "5")
	set("group.initial.rebalance.delay.ms", "0")
	set("auto.create.topics.enable", "false")
	set("num.network.threads", "2")
	set("num.io.threads", "4")
	set("num.recovery.threads.per.data.dir", "1")
	set("background.threads", "4")
	// After a kill, the restarted broker cannot register until the
	// controller has expired the dead incarnation's session (9s by
	// default). Shorter, but not so short that a loaded 2-core machine
	// (heartbeat RPCs time out after half the session) fences a live
	// broker: 4s/500ms did, during a slow controlled shutdown.
	set("broker.session.timeout.ms", "6000")
	set("broker.heartbeat.interval.ms", "1000")
	// The log cleaner (compacted __consumer_offsets) otherwise takes a
	// 128 MiB dedupe buffer out of a 512 MiB heap.
	set("log.cleaner.dedupe.buffer.size", strconv.Itoa(16<<20))

	for k, v := range b.opts.ExtraProperties {
		set(k, v)
	}

	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	sb.WriteString("# Written by test/harness/kafkabroker; rewritten on every (re)start.\n")
	for _, k := range keys {
		fmt.Fprintf(&sb, "%s=%s\n", escapeProperty(k, true), escapeProperty(props[k], false))
	}
	path := filepath.Join(b.dir, "server.properties")
	// 0600: it holds the internal user's password (in its JAAS config).
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return path, nil
}

// listeners are the broker's listeners in a fixed order: the built-in ones,
// then Options.ExtraListeners.
func (b *Broker) listeners() []listenerSpec {
	plainJAAS := fmt.Sprintf(`org.apache.kafka.common.security.plain.PlainLoginModule required username="%s" password="%s" user_%s="%s";`,
		b.internalUser, b.internalPassword, b.internalUser, b.internalPassword)
	scram := func() map[string]string {
		m := map[string]string{"sasl.enabled.mechanisms": strings.Join(ScramMechanisms, ",")}
		for _, mech := range ScramMechanisms {
			// Kafka needs a (server-side, empty) JAAS entry per mechanism.
			m[strings.ToLower(mech)+".sasl.jaas.config"] = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
		}
		return m
	}
	internal := map[string]string{"sasl.enabled.mechanisms": "PLAIN", "plain.sasl.jaas.config": plainJAAS}
	ls := []listenerSpec{
		{name: ListenerClient, protocol: "SASL_PLAINTEXT", props: scram()},
		{name: ListenerTLS, protocol: "SASL_SSL", props: scram()},
		{name: ListenerMTLS, protocol: "SSL", props: map[string]string{
			"ssl.client.auth":         "required",
			"ssl.truststore.type":     "PEM",
			"ssl.truststore.location": filepath.Join(b.dir, "tls", "client-ca.pem"),
		}},
		{name: ListenerInternal, protocol: "SASL_PLAINTEXT", props: internal},
		{name: ListenerController, protocol: "SASL_PLAINTEXT", props: internal},
	}
	for _, x := range b.opts.ExtraListeners {
		ls = append(ls, listenerSpec{name: x.Name, protocol: x.SecurityProtocol, props: x.Properties})
	}
	for i := range ls {
		ls[i].port = b.ports[ls[i].name]
		if ls[i].name != ListenerController {
			ls[i].advertised = b.AdvertisedAddr(ls[i].name)
		}
	}
	return ls
}

// escapeProperty escapes s for a java.util.Properties file: backslashes
// (the principal mapping regex has some), line breaks, non-ASCII, and in
// keys the separators.
func escapeProperty(s string, key bool) string {
	var sb strings.Builder
	for _, r := range s {
		switch r {
		case '\\':
			sb.WriteString(`\\`)
		case '\n':
			sb.WriteString(`\n`)
		case '\r':
			sb.WriteString(`\r`)
		case '=', ':', ' ', '#', '!':
			if key {
				sb.WriteByte('\\')
			}
			sb.WriteRune(r)
		default:
			if r < 0x20 || r > 0x7e {
				// Properties files are read as ISO-8859-1: escape the rest.
				for _, u := range utf16.Encode([]rune{r}) {
					fmt.Fprintf(&sb, `\u%04x`, u)
				}
				continue
			}
			sb.WriteRune(r)
		}
	}
	return sb.String()
}

// log4jConfig sends the broker's log to stdout (the launcher's log file),
// at INFO, with the authorizer's denials (INFO on kafka.authorizer.logger)
// kept: they explain most failed test requests. The configuration dumps
// (some 2,000 lines per start) are left out: server.properties is beside
// the log.
const log4jConfig = `status = warn
name = hmsbus-kafka
appender.out.type = Console
appender.out.name = OUT
appender.out.target = SYSTEM_OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d{HH:mm:ss.SSS}] %-5p %m (%c{1.})%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = INFO
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
`
