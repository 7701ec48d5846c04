// Command stratum-proxy is the multi-tenant PostgreSQL proxy's binary. It
// parses flags and the YAML configuration and calls package server, which
// wires the stack; the operator commands are package cli. Nothing imports it.
//
// Subcommands: dev (the embedded default: a private PostgreSQL, seeded demo
// tenants, proxy and admin API), serve (production, from a config file),
// migrate (catalog migrations), schema apply (the app's DDL everywhere),
// version, and the operator groups tenant|config|perm|audit|key.
package main
