// Package provision makes and unmakes tenants' placements on the backend
// servers. It owns:
//
//   - the deployment's shared database, group roles and row-level-security
//     machinery (PrepareShared), and the catalog hardening of every tenant
//     database;
//   - per-tenant advisory locks in the shared database (advisory.go);
//   - creating a tenant (CreateTenant: catalog rows, its backend role and its
//     shared, schema or database placement) and dropping one (DropTenant);
//   - applying the app's schema to the template, the shared database and
//     every tenant schema and database (ApplySchema), with the grants and
//     policies that secure it.
//
// It imports catalog and leaf helpers under internal/ (notably
// internal/backends for the backend servers); policy is allowed too. It never
// imports router, proxy, admin or cmd. Router and provision are siblings: what
// both need of the backend servers lives in internal/backends, and what
// DropTenant needs of the router's pools is the Pools interface declared here.
package provision
