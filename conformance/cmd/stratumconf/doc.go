// Command stratumconf is the conformance run behind `make conformance`: it
// runs real drivers' own test suites (pgx, psycopg 3, node-postgres) directly
// against PostgreSQL and through stratum-proxy in session and in transaction
// pooling, compares them test by test, and writes a report of every test that
// passes directly but not through the proxy, with its cause, to
// conformance/results/.
//
// It starts one private PostgreSQL cluster (internal/pgcluster) and the whole
// proxy in this process (server.Start, once per pool mode), each on loopback.
// Every run gets a fresh database tenant of its own, provisioned the same way
// (tenants conf_direct, conf_session, conf_transaction under a shared parent
// conf), so the direct run uses a role exactly as privileged as the proxied
// ones: the direct run logs in as conf_direct's own backend role, never as a
// superuser. It stops what it started and removes its temporary directory at
// the end, on errors and on Ctrl-C too.
//
// Run it from the repository root (make conformance does). It installs
// nothing: conformance/install-deps brings the drivers and test tools, and the
// psycopg and node-postgres test suites come from git repositories named by
// flags (their packages do not ship their tests).
package main
