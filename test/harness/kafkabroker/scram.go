package kafkabroker

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"hash"
)

// bootstrapIterations is the admin credential's SCRAM iteration count:
// Kafka's minimum, which keeps the many admin logins of a test run cheap.
const bootstrapIterations = 4096

// scramArg is a `kafka-storage format --add-scram` argument for user with
// the salted password computed here (SaltedPassword = Hi(password, salt, i)
// of RFC 5802, which is PBKDF2 with the mechanism's HMAC), so the plain
// password never appears on a command line where ps could show it.
func scramArg(mechanism, user, password string) (string, error) {
	var h func() hash.Hash
	var size int
	switch mechanism {
	case "SCRAM-SHA-512":
		h, size = sha512.New, sha512.Size
	case "SCRAM-SHA-256":
		h, size = sha256.New, sha256.Size
	default:
		return "", fmt.Errorf("unsupported SCRAM mechanism %q", mechanism)
	}
	salt := make([]byte, 24)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("generating SCRAM salt: %w", err)
	}
	salted, err := pbkdf2.Key(h, password, salt, bootstrapIterations, size)
	if err != nil {
		return "", fmt.Errorf("salting %s password: %w", mechanism, err)
	}
	enc := base64.StdEncoding.EncodeToString
	return fmt.Sprintf(`%s=[name=%s,iterations=%d,salt="%s",saltedpassword="%s"]`,
		mechanism, user, bootstrapIterations, enc(salt), enc(salted)), nil
}
