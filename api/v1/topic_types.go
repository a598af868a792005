package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DeletionPolicy says what happens to broker data when a Topic is deleted.
// +kubebuilder:validation:Enum=Retain;Delete
type DeletionPolicy string

const (
	// DeletionRetain leaves the broker topic and its data in place.
	DeletionRetain DeletionPolicy = "Retain"
	// DeletionDelete deletes the broker topic, but only with an approved
	// ChangeTicket that covers the Topic with the Delete operation.
	DeletionDelete DeletionPolicy = "Delete"
)

// TopicSpec declares a broker topic.
//
// Integer-valued configs are checked here so a typo is refused at admission,
// not discovered later on the broker.
// +kubebuilder:validation:XValidation:rule="has(self.topicName) == has(oldSelf.topicName) && (!has(self.topicName) || self.topicName == oldSelf.topicName)",message="topicName is immutable: a broker topic cannot be renamed"
// +kubebuilder:validation:XValidation:rule="has(self.replicationFactor) == has(oldSelf.replicationFactor) && (!has(self.replicationFactor) || self.replicationFactor == oldSelf.replicationFactor)",message="replicationFactor is immutable"
// +kubebuilder:validation:XValidation:rule="!has(self.config) || !('min.insync.replicas' in self.config) || !has(self.replicationFactor) || !self.config['min.insync.replicas'].matches('^[0-9]{1,18}$') || int(self.config['min.insync.replicas']) <= self.replicationFactor",message="config min.insync.replicas must not exceed replicationFactor",fieldPath=".config"
type TopicSpec struct {
	// TopicName is the name on the broker. Defaults to metadata.name, which
	// suits names that are also valid Kubernetes names; set it for names
	// such as FeeUpdated. Immutable.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=249
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9._-]+$`
	// +kubebuilder:validation:XValidation:rule="self != '.' && self != '..'",message="topicName must not be '.' or '..'"
	TopicName string `json:"topicName,omitempty"`

	// Partitions of the topic. It may only grow: Kafka cannot remove
	// partitions without losing data.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	// +kubebuilder:validation:XValidation:rule="self >= oldSelf",message="partitions may only grow: Kafka cannot remove partitions"
	Partitions int32 `json:"partitions"`

	// ReplicationFactor of the topic. Defaults to the broker's
	// default.replication.factor. Immutable.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=32
	ReplicationFactor *int32 `json:"replicationFactor,omitempty"`

	// Config holds topic-level config overrides. Only known Kafka topic
	// configs are accepted; a key removed here returns to the broker
	// default. Values the broker still refuses are reported with its own
	// error text in the Stalled condition.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, k in ['cleanup.policy','compression.type','delete.retention.ms','file.delete.delay.ms','flush.messages','flush.ms','index.interval.bytes','local.retention.bytes','local.retention.ms','max.compaction.lag.ms','max.message.bytes','message.timestamp.after.max.ms','message.timestamp.before.max.ms','message.timestamp.type','min.cleanable.dirty.ratio','min.compaction.lag.ms','min.insync.replicas','preallocate','remote.storage.enable','retention.bytes','retention.ms','segment.bytes','segment.index.bytes','segment.jitter.ms','segment.ms','unclean.leader.election.enable'])",message="config has an unknown key; see the Topic documentation for the supported Kafka topic configs"
	// +kubebuilder:validation:XValidation:rule="self.all(k, !(k in ['delete.retention.ms','file.delete.delay.ms','flush.messages','flush.ms','index.interval.bytes','max.compaction.lag.ms','max.message.bytes','message.timestamp.after.max.ms','message.timestamp.before.max.ms','min.compaction.lag.ms','min.insync.replicas','segment.bytes','segment.index.bytes','segment.jitter.ms','segment.ms']) || self[k].matches('^[0-9]{1,18}$'))",message="config value must be a non-negative integer for this key"
	// +kubebuilder:validation:XValidation:rule="self.all(k, !(k in ['retention.ms','retention.bytes','local.retention.ms','local.retention.bytes']) || self[k].matches('^(-1|[0-9]{1,18})$'))",message="retention values must be -1 (unlimited) or a non-negative integer"
	// +kubebuilder:validation:XValidation:rule="!('min.insync.replicas' in self) || !self['min.insync.replicas'].matches('^[0-9]{1,18}$') || int(self['min.insync.replicas']) >= 1",message="config min.insync.replicas must be at least 1"
	// +kubebuilder:validation:XValidation:rule="!('min.cleanable.dirty.ratio' in self) || self['min.cleanable.dirty.ratio'].matches('^(0([.][0-9]{1,9})?|1([.]0{1,9})?)$')",message="config min.cleanable.dirty.ratio must be a number from 0 to 1"
	// +kubebuilder:validation:XValidation:rule="self.all(k, !(k in ['segment.bytes','segment.index.bytes','segment.ms','max.compaction.lag.ms']) || !self[k].matches('^[0-9]{1,18}$') || int(self[k]) >= {'segment.bytes': 14, 'segment.index.bytes': 4, 'segment.ms': 1, 'max.compaction.lag.ms': 1}[k])",message="config value is below Kafka's minimum for this key (segment.bytes 14, segment.index.bytes 4, segment.ms 1, max.compaction.lag.ms 1)"
	// +kubebuilder:validation:XValidation:rule="!('cleanup.policy' in self) || self['cleanup.policy'] in ['delete','compact','compact,delete','delete,compact']",message="config cleanup.policy must be delete, compact or compact,delete"
	// +kubebuilder:validation:XValidation:rule="!('compression.type' in self) || self['compression.type'] in ['uncompressed','zstd','lz4','snappy','gzip','producer']",message="config compression.type must be one of uncompressed, zstd, lz4, snappy, gzip, producer"
	// +kubebuilder:validation:XValidation:rule="!('message.timestamp.type' in self) || self['message.timestamp.type'] in ['CreateTime','LogAppendTime']",message="config message.timestamp.type must be CreateTime or LogAppendTime"
	// +kubebuilder:validation:XValidation:rule="self.all(k, !(k in ['preallocate','remote.storage.enable','unclean.leader.election.enable']) || self[k] in ['true','false'])",message="config value must be true or false for this key"
	Config map[string]ConfigValue `json:"config,omitempty"`

	// ChangeTicket names the ChangeTicket, in this namespace, that
	// authorises the current spec.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	ChangeTicket string `json:"changeTicket"`

	// DeletionPolicy: Retain (default) keeps the broker topic and its data
	// when this Topic is deleted; Delete removes them, and needs a ticket
	// covering this Topic with the Delete operation.
	// +optional
	// +kubebuilder:default=Retain
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`

	// AllowedNamespaces lists the namespaces whose Subscriptions may use
	// this topic, besides its own. "*" allows every namespace.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=63
	AllowedNamespaces []string `json:"allowedNamespaces,omitempty"`
}

// ConfigValue is the value of one Kafka topic config. Its length bound lets
// the API server bound the cost of the CEL rules that check it.
// +kubebuilder:validation:MaxLength=256
type ConfigValue string

// Configs returns the spec's config as plain strings.
func (s *TopicSpec) Configs() map[string]string {
	if len(s.Config) == 0 {
		return nil
	}
	out := make(map[string]string, len(s.Config))
	for k, v := range s.Config {
		out[k] = string(v)
	}
	return out
}

// AppliedTicket records the ticket that authorised what the broker holds.
type AppliedTicket struct {
	// Name of the ChangeTicket object.
	// +required
	Name string `json:"name"`
	// Reference of the change (spec.reference of the ticket).
	// +required
	Reference string `json:"reference"`
	// ApprovedBy lists the reviewers whose approvals counted.
	// +optional
	// +listType=atomic
	ApprovedBy []string `json:"approvedBy,omitempty"`
}

// TopicStatus reports what the broker holds for this Topic.
type TopicStatus struct {
	// ObservedGeneration is the generation last applied successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// TopicName is the broker topic this object manages.
	// +optional
	TopicName string `json:"topicName,omitempty"`

	// TopicID is the broker's id for the topic; it changes if the topic is
	// deleted and recreated.
	// +optional
	TopicID string `json:"topicID,omitempty"`

	// Partitions on the broker.
	// +optional
	Partitions int32 `json:"partitions,omitempty"`

	// ReplicationFactor on the broker.
	// +optional
	ReplicationFactor int32 `json:"replicationFactor,omitempty"`

	// Config overrides applied on the broker.
	// +optional
	Config map[string]string `json:"config,omitempty"`

	// AppliedTicket authorised the state on the broker.
	// +optional
	AppliedTicket *AppliedTicket `json:"appliedTicket,omitempty"`

	// ApprovedSpecHash is the hash of the spec whose approval the broker
	// state carries (see governance.SpecHash). A spec with this hash needs
	// no ticket to be restored after drift; any other spec does.
	// +optional
	ApprovedSpecHash string `json:"approvedSpecHash,omitempty"`

	// ClaimedAt is when this Topic claimed its broker topic name. Only the
	// claim's owner ever creates, alters or deletes the broker topic, and
	// only it records TopicID.
	// +optional
	ClaimedAt *metav1.Time `json:"claimedAt,omitempty"`

	// AllowedNamespaces in force: the approved spec.allowedNamespaces.
	// Subscriptions from other namespaces are judged against this, so
	// widening access waits for the Topic's ticket like any other change.
	// +optional
	// +listType=atomic
	AllowedNamespaces []string `json:"allowedNamespaces,omitempty"`

	// Conditions: Ready and Approved always; Reconciling, Stalled and
	// Drifted only while True.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Topic declares a governed topic on the event bus.
//
// +kubebuilder:validation:XValidation:rule="has(self.spec.topicName) || size(self.metadata.name) <= 249",message="metadata.name is the broker topic name when spec.topicName is not set, and Kafka allows at most 249 characters: set spec.topicName"
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tp,categories=hmsbus
// +kubebuilder:printcolumn:name="Broker Name",type=string,JSONPath=`.status.topicName`
// +kubebuilder:printcolumn:name="Partitions",type=integer,JSONPath=`.status.partitions`
// +kubebuilder:printcolumn:name="Ticket",type=string,JSONPath=`.spec.changeTicket`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Topic struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec declares the topic.
	// +required
	Spec TopicSpec `json:"spec"`

	// Status reports the broker's state.
	// +optional
	Status TopicStatus `json:"status,omitempty"`
}

// GetConditions gives the controllers' shared bookkeeping the conditions.
func (t *Topic) GetConditions() *[]metav1.Condition { return &t.Status.Conditions }

// BrokerTopicName is the name of the topic on the broker.
func (t *Topic) BrokerTopicName() string {
	if t.Spec.TopicName != "" {
		return t.Spec.TopicName
	}
	return t.Name
}

// TopicList is a list of Topics.
// +kubebuilder:object:root=true
type TopicList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Topic `json:"items"`
}
