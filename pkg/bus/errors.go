package bus

import (
	"errors"
	"fmt"

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
