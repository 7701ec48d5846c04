// Package wire frames PostgreSQL protocol messages: it peeks a message's type and
// length, hands out the whole raw message so it can be forwarded without decoding,
// and refuses messages larger than a configured maximum.
//
// It is a leaf: it imports nothing of ours and knows nothing of tenants or sessions.
// Decoding a message's body is the caller's business (pgproto3), done only when asked.
package wire
