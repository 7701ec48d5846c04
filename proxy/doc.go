// Package proxy is the PostgreSQL-facing side of stratum-proxy: the listener, TLS
// termination, the startup and SCRAM handshake, tenant identification, the
// session state machine with its relay loop, tenant switching and the cancel-key
// map.
//
// It imports router (placements and backend connections), catalog (types only),
// rewrite (statement classification) and leaf helpers under internal/. It never
// imports admin or cmd.
package proxy
