package bus

import (
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
)

var (
	// ErrNotAuthorized means the broker refused an operation for lack of an
	// ACL grant (TOPIC_, GROUP_ or CLUSTER_AUTHORIZATION_FAILED). The
	// broker's own error stays in the chain for errors.Is.
	ErrNotAuthorized = errors.New("not authorized by the broker's ACLs")
	// ErrAuthenticationFailed means the broker rejected the credentials
	// (wrong user or password, or a mechanism it does not offer).
	ErrAuthenticationFailed = errors.New("authentication to the broker failed")
	// ErrTopicNotFound means the topic does not exist (and the credentials
	// may describe it).
	ErrTopicNotFound = errors.New("topic not found")
)

var notAuthorizedCodes = []error{
	kerr.TopicAuthorizationFailed,
	kerr.GroupAuthorizationFailed,
	kerr.ClusterAuthorizationFailed,
	kerr.TransactionalIDAuthorizationFailed,
}

var authenticationCodes = []error{
	kerr.SaslAuthenticationFailed,
	kerr.UnsupportedSaslMechanism,
	kerr.IllegalSaslState,
}

// classify puts one of the package's sentinel errors in front of a broker
// error it recognises, by Kafka error code, and leaves others unchanged.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotAuthorized), errors.Is(err, ErrAuthenticationFailed), errors.Is(err, ErrTopicNotFound):
		return err
	case isAny(err, notAuthorizedCodes):
		return fmt.Errorf("%w: %w", ErrNotAuthorized, err)
	case isAny(err, authenticationCodes):
		return fmt.Errorf("%w: %w", ErrAuthenticationFailed, err)
	case certificateRefused(err):
		return fmt.Errorf("%w: the broker refused the client certificate: %w", ErrAuthenticationFailed, err)
	case errors.Is(err, kerr.UnknownTopicOrPartition), errors.Is(err, kerr.UnknownTopicID):
		return fmt.Errorf("%w: %w", ErrTopicNotFound, err)
	}
	return err
}

// isFatal says whether retrying cannot help: only a human granting access
// or fixing the credentials can.
func isFatal(err error) bool {
	return errors.Is(err, ErrNotAuthorized) || errors.Is(err, ErrAuthenticationFailed)
}

func isAny(err error, targets []error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// refusedCertificateAlerts are the TLS alerts (as crypto/tls prints them) a
// server sends when it does not accept the client's certificate: unknown
// issuer, expired, no usable identity. Java (Kafka) sends "unknown
// certificate" for most of them.
var refusedCertificateAlerts = []string{
	"tls: bad certificate",
	"tls: unsupported certificate",
	"tls: revoked certificate",
	"tls: expired certificate",
	"tls: unknown certificate",
	"tls: unknown certificate authority",
	"tls: access denied",
	"tls: certificate required",
}

// certificateRefused reports a TLS alert from the broker refusing the
// client certificate. It is the certificate identity's "wrong password":
// without it such a refusal would be an unclassified network error that
// callers (and the subscriber) cannot tell from a broker being away.
// crypto/tls reports an alert it received as a net.OpError with Op
// "remote error" around an unexported type, so the alert is matched by its
// text.
func certificateRefused(err error) bool {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" || op.Err == nil {
		return false
	}
	return slices.Contains(refusedCertificateAlerts, op.Err.Error())
}
