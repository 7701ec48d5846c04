package proxy

import "github.com/stratum-hq/stratum-proxy/internal/wire"

// writeClient writes bytes the proxy made itself to the client, and flushes.
func (ss *session) writeClient(b []byte) error {
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	if ss.cw == nil {
		_, err := ss.cc.conn.Write(b)
		return err
	}
	if _, err := ss.cw.Write(b); err != nil {
		return err
	}
	return ss.cw.Flush()
}

// answer sends the proxy's own reply to a request (msgs, then ReadyForQuery),
// after the backend has answered everything sent before it, to keep order.
func (ss *session) answer(msgs []byte) error {
	if err := ss.waitIdle(); err != nil {
		return err
	}
	return ss.writeClient(readyForQuery(msgs, ss.txStatus()))
}

// answerError sends an error; with ready, also the ReadyForQuery that ends a
// simple query. In an extended batch the Sync brings it later.
func (ss *session) answerError(e *Error, ready bool) error {
	if err := ss.waitIdle(); err != nil {
		return err
	}
	b := e.encode(nil)
	if ready {
		b = readyForQuery(b, ss.txStatus())
	}
	return ss.writeClient(b)
}

// refuse answers a message the proxy could not forward (no backend could be
// had): a simple Query gets the error and ReadyForQuery; in an extended batch
// the error comes now and the rest is skipped until Sync.
func (ss *session) refuse(typ byte, e *Error) error {
	switch typ {
	case wire.Query, wire.FunctionCall, wire.Sync:
		return ss.writeClient(readyForQuery(e.encode(nil), ss.txStatus()))
	default:
		ss.skipUntilSync = true
		return ss.writeClient(e.encode(nil))
	}
}
