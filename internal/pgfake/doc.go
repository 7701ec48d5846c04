// Package pgfake is a scripted fake PostgreSQL backend, in the manner of pgx's
// internal pgmock: a Script of the frontend messages a backend expects and the
// replies it sends, run over one net.Conn (typically one end of net.Pipe) after
// the startup phase. Tests use it to drive code that speaks the protocol to a
// backend (the proxy's relay) without a PostgreSQL server.
//
// It owns only the script and its runner; it knows nothing of tenants, pools
// or sessions. It is a leaf: it imports pgproto3 and nothing of ours, and must
// never import proxy, router, catalog or any other package of this module.
package pgfake
