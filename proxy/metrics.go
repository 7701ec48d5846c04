package proxy

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// maxTenantLabels bounds the tenant label's values: the most active tenants
// (re-ranked every RankEvery) get series of their own, the rest share "other",
// so a deployment with a hundred thousand tenants does not make a hundred
// thousand series.
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
	sessionsPaused prometheus.Gauge // waiting for their tenant's pause to end

	bytesIn, bytesOut prometheus.Counter // bytes, per direction, looked up once

	mu      sync.Mutex
	tenants map[string]bool          // tenants with series of their own
	active  map[string]*atomic.Int64 // queries per tenant since the last ranking
	ranked  bool
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
		sessionsPaused: prometheus.NewGauge(prometheus.GaugeOpts{Name: "stratum_sessions_paused",
			Help: "Client sessions waiting for their tenant's pause to end before a transaction."}),
		tenants: map[string]bool{},
		active:  map[string]*atomic.Int64{},
	}
	m.bytesIn = m.bytes.WithLabelValues("client_to_server")
	m.bytesOut = m.bytes.WithLabelValues("server_to_client")
	if reg != nil {
		reg.MustRegister(m.clientConns, m.clientAccepted, m.queries, m.transactions, m.bytes,
			m.errors, m.denials, m.acquireSeconds, m.poolWaits, m.sessionsPaused)
	}
	return m
}

// tenantLabel says which label a tenant's series use now: its own slug while
// it is among the maxTenantLabels most active tenants (ranked by rerank), else
// "other". Until the first ranking, the first tenants seen get their own.
func (m *Metrics) tenantLabel(slug string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tenants[slug] {
		return slug
	}
	if !m.ranked && len(m.tenants) < maxTenantLabels {
		m.tenants[slug] = true
		return slug
	}
	return "other"
}

// activity counts a tenant's queries for ranking, whatever its label.
func (m *Metrics) activity(slug string) *atomic.Int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.active[slug]
	if a == nil {
		a = new(atomic.Int64)
		m.active[slug] = a
	}
	return a
}

// rerank makes the maxTenantLabels tenants with the most queries since the
// last ranking the ones with series of their own; the rest are folded into
// "other". Sessions pick up their new label when they next start or switch
// tenants. Tenants idle for a whole period are forgotten.
func (m *Metrics) rerank() {
	m.mu.Lock()
	defer m.mu.Unlock()
	type tc struct {
		slug string
		n    int64
	}
	var all []tc
	for slug, a := range m.active {
		n := a.Swap(0)
		if n == 0 {
			delete(m.active, slug)
			continue
		}
		all = append(all, tc{slug, n})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].n > all[j].n || all[i].n == all[j].n && all[i].slug < all[j].slug })
	m.tenants = map[string]bool{}
	for i := 0; i < len(all) && i < maxTenantLabels; i++ {
		m.tenants[all[i].slug] = true
	}
	m.ranked = true
}

// tenantCounters are one tenant's counters, looked up once per session (and
// again on a tenant switch) rather than per message.
type tenantCounters struct {
	queries, transactions prometheus.Counter
	activity              *atomic.Int64
}

func (m *Metrics) forTenant(slug string) tenantCounters {
	l := m.tenantLabel(slug)
	return tenantCounters{queries: m.queries.WithLabelValues(l), transactions: m.transactions.WithLabelValues(l),
		activity: m.activity(slug)}
}

// countQuery counts one query of the session's tenant.
func (c tenantCounters) countQuery() {
	c.queries.Inc()
	c.activity.Add(1)
}

func (m *Metrics) countError(kind string) { m.errors.WithLabelValues(kind).Inc() }
