// Package provision makes and unmakes tenants' placements on the backend
// servers. It owns:
//
//   - the deployment's shared database, group roles and row-level-security
//     machinery (PrepareShared), and the catalog hardening of every tenant
//     database;
//   - creating a tenant (CreateTenant: catalog rows, its three backend roles,
//     one per policy.Access level, and its shared, schema or database
//     placement) and dropping one (DropTenant);
//   - what each level's role may do (access.go: groups, grants, default
//     privileges, large-object revokes) and the event trigger that keeps a
//     tenant's full role from granting its way around them;
//   - per-tenant advisory locks in the shared database (advisory.go);
//   - applying the app's schema to the template, the shared database and
//     every tenant schema and database (ApplySchema), with the grants and
//     policies that secure it;
//   - online placement moves (move.go: StartMove, CancelMove, FinalizeMove,
//     RecoverMoves, Close; move_engine.go: trigger capture, snapshot copy,
//     catch-up, the fenced cut-over with checksums and the switch;
//     move_place.go: the target made as a new tenant's placement, and the
//     source or a failed target dropped). Moves run in goroutines of the
//     Provisioner; the catalog's tenant_moves row is their state.
//
// It imports catalog and leaf helpers under internal/ (notably
// internal/backends for the backend servers); policy is allowed too. It never
// imports router, proxy, admin or cmd. Router and provision are siblings: what
// both need of the backend servers lives in internal/backends, and what
// DropTenant needs of the router's pools is the Pools interface declared here.
package provision
