package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CoveredKind is a kind a ChangeTicket can authorise.
// +kubebuilder:validation:Enum=Topic;Subscription
type CoveredKind string

const (
	KindTopic        CoveredKind = "Topic"
	KindSubscription CoveredKind = "Subscription"
)

// Operation is what a ChangeTicket authorises on an object.
// +kubebuilder:validation:Enum=Apply;Delete
type Operation string

const (
	// OperationApply creates the object on the broker or changes it to match
	// its spec.
	OperationApply Operation = "Apply"
	// OperationDelete removes broker state (a topic and its data, with
	// deletionPolicy Delete). It must be named explicitly.
	OperationDelete Operation = "Delete"
)

// CoveredObject names one object, in the ticket's namespace, that the ticket
// authorises changes to.
type CoveredObject struct {
	// Kind of the object.
	// +required
	Kind CoveredKind `json:"kind"`

	// Name of the object (its metadata.name) in the ticket's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// Operations authorised on the object. Defaults to [Apply]; deleting
	// broker data must be asked for explicitly with Delete.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=2
	// +kubebuilder:default={"Apply"}
	Operations []Operation `json:"operations,omitempty"`
}

// ChangeTicketSpec is the request a reviewer approves or denies. It cannot be
// changed once created, so the scope that was approved is the scope applied.
type ChangeTicketSpec struct {
	// Reference is the id of the change in the organisation's change system,
	// for example CHG-1042. It is copied into audit records.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9._/-]*$`
	Reference string `json:"reference"`

	// Summary says what the change is for, in words a reviewer reads.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Summary string `json:"summary"`

	// RequestedBy is the user asking for the change. The admission policy
	// forces it to equal the user who creates the ticket, and forbids that
	// user from approving it.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	RequestedBy string `json:"requestedBy"`

	// Covers lists the objects, in this namespace, the ticket authorises.
	// Each object is named once: the list is keyed by kind and name, which
	// the API server checks in linear time.
	// +required
	// +listType=map
	// +listMapKey=kind
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=100
	Covers []CoveredObject `json:"covers"`

	// NotAfter closes the change window: after it the ticket authorises
	// nothing. The operator caps the window at its --max-ticket-window
	// (default 30 days) from the ticket's creation; status.expiresAt shows
	// the effective end.
	// +required
	NotAfter metav1.Time `json:"notAfter"`

	// RequiredApprovals is how many distinct reviewers must approve. A
	// namespace annotation (bus.hms.io/min-approvals) or the operator's
	// --min-approvals may raise it, never lower it.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10
	RequiredApprovals int32 `json:"requiredApprovals,omitempty"`
}

// Review is one reviewer's decision on a ticket.
type Review struct {
	// Reviewer is the user who decided. The admission policy requires it to
	// be the user writing the entry.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Reviewer string `json:"reviewer"`

	// Time the decision was recorded.
	// +required
	Time metav1.Time `json:"time"`

	// Comment from the reviewer.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Comment string `json:"comment,omitempty"`

	// Pinned binds an approval to the specs the reviewer saw: an object
	// listed here is approved only while its spec hash is unchanged, so an
	// edit after approval needs a new ticket. `hmsbus approve` fills it in.
	// When an approval pins nothing (plain kubectl), the operator pins the
	// covered objects as they are when it first sees the approval
	// (status.operatorPins). Only with the operator's --approval-mode=window
	// does an unpinned object count as approved in any spec.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	Pinned []PinnedSpec `json:"pinned,omitempty"`
}

// PinnedSpec is the spec of one covered object as the reviewer saw it.
type PinnedSpec struct {
	// Kind of the object.
	// +required
	Kind CoveredKind `json:"kind"`
	// Name of the object.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// SpecHash is "sha256:" and the hex SHA-256 of the object's spec in
	// JSON (see governance.SpecHash).
	// +required
	// +kubebuilder:validation:Pattern=`^sha256:[0-9a-f]{64}$`
	SpecHash string `json:"specHash"`
	// UID of the object approved. An object deleted and created again
	// under the same name, even with the same spec, is another object that
	// no reviewer saw. `hmsbus approve` and the operator always record it.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	UID string `json:"uid,omitempty"`
}

// OperatorPin is what the operator pinned for an approval that pinned
// nothing itself.
type OperatorPin struct {
	// Reviewer whose approval this completes.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Reviewer string `json:"reviewer"`
	// Time the operator pinned the specs.
	// +required
	Time metav1.Time `json:"time"`
	// Pinned specs of the covered objects that existed then; covered
	// objects missing from this list did not exist and are not approved by
	// this approval.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	Pinned []PinnedSpec `json:"pinned,omitempty"`
}

// TicketState summarises a ticket for humans and printer columns.
// +kubebuilder:validation:Enum=Pending;Approved;Denied;Expired
type TicketState string

const (
	TicketPending  TicketState = "Pending"
	TicketApproved TicketState = "Approved"
	TicketDenied   TicketState = "Denied"
	TicketExpired  TicketState = "Expired"
)

// ChangeTicketStatus holds the reviewers' decisions (written by reviewers
// through the status subresource) and what the operator concluded from them.
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.approvals) || (has(self.approvals) && oldSelf.approvals.all(a, a in self.approvals))",message="approvals are append-only: an existing approval cannot be edited or removed"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.denial) || (has(self.denial) && self.denial == oldSelf.denial)",message="a denial cannot be edited or withdrawn"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.operatorPins) || (has(self.operatorPins) && oldSelf.operatorPins.all(p, p in self.operatorPins))",message="operator pins are append-only: a recorded pin cannot be edited or removed"
type ChangeTicketStatus struct {
	// Approvals recorded by reviewers, one per reviewer, append-only.
	// +optional
	// +listType=map
	// +listMapKey=reviewer
	// +kubebuilder:validation:MaxItems=20
	Approvals []Review `json:"approvals,omitempty"`

	// OperatorPins records, for each approval that pinned nothing, the
	// specs of the covered objects as the operator found them when it first
	// saw that approval; the approval approves exactly those. Written by the
	// operator only, append-only.
	// +optional
	// +listType=map
	// +listMapKey=reviewer
	// +kubebuilder:validation:MaxItems=20
	OperatorPins []OperatorPin `json:"operatorPins,omitempty"`

	// Denial, once recorded, ends the ticket for good.
	// +optional
	Denial *Review `json:"denial,omitempty"`

	// State summarises the ticket: Pending, Approved, Denied or Expired.
	// +optional
	State TicketState `json:"state,omitempty"`

	// RequiredApprovals in force: the largest of the spec, the namespace
	// annotation and the operator's minimum.
	// +optional
	RequiredApprovals int32 `json:"requiredApprovals,omitempty"`

	// ValidApprovals counts the approvals that count: distinct reviewers
	// who are not the requester, recorded before any denial.
	// +optional
	// +kubebuilder:default=0
	ValidApprovals int32 `json:"validApprovals"`

	// ExpiresAt is the effective end of the change window.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// ObservedGeneration is the generation the operator last evaluated.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Approved (never set back to False), Denied, Expired.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ChangeTicket authorises changes to Topics and Subscriptions in its
// namespace once a governance reviewer, who is not the requester, approves it.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ticket;chg,categories=hmsbus
// +kubebuilder:printcolumn:name="Reference",type=string,JSONPath=`.spec.reference`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.state`
// +kubebuilder:printcolumn:name="Approvals",type=integer,JSONPath=`.status.validApprovals`
// +kubebuilder:printcolumn:name="Required",type=integer,JSONPath=`.status.requiredApprovals`
// +kubebuilder:printcolumn:name="Requester",type=string,JSONPath=`.spec.requestedBy`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Summary",type=string,JSONPath=`.spec.summary`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ChangeTicket struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the request; immutable once created.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable: file a new ChangeTicket to change its scope"
	Spec ChangeTicketSpec `json:"spec"`

	// Status holds reviews and the operator's evaluation.
	// +optional
	Status ChangeTicketStatus `json:"status,omitempty"`
}

// ChangeTicketList is a list of ChangeTickets.
// +kubebuilder:object:root=true
type ChangeTicketList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ChangeTicket `json:"items"`
}
