// Package faultstack is the stack the fault suite (test/fault) breaks on
// purpose: a real control plane (kube-apiserver and etcd through
// test/harness/testenv, with hms-bus installed) that can be restarted
// piece by piece, the broker under test (test/harness/brokers, started by
// the caller, so it keeps kfake's request hooks and Kafka's proxy), and the
// operator as separate bin/manager processes running as their own user,
// one or several at a time (leader election), each of which can be
// SIGKILLed and started again.
//
// It differs from test/harness/localstack, which the demo and e2e use, in
// what it lets a test do to each part while the operator works: localstack
// runs the embedded broker as a process of its own and never restarts the
// control plane.
package faultstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/hms-platform/bus-operator/test/harness/brokers"
	"github.com/hms-platform/bus-operator/test/harness/localstack"
	"github.com/hms-platform/bus-operator/test/harness/testenv"
)

// LeaseName is the operator's leader election lease (internal/operator's
// default ID), in testenv.SystemNamespace.
const LeaseName = "hmsbus-operator.bus.hms.io"

// leaderElectionRoleFile is the Role config/default grants the operator for
// its lease; the generated role.yaml does not cover leases.
var leaderElectionRoleFile = filepath.Join("config", "rbac", "base", "leader_election_role.yaml")

// Options configures Start.
type Options struct {
	// Dir receives the control plane's data and log, kubeconfigs and the
	// operators' logs. Required; the caller removes it.
	Dir string
	// RootDir is the repository root (found from go.mod if empty); BinDir
	// holds manager, kube-apiserver and etcd (default RootDir/bin, or
	// $KUBEBUILDER_ASSETS).
	RootDir, BinDir string
	// Broker is the broker the operators administer.
	Broker *brokers.Broker
	// StartTimeout bounds each component's start (default 2 minutes: the
	// first start on a busy 2-core machine is slow).
	StartTimeout time.Duration
}

// Stack is a running control plane with the operator's identity and roles,
// ready to run operator processes against Broker.
type Stack struct {
	Env    *testenv.Env
	Broker *brokers.Broker
	// Dir, RootDir and BinDir as in Options, resolved.
	Dir, RootDir, BinDir string

	startTimeout       time.Duration
	operatorKubeconfig string
	passwordFile       string
	cpLog              *os.File
	// certDir is a copy of the API server's certificates that restarts
	// reuse (see RestartAPIServer).
	certDir string

	mu        sync.Mutex
	operators []*Operator
}

// Start starts the control plane, provisions the operator's user with the
// generated role and the leader election role, and writes the broker's
// admin password where operators read it. On error nothing is left running.
func Start(ctx context.Context, o Options) (*Stack, error) {
	if o.Dir == "" || o.Broker == nil {
		return nil, errors.New("faultstack: Dir and Broker are required")
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 2 * time.Minute
	}
	root, bin, err := resolveDirs(o.RootDir, o.BinDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("faultstack: creating %s: %w", o.Dir, err)
	}
	s := &Stack{Broker: o.Broker, Dir: o.Dir, RootDir: root, BinDir: bin, startTimeout: o.StartTimeout}
	if err := s.start(ctx); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	return s, nil
}

func (s *Stack) start(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(s.BinDir, "manager")); err != nil {
		return fmt.Errorf("faultstack: %s/manager is missing: run `make build`: %w", s.BinDir, err)
	}
	f, err := os.OpenFile(s.Path("controlplane.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("faultstack: creating control plane log: %w", err)
	}
	s.cpLog = f
	// etcd keeps its data in Dir, so RestartEtcd finds it again.
	env, err := testenv.StartWithOptions(testenv.Options{
		RootDir: s.RootDir, AssetsDir: s.BinDir, EtcdDataDir: s.Path("etcd"),
		Output: f, StartTimeout: s.startTimeout,
	})
	if err != nil {
		return fmt.Errorf("faultstack: starting control plane (log %s): %w", s.Path("controlplane.log"), err)
	}
	s.Env = env
	s.operatorKubeconfig = s.Path("operator.kubeconfig")
	if err := env.WriteUserKubeconfig(s.operatorKubeconfig, localstack.OperatorUser); err != nil {
		return err
	}
	if err := localstack.BindOperatorRole(ctx, env.Client, s.RootDir, s.startTimeout); err != nil {
		return err
	}
	if err := s.bindLeaderElectionRole(ctx); err != nil {
		return err
	}
	s.passwordFile = s.Path("broker-admin-password")
	if err := os.WriteFile(s.passwordFile, []byte(s.Broker.AdminPassword+"\n"), 0o600); err != nil {
		return fmt.Errorf("faultstack: writing the broker admin password: %w", err)
	}
	return nil
}

// bindLeaderElectionRole installs config/default's leader election Role
// and binds it to the operator's user, as the Deployment's RoleBinding
// does: two replicas need it to share a lease.
func (s *Stack) bindLeaderElectionRole(ctx context.Context) error {
	path := filepath.Join(s.RootDir, leaderElectionRoleFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("faultstack: reading the leader election role: %w", err)
	}
	role := &rbacv1.Role{}
	if err := yaml.UnmarshalStrict(data, role); err != nil {
		return fmt.Errorf("faultstack: parsing %s: %w", path, err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name, Namespace: role.Namespace},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: localstack.OperatorUser}},
	}
	for _, obj := range []client.Object{role, binding} {
		if err := s.Env.Client.Create(ctx, obj); err != nil {
			return fmt.Errorf("faultstack: creating %T %s: %w", obj, obj.GetName(), err)
		}
	}
	return nil
}

// Path is name inside Dir.
func (s *Stack) Path(name ...string) string {
	return filepath.Join(append([]string{s.Dir}, name...)...)
}

// RestartAPIServer stops kube-apiserver and starts it again on the same
// port with the same certificates, etcd untouched: clients (the operators'
// kubeconfigs, Env.Client) keep working once it is back. It returns when
// the API server answers /healthz again.
func (s *Stack) RestartAPIServer() error {
	api := s.Env.Environment.ControlPlane.APIServer
	if s.certDir == "" {
		// envtest made the certificate directory itself and deletes it on
		// Stop, after which Start would make a new serving CA that no
		// kubeconfig trusts. A copy given as CertDir is kept and reused:
		// the serving certificate, the service account keys and the client
		// CA (which signed every user's certificate) stay the same.
		dir := s.Path("apiserver-certs")
		if err := copyDir(api.CertDir, dir); err != nil {
			return fmt.Errorf("faultstack: keeping the API server's certificates: %w", err)
		}
		s.certDir = dir
	}
	if err := api.Stop(); err != nil {
		// envtest gives kube-apiserver 20 s to stop after SIGTERM, then
		// SIGKILLs it and reports a timeout; under load it can take longer
		// to drain. Either way it is going: wait until its port is free.
		if !strings.Contains(err.Error(), "timeout waiting for process") {
			return fmt.Errorf("faultstack: stopping kube-apiserver: %w", err)
		}
		if err := waitPortFree(api.HostPort(), 30*time.Second); err != nil {
			return fmt.Errorf("faultstack: kube-apiserver killed after a stop timeout, but: %w", err)
		}
	}
	api.CertDir = s.certDir
	if err := api.Start(); err != nil {
		return fmt.Errorf("faultstack: starting kube-apiserver again (log %s): %w", s.Path("controlplane.log"), err)
	}
	return nil
}

// StopEtcd stops etcd (its data stays in Dir); StartEtcd starts it again on
// the same address. The API server keeps running and reconnects.
func (s *Stack) StopEtcd() error {
	if err := s.Env.Environment.ControlPlane.Etcd.Stop(); err != nil {
		return fmt.Errorf("faultstack: stopping etcd: %w", err)
	}
	return nil
}

// StartEtcd starts a stopped etcd with its data.
func (s *Stack) StartEtcd() error {
	if err := s.Env.Environment.ControlPlane.Etcd.Start(); err != nil {
		return fmt.Errorf("faultstack: starting etcd again (log %s): %w", s.Path("controlplane.log"), err)
	}
	return nil
}

// LeaseHolder is the identity holding the operator's leader election lease
// ("" when nobody does, or the lease does not exist yet).
func (s *Stack) LeaseHolder(ctx context.Context) (string, error) {
	var l coordinationv1.Lease
	err := s.Env.Client.Get(ctx, types.NamespacedName{Namespace: testenv.SystemNamespace, Name: LeaseName}, &l)
	if err != nil {
		return "", client.IgnoreNotFound(err)
	}
	if l.Spec.HolderIdentity == nil {
		return "", nil
	}
	return *l.Spec.HolderIdentity, nil
}

// Close stops every operator still running (SIGINT, then SIGKILL after
// 45 s), then the control plane. The broker is the caller's.
func (s *Stack) Close() error {
	s.mu.Lock()
	ops := append([]*Operator(nil), s.operators...)
	s.mu.Unlock()
	var errs []error
	for _, op := range ops {
		if err := op.Stop(45 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if s.Env != nil {
		errs = append(errs, s.Env.Stop())
	}
	if s.cpLog != nil {
		errs = append(errs, s.cpLog.Close())
	}
	return errors.Join(errs...)
}

// waitPortFree waits until nothing accepts connections on addr.
func waitPortFree(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return nil
		}
		_ = c.Close()
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still accepts connections after %s", addr, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// resolveDirs finds the repository root (from go.mod) and the binaries.
func resolveDirs(root, bin string) (string, string, error) {
	if root == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", "", fmt.Errorf("faultstack: %w", err)
		}
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				root = d
				break
			}
			if filepath.Dir(d) == d {
				return "", "", fmt.Errorf("faultstack: no go.mod at or above %s", wd)
			}
		}
	}
	if bin == "" {
		bin = os.Getenv("KUBEBUILDER_ASSETS")
	}
	if bin == "" {
		bin = filepath.Join(root, "bin")
	}
	var err error
	if bin, err = filepath.Abs(bin); err != nil {
		return "", "", fmt.Errorf("faultstack: %w", err)
	}
	return root, bin, nil
}

// copyDir copies the regular files of src into dst (created 0700).
func copyDir(src, dst string) error {
	if src == "" {
		return errors.New("no source directory")
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		in, err := os.Open(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		out, err := os.OpenFile(filepath.Join(dst, e.Name()), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			_ = in.Close()
			return err
		}
		_, err = io.Copy(out, in)
		_ = in.Close()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// joinAddrs renders a bootstrap list as a flag value.
func joinAddrs(addrs []string) string { return strings.Join(addrs, ",") }
