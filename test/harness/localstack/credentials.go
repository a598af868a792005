package localstack

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/hms-platform/bus-operator/pkg/bus"
)

// SecretDataFromJSON reads the data of a Secret printed by
// `kubectl get secret -o json` (values base64-decoded).
func SecretDataFromJSON(b []byte) (map[string][]byte, error) {
	var s corev1.Secret
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decoding Secret JSON: %w", err)
	}
	if s.Kind != "Secret" {
		return nil, fmt.Errorf("decoding Secret JSON: got kind %q", s.Kind)
	}
	return s.Data, nil
}

// WriteSecretDir writes one file per key, as the kubelet mounts a Secret
// volume, so clients read them with --credentials-dir. Files are 0600:
// they hold a password.
func WriteSecretDir(dir string, data map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating credentials dir %s: %w", dir, err)
	}
	for k, v := range data {
		if k == "" || strings.ContainsAny(k, `/\`) || k == "." || k == ".." {
			return fmt.Errorf("writing credentials dir %s: key %q is not a file name", dir, k)
		}
		if err := os.WriteFile(filepath.Join(dir, k), v, 0o600); err != nil {
			return fmt.Errorf("writing credentials dir %s: %w", dir, err)
		}
	}
	return nil
}

// WriteBrokerAdminCredentials writes a credentials dir for the broker's
// superuser, read from the password file the broker and operator share. It
// is what an auditor with broker access would hold to read the audit topic,
// which no Subscription can be granted.
func (s *Stack) WriteBrokerAdminCredentials(dir string) error {
	b, err := os.ReadFile(s.AdminPasswordFile)
	if err != nil {
		return fmt.Errorf("reading broker admin password: %w", err)
	}
	password := strings.TrimSpace(string(b))
	if password == "" {
		return fmt.Errorf("broker admin password file %s is empty", s.AdminPasswordFile)
	}
	return WriteSecretDir(dir, map[string][]byte{
		bus.SecretKeyBootstrap:        []byte(s.Bootstrap),
		bus.SecretKeySecurityProtocol: []byte(bus.SecurityProtocolSASLPlaintext),
		bus.SecretKeyMechanism:        []byte(bus.MechanismSCRAMSHA512),
		bus.SecretKeyUsername:         []byte(BrokerAdmin),
		bus.SecretKeyPassword:         []byte(password),
	})
}
