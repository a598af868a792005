package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// transientCodes are errors Kafka does not flag retriable that nevertheless
// go away on their own: a broker hiccup or a cluster busy with something
// else, never a problem with what we asked.
var transientCodes = map[int16]bool{
	kerr.UnknownServerError.Code:     true,
	kerr.BrokerNotAvailable.Code:     true,
	kerr.ReassignmentInProgress.Code: true,
	kerr.OperationNotAttempted.Code:  true,
	kerr.StaleControllerEpoch.Code:   true,
	kerr.RebootstrapRequired.Code:    true,
}

// authCodes are the broker refusing who we are, not what we asked.
var authCodes = map[int16]bool{
	kerr.SaslAuthenticationFailed.Code: true,
	kerr.IllegalSaslState.Code:         true,
	kerr.UnsupportedSaslMechanism.Code: true,
}

// classify turns an error from the wire into the adapter's error kinds, so
// callers decide with errors.Is/As alone: ErrUnavailable (retry with
// back-off), *RejectedError (retrying will not help), ErrTopicExists,
// ErrTopicNotFound. brokerMsg is the broker's own ErrorMessage, if the
// response carried one. The result carries no operation; opErr adds it.
func classify(err error, brokerMsg string) error {
	if err == nil {
		return nil
	}
	if ke, ok := errors.AsType[*kerr.Error](err); ok {
		return classifyKerr(ke, err, brokerMsg)
	}
	if errors.Is(err, context.Canceled) {
		return err // the caller gave up; nothing to say about the broker
	}
	// Everything else is the client failing to get an answer: dial and I/O
	// errors, EOFs, our request deadline, a closed client, retries spent.
	return fmt.Errorf("%w: %w", ErrUnavailable, &noAnswerError{err})
}

// noAnswerError marks a failure without an answer from the broker; its
// text is the cause's.
type noAnswerError struct{ err error }

func (e *noAnswerError) Error() string { return e.err.Error() }
func (e *noAnswerError) Unwrap() error { return e.err }

// NoAnswer reports whether a write failed without an answer from the
// broker (a lost connection, a timeout, a caller that stopped waiting):
// the broker may have made it all the same. A broker's error answer is not
// this: it is definitive.
func NoAnswer(err error) bool {
	if _, ok := errors.AsType[*noAnswerError](err); ok {
		return true
	}
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

func classifyKerr(ke *kerr.Error, err error, brokerMsg string) error {
	switch {
	case ke.Code == kerr.TopicAlreadyExists.Code:
		return fmt.Errorf("%w: %w", ErrTopicExists, withMessage(err, brokerMsg))
	case ke.Code == kerr.UnknownTopicOrPartition.Code || ke.Code == kerr.UnknownTopicID.Code:
		return fmt.Errorf("%w: %w", ErrTopicNotFound, withMessage(err, brokerMsg))
	case authCodes[ke.Code]:
		return fmt.Errorf("%w: %w: %w", ErrUnavailable, ErrAuthentication, withMessage(err, brokerMsg))
	case ke.Retriable || transientCodes[ke.Code]:
		return fmt.Errorf("%w: %w", ErrUnavailable, withMessage(err, brokerMsg))
	case ke.Code == kerr.InvalidReplicationFactor.Code:
		// Kafka says this both of a factor larger than the cluster and,
		// for a moment after a restart, of any factor while its brokers
		// are still fenced.
		return &RejectedError{Code: ke.Message, Message: brokerMsg, DependsOnCluster: true}
	default:
		return &RejectedError{Code: ke.Message, Message: brokerMsg}
	}
}

// withMessage appends the broker's text to err, keeping err in the chain.
func withMessage(err error, brokerMsg string) error {
	if brokerMsg == "" {
		return err
	}
	return fmt.Errorf("%w: %s", err, brokerMsg)
}

// codeErr classifies a response error code and message; nil for code 0.
func codeErr(code int16, msg *string) error {
	if err := kerr.ErrorForCode(code); err != nil {
		return classify(err, deref(msg))
	}
	return nil
}

// opErr names the operation that failed. A bare *RejectedError gets the
// operation in its Op field (copied, as one error may be fanned out to
// several callers of a batch); anything else is wrapped.
func opErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if r, ok := err.(*RejectedError); ok { //nolint:errorlint // only a bare rejection gets its Op set; a wrapped one is wrapped again below
		cp := *r
		cp.Op = op
		return &cp
	}
	return fmt.Errorf("%s: %w", op, err)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// classifyAdm classifies an error from kadm, which carries the broker's
// message in an ErrAndMessage when there is one.
func classifyAdm(err error) error {
	if em, ok := errors.AsType[*kadm.ErrAndMessage](err); ok {
		return classify(em.Err, em.ErrMessage)
	}
	return classify(err, "")
}

// isRejectedCode reports whether err is a rejection with the given Kafka
// error.
func isRejectedCode(err error, code *kerr.Error) bool {
	r, ok := errors.AsType[*RejectedError](err)
	return ok && r.Code == code.Message
}
