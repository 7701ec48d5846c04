// Package schema holds end-to-end tests of stratum-proxy (a whole stack on a
// throwaway PostgreSQL, through real clients): schema apply across every
// placement, and the dev seed run twice.
//
// The stack comes from internal/stacktest; the package has no code of its own.
package schema
