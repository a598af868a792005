package controllers

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func issuedSecretData() map[string][]byte {
	return map[string][]byte{
		"password": []byte("pw-0123456789"), "username": []byte("fees.payment"), "bootstrap.servers": []byte("b:9092"),
		"client.properties": []byte("sasl.jaas.config=... password=\"pw-0123456789\";"), "ca.crt": []byte("-----BEGIN CERTIFICATE-----"),
	}
}

func TestTrimCachedSecretKeepsWhatAReconcileReads(t *testing.T) {
	data := issuedSecretData()
	data["tls.crt"], data["tls.key"] = []byte("cert"), []byte("key")
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"bus.hms.io/password-sha256": "x"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "m"}}}, Data: data}
	full := dataDigest(data)
	out, err := TrimCachedSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*corev1.Secret)
	if len(got.Data) != 3 || string(got.Data["password"]) != "pw-0123456789" || string(got.Data["tls.crt"]) != "cert" || string(got.Data["tls.key"]) != "key" {
		t.Fatalf("kept %v; want password, tls.crt and tls.key", got.Data)
	}
	if got.ManagedFields != nil || got.Annotations["bus.hms.io/password-sha256"] != "x" || got.Annotations[annotationCachedDataDigest] != full {
		t.Fatalf("metadata after trimming: %+v", got.ObjectMeta)
	}
	if other, _ := TrimCachedSecret(&corev1.ConfigMap{}); other == nil {
		t.Fatal("objects other than Secrets pass unchanged")
	}
}

func TestCachedSecretComparesByDigest(t *testing.T) {
	trimmed := func(data map[string][]byte) *corev1.Secret {
		out, _ := TrimCachedSecret(&corev1.Secret{Data: data})
		return out.(*corev1.Secret)
	}
	same := issuedSecretData()
	cases := []struct {
		name    string
		current *corev1.Secret
		want    bool
	}{
		{"cached, same data", trimmed(issuedSecretData()), true},
		{"cached, a dropped key edited", trimmed(func() map[string][]byte {
			d := issuedSecretData()
			d["bootstrap.servers"] = []byte("evil:9092")
			return d
		}()), false},
		{"cached, a key added", trimmed(func() map[string][]byte { d := issuedSecretData(); d["extra"] = nil; return d }()), false},
		{"cached, a key removed", trimmed(func() map[string][]byte { d := issuedSecretData(); delete(d, "ca.crt"); return d }()), false},
		{"live, same data", &corev1.Secret{Data: issuedSecretData()}, true},
		{"live, edited", &corev1.Secret{Data: func() map[string][]byte { d := issuedSecretData(); d["username"] = []byte("x"); return d }()}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := sameSecretData(tc.current, same); got != tc.want {
				t.Fatalf("sameSecretData = %v, want %v", got, tc.want)
			}
		})
	}
	// Keys and values are length-prefixed: moving a byte across the
	// boundary changes the digest.
	if dataDigest(map[string][]byte{"a": []byte("bc")}) == dataDigest(map[string][]byte{"ab": []byte("c")}) {
		t.Fatal("digest ignores where a key ends")
	}
	if got := withoutCacheAnnotation(map[string]string{annotationCachedDataDigest: "d"}); got != nil {
		t.Fatalf("annotations without the cache's own: %v", got)
	}
	if got := withoutCacheAnnotation(map[string]string{annotationCachedDataDigest: "d", "k": "v"}); len(got) != 1 || got["k"] != "v" {
		t.Fatalf("annotations without the cache's own: %v", got)
	}
}
