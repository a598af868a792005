package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Role is what a Subscription may do on its topics.
// +kubebuilder:validation:Enum=Consume;Produce
type Role string

const (
	// RoleConsume grants Read and Describe on the topics and Read on the
	// consumer group.
	RoleConsume Role = "Consume"
	// RoleProduce grants Write and Describe on the topics and
	// IdempotentWrite on the cluster.
	RoleProduce Role = "Produce"
)

// Mechanism is a SASL/SCRAM mechanism.
// +kubebuilder:validation:Enum=SCRAM-SHA-512;SCRAM-SHA-256
type Mechanism string

const (
	MechanismSCRAMSHA512 Mechanism = "SCRAM-SHA-512"
	MechanismSCRAMSHA256 Mechanism = "SCRAM-SHA-256"
)

// AuthenticationType is how a workload proves its identity to the broker.
// +kubebuilder:validation:Enum=scram-sha-512;scram-sha-256;tls;serviceAccount
type AuthenticationType string

const (
	// AuthSCRAMSHA512 is a SCRAM-SHA-512 password the operator generates
	// and writes into the credentials Secret (the default).
	AuthSCRAMSHA512 AuthenticationType = "scram-sha-512"
	// AuthSCRAMSHA256 is the same with SCRAM-SHA-256.
	AuthSCRAMSHA256 AuthenticationType = "scram-sha-256"
	// AuthTLS is a client certificate issued by the operator's clients CA,
	// subject CN=<namespace>.<name>, short-lived and renewed automatically.
	AuthTLS AuthenticationType = "tls"
	// AuthServiceAccount is the workload's own Kubernetes ServiceAccount
	// token, presented over SASL/OAUTHBEARER and validated by the broker
	// against the cluster's OIDC issuer: no shared secret exists anywhere.
	AuthServiceAccount AuthenticationType = "serviceAccount"
)

// AuthenticationSpec says how the workload authenticates.
// +kubebuilder:validation:XValidation:rule="(self.type == 'serviceAccount') == has(self.serviceAccountName)",message="serviceAccountName is required for type serviceAccount and allowed only with it"
type AuthenticationSpec struct {
	// Type is scram-sha-512 (default), scram-sha-256, tls or
	// serviceAccount.
	// +optional
	// +kubebuilder:default=scram-sha-512
	Type AuthenticationType `json:"type,omitempty"`

	// ServiceAccountName, for type serviceAccount, names the ServiceAccount
	// in this Subscription's namespace whose tokens (with the audience the
	// operator documents, "kafka" by default) identify the workload. The
	// broker principal is User:system:serviceaccount:<namespace>:<name>.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
}

// TopicReference points at a Topic object.
type TopicReference struct {
	// Name of the Topic object (metadata.name, not the broker name).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// Namespace of the Topic; defaults to the Subscription's. The Topic
	// must list this Subscription's namespace in spec.allowedNamespaces.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
}

// CredentialsSpec configures the SCRAM credentials issued.
type CredentialsSpec struct {
	// Mechanism of the SCRAM credential; SCRAM-SHA-512 by default.
	// +optional
	// +kubebuilder:default=SCRAM-SHA-512
	Mechanism Mechanism `json:"mechanism,omitempty"`

	// SecretName of the Secret the operator writes the credentials into;
	// defaults to <subscription name>-bus-credentials. Names ending in
	// -bus-credentials are reserved for those defaults, so no Subscription
	// can name another's default Secret. Immutable.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	// +kubebuilder:validation:XValidation:rule="!self.endsWith('-bus-credentials')",message="secretName must not end in -bus-credentials: <name>-bus-credentials is the default Secret of the Subscription <name> and is reserved for it; leave secretName out to use this Subscription's own default"
	SecretName string `json:"secretName,omitempty"`
}

// QuotaSpec limits a client's throughput on the broker.
type QuotaSpec struct {
	// ProducerByteRate caps produced bytes per second.
	// +optional
	// +kubebuilder:validation:Minimum=1024
	ProducerByteRate *int64 `json:"producerByteRate,omitempty"`

	// ConsumerByteRate caps fetched bytes per second.
	// +optional
	// +kubebuilder:validation:Minimum=1024
	ConsumerByteRate *int64 `json:"consumerByteRate,omitempty"`
}

// SubscriptionSpec declares a consumer or producer of topics.
// +kubebuilder:validation:XValidation:rule="!has(self.consumerGroup) || self.role == 'Consume'",message="consumerGroup applies only to role Consume"
// +kubebuilder:validation:XValidation:rule="!has(self.authentication) || !has(self.credentials) || !has(self.credentials.mechanism)",message="set the SCRAM mechanism in authentication.type (scram-sha-512 or scram-sha-256) or in credentials.mechanism, not both"
// +kubebuilder:validation:XValidation:rule="!has(self.quota) || !has(self.authentication) || self.authentication.type != 'serviceAccount'",message="quota is not supported with authentication type serviceAccount: Subscriptions naming one ServiceAccount share its principal, and a quota would apply to all of them"
// +kubebuilder:validation:XValidation:rule="(has(self.credentials) && has(self.credentials.secretName)) == (has(oldSelf.credentials) && has(oldSelf.credentials.secretName)) && (!(has(self.credentials) && has(self.credentials.secretName)) || self.credentials.secretName == oldSelf.credentials.secretName)",message="credentials.secretName is immutable"
// +kubebuilder:validation:XValidation:rule="has(self.consumerGroup) == has(oldSelf.consumerGroup) && (!has(self.consumerGroup) || self.consumerGroup == oldSelf.consumerGroup)",message="consumerGroup is immutable: committed offsets belong to the group"
type SubscriptionSpec struct {
	// Topics this Subscription uses.
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:XValidation:rule="self.all(a, self.exists_one(b, a.name == b.name && has(a.__namespace__) == has(b.__namespace__) && (!has(a.__namespace__) || a.__namespace__ == b.__namespace__)))",message="topics must not list the same Topic twice"
	Topics []TopicReference `json:"topics"`

	// Role is Consume (default) or Produce.
	// +optional
	// +kubebuilder:default=Consume
	Role Role `json:"role,omitempty"`

	// ConsumerGroup for role Consume; defaults to <namespace>.<name>. A
	// group belongs to one namespace: it must start with "<namespace>.",
	// and it is claimed by exactly one Subscription (the first approved),
	// since members of a group share its committed offsets and split its
	// events. Immutable.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=249
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9._-]+$`
	ConsumerGroup string `json:"consumerGroup,omitempty"`

	// ChangeTicket names the ChangeTicket, in this namespace, that
	// authorises this Subscription.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	ChangeTicket string `json:"changeTicket"`

	// Authentication says how the workload proves its identity: a SCRAM
	// password (default), a client certificate, or its ServiceAccount
	// token. Changing it is a change like any other: it needs the ticket.
	// +optional
	Authentication *AuthenticationSpec `json:"authentication,omitempty"`

	// Credentials configures the credentials Secret (and, for SCRAM, its
	// mechanism; authentication.type is the newer way to say it).
	// +optional
	Credentials *CredentialsSpec `json:"credentials,omitempty"`

	// Quota limits the client's throughput, where the broker supports
	// client quotas.
	// +optional
	Quota *QuotaSpec `json:"quota,omitempty"`
}

// ACLEntry is one ACL the operator granted.
type ACLEntry struct {
	// ResourceType: Topic, Group or Cluster.
	// +required
	ResourceType string `json:"resourceType"`
	// ResourceName: topic or group name, or kafka-cluster.
	// +required
	ResourceName string `json:"resourceName"`
	// PatternType: Literal.
	// +required
	PatternType string `json:"patternType"`
	// Operation: Read, Write, Describe or IdempotentWrite.
	// +required
	Operation string `json:"operation"`
}

// GrantedTopic is one topic a Subscription was granted, as approved.
type GrantedTopic struct {
	// Namespace of the Topic object.
	// +required
	Namespace string `json:"namespace"`
	// Name of the Topic object.
	// +required
	Name string `json:"name"`
	// UID of the Topic object when the grant was approved.
	// +required
	UID string `json:"uid"`
	// TopicName on the broker.
	// +required
	TopicName string `json:"topicName"`
	// TopicID on the broker when the grant was last written.
	// +optional
	TopicID string `json:"topicID,omitempty"`
}

// CertificateStatus describes an issued client certificate; never its key.
type CertificateStatus struct {
	// Subject of the certificate, CN=<namespace>.<name>.
	// +optional
	Subject string `json:"subject,omitempty"`
	// SerialNumber in hex.
	// +optional
	SerialNumber string `json:"serialNumber,omitempty"`
	// NotAfter is when the certificate expires.
	// +optional
	NotAfter *metav1.Time `json:"notAfter,omitempty"`
	// RenewAt is when the operator issues the next one, well before
	// NotAfter, so clients never hold an expired certificate.
	// +optional
	RenewAt *metav1.Time `json:"renewAt,omitempty"`
}

// SubscriptionStatus reports the credentials and grants on the broker.
type SubscriptionStatus struct {
	// ObservedGeneration is the generation last applied successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Principal the ACLs are granted to, User:<namespace>.<name>.
	// +optional
	Principal string `json:"principal,omitempty"`

	// Username of the SCRAM credential.
	// +optional
	Username string `json:"username,omitempty"`

	// SecretName holds the credentials and client config.
	// +optional
	SecretName string `json:"secretName,omitempty"`

	// ConsumerGroup granted, for role Consume.
	// +optional
	ConsumerGroup string `json:"consumerGroup,omitempty"`

	// Role applied on the broker. While a changed spec awaits its ticket,
	// the broker keeps this role, mechanism and quota.
	// +optional
	Role Role `json:"role,omitempty"`

	// Mechanism of the SCRAM credential on the broker (SCRAM types only).
	// +optional
	Mechanism Mechanism `json:"mechanism,omitempty"`

	// Authentication applied: the type the broker accepts for this
	// Subscription's principal.
	// +optional
	Authentication AuthenticationType `json:"authentication,omitempty"`

	// ServiceAccountName applied, for type serviceAccount.
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`

	// Certificate describes the client certificate issued (type tls).
	// +optional
	Certificate *CertificateStatus `json:"certificate,omitempty"`

	// Quota applied on the broker.
	// +optional
	Quota *QuotaSpec `json:"quota,omitempty"`

	// Topics lists the broker topic names granted.
	// +optional
	// +listType=atomic
	Topics []string `json:"topics,omitempty"`

	// GrantedTopics records, for each topic granted, the Topic object it
	// came from and the broker topic it named when the grant was approved.
	// A grant follows that Topic object (its UID) and broker name only: a
	// Topic deleted and recreated, renamed, or narrowing its
	// allowedNamespaces loses the grant, and granting anything not recorded
	// here needs a currently valid ticket.
	// +optional
	// +listType=atomic
	GrantedTopics []GrantedTopic `json:"grantedTopics,omitempty"`

	// ApprovedSpecHash is the hash of the spec whose approval the grants
	// carry (see governance.SpecHash).
	// +optional
	ApprovedSpecHash string `json:"approvedSpecHash,omitempty"`

	// SecretUID is the UID of the credentials Secret the operator created.
	// A Secret of that name with another UID was made by someone else and
	// is never written to.
	// +optional
	SecretUID string `json:"secretUID,omitempty"`

	// TopicsSummary joins Topics for the printer column.
	// +optional
	TopicsSummary string `json:"topicsSummary,omitempty"`

	// GrantedACLs are the ACLs the operator created and owns.
	// +optional
	// +listType=atomic
	GrantedACLs []ACLEntry `json:"grantedACLs,omitempty"`

	// CredentialsRotation is the last value of the rotate annotation
	// acted on.
	// +optional
	CredentialsRotation string `json:"credentialsRotation,omitempty"`

	// PasswordChangedAt is when the current password was issued.
	// +optional
	PasswordChangedAt *metav1.Time `json:"passwordChangedAt,omitempty"`

	// AppliedTicket authorised the grants on the broker.
	// +optional
	AppliedTicket *AppliedTicket `json:"appliedTicket,omitempty"`

	// Conditions: Ready and Approved always; Reconciling and Stalled only
	// while True.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Subscription grants a workload credentials to consume or produce topics.
//
// +kubebuilder:validation:XValidation:rule="(has(self.spec.credentials) && has(self.spec.credentials.secretName)) || size(self.metadata.name) <= 237",message="metadata.name is too long for the default credentials Secret <name>-bus-credentials (at most 253 characters): use at most 237 characters or set spec.credentials.secretName"
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sub,categories=hmsbus
// +kubebuilder:printcolumn:name="Role",type=string,JSONPath=`.spec.role`
// +kubebuilder:printcolumn:name="Topics",type=string,JSONPath=`.status.topicsSummary`
// +kubebuilder:printcolumn:name="Principal",type=string,JSONPath=`.status.principal`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Secret",type=string,JSONPath=`.status.secretName`,priority=1
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Subscription struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec declares what the workload needs.
	// +required
	Spec SubscriptionSpec `json:"spec"`

	// Status reports what was granted.
	// +optional
	Status SubscriptionStatus `json:"status,omitempty"`
}

// GetConditions gives the controllers' shared bookkeeping the conditions.
func (s *Subscription) GetConditions() *[]metav1.Condition { return &s.Status.Conditions }

// Principal is the Kafka principal of the Subscription: User:<namespace>.<name>
// for SCRAM and certificates (namespaces cannot contain dots, so the first
// dot separates namespace and name and two Subscriptions never share it),
// and the ServiceAccount's subject for ServiceAccount tokens (which the
// Subscriptions naming the same ServiceAccount share).
func (s *Subscription) Principal() string {
	return PrincipalFor(s.Namespace, s.Name, s.AuthType(), s.ServiceAccountName())
}

// PrincipalFor is the principal of a Subscription with the given identity.
func PrincipalFor(namespace, name string, auth AuthenticationType, serviceAccount string) string {
	if auth == AuthServiceAccount {
		return "User:system:serviceaccount:" + namespace + ":" + serviceAccount
	}
	return "User:" + namespace + "." + name
}

// AuthType is the authentication the spec asks for.
func (s *Subscription) AuthType() AuthenticationType {
	if a := s.Spec.Authentication; a != nil && a.Type != "" {
		return a.Type
	}
	if s.Spec.Credentials != nil && s.Spec.Credentials.Mechanism == MechanismSCRAMSHA256 {
		return AuthSCRAMSHA256
	}
	return AuthSCRAMSHA512
}

// ServiceAccountName is the ServiceAccount of a serviceAccount Subscription.
func (s *Subscription) ServiceAccountName() string {
	if a := s.Spec.Authentication; a != nil {
		return a.ServiceAccountName
	}
	return ""
}

// SCRAMMechanism is the SCRAM mechanism of a SCRAM authentication type, or
// "" for the others.
func (a AuthenticationType) SCRAMMechanism() Mechanism {
	switch a {
	case AuthSCRAMSHA512, "":
		return MechanismSCRAMSHA512
	case AuthSCRAMSHA256:
		return MechanismSCRAMSHA256
	}
	return ""
}

// Username is the SCRAM user name, <namespace>.<name>.
func (s *Subscription) Username() string { return s.Namespace + "." + s.Name }

// ConsumerGroupName is the consumer group granted to a consuming Subscription.
func (s *Subscription) ConsumerGroupName() string {
	if s.Spec.ConsumerGroup != "" {
		return s.Spec.ConsumerGroup
	}
	return s.Namespace + "." + s.Name
}

// SecretName is the Secret that holds the credentials.
func (s *Subscription) SecretName() string {
	if s.Spec.Credentials != nil && s.Spec.Credentials.SecretName != "" {
		return s.Spec.Credentials.SecretName
	}
	return s.Name + "-bus-credentials"
}

// MechanismName is the SCRAM mechanism in use, or "" when the
// authentication is not SCRAM.
func (s *Subscription) MechanismName() Mechanism { return s.AuthType().SCRAMMechanism() }

// SubscriptionList is a list of Subscriptions.
// +kubebuilder:object:root=true
type SubscriptionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Subscription `json:"items"`
}
