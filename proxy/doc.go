// Package proxy is the PostgreSQL-facing side of stratum-proxy: the listener, TLS
// termination, the startup and SCRAM handshake, tenant identification, the
// session state machine with its relay loop, tenant switching and the cancel-key
// map.
//
// What it needs of the router it names in the Backends interface (backends.go),
// which *router.Router implements and proxytest.Backends fakes; it keeps using
// router's value types (Placement, ServerConn, ReleaseMode, Policy). The clock
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
//   - relay.go: client messages to the backend, one small handler per kind.
//   - rules.go: the protocol rules as named predicates (idle point, batch).
//   - guard.go, policy.go: the SQL guard and the tenant's policy on statements.
//   - state.go, prepared.go: session settings and prepared statements carried
//     from one backend to the next.
//   - switch.go: SET / RESET stratum.tenant.
//   - reply.go, errors.go, messages.go: what the proxy itself writes to clients.
//
// It imports router (placements and backend connections), catalog (types only),
// rewrite (statement classification) and leaf helpers under internal/. It never
// imports admin or cmd.
package proxy
