// Package pgcluster starts a private PostgreSQL server from the server
// binaries installed on the machine (initdb and postgres), for the
// `stratum-proxy dev` command, whose data directory lives across runs, and for
// the test harness in internal/pgtest, whose clusters are thrown away.
//
// It owns everything about such a cluster's life: finding the binaries,
// initdb, pg_hba.conf, picking a port, running the postmaster as a child
// process (as the postgres OS user when we are root), waiting until it accepts
// connections, and stopping it.
//
// It must not import any other package of this module: it is a leaf that
// knows nothing about the proxy.
package pgcluster
