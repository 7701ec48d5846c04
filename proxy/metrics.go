package proxy

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// maxTenantLabels bounds the tenant label's values: the first tenants seen get
// their own series, later ones share "other", so a deployment with a hundred
// thousand tenants does not make a hundred thousand series.
const maxTenantLabels = 100

// Metrics are the proxy's Prometheus series. Make them with NewMetrics; the
// zero value is not usable. Names are prefixed stratum_.
type Metrics struct {
	clientConns    prometheus.Gauge
	clientAccepted prometheus.Counter
	queries        *prometheus.CounterVec // by tenant
	transactions   *prometheus.CounterVec // by tenant
	bytes          *prometheus.CounterVec // by direction
	errors         *prometheus.CounterVec // by kind
	denials        *prometheus.CounterVec // by reason
	acquireSeconds prometheus.Histogram
	poolWaits      prometheus.Counter

	bytesIn, bytesOut prometheus.Counter // bytes, per direction, looked up once

	mu      sync.Mutex
	tenants map[string]bool
}

// NewMetrics creates the proxy's series and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		clientConns: prometheus.NewGauge(prometheus.GaugeOpts{Name: "stratum_client_connections",
			Help: "Client connections open now."}),
		clientAccepted: prometheus.NewCounter(prometheus.CounterOpts{Name: "stratum_client_connections_accepted_total",
			Help: "Client connections accepted."}),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stratum_queries_total",
			Help: "Simple queries and extended-protocol batches (Sync) relayed, by tenant."}, []string{"tenant"}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stratum_transactions_total",
			Help: "Transactions ended (ReadyForQuery idle), by tenant."}, []string{"tenant"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stratum_bytes_total",
			Help: "Protocol bytes relayed, by direction (client_to_server, server_to_client)."}, []string{"direction"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stratum_errors_total",
			Help: "Errors the proxy itself reported, by kind."}, []string{"kind"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stratum_guard_denials_total",
			Help: "Statements the SQL guard refused, by reason."}, []string{"reason"}),
		acquireSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "stratum_pool_acquire_seconds",
			Help:    "Time to get a backend connection (pool hit, queue wait or new connection).",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5, 30}}),
		poolWaits: prometheus.NewCounter(prometheus.CounterOpts{Name: "stratum_pool_slow_acquires_total",
			Help: "Backend acquisitions that took longer than 10ms (queued or dialled)."}),
		tenants: map[string]bool{},
	}
	m.bytesIn = m.bytes.WithLabelValues("client_to_server")
	m.bytesOut = m.bytes.WithLabelValues("server_to_client")
	if reg != nil {
		reg.MustRegister(m.clientConns, m.clientAccepted, m.queries, m.transactions, m.bytes,
			m.errors, m.denials, m.acquireSeconds, m.poolWaits)
	}
	return m
}

// tenantLabel folds tenants beyond the first maxTenantLabels into "other".
func (m *Metrics) tenantLabel(slug string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tenants[slug] {
		return slug
	}
	if len(m.tenants) < maxTenantLabels {
		m.tenants[slug] = true
		return slug
	}
	return "other"
}

// tenantCounters are one tenant's counters, looked up once per session (and
// again on a tenant switch) rather than per message.
type tenantCounters struct {
	queries, transactions prometheus.Counter
}

func (m *Metrics) forTenant(slug string) tenantCounters {
	l := m.tenantLabel(slug)
	return tenantCounters{queries: m.queries.WithLabelValues(l), transactions: m.transactions.WithLabelValues(l)}
}

func (m *Metrics) countError(kind string) { m.errors.WithLabelValues(kind).Inc() }
