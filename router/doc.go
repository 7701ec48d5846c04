// Package router decides where a tenant's session goes and hands out backend
// connections to get there. It owns:
//
//   - placement lookup (tenant, backend credentials, resolved policy) with a
//     cache that catalog NOTIFY invalidates, and proxy users likewise; the
//     cache generation, which sessions compare (Gen) or wait on (WaitGen,
//     a paused tenant's sessions);
//   - pools of backend connections per (tenant role, placement, startup
//     parameters), with per-tenant and per-backend limits and fair
//     queueing; a tenant that changes access level or moves (Placement.Where)
//     has its idle connections of the old one closed;
//   - dialing and authenticating backend connections (ServerConn), and
//     which tenant each open one (by server and PID) belongs to, and which
//     client session last held it (Sender).
//
// Provisioning (roles, schemas, databases, the app schema) is provision's;
// the policy keys and their resolution are policy's; the backend servers are
// described by internal/backends. It imports catalog and policy (and leaf
// helpers under internal/), never provision, proxy, admin or cmd. The dialer
// and the pools' clock are injected through knobs, so the pools have unit
// tests without PostgreSQL.
package router
