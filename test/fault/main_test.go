package fault

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hms-platform/bus-operator/test/harness/brokers"
	"github.com/hms-platform/bus-operator/test/harness/faultstack"
	"github.com/hms-platform/bus-operator/test/harness/testenv"
)

// One stack for the whole tier: a control plane, the broker under test and
// the test's own broker clients. Each case gets fresh namespaces and its own
// operator processes, which watch only the case's namespaces, so a case
// never waits on the objects of the cases before it.
var (
	stack  *faultstack.Stack
	broker *brokers.Broker
	direct *directClient
	// requester files tickets and declares objects; reviewer approves and
	// denies. Both are real personas (impersonated with their groups), so
	// the admission policies judge them as they would a team.
	requester, reviewer client.Client
	// names remembers what every case may leave on the broker, for the
	// tier-wide check that nothing else is there.
	names = newNameRegistry()
)

const (
	requesterUser = "alice"
	reviewerUser  = "rita"
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) (code int) {
	dir, err := os.MkdirTemp("", "hmsbus-fault-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code = 1
	defer func() {
		// Logs of a failed run stay for the developer (and CI artifacts).
		if code == 0 {
			_ = os.RemoveAll(dir)
		} else {
			fmt.Fprintf(os.Stderr, "fault suite: operator, broker and control plane logs kept in %s\n", dir)
		}
	}()
	began := time.Now()
	// The broker keeps its data and (Kafka) its log in the state dir, so a
	// failed run leaves them for the developer.
	b, err := brokers.Start(brokers.Options{Restartable: true, Dir: filepath.Join(dir, "broker")})
	if err != nil {
		fmt.Fprintf(os.Stderr, "starting the broker under test: %v\n", err)
		return code
	}
	broker = b
	defer func() {
		if err := b.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "closing the broker: %v\n", err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := faultstack.Start(ctx, faultstack.Options{Dir: dir, Broker: b})
	if err != nil {
		fmt.Fprintf(os.Stderr, "starting the fault stack: %v\n", err)
		return code
	}
	stack = s
	defer func() {
		if err := s.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping the fault stack: %v\n", err)
			code = 1
		}
	}()
	if requester, err = s.Env.As(requesterUser, testenv.RequestersGroup); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return code
	}
	if reviewer, err = s.Env.As(reviewerUser, testenv.ReviewersGroup); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return code
	}
	if direct, err = newDirectClient(b); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return code
	}
	defer direct.Close()
	if err := names.baseline(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return code
	}
	fmt.Printf("fault suite: stack ready in %s (state in %s)\n", time.Since(began).Round(time.Millisecond), dir)
	code = m.Run()
	return code
}
