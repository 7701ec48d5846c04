// Package stacktest is the one harness of the end-to-end tests: it starts a
// whole stratum-proxy (server.Start: catalog, router, proxy and admin API on
// loopback ports) on the test binary's PostgreSQL (internal/pgtest), seeds
// the demo tenant tree, and removes every database and role it made when the
// test ends. It also holds the small client helpers the end-to-end tests
// share (connect, count, SQLSTATE, admin requests, both pool modes).
//
// Unlike the other helpers under internal/, it imports server (and through it
// the whole stack); only tests import it.
package stacktest
