package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// fieldOwner is the server-side apply manager of what the harness installs.
const fieldOwner = "hmsbus-testenv"

// kustomization is the subset of kustomize the harness understands: a list
// of resources. Unknown fields are an error, so adding patches or
// generators to a kustomization fails loudly here instead of being ignored.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
}

// applyKustomization applies, in order, the resources that dir's
// kustomization.yaml lists, so tests run exactly what `kubectl apply -k`
// would deploy.
func applyKustomization(ctx context.Context, c client.Client, dir string) error {
	file := filepath.Join(dir, "kustomization.yaml")
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("reading %s: %w", file, err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		return fmt.Errorf("parsing %s (the test harness supports only resources:): %w", file, err)
	}
	for _, r := range k.Resources {
		path := filepath.Join(dir, r)
		info, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("resource %s of %s: %w", r, file, err)
		}
		if info.IsDir() {
			err = applyKustomization(ctx, c, path)
		} else {
			err = applyFile(ctx, c, path)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// applyFile server-side applies every object of a multi-document YAML file.
// Apply rather than create keeps a restart on a persistent etcd working.
func applyFile(ctx context.Context, c client.Client, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var obj map[string]any
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("decoding %s: %w", path, err)
		}
		if len(obj) == 0 {
			continue // a document of comments only
		}
		u := &unstructured.Unstructured{Object: obj}
		err = c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(fieldOwner), client.ForceOwnership)
		if err != nil {
			return fmt.Errorf("applying %s %s from %s: %w", u.GetKind(), u.GetName(), path, err)
		}
	}
}

// ApplyKustomization applies the resources of a kustomization directory of
// the repository (relative to its root), as `kubectl apply -k` would.
func (e *Env) ApplyKustomization(ctx context.Context, dir string) error {
	return applyKustomization(ctx, e.Client, filepath.Join(e.RootDir, dir))
}
