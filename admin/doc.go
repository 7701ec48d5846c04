// Package admin owns the admin HTTP API of stratum-proxy, served on its own
// port: bearer-key authentication and scopes, the routes that manage tenants
// and proxy users, the health and readiness probes, and the JSON error body
// ({"error":{"code","message","details"}}) every failure is turned into, in
// exactly one place (writeError).
//
// It imports provision (to create tenants) and catalog (and leaf helpers
// under internal/); its tests also use router. It never imports proxy or
// cmd. What it needs from packages above it, such as an extra
// readiness check, it declares as an interface (Readiness) for server to wire in.
package admin
