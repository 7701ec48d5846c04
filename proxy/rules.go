package proxy

import "github.com/stratum-hq/stratum-proxy/internal/wire"

// Protocol rules, named so that the relay loop reads as the protocol does.

// Transaction status bytes of ReadyForQuery.
const (
	txIdle   = wire.TxIdle   // not in a transaction block
	txInTx   = wire.TxInTx   // in a transaction block
	txFailed = wire.TxFailed // in a failed transaction block
)

// expectsReadyForQuery reports whether a client message makes the backend send
// exactly one ReadyForQuery when it is done with it: a simple Query, a Sync
// (which ends an extended-protocol batch) and a FunctionCall. CopyDone and
// CopyFail end a COPY that a Query or an extended batch started, whose
// ReadyForQuery is already counted.
func expectsReadyForQuery(typ byte) bool {
	return typ == wire.Query || typ == wire.Sync || typ == wire.FunctionCall
}

// safeToSwitchTenant is the rule for SET stratum.tenant and for handing a
// backend back to its pool: every request sent has been answered (the backend's
// last message was ReadyForQuery) and that ReadyForQuery said idle, so no
// transaction, no COPY and no unfinished extended-protocol batch is open.
func safeToSwitchTenant(pending int32, txStatus byte) bool {
	return pending == 0 && txStatus == txIdle
}

// relayedAsIs reports whether a client message goes to the backend without
// any check of the proxy's: the extended-protocol messages after Parse and
// Bind, Sync, and COPY data. (Query, Parse, Bind and FunctionCall are
// checked first; Terminate ends the session; any other type is a protocol
// violation.)
func relayedAsIs(typ byte) bool {
	switch typ {
	case wire.Execute, wire.Describe, wire.CloseMessage, wire.Flush, wire.Sync,
		wire.CopyData, wire.CopyDone, wire.CopyFail:
		return true
	}
	return false
}

// opensBatch reports whether a client message is part of an extended-protocol
// batch that only a Sync ends: until then the backend holds unfinished state
// (an unnamed statement, a portal, an error to skip to the Sync).
func opensBatch(typ byte) bool {
	switch typ {
	case wire.Parse, wire.Bind, wire.Execute, wire.Describe, wire.CloseMessage, wire.Flush:
		return true
	}
	return false
}

// atIdlePoint is the rule for a point where the backend holds nothing of an
// unfinished request, so that the backend may be released to its pool (in
// transaction pooling), the session may end gracefully, or the tenant's
// policy may be refreshed: every request has its ReadyForQuery (one comes
// after Query, Sync and FunctionCall; CopyDone and CopyFail end a COPY whose
// ReadyForQuery is counted already), that ReadyForQuery said idle, and no
// extended-protocol batch has been begun without its Sync.
func atIdlePoint(pending int32, txStatus byte, unsynced bool) bool {
	return !unsynced && safeToSwitchTenant(pending, txStatus)
}
