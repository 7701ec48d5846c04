// Package faults holds end-to-end tests of stratum-proxy (a whole stack on a
// throwaway PostgreSQL, through real clients): faults: a backend restart or
// terminated (pg_terminate_backend), the catalog going down, clients
// vanishing or reading slowly, and SIGTERM's grace period.
//
// The stack comes from internal/stacktest; the package has no code of its own.
package faults
