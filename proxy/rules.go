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
