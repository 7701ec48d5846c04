// Package protocol holds end-to-end tests of stratum-proxy (a whole stack on a
// throwaway PostgreSQL, through real clients): the wire protocol as clients
// speak it: hostile startup packets and sessions, TLS, cancel requests, the
// process id clients are given and notifications name, pgx features and
// pgbench through the proxy.
//
// The stack comes from internal/stacktest; the package has no code of its own.
package protocol
