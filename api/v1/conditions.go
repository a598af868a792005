package v1

// Condition types. Ready is always present on Topic and Subscription;
// Reconciling and Stalled follow kstatus and are present only while True.
const (
	// ConditionReady says whether the broker holds the declared state.
	ConditionReady = "Ready"
	// ConditionApproved says whether the referenced ChangeTicket authorises
	// the current spec. On a ChangeTicket it says the ticket has enough
	// approvals; there it is never set back to False.
	ConditionApproved = "Approved"
	// ConditionReconciling is True while the operator is making progress.
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True when progress needs a human: the spec is
	// invalid for the broker, or names something that conflicts.
	ConditionStalled = "Stalled"
	// ConditionDenied is True once a reviewer has denied a ChangeTicket.
	ConditionDenied = "Denied"
	// ConditionExpired is True once a ChangeTicket's change window has closed.
	ConditionExpired = "Expired"
	// ConditionDrifted is True on a Topic whose broker state changed out of
	// band in a way the operator cannot undo (for example added partitions).
	ConditionDrifted = "Drifted"
)

// Reasons used in conditions. They are CamelCase so tools can match them.
const (
	ReasonSucceeded          = "Succeeded"
	ReasonProgressing        = "Progressing"
	ReasonTicketMissing      = "TicketMissing"
	ReasonTicketNotSpecified = "TicketNotSpecified"
	ReasonAwaitingApproval   = "AwaitingApproval"
	ReasonTicketDenied       = "TicketDenied"
	ReasonTicketExpired      = "TicketExpired"
	ReasonTicketNotCovering  = "TicketDoesNotCover"
	ReasonTicketApproved     = "TicketApproved"
	ReasonSpecChanged        = "SpecChangedSinceApproval"
	// ReasonNotReviewed: the ticket's approvals were recorded before the
	// object existed, so no reviewer saw it.
	ReasonNotReviewed = "NotReviewed"
	// ReasonGrantNeedsTicket: what the current state of other objects would
	// grant differs from what was approved (a Topic recreated, created
	// later or renamed), and no currently valid ticket covers it.
	ReasonGrantNeedsTicket  = "GrantNeedsApproval"
	ReasonBrokerUnavailable = "BrokerUnavailable"
	// ReasonReconcileError: a step failed for a reason not covered by a
	// more specific one (the API server refused a write, say); the message
	// carries the error and the operator retries with back-off.
	ReasonReconcileError = "ReconcileError"
	// ReasonAuditUnavailable: the audit trail cannot be written, so the
	// broker write it would record is held back (retried with back-off).
	ReasonAuditUnavailable = "AuditUnavailable"
	// ReasonAuthUnavailable: the operator is not configured for the
	// authentication type asked for (no clients CA, no listener address).
	ReasonAuthUnavailable = "AuthenticationUnavailable"
	// ReasonServiceAccountNotFound: the ServiceAccount named for token
	// authentication does not exist.
	ReasonServiceAccountNotFound = "ServiceAccountNotFound"
	ReasonBrokerRejected         = "BrokerRejected"
	ReasonConflict               = "Conflict"
	ReasonPaused                 = "Paused"
	ReasonNotAllowed             = "NotAllowed"
	ReasonTopicNotReady          = "TopicNotReady"
	ReasonTopicNotFound          = "TopicNotFound"
	ReasonDeleting               = "Deleting"
	ReasonPartitionsAdded        = "PartitionsAddedOutOfBand"
	ReasonUnmanagedACLs          = "UnmanagedACLs"
	ReasonPending                = "Pending"
	ReasonApproved               = "Approved"
	ReasonDenied                 = "Denied"
	ReasonExpired                = "Expired"
	ReasonWithinWindow           = "WithinWindow"
)

// Annotations users set on Topics and Subscriptions.
const (
	// AnnotationPaused, set to "true", stops every broker write for the
	// object: useful during an incident or a migration.
	AnnotationPaused = "bus.hms.io/paused"
	// AnnotationRotate asks for a new password: any new value (a timestamp,
	// say) triggers one rotation.
	AnnotationRotate = "bus.hms.io/rotate-credentials"
	// AnnotationMinApprovals on a Namespace raises the number of approvals
	// every ChangeTicket in it needs.
	AnnotationMinApprovals = "bus.hms.io/min-approvals"
)

// Finalizer guards broker state owned by a Topic or Subscription.
const Finalizer = "bus.hms.io/finalizer"
