// Package catalog owns the catalog database: tenants and their placements, the
// encrypted credentials of tenants' backend roles, proxy users (SCRAM verifiers),
// database-name mappings, admin API keys, tenant pauses, placement moves
// (tenant_moves: phase, progress, heartbeat; the switch of a tenant's
// placement in one transaction with its audit row and the end of the move's
// pause) and the app schema history. It applies the embedded migrations and announces changes over
// LISTEN/NOTIFY.
//
// It imports only migrations and policy (the leaf that defines the proxy.*
// config keys and the permissions sessions obey; catalog validates values
// with it and reads a tenant's policy.Input), and leaf helpers under
// internal/; it knows nothing of backends, sessions or HTTP.
package catalog
