// Package pooling holds end-to-end tests of stratum-proxy (a whole stack on a
// throwaway PostgreSQL, through real clients): transaction and session
// pooling: tenants kept apart on shared backends, fairness, queue timeouts,
// pinning, settings and notifications not left behind, per-tenant pool modes,
// connection churn and client limits.
//
// The stack comes from internal/stacktest; the package has no code of its own.
package pooling
