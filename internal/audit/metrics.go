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
	// audit topic in time and were kept in a Warning event: alert when it
	// grows.
	auditWriteFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hmsbus_audit_write_failures_total",
		Help: "Audit records not appended to the audit topic in time (kept in a Warning event instead).",
	})

	// interruptedIntents counts intents the Keeper closed without knowing
	// the write's result: each one is a broker write that may or may not
	// have happened, worth a look after an unplanned restart.
	interruptedIntents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hmsbus_audit_intents_closed_total",
		Help: "Audit intents left without outcome and closed by the operator, by result (interrupted, abandoned).",
	}, []string{"result"})

	// suppressedEvents counts Normal Events left out by the Event budget
	// (the audit topic still has the change).
	suppressedEvents = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hmsbus_broker_change_events_suppressed_total",
		Help: "Normal BrokerChange Events not emitted because of the Event budget; the audit topic records every change.",
	})

	// headSeq is the seq of the last published chain head.
	headSeq = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hmsbus_audit_published_head_seq",
		Help: "Seq of the audit hash chain head last published for verification.",
	})
)

func init() {
	metrics.Registry.MustRegister(brokerChanges, auditWriteFailures, interruptedIntents, suppressedEvents, headSeq)
}
