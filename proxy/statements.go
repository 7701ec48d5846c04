package proxy

import (
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/stratum-hq/stratum-proxy/rewrite"
)

// In transaction pooling a client's named statements live on backends under
// names of the proxy's (sessionState.stmts), so PostgreSQL cannot answer for
// them: what it would say about the client's own names (42P05 for a name
// prepared twice, DEALLOCATE) the proxy says here.

// SQLSTATEs PostgreSQL gives for prepared statements, given by the proxy in
// its place in transaction pooling.
const (
	codeDuplicatePrepared   = "42P05" // duplicate_prepared_statement
	codeInFailedTransaction = "25P02" // in_failed_sql_transaction
)

// duplicateName answers a Parse of a statement name the client has
// prepared already (transaction pooling) as PostgreSQL does: 42P05, the
// batch skipped to Sync, an open transaction block failed. answered is
// false for any other Parse, and for one of a name whose earlier Parse
// failed or may have (its request had an error): PostgreSQL would not have
// the name, and track prepares it again.
func (r *relayer) duplicateName(msg []byte) (answered bool, err error) {
	ss := r.ss
	if !ss.transactionPooling() {
		return false, nil
	}
	name, ok := cstring(msg[5:])
	if !ok || name == "" {
		return false, nil
	}
	s := ss.state.stmts[name]
	if s == nil {
		return false, nil
	}
	ss.mu.Lock()
	confirmed := s.confirmed
	sameBatch := !confirmed && s.ready == ss.mu.readies+uint64(ss.mu.pending)+1
	ss.mu.Unlock()
	if !confirmed && !sameBatch {
		return false, nil
	}
	if sameBatch {
		// The earlier Parse is in this batch: it ran unless a message
		// before this one failed, and then PostgreSQL skips this one
		// too. Ending the batch here tells which.
		if err := r.flush(); err != nil {
			return true, err
		}
		if err := ss.syncOpenBatch(); err != nil {
			return true, err
		}
		if err := ss.waitIdle(); err != nil {
			return true, err
		}
		ss.mu.Lock()
		confirmed = s.confirmed
		ss.mu.Unlock()
		if !confirmed {
			ss.skipUntilSync = true
			return true, nil
		}
	}
	e := errorf(codeDuplicatePrepared, "prepared statement \"%s\" already exists", name)
	e.FailsTransaction = true
	return r.refuseInBatch(e)
}

// failTransactionQuery fails the transaction block it runs in and does
// nothing else.
const failTransactionQuery = "SELECT 1/0"

// failTransaction fails the backend's open transaction block, as the error
// the proxy reports in PostgreSQL's place would have (Error.FailsTransaction):
// a Query that fails, its replies dropped. Nothing is done outside a
// transaction block or in a failed one.
func (ss *session) failTransaction() error {
	if err := ss.waitIdle(); err != nil {
		return err
	}
	ss.mu.Lock()
	att := ss.mu.att
	if att == nil || ss.mu.txStatus != txInTx {
		ss.mu.Unlock()
		return nil
	}
	ss.mu.pending++
	att.dropUntilRF.Add(1)
	ss.mu.Unlock()
	att.sc.Unnamed = 0 // a simple Query drops the unnamed statement
	if err := att.write(queryMsg(failTransactionQuery)); err != nil {
		return err
	}
	if err := att.flush(); err != nil {
		return err
	}
	if err := ss.waitIdle(); err != nil {
		return err
	}
	ss.mu.Lock()
	ss.mu.txStatus = txFailed
	ss.mu.Unlock()
	return nil
}

// awaitParse notes that s was just sent in a Parse, to be confirmed by the
// ReadyForQuery that ends its request (confirmReadyLocked): the requests
// before it each end with one of the pending ReadyForQuery messages, its own
// batch with the next.
func (ss *session) awaitParse(s *stmt) {
	ss.mu.Lock()
	s.ready = ss.mu.readies + uint64(ss.mu.pending) + 1
	ss.mu.tentative = append(ss.mu.tentative, s)
	ss.mu.Unlock()
}

// unknownStatementError is PostgreSQL's error for a statement name it does
// not know.
func unknownStatementError(name string) *Error {
	return errorf(codeUnknownStatement, "prepared statement \"%s\" does not exist", name)
}

// settleDeallocations puts back the statements whose DEALLOCATE through Parse
// (deallocateThroughParse) did not run, now that its request is answered:
// with an error, its batch skipped it (a failed transaction block's 25P02).
// Relay goroutine.
func (st *sessionState) settleDeallocations(ss *session) {
	if len(st.deallocs) == 0 {
		return
	}
	keep := st.deallocs[:0]
	ss.mu.Lock()
	for _, d := range st.deallocs {
		switch {
		case d.marker.ready > ss.mu.readies:
			keep = append(keep, d)
		case !d.marker.confirmed && st.stmts[d.name] == nil:
			if st.stmts == nil {
				st.stmts = map[string]*stmt{}
			}
			st.stmts[d.name] = d.s
		}
	}
	ss.mu.Unlock()
	clear(st.deallocs[len(keep):])
	st.deallocs = keep
}

// parseDeallocateError refuses, in transaction pooling, a Parse of a
// DEALLOCATE of a name of the proxy's the client does not own, as
// PostgreSQL refuses an unknown name (26000). A DEALLOCATE of one of the
// client's own statements, or ALL, is rewritten when it is sent
// (sessionState.deallocateThroughParse).
func (ss *session) parseDeallocateError(q []byte) *Error {
	if !ss.transactionPooling() || !rewrite.MayDeallocate(q) {
		return nil
	}
	ds, n := rewrite.Deallocations(string(q))
	if n != 1 || len(ds) != 1 {
		return nil
	}
	switch d := ds[0]; {
	case !d.All && ss.state.stmts[d.Name] == nil && reservedStatementName(d.Name):
		e := unknownStatementError(d.Name)
		e.FailsTransaction = true
		return e
	}
	return nil
}

// deallocate answers a simple Query holding DEALLOCATE in transaction
// pooling, where the client's statements are the proxy's to drop: the
// backend's are shared by the tenant's sessions. DEALLOCATE is not
// transactional, so the proxy answers it itself once everything sent before
// has its reply (the transaction status is then known): CommandComplete
// DEALLOCATE (ALL) in a good transaction or outside one, 25P02 in a failed
// one. A name the client does not own goes to the backend (its SQL-level
// PREPARE on a pinned backend, or 26000 there), except a name of the
// proxy's, which gets 26000 from the proxy. In a Query of several statements a
// DEALLOCATE of the client's protocol statements (or ALL) is refused.
// answered is false when the Query is to be forwarded.
func (r *relayer) deallocate(q []byte) (answered bool, err error) {
	ss := r.ss
	ds, n := rewrite.Deallocations(string(q))
	if len(ds) == 0 {
		return false, nil
	}
	if n > 1 {
		for _, d := range ds {
			if d.All || ss.state.stmts[d.Name] != nil || reservedStatementName(d.Name) {
				e := errorf(codeFeatureNotSupported, "DEALLOCATE of a prepared statement must be sent as a query of its own through stratum-proxy in transaction pooling")
				e.Hint = "send the DEALLOCATE alone"
				return r.answerError(e)
			}
		}
		return false, nil
	}
	if err := r.flush(); err != nil {
		return true, err
	}
	if err := ss.waitIdle(); err != nil {
		return true, err
	}
	d := ds[0]
	ss.mu.Lock()
	status, pinned := ss.mu.txStatus, ss.mu.att != nil && ss.mu.pinned != ""
	ss.mu.Unlock()
	switch {
	case status == txFailed:
		return true, ss.answerError(errorf(codeInFailedTransaction, "current transaction is aborted, commands ignored until end of transaction block"), true)
	case d.All && pinned:
		// The backend is the session's alone: it drops the statements of
		// SQL-level PREPARE too; track forgets what the backend had.
		return false, nil
	case d.All:
		ss.state.stmts = nil
		return true, ss.answer(appendMsg(nil, &pgproto3.CommandComplete{CommandTag: []byte("DEALLOCATE ALL")}))
	case ss.state.stmts[d.Name] != nil:
		delete(ss.state.stmts, d.Name)
		return true, ss.answer(appendMsg(nil, &pgproto3.CommandComplete{CommandTag: []byte("DEALLOCATE")}))
	case reservedStatementName(d.Name):
		e := unknownStatementError(d.Name)
		e.FailsTransaction = true
		return r.answerError(e)
	}
	return false, nil
}
