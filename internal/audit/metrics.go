package audit

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	// brokerChanges counts broker mutations by the kind of object behind
	// them, the operation and its cause: the change rate an operator
	// dashboards, and drift repairs it alerts on.
	brokerChanges = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hmsbus_broker_changes_total",
		Help: "Broker changes made by the operator, by object kind, operation and cause.",
	}, []string{"kind", "operation", "cause"})

	// auditWriteFailures counts records that could not be appended to the
	// audit topic and were kept only in a Warning event: alert when it grows.
	auditWriteFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hmsbus_audit_write_failures_total",
		Help: "Audit records not appended to the audit topic (kept in a Warning event instead).",
	})
)

func init() {
	metrics.Registry.MustRegister(brokerChanges, auditWriteFailures)
}
