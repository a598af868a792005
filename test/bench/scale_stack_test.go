package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/hms-platform/bus-operator/internal/kafka"
	"github.com/hms-platform/bus-operator/test/harness/embedded"
	"github.com/hms-platform/bus-operator/test/harness/localstack"
	"github.com/hms-platform/bus-operator/test/harness/testenv"
)

// operatorUser is the identity the operator process authenticates as, with
// a client certificate, bound only to config/rbac/role.yaml as in
// production (and as test/harness/localstack does).
const operatorUser = "hmsbus-operator"

// scaleStack is what BenchmarkScale runs on: the real control plane, the
// embedded broker in this process (so its requests can be counted), and
// the operator as its own process and user.
type scaleStack struct {
	env      *testenv.Env
	broker   *embedded.Broker
	requests *embedded.RequestCounter
	admin    *kafka.Client
	dir      string

	// Clients of real identities (client certificates, no impersonation,
	// no client-side rate limit): alice files and creates, rita reviews,
	// and the floor writes statuses as the operator's user would.
	requester, reviewer, operatorAPI client.Client
	watcher                          client.WithWatch
	requesterKubeconfig              string
	operatorKubeconfig               string
	passwordFile                     string

	mgr *managerProcess
}

// managerProcess is a running bin/manager.
type managerProcess struct {
	cmd                  *exec.Cmd
	logPath              string
	metricsURL, pprofURL string
	done                 chan struct{}
	waitErr              error
}

func startScaleStack(dir string) (*scaleStack, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	s := &scaleStack{requests: &embedded.RequestCounter{}, dir: dir}
	if err := s.startControlPlane("floor"); err != nil {
		return nil, err
	}
	if err := s.startBroker(); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// startControlPlane starts a fresh etcd and kube-apiserver (stopping the
// previous ones), with hms-bus installed, the benchmark's users and the
// operator's role. The floors run on one and the operator on the next, so
// the operator never sees, caches or reconciles the floors' objects (and
// nothing has to wait for tens of thousands of deletions).
func (s *scaleStack) startControlPlane(name string) error {
	if s.env != nil {
		if err := s.env.Stop(); err != nil {
			return err
		}
	}
	cpLog, err := os.Create(filepath.Join(s.dir, "controlplane-"+name+".log"))
	if err != nil {
		return fmt.Errorf("creating control plane log: %w", err)
	}
	env, err := testenv.StartWithOptions(testenv.Options{Output: cpLog, StartTimeout: 2 * time.Minute})
	if err != nil {
		return fmt.Errorf("starting control plane: %w", err)
	}
	s.env = env
	users := []struct {
		name   string
		groups []string
		client *client.Client
		kcfg   *string
	}{
		{requester, []string{testenv.RequestersGroup}, &s.requester, &s.requesterKubeconfig},
		{reviewer, []string{testenv.ReviewersGroup}, &s.reviewer, nil},
		{operatorUser, nil, &s.operatorAPI, &s.operatorKubeconfig},
	}
	for _, u := range users {
		au, err := s.env.Environment.AddUser(envtest.User{Name: u.name, Groups: u.groups}, nil)
		if err != nil {
			return fmt.Errorf("provisioning user %s: %w", u.name, err)
		}
		cfg := unlimited(au.Config())
		if *u.client, err = client.New(cfg, client.Options{Scheme: testenv.Scheme()}); err != nil {
			return fmt.Errorf("creating client for %s: %w", u.name, err)
		}
		if u.kcfg != nil {
			data, err := au.KubeConfig()
			if err != nil {
				return fmt.Errorf("kubeconfig for %s: %w", u.name, err)
			}
			*u.kcfg = filepath.Join(s.dir, u.name+".kubeconfig")
			if err := os.WriteFile(*u.kcfg, data, 0o600); err != nil {
				return fmt.Errorf("writing kubeconfig: %w", err)
			}
		}
	}
	if s.watcher, err = client.NewWithWatch(unlimited(s.env.Config), client.Options{Scheme: testenv.Scheme()}); err != nil {
		return fmt.Errorf("creating watch client: %w", err)
	}
	return s.bindOperatorRole()
}

func (s *scaleStack) startBroker() error {
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		return fmt.Errorf("starting broker: %w", err)
	}
	s.broker = b
	s.requests.Attach(b)
	s.passwordFile = filepath.Join(s.dir, "broker-admin-password")
	if err := os.WriteFile(s.passwordFile, []byte(b.AdminPassword), 0o600); err != nil {
		return fmt.Errorf("writing broker password file: %w", err)
	}
	if s.admin, err = kafka.New(context.Background(), kafka.Config{
		Bootstrap: b.Addrs(), Mechanism: embedded.AdminMechanism, Username: b.AdminUser, Password: b.AdminPassword,
		RequestTimeout: 30 * time.Second, SCRAMIterations: kafka.MinSCRAMIterations,
	}); err != nil {
		return fmt.Errorf("creating benchmark broker client: %w", err)
	}
	return nil
}

// unlimited turns client-go's client-side rate limit off (QPS -1), as
// controller-runtime's GetConfig does for the operator: the floor must not
// be held back by the benchmark's own client.
func unlimited(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = -1, 0
	return cfg
}

// bindOperatorRole installs config/rbac/role.yaml as generated and binds it
// to the operator's user only.
func (s *scaleStack) bindOperatorRole() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return localstack.BindOperatorRole(ctx, s.env.Client, s.env.RootDir, time.Minute)
}

// startManager runs the operator binary as the operator's user, with its
// metrics (and pprof, if the binary has the flag) on loopback, and waits
// until it is ready.
func (s *scaleStack) startManager(bin string, extra ...string) error {
	ports, err := localstack.FreePorts(3)
	if err != nil {
		return err
	}
	m := &managerProcess{logPath: filepath.Join(s.dir, "operator.log"), done: make(chan struct{})}
	metrics := fmt.Sprintf("127.0.0.1:%d", ports[0])
	probe := fmt.Sprintf("127.0.0.1:%d", ports[1])
	args := []string{
		"--kafka-bootstrap", strings.Join(s.broker.Addrs(), ","),
		"--kafka-sasl-mechanism", embedded.AdminMechanism,
		"--kafka-username", s.broker.AdminUser,
		"--kafka-password-file", s.passwordFile,
		"--scram-iterations", strconv.Itoa(kafka.MinSCRAMIterations),
		"--metrics-bind-address", metrics,
		"--health-probe-bind-address", probe,
	}
	m.metricsURL = "http://" + metrics + "/metrics"
	if hasFlag(bin, "pprof-bind-address") {
		pprof := fmt.Sprintf("127.0.0.1:%d", ports[2])
		args = append(args, "--pprof-bind-address", pprof)
		m.pprofURL = "http://" + pprof + "/debug/pprof"
	}
	args = append(args, extra...)
	logFile, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("creating operator log: %w", err)
	}
	m.cmd = exec.Command(bin, args...)
	m.cmd.Env = localstack.Environ("KUBECONFIG=" + s.operatorKubeconfig)
	m.cmd.Stdout, m.cmd.Stderr = logFile, logFile
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := m.cmd.Start(); err != nil {
		_ = logFile.Close()
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() {
		m.waitErr = m.cmd.Wait()
		_ = logFile.Close()
		close(m.done)
	}()
	s.mgr = m
	deadline := time.Now().Add(2 * time.Minute)
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-m.done:
			return fmt.Errorf("operator exited at start: %w (log %s)", m.waitErr, m.logPath)
		default:
		}
		if resp, err := hc.Get("http://" + probe + "/readyz"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("operator not ready after 2 minutes (log %s)", m.logPath)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// hasFlag tells whether bin knows --name: an older binary (the "before" of
// a comparison) may not have --pprof-bind-address.
func hasFlag(bin, name string) bool {
	out, _ := exec.Command(bin, "--help").CombinedOutput()
	return strings.Contains(string(out), "-"+name+" ")
}

// pid is the operator process's ID.
func (m *managerProcess) pid() int { return m.cmd.Process.Pid }

// running reports an operator that has exited.
func (m *managerProcess) running() error {
	select {
	case <-m.done:
		return fmt.Errorf("operator exited: %w (log %s)", m.waitErr, m.logPath)
	default:
		return nil
	}
}

func (m *managerProcess) stop() error {
	if m == nil {
		return nil
	}
	select {
	case <-m.done:
		return nil
	default:
	}
	if err := m.cmd.Process.Signal(os.Interrupt); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("interrupting operator: %w", err)
	}
	select {
	case <-m.done:
	case <-time.After(45 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
	return nil
}

func (s *scaleStack) stop() {
	if s.mgr != nil {
		_ = s.mgr.stop()
	}
	if s.admin != nil {
		s.admin.Close()
	}
	if s.broker != nil {
		s.broker.Close()
	}
	if s.env != nil {
		if err := s.env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
}
