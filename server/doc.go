// Package server wires a whole stratum-proxy from one Config: it opens and
// migrates the catalog, builds the router over it, prepares the shared
// database, starts the proxy's client listener and the admin HTTP API with its
// metrics, and stops them in order. It also owns the embedded dev deployment
// (a private PostgreSQL, its state file, a self-signed certificate and the
// seeded demo tenant tree) that `stratum-proxy dev` and the tests use.
//
// It owns two jobs: wiring the stack, and the dev deployment. Flag and YAML
// parsing stay in cmd/stratum-proxy; what each part does stays in its own
// package. It may import every package of ours except cmd; only cmd and test
// harnesses import it.
package server
