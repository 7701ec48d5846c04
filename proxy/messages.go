package proxy

import (
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/stratum-hq/stratum-proxy/internal/wire"
)

// appendMsg encodes a protocol message the proxy writes itself. Encoding only
// fails for oversized fields, which the proxy never builds.
func appendMsg(dst []byte, m pgproto3.BackendMessage) []byte {
	out, err := m.Encode(dst)
	if err != nil {
		return dst
	}
	return out
}

// syncMsg is a Sync message the proxy sends itself.
const syncMsg = string(wire.Sync) + "\x00\x00\x00\x04"

func readyForQuery(dst []byte, status byte) []byte {
	return append(dst, wire.ReadyForQuery, 0, 0, 0, 5, status)
}
