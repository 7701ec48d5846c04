package proxy

import (
	"github.com/jackc/pgx/v5/pgproto3"
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

func readyForQuery(dst []byte, status byte) []byte {
	return append(dst, 'Z', 0, 0, 0, 5, status)
}
