package v1

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ClaimKind is the kind of name a NameClaim reserves.
// +kubebuilder:validation:Enum=BrokerTopic;ConsumerGroup;CredentialsSecret
type ClaimKind string

const (
	// ClaimBrokerTopic reserves a broker topic name for one Topic, across
	// all namespaces (the broker has one namespace of topics).
	ClaimBrokerTopic ClaimKind = "BrokerTopic"
	// ClaimConsumerGroup reserves a consumer group for one Subscription:
	// committed offsets and unacknowledged events belong to the group.
	ClaimConsumerGroup ClaimKind = "ConsumerGroup"
	// ClaimCredentialsSecret reserves a Secret name in a namespace for the
	// credentials of one Subscription.
	ClaimCredentialsSecret ClaimKind = "CredentialsSecret"
)

// ClaimOwner identifies the object that holds a claim. The UID makes the
// owner exact: an object deleted and recreated under the same name is a
// different owner.
type ClaimOwner struct {
	// Kind of the owner: Topic or Subscription.
	// +required
	Kind CoveredKind `json:"kind"`
	// Namespace of the owner.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`
	// Name of the owner.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// UID of the owner.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	UID string `json:"uid"`
}

// NameClaimSpec says which name is reserved and for whom.
type NameClaimSpec struct {
	// Kind of name reserved.
	// +required
	Kind ClaimKind `json:"kind"`
	// Name reserved, exactly as the broker or the namespace knows it (for a
	// CredentialsSecret, "<namespace>/<secret name>").
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=320
	Name string `json:"name"`
	// Owner holds the name until it is deleted.
	// +required
	Owner ClaimOwner `json:"owner"`
}

// NameClaim reserves a name that carries data or identity (a broker topic,
// a consumer group, a credentials Secret) for exactly one approved object.
// The operator creates it before it writes anything under that name: the API
// server's create is atomic, so of several objects racing for one name
// exactly one wins, and the claim never moves while its owner exists. The
// operator deletes it when the owner is gone. People only read these.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=claim,categories=hmsbus
// +kubebuilder:printcolumn:name="Kind",type=string,JSONPath=`.spec.kind`
// +kubebuilder:printcolumn:name="Name",type=string,JSONPath=`.spec.name`
// +kubebuilder:printcolumn:name="Owner Namespace",type=string,JSONPath=`.spec.owner.namespace`
// +kubebuilder:printcolumn:name="Owner",type=string,JSONPath=`.spec.owner.name`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type NameClaim struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the claim; immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="a claim is immutable: it never moves to another owner"
	Spec NameClaimSpec `json:"spec"`
}

// NameClaimList is a list of NameClaims.
// +kubebuilder:object:root=true
type NameClaimList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NameClaim `json:"items"`
}

// ClaimObjectName is the NameClaim object name for a claimed name: the
// claim kind and a hash of the name's collision key, so names that the
// broker treats as one name map to one claim object, and any name (mixed
// case, underscores, 249 characters) gives a valid Kubernetes name.
func ClaimObjectName(kind ClaimKind, name string) string {
	sum := sha256.Sum256([]byte(ClaimKey(kind, name)))
	return strings.ToLower(string(kind)) + "-" + hex.EncodeToString(sum[:20])
}

// ClaimKey is the name as far as collisions go. Kafka refuses a topic whose
// name differs from an existing one only by '.' versus '_' (they collide in
// metric names), so both spellings are one claim.
func ClaimKey(kind ClaimKind, name string) string {
	if kind == ClaimBrokerTopic {
		return strings.ReplaceAll(name, ".", "_")
	}
	return name
}
