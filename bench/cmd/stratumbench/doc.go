// Command stratumbench is the end-to-end benchmark behind `make bench`: it
// compares stratum-proxy with direct PostgreSQL and with PgBouncer on a
// select-only workload, measures a 200-tenant load against a single-tenant
// one and the proxy's memory per idle client, measures an online placement
// move of a large tenant under load, prints a table and writes it to
// bench/results/. It starts everything it measures in a temporary directory
// and stops it again, on error and on Ctrl-C too.
//
// Run it from the repository root (make bench does). It installs nothing:
// bench/install-deps brings PgBouncer.
package main
