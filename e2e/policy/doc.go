// Package policy holds end-to-end tests of stratum-proxy (a whole stack on a
// throwaway PostgreSQL, through real clients): tenant config and permissions
// reaching open sessions (read-only, no DDL, statement timeout, connection
// caps, suspension), across replicas sharing one catalog, and the ways a
// session could slip out of its policy.
//
// The stack comes from internal/stacktest; the package has no code of its own.
package policy
