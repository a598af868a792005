package bus

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func sampleCredentials() Credentials {
	return Credentials{
		Bootstrap:     []string{"b0:9092", "b1:9092"},
		Mechanism:     MechanismSCRAMSHA512,
		Username:      "fees.payment-consumer",
		Password:      "s3cr3t",
		ConsumerGroup: "fees.payment-consumer",
		Topics:        []string{"FeeUpdated", "FeeDeleted"},
	}
}

func TestCredentialsFromSecretData(t *testing.T) {
	full := map[string][]byte{
		SecretKeyBootstrap: []byte("b0:9092, b1:9092\n"),
		SecretKeyMechanism: []byte("SCRAM-SHA-512"),
		SecretKeyUsername:  []byte("fees.payment-consumer"),
		SecretKeyPassword:  []byte("s3cr3t\n"),
		SecretKeyGroup:     []byte("fees.payment-consumer"),
		SecretKeyTopics:    []byte("FeeUpdated,FeeDeleted"),
	}
	got, err := CredentialsFromSecretData(full)
	if err != nil {
		t.Fatal(err)
	}
	if want := sampleCredentials(); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}

	t.Run("mechanism defaults to SCRAM-SHA-512", func(t *testing.T) {
		data := copyData(full)
		delete(data, SecretKeyMechanism)
		got, err := CredentialsFromSecretData(data)
		if err != nil || got.Mechanism != MechanismSCRAMSHA512 {
			t.Fatalf("got %q, %v", got.Mechanism, err)
		}
	})
	t.Run("SASL_SSL turns TLS on", func(t *testing.T) {
		data := copyData(full)
		data[SecretKeySecurityProtocol] = []byte(SecurityProtocolSASLSSL)
		got, err := CredentialsFromSecretData(data)
		if err != nil || !got.TLS {
			t.Fatalf("TLS = %v, %v", got.TLS, err)
		}
	})
	t.Run("a CA bundle turns TLS on", func(t *testing.T) {
		data := copyData(full)
		data[SecretKeyCACert] = []byte("-----BEGIN CERTIFICATE-----\n")
		got, err := CredentialsFromSecretData(data)
		if err != nil || !got.TLS || string(got.CACert) != "-----BEGIN CERTIFICATE-----\n" {
			t.Fatalf("TLS = %v, CA = %q, %v", got.TLS, got.CACert, err)
		}
	})
	t.Run("missing fields are named", func(t *testing.T) {
		data := copyData(full)
		delete(data, SecretKeyBootstrap)
		delete(data, SecretKeyUsername)
		_, err := CredentialsFromSecretData(data)
		if !errors.Is(err, ErrIncompleteCredentials) || !strings.Contains(err.Error(), "bootstrap servers, username") {
			t.Fatalf("err = %v", err)
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Fatal("error shows the password")
		}
	})
	t.Run("unknown mechanism", func(t *testing.T) {
		data := copyData(full)
		data[SecretKeyMechanism] = []byte("PLAIN")
		if _, err := CredentialsFromSecretData(data); !errors.Is(err, ErrIncompleteCredentials) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("unknown security protocol", func(t *testing.T) {
		data := copyData(full)
		data[SecretKeySecurityProtocol] = []byte("PLAINTEXT")
		if _, err := CredentialsFromSecretData(data); !errors.Is(err, ErrIncompleteCredentials) {
			t.Fatalf("err = %v", err)
		}
	})
}

func copyData(in map[string][]byte) map[string][]byte {
	out := make(map[string][]byte, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}

func TestSecretDataRoundTrip(t *testing.T) {
	for _, c := range []Credentials{sampleCredentials(), func() Credentials {
		c := sampleCredentials()
		c.Mechanism, c.ConsumerGroup, c.Topics = MechanismSCRAMSHA256, "", nil
		c.TLS, c.CACert = true, []byte("PEM")
		return c
	}()} {
		data := SecretData(c)
		got, err := CredentialsFromSecretData(data)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("round trip: got %+v, want %+v", got, c)
		}
		for _, k := range []string{SecretKeyJavaConfig, SecretKeyEnvConfig} {
			if len(data[k]) == 0 {
				t.Errorf("secret data lacks %s", k)
			}
		}
	}
}

func TestCredentialsFromDir(t *testing.T) {
	dir := t.TempDir()
	for k, v := range SecretData(sampleCredentials()) {
		// Mounted Secrets often end in a newline when made by hand.
		if err := os.WriteFile(filepath.Join(dir, k), append(v, '\n'), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := CredentialsFromDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := sampleCredentials(); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if _, err := CredentialsFromDir(t.TempDir()); !errors.Is(err, ErrIncompleteCredentials) {
		t.Fatalf("empty dir: err = %v", err)
	}
}

func TestCredentialsFromEnv(t *testing.T) {
	t.Setenv(EnvBootstrap, "b0:9092,b1:9092")
	t.Setenv(EnvMechanism, "")
	t.Setenv(EnvUsername, "fees.payment-consumer")
	t.Setenv(EnvPassword, "s3cr3t")
	t.Setenv(EnvGroup, "fees.payment-consumer")
	t.Setenv(EnvTopics, "FeeUpdated,FeeDeleted")
	t.Setenv(EnvSecurityProtocol, "")
	t.Setenv(EnvCAFile, "")
	got, err := CredentialsFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if want := sampleCredentials(); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}

	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvCAFile, ca)
	got, err = CredentialsFromEnv()
	if err != nil || !got.TLS || string(got.CACert) != "PEM" {
		t.Fatalf("with CA file: TLS = %v, CA = %q, %v", got.TLS, got.CACert, err)
	}
}

func TestClientConfig(t *testing.T) {
	env, java := ClientConfig(sampleCredentials())
	wantJava := `bootstrap.servers=b0:9092,b1:9092
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="fees.payment-consumer" password="s3cr3t";
group.id=fees.payment-consumer
`
	if java != wantJava {
		t.Errorf("java config:\n%s\nwant:\n%s", java, wantJava)
	}
	wantEnv := `HMSBUS_BOOTSTRAP=b0:9092,b1:9092
HMSBUS_SECURITY_PROTOCOL=SASL_PLAINTEXT
HMSBUS_MECHANISM=SCRAM-SHA-512
HMSBUS_USERNAME=fees.payment-consumer
HMSBUS_PASSWORD=s3cr3t
HMSBUS_GROUP=fees.payment-consumer
HMSBUS_TOPICS=FeeUpdated,FeeDeleted
`
	if env != wantEnv {
		t.Errorf("env config:\n%s\nwant:\n%s", env, wantEnv)
	}

	t.Run("TLS with a CA and no group", func(t *testing.T) {
		c := sampleCredentials()
		c.ConsumerGroup, c.TLS, c.CACert = "", true, []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
		_, java := ClientConfig(c)
		for _, want := range []string{
			"security.protocol=SASL_SSL\n",
			"ssl.truststore.type=PEM\n",
			`ssl.truststore.certificates=-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n` + "\n",
		} {
			if !strings.Contains(java, want) {
				t.Errorf("java config lacks %q:\n%s", want, java)
			}
		}
		if strings.Contains(java, "group.id") {
			t.Errorf("producer config has a group.id:\n%s", java)
		}
	})

	t.Run("awkward passwords are escaped", func(t *testing.T) {
		c := sampleCredentials()
		c.Password = `it's "q" \ é`
		env, java := ClientConfig(c)
		if !strings.Contains(env, `HMSBUS_PASSWORD='it'\''s "q" \ é'`) {
			t.Errorf("env file does not quote the password:\n%s", env)
		}
		// JAAS: \" and \\ inside quotes; properties: every \ doubled, é as \u00e9.
		wantJAAS := `password="it's \\"q\\" \\\\ \u00e9";`
		if !strings.Contains(java, wantJAAS) {
			t.Errorf("java config lacks %s:\n%s", wantJAAS, java)
		}
		// The env file is valid shell: sourcing it yields the password.
		sh, err := exec.LookPath("sh")
		if err != nil {
			t.Skip("no sh to source the env file")
		}
		file := filepath.Join(t.TempDir(), SecretKeyEnvConfig)
		if err := os.WriteFile(file, []byte(env), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(sh, "-c", `. "$1" && printf %s "$HMSBUS_PASSWORD"`, "sh", file).Output()
		if err != nil || string(out) != c.Password {
			t.Fatalf("sourced password = %q, %v; want %q", out, err, c.Password)
		}
	})
}

func TestCredentialsStringHidesPassword(t *testing.T) {
	if s := sampleCredentials().String(); strings.Contains(s, "s3cr3t") {
		t.Fatalf("String() shows the password: %s", s)
	}
}
