// Package router decides where a tenant's session goes and hands out backend
// connections to get there. It owns:
//
//   - the backend servers and their admin connections (Config.Backends);
//   - placement lookup with a cache that catalog NOTIFY invalidates;
//   - provisioning: each tenant's backend role and its row-level-security,
//     schema or database placement, and applying the app's schema everywhere;
//   - pools of backend connections per (tenant role, startup parameters).
//
// It imports catalog (and leaf helpers under internal/), never proxy, admin or cmd.
package router
