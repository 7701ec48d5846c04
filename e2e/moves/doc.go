// Package moves holds end-to-end tests of stratum-proxy (a whole stack on a
// throwaway PostgreSQL, through real clients) for placement moves' proxy
// side: a paused tenant's sessions hold their next transaction until the
// pause ends while transactions under way finish and other tenants run on,
// and sessions follow a tenant to its new placement; and the move engine
// (provision.StartMove) in every direction under a concurrent writer, with
// cancel, recovery after a proxy's death, forged capture-log rows, a
// tenant's planted cast and a tenant's tampering with its capture triggers
// or its log.
//
// The stack comes from internal/stacktest; the package has no code of its own.
package moves
