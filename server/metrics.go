package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stratum-hq/stratum-proxy/router"
)

// poolCollector reports the router's backend connections at scrape time.
// Tenant series are not labelled per tenant here (unbounded); the totals say
// how full the pools are.
type poolCollector struct{ r *router.Router }

var (
	descServerConns = prometheus.NewDesc("stratum_server_connections",
		"Backend connections open, by state (idle, active).", []string{"state"}, nil)
	descWaiting = prometheus.NewDesc("stratum_pool_waiting_sessions",
		"Sessions waiting for a backend connection now.", nil, nil)
	descTenantPools = prometheus.NewDesc("stratum_pool_tenants",
		"Tenants with a backend pool.", nil, nil)
)

func (c poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descServerConns
	ch <- descWaiting
	ch <- descTenantPools
}

func (c poolCollector) Collect(ch chan<- prometheus.Metric) {
	var open, idle, waiting int
	stats := c.r.Stats()
	for _, s := range stats {
		open += s.Open
		idle += s.Idle
		waiting += s.Waiting
	}
	ch <- prometheus.MustNewConstMetric(descServerConns, prometheus.GaugeValue, float64(idle), "idle")
	ch <- prometheus.MustNewConstMetric(descServerConns, prometheus.GaugeValue, float64(open-idle), "active")
	ch <- prometheus.MustNewConstMetric(descWaiting, prometheus.GaugeValue, float64(waiting))
	ch <- prometheus.MustNewConstMetric(descTenantPools, prometheus.GaugeValue, float64(len(stats)))
}
