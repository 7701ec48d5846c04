// Package proxy is the PostgreSQL-facing side of stratum-proxy. It has three
// jobs:
//
//   - accepting clients: the listener, TLS termination, the startup packet,
//     SCRAM authentication, tenant identification and client limits;
//   - running sessions: the relay of client messages to a backend and the
//     pump of its replies, pooling (when a backend is held, pinned or
//     released), tenant switching and the tenant's policy;
//   - cancel requests: the map from the keys it hands out to sessions.
//
// What it needs of the router it names in the Backends interface (backends.go),
// which *router.Router implements and proxytest.Backends fakes; it keeps using
// router's value types (Placement, ServerConn, ReleaseMode) and policy.Policy. The clock
// and the dialer for cancel forwarding are injected through Config's unexported
// knobs.
//
// Files by concern:
//
//   - server.go, startup.go, auth.go, identify.go, limits.go: accepting a
//     client, the startup phase, SCRAM, finding the tenant, connection caps.
//   - session.go: the session and its attachment to a backend, and their state.
//   - lifecycle.go: a session's start, run, graceful stop, kill and end; its
//     lifetime context.
//   - attach.go: acquiring, attaching, detaching and waiting on a backend.
//   - pump.go: backend messages to the client, ReadyForQuery tracking, release
//     in transaction pooling.
//   - injected.go: which backend replies answer messages the proxy injected
//     into a client's request, counted per request.
//   - relay.go: client messages to the backend, one small handler per kind,
//     and the pause gate: a paused tenant's session waits at a transaction
//     boundary until the pause ends (waitPaused).
//   - rules.go: the protocol rules as named predicates (idle point, batch).
//   - guard.go, policy.go: the SQL guard and the tenant's policy on
//     statements; the policy refreshed at transaction boundaries, and a
//     session moved off a backend of a stale access level or placement
//     (moveBackend).
//   - timeouts.go: the statement and idle-in-transaction timeouts the proxy
//     keeps itself, at the protocol level.
//   - state.go, prepared.go: session settings and prepared statements carried
//     from one backend to the next (the unnamed statement included).
//   - statements.go: what PostgreSQL would answer about a client's own
//     statement names in transaction pooling (DEALLOCATE, 42P05).
//   - switch.go: SET / RESET stratum.tenant.
//   - reply.go, errors.go, messages.go: what the proxy itself writes to clients.
//
// It imports router (placements and backend connections), policy, catalog (types only),
// rewrite (statement classification) and leaf helpers under internal/. It never
// imports admin or cmd.
package proxy
