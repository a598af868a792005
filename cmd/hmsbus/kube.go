package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/pflag"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/pkg/bus"
)

// kubeOptions are the kubectl-style flags that pick the cluster, the
// namespace and the user (with impersonation, so a demo can play several).
type kubeOptions struct {
	kubeconfig string
	context    string
	namespace  string
	as         string
	asGroups   []string
}

func (k *kubeOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&k.kubeconfig, "kubeconfig", "", "path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	fs.StringVar(&k.context, "context", "", "kubeconfig context to use")
	fs.StringVarP(&k.namespace, "namespace", "n", "", "namespace (default: the context's namespace)")
	fs.StringVar(&k.as, "as", "", "user to impersonate")
	fs.StringArrayVar(&k.asGroups, "as-group", nil, "group to impersonate; repeat for several")
}

func (k *kubeOptions) clientConfig() clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = k.kubeconfig
	overrides := &clientcmd.ConfigOverrides{
		CurrentContext: k.context,
		Context:        clientcmdapi.Context{Namespace: k.namespace},
		AuthInfo:       clientcmdapi.AuthInfo{Impersonate: k.as, ImpersonateGroups: k.asGroups},
	}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
}

// connect returns a client for the chosen cluster and user, and the
// namespace to work in.
func (k *kubeOptions) connect() (client.Client, string, error) {
	cc := k.clientConfig()
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("reading the namespace from kubeconfig: %w", err)
	}
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("loading kubeconfig: %w", err)
	}
	// client-go's default of 5 requests/s would make a person wait on a
	// command that reads a few dozen objects; kubectl itself allows more.
	cfg.QPS, cfg.Burst = 50, 100
	c, err := client.New(cfg, client.Options{Scheme: newScheme()})
	if err != nil {
		return nil, "", fmt.Errorf("creating Kubernetes client: %w", err)
	}
	return c, ns, nil
}

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	// Both only register types into a fresh scheme; they cannot fail.
	_ = clientgoscheme.AddToScheme(s)
	_ = busv1.AddToScheme(s)
	return s
}

// currentUser asks the API server who we are (SelfSubjectReview), so the
// name recorded as reviewer is the one the admission policy compares with:
// it follows impersonation, OIDC claims and certificate names alike.
func currentUser(ctx context.Context, c client.Client) (string, error) {
	review := &authnv1.SelfSubjectReview{}
	if err := c.Create(ctx, review); err != nil {
		return "", fmt.Errorf("asking the API server who the current user is: %w", err)
	}
	if review.Status.UserInfo.Username == "" {
		return "", errors.New("the API server did not report a user name for these credentials")
	}
	return review.Status.UserInfo.Username, nil
}

// splitRef reads NAME or NS/NAME, defaulting the namespace.
func splitRef(ref, defaultNS string) (ns, name string, err error) {
	ns, name, found := strings.Cut(ref, "/")
	if !found {
		ns, name = defaultNS, ref
	}
	if ns == "" || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("%q: want NAME or NAMESPACE/NAME", ref)
	}
	return ns, name, nil
}

// subscriptionCredentials reads the credentials Secret the operator wrote
// for a Subscription.
func subscriptionCredentials(ctx context.Context, c client.Client, ns, name string) (bus.Credentials, error) {
	var sub busv1.Subscription
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &sub); err != nil {
		return bus.Credentials{}, fmt.Errorf("reading Subscription %s/%s: %w", ns, name, err)
	}
	secretName := sub.Status.SecretName
	if secretName == "" {
		secretName = sub.SecretName()
	}
	var secret corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: secretName}, &secret); err != nil {
		if apierrors.IsNotFound(err) {
			return bus.Credentials{}, fmt.Errorf("no credentials yet for Subscription %s/%s: is it Ready? %w", ns, name, err)
		}
		return bus.Credentials{}, fmt.Errorf("reading Secret %s/%s of Subscription %s: %w", ns, secretName, name, err)
	}
	creds, err := bus.CredentialsFromSecretData(secret.Data)
	if err != nil {
		return bus.Credentials{}, fmt.Errorf("reading credentials Secret %s/%s of Subscription %s: %w", ns, secretName, name, err)
	}
	return creds, nil
}

// rejected adds a hint to errors where the API server (or its admission
// policy) refused a write; the server's message itself says why.
func rejected(err error) error {
	if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) {
		return fmt.Errorf("rejected by the API server: %w", err)
	}
	return err
}
