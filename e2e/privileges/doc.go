// Package privileges holds the privilege audit of stratum-proxy, an
// end-to-end test on a throwaway PostgreSQL: a stack with tenants in every
// placement and an app schema applied, after which the test reads, as the
// admin, the whole privilege picture of every role the proxy made
// (stratum_% roles: the deployment's groups and each tenant's roles) and of
// PUBLIC, and compares it with testdata/privileges.golden, the written model.
//
// The picture covers role attributes, memberships (direct, with the admin
// option, and effective), per-database role settings, every database on the
// server (owner, ACL, and CONNECT/TEMPORARY/CREATE for each role), and in
// every tenant-facing database (the shared one and each database tenant's):
// schemas, relations, sequences, functions and types outside the system
// schemas (owner, raw ACL, row-level security, the effective privileges of
// each role, column grants), policies, default privileges, event triggers,
// every privilege on pg_catalog and information_schema objects that differs
// from initdb's (pg_init_privs: the hardening's revokes), and what each role
// can still read or call to count rows it cannot see. Names that vary per run
// are placeholders: <dep> for the deployment id, <slug> for a tenant's short
// id, <id:slug> for its id, <shared-db>, <catalog-db>, <admin>.
//
// Regenerate the golden file after an intended change with
//
//	go test ./e2e/privileges/ -run TestPrivilegesMatchModel -update
//
// and review its diff line by line against the privilege model. The
// mutation proof, scripts/mutate-privileges.sh, removes or flips one
// privilege statement of provision/*.go at a time and checks that this test
// fails for each; it is not part of make test.
//
// The stack comes from internal/stacktest; the package has no code of its own.
package privileges
