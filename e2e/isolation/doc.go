// Package isolation holds end-to-end tests of stratum-proxy (a whole stack on
// a throwaway PostgreSQL, through real clients): tenants see only their own
// rows in every placement and pool mode, escapes tried as an attacker would
// (plain SQL, catalog reads, hardening of old tenant databases), the SQL guard
// through the proxy, and a randomized isolation check.
//
// The stack comes from internal/stacktest; the package has no code of its own.
package isolation
