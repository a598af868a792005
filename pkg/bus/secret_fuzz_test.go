package bus

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

func sameCredentials(a, b Credentials) bool {
	return slices.Equal(a.Bootstrap, b.Bootstrap) && a.Mechanism == b.Mechanism && a.Username == b.Username && a.Password == b.Password &&
		a.ConsumerGroup == b.ConsumerGroup && slices.Equal(a.Topics, b.Topics) && a.TLS == b.TLS && bytes.Equal(a.CACert, b.CACert)
}

// FuzzCredentialsFromSecretData: any Secret content parses without
// panicking; what parses is valid, and the Secret the operator would write
// for it parses back to the same credentials, as does its env file sourced
// by a shell and read by CredentialsFromEnv.
func FuzzCredentialsFromSecretData(f *testing.F) {
	f.Add("b0:9092,b1:9092", "SASL_PLAINTEXT", "SCRAM-SHA-512", "fees.payment", "s3cr3t", "fees.payment", "FeeUpdated,FeeDeleted", []byte(nil), uint8(0xff))
	f.Add(" b0:9092 , ,", "", "", " u ", " p ", "", "", []byte("-----BEGIN CERTIFICATE-----\n"), uint8(0xff))
	f.Add("b", "SASL_SSL", "SCRAM-SHA-256", "u", "p", "", "", []byte(nil), uint8(0xff))
	f.Add("b", "PLAINTEXT", "PLAIN", "u", "p", "g", "t", []byte("x"), uint8(0xff))
	f.Add("", "", "", "", "", "", "", []byte(nil), uint8(0))
	f.Add("b", "", "", "it's \"q\" \\ é\n", "p$(id)`x`", "g;rm", "a,b", []byte(nil), uint8(0xff))
	f.Fuzz(func(t *testing.T, bootstrap, protocol, mechanism, username, password, group, topics string, ca []byte, present uint8) {
		data := map[string][]byte{}
		for i, kv := range []struct {
			k string
			v []byte
		}{{SecretKeyBootstrap, []byte(bootstrap)}, {SecretKeySecurityProtocol, []byte(protocol)}, {SecretKeyMechanism, []byte(mechanism)},
			{SecretKeyUsername, []byte(username)}, {SecretKeyPassword, []byte(password)}, {SecretKeyGroup, []byte(group)},
			{SecretKeyTopics, []byte(topics)}, {SecretKeyCACert, ca}} {
			if present&(1<<i) != 0 {
				data[kv.k] = kv.v
			}
		}
		c, err := CredentialsFromSecretData(data)
		if err != nil {
			if !errors.Is(err, ErrIncompleteCredentials) {
				t.Fatalf("refusal does not wrap ErrIncompleteCredentials: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed credentials do not validate: %v", err)
		}
		back, err := CredentialsFromSecretData(SecretData(c))
		if err != nil || !sameCredentials(c, back) {
			t.Fatalf("Secret round trip: %+v, %v; want %+v", back, err, c)
		}
		other := c
		other.Password = c.Password + "x"
		if c.String() != other.String() {
			t.Fatal("String() depends on the password")
		}

		// The env file, sourced by a shell, sets exactly what
		// CredentialsFromEnv reads back as the same credentials.
		env, _ := ClientConfig(c)
		vars, err := sourceEnvFile(env)
		if err != nil {
			t.Fatalf("env file is not a plain list of shell assignments: %v\n%s", err, env)
		}
		for _, v := range vars {
			if strings.ContainsRune(v, 0) {
				return // a process environment cannot hold NUL; nothing to compare
			}
		}
		for _, k := range []string{EnvBootstrap, EnvSecurityProtocol, EnvMechanism, EnvUsername, EnvPassword, EnvGroup, EnvTopics, EnvCAFile} {
			t.Setenv(k, vars[k])
		}
		fromEnv, err := CredentialsFromEnv()
		c.CACert = nil // the env file names no CA file
		if err != nil || !sameCredentials(c, fromEnv) {
			t.Fatalf("env round trip: %+v, %v; want %+v\n%s", fromEnv, err, c, env)
		}
	})
}

// FuzzValidate: Validate accepts exactly credentials with a bootstrap
// address, a user, a password and a SCRAM mechanism (or the default).
func FuzzValidate(f *testing.F) {
	f.Add("b:9092", "SCRAM-SHA-512", "u", "p")
	f.Add("", "", "u", "p")
	f.Add("b", "scram-sha-512", "u", "p")
	f.Add("b", "PLAIN", "u", "")
	f.Fuzz(func(t *testing.T, bootstrap, mechanism, username, password string) {
		c := Credentials{Bootstrap: splitList(bootstrap), Mechanism: mechanism, Username: username, Password: password}
		want := len(c.Bootstrap) > 0 && username != "" && password != "" &&
			(mechanism == "" || mechanism == MechanismSCRAMSHA512 || mechanism == MechanismSCRAMSHA256)
		err := c.Validate()
		if (err == nil) != want {
			t.Fatalf("Validate(%+v) = %v, want ok=%v", c, err, want)
		}
		if err != nil && !errors.Is(err, ErrIncompleteCredentials) {
			t.Fatalf("error does not wrap ErrIncompleteCredentials: %v", err)
		}
		// The password must not reach the error: the same credentials
		// with another password give the same text. (Looking for the
		// password in the text would also find it where it equals a
		// field the error may name, such as the mechanism.)
		if err != nil && password != "" {
			other := c
			other.Password = "another-" + password
			if err2 := other.Validate(); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("the error depends on the password: %v / %v", err, err2)
			}
		}
	})
}

// FuzzClientConfigQuoting: whatever the values, the rendered configs parse
// (as java.util.Properties, Kafka's JAAS parser and a POSIX shell do) into
// exactly the intended keys with exactly the intended values: no value can
// break out of its quoting to add or change a setting.
func FuzzClientConfigQuoting(f *testing.F) {
	f.Add("b0:9092,b1:9092", "fees.payment", "s3cr3t", "fees.payment", "FeeUpdated", false, "")
	f.Add("b", `it's "q" \ é`, "p\\", "g", "", true, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	f.Add("b", "u\" password=\"x", "p\nsasl.mechanism=PLAIN", "g\r\n#x", "t", false, "")
	f.Add("b", "u\npassword=\"x\";", "\\\n", " lead", "", false, "")
	f.Add("b", "😀\x00\t\f", "\\u0041", "!#", "", false, "")
	f.Add("b$(x)", "'; rm -rf /", "`id`", "$HOME", "a b", false, "")
	f.Fuzz(func(t *testing.T, bootstrap, username, password, group, topics string, tls bool, ca string) {
		c := Credentials{Bootstrap: splitList(bootstrap), Username: username, Password: password, ConsumerGroup: group, Topics: splitList(topics), TLS: tls, CACert: []byte(ca)}
		env, java := ClientConfig(c)

		// Java client.properties.
		props, err := loadProperties(java)
		if err != nil {
			t.Fatalf("client.properties does not load: %v\n%s", err, java)
		}
		want := map[string]string{
			"bootstrap.servers": strings.Join(c.Bootstrap, ","),
			"security.protocol": c.SecurityProtocol(),
			"sasl.mechanism":    c.mechanism(),
			"group.id":          group,
		}
		if ca != "" {
			want["ssl.truststore.type"], want["ssl.truststore.certificates"] = "PEM", ca
		}
		for k, v := range want {
			if v == "" {
				delete(want, k)
			}
		}
		want["sasl.jaas.config"] = ""
		if len(props) != len(want) {
			t.Fatalf("client.properties has keys %v, want %v\n%s", keys(props), keys(want), java)
		}
		for k, v := range want {
			got, ok := props[k]
			if !ok {
				t.Fatalf("client.properties lacks %s:\n%s", k, java)
			}
			if k != "sasl.jaas.config" && utf8.ValidString(v) && got != v {
				t.Fatalf("client.properties %s = %q, want %q\n%s", k, got, v, java)
			}
		}
		user, pass, err := parseJAAS(props["sasl.jaas.config"])
		if err != nil {
			t.Fatalf("sasl.jaas.config does not parse: %v\n%q", err, props["sasl.jaas.config"])
		}
		if utf8.ValidString(username) && user != username || utf8.ValidString(password) && pass != password {
			t.Fatalf("JAAS gives username %q password %q, want %q %q\n%q", user, pass, username, password, props["sasl.jaas.config"])
		}

		// hmsbus.env, sourced by a shell.
		vars, err := sourceEnvFile(env)
		if err != nil {
			t.Fatalf("env file: %v\n%s", err, env)
		}
		wantEnv := map[string]string{
			EnvBootstrap: strings.Join(c.Bootstrap, ","), EnvSecurityProtocol: c.SecurityProtocol(), EnvMechanism: c.mechanism(),
			EnvUsername: username, EnvPassword: password, EnvGroup: group, EnvTopics: strings.Join(c.Topics, ","),
		}
		for k, v := range wantEnv {
			if v == "" {
				delete(wantEnv, k)
			}
		}
		if len(vars) != len(wantEnv) {
			t.Fatalf("env file sets %v, want %v\n%s", keys(vars), keys(wantEnv), env)
		}
		for k, v := range wantEnv {
			if vars[k] != v {
				t.Fatalf("env file %s = %q, want %q\n%s", k, vars[k], v, env)
			}
		}
	})
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// loadProperties reads a properties file as java.util.Properties.load does
// (ISO-8859-1 input; a natural line ending in an odd number of backslashes
// continues on the next, whose leading whitespace is dropped; # and ! start
// comments; the key ends at an unescaped '=', ':' or whitespace; escapes
// \t \n \r \f \uXXXX, any other escaped character stands for itself).
func loadProperties(s string) (map[string]string, error) {
	isWS := func(c byte) bool { return c == ' ' || c == '\t' || c == '\f' }
	// next returns the natural line at i and the index after its end.
	next := func(i int) (string, int) {
		j := i
		for j < len(s) && s[j] != '\n' && s[j] != '\r' {
			j++
		}
		line := s[i:j]
		if j < len(s) && s[j] == '\r' {
			j++
		}
		if j < len(s) && s[j] == '\n' && (j == 0 || s[j-1] == '\r' || j == i+len(line)) {
			j++
		}
		return line, j
	}
	var lines []string
	for i := 0; i < len(s); {
		for i < len(s) && isWS(s[i]) {
			i++
		}
		line, j := next(i)
		i = j
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue // blank or comment: never continued
		}
		var b strings.Builder
		for {
			n := 0
			for k := len(line) - 1; k >= 0 && line[k] == '\\'; k-- {
				n++
			}
			if n%2 == 0 || i >= len(s) {
				if n%2 == 1 {
					line = line[:len(line)-1]
				}
				b.WriteString(line)
				break
			}
			b.WriteString(line[:len(line)-1])
			for i < len(s) && isWS(s[i]) {
				i++
			}
			line, i = next(i)
		}
		lines = append(lines, b.String())
	}
	out := map[string]string{}
	for _, l := range lines {
		keyLen, valueStart, hasSep, backslash := 0, len(l), false, false
		for ; keyLen < len(l); keyLen++ {
			c := l[keyLen]
			if (c == '=' || c == ':') && !backslash {
				valueStart, hasSep = keyLen+1, true
				break
			}
			if isWS(c) && !backslash {
				valueStart = keyLen + 1
				break
			}
			backslash = c == '\\' && !backslash
		}
		for ; valueStart < len(l); valueStart++ {
			c := l[valueStart]
			if !isWS(c) {
				if hasSep || (c != '=' && c != ':') {
					break
				}
				hasSep = true
			}
		}
		key, err := propertiesUnescape(l[:keyLen])
		if err != nil {
			return nil, err
		}
		value, err := propertiesUnescape(l[valueStart:])
		if err != nil {
			return nil, err
		}
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("key %q set twice", key)
		}
		out[key] = value
	}
	return out, nil
}

func propertiesUnescape(s string) (string, error) {
	var u []uint16
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			u = append(u, uint16(c)) // ISO-8859-1: one byte, one char
			continue
		}
		i++
		switch s[i] {
		case 't':
			u = append(u, '\t')
		case 'n':
			u = append(u, '\n')
		case 'r':
			u = append(u, '\r')
		case 'f':
			u = append(u, '\f')
		case 'u':
			if i+5 > len(s) {
				return "", fmt.Errorf("malformed \\u escape in %q", s)
			}
			n, err := strconv.ParseUint(s[i+1:i+5], 16, 16)
			if err != nil {
				return "", fmt.Errorf("malformed \\u escape in %q", s)
			}
			u = append(u, uint16(n))
			i += 4
		default:
			u = append(u, uint16(s[i]))
		}
	}
	return string(utf16.Decode(u)), nil
}

// parseJAAS reads the ScramLoginModule line the way Kafka's JaasConfig does
// (java.io.StreamTokenizer: words, '='/';' as themselves, double-quoted
// strings with backslash escapes that end at a quote or a line break) and
// returns its username and password; anything else in it is an error.
func parseJAAS(s string) (user, password string, err error) {
	type token struct {
		kind byte // 'w' word, 'q' quoted, or the character itself
		text string
	}
	rs := []rune(s)
	var toks []token
	isWord := func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' || r == '$' || r >= 160
	}
	for i := 0; i < len(rs); {
		r := rs[i]
		switch {
		case r <= ' ':
			i++
		case r == '/' && i+1 < len(rs) && (rs[i+1] == '/' || rs[i+1] == '*'):
			return "", "", fmt.Errorf("comment at %d", i)
		case isWord(r):
			j := i
			for j < len(rs) && isWord(rs[j]) {
				j++
			}
			toks = append(toks, token{'w', string(rs[i:j])})
			i = j
		case r == '"' || r == '\'':
			quote := r
			var b []rune
			i++
			for i < len(rs) && rs[i] != quote && rs[i] != '\n' && rs[i] != '\r' {
				c := rs[i]
				i++
				if c != '\\' || i >= len(rs) {
					b = append(b, c)
					continue
				}
				c = rs[i]
				i++
				switch {
				case c >= '0' && c <= '7':
					n := c - '0'
					if i < len(rs) && rs[i] >= '0' && rs[i] <= '7' {
						n = n<<3 + rs[i] - '0'
						i++
						if c <= '3' && i < len(rs) && rs[i] >= '0' && rs[i] <= '7' {
							n = n<<3 + rs[i] - '0'
							i++
						}
					}
					b = append(b, n)
				default:
					if m, ok := map[rune]rune{'a': 7, 'b': '\b', 'f': 0xc, 'n': '\n', 'r': '\r', 't': '\t', 'v': 0xb}[c]; ok {
						c = m
					}
					b = append(b, c)
				}
			}
			if i < len(rs) && rs[i] == quote {
				i++
			}
			toks = append(toks, token{'q', string(b)})
		default:
			toks = append(toks, token{byte(r), string(r)})
			i++
		}
	}
	want := []token{{'w', "org.apache.kafka.common.security.scram.ScramLoginModule"}, {'w', "required"}, {'w', "username"}, {'=', "="}, {'q', ""}, {'w', "password"}, {'=', "="}, {'q', ""}, {';', ";"}}
	if len(toks) != len(want) {
		return "", "", fmt.Errorf("%d tokens, want %d: %q", len(toks), len(want), toks)
	}
	for i, w := range want {
		if toks[i].kind != w.kind || (w.kind != 'q' && toks[i].text != w.text) {
			return "", "", fmt.Errorf("token %d is %q, want %q", i, toks[i], w)
		}
	}
	return toks[4].text, toks[7].text, nil
}

// sourceEnvFile reads an env file the way a POSIX shell sources it, for the
// only forms it may contain: NAME=WORD lines where WORD is made of safe
// bare characters, single-quoted runs and backslash-escaped characters.
// Anything a shell would expand or act on is an error.
func sourceEnvFile(s string) (map[string]string, error) {
	out := map[string]string{}
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && (s[j] >= 'A' && s[j] <= 'Z' || s[j] == '_' || j > i && s[j] >= '0' && s[j] <= '9') {
			j++
		}
		if j == i || j >= len(s) || s[j] != '=' {
			return nil, fmt.Errorf("offset %d: not an assignment", i)
		}
		name := s[i:j]
		i = j + 1
		var b strings.Builder
	word:
		for i < len(s) {
			c := s[i]
			switch {
			case c == '\'':
				end := strings.IndexByte(s[i+1:], '\'')
				if end < 0 {
					return nil, fmt.Errorf("%s: unterminated quote", name)
				}
				b.WriteString(s[i+1 : i+1+end])
				i += end + 2
			case c == '\\':
				if i+1 >= len(s) {
					return nil, fmt.Errorf("%s: trailing backslash", name)
				}
				if s[i+1] != '\n' { // backslash-newline joins lines
					b.WriteByte(s[i+1])
				}
				i += 2
			case c == '\n':
				i++
				break word
			case plainValue.MatchString(string(c)):
				b.WriteByte(c)
				i++
			default:
				return nil, fmt.Errorf("%s: a shell acts on the bare character %q", name, c)
			}
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%s set twice", name)
		}
		out[name] = b.String()
	}
	return out, nil
}
