// Command stratum-proxy is the multi-tenant PostgreSQL proxy's binary: flags, the
// YAML configuration and the wiring of catalog, router, proxy and admin. It is
// the only package that knows all the others; nothing imports it.
//
// Subcommands: dev (the embedded default: a private PostgreSQL, seeded demo
// tenants, proxy and admin API), serve (production, from a config file),
// migrate (catalog migrations) and schema apply (the app's DDL everywhere).
package main
