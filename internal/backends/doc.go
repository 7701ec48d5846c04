// Package backends describes the PostgreSQL servers tenant data lives on: the
// Backend type (as the config file spells it), the Set of them with its
// defaults and checks, connection strings and admin connections.
//
// Both router (which dials tenants' connections) and provision (which creates
// their roles, schemas and databases) need it; it is a leaf so that neither
// has to import the other. It imports nothing of ours.
package backends
