package proxy

import (
	"time"

	"go.uber.org/zap"

	"github.com/stratum-hq/stratum-proxy/policy"
)

// StatementTimeoutGrace is how long past the tenant's proxy.statement_timeout
// the proxy lets a statement run before it cancels it itself: PostgreSQL's
// own statement_timeout (set on the backend, but the tenant can SET it off)
// fires first whenever it is still in force.
const StatementTimeoutGrace = time.Second

// codeIdleInTxTimeout is idle_in_transaction_session_timeout.
const codeIdleInTxTimeout = "25P03"

// The protocol-level timeouts of a session, which no SQL of the tenant can
// turn off: the proxy, not the backend, keeps the clock.
//
//   - Statement: a request (a simple Query, a FunctionCall, or an extended
//     batch up to its Sync) whose ReadyForQuery has not come
//     proxy.statement_timeout + StatementTimeoutGrace after it began gets a
//     CancelRequest, as a client's own cancel would (57014). The clock runs
//     per request, not per statement: PostgreSQL flushes nothing between the
//     statements of one request, so the proxy cannot see where one ends. A
//     script of statements each within the timeout but longer than it in
//     all is cancelled, unlike with PostgreSQL's own statement_timeout
//     (which still applies per statement while the tenant leaves it set).
//   - Idle in transaction: a session whose backend's last ReadyForQuery
//     said in a transaction ('T' or 'E'), or that began an extended batch
//     without its Sync, and whose client then sends nothing for
//     proxy.idle_in_transaction_timeout is ended with FATAL 25P03; its
//     backend is closed, not pooled (PostgreSQL rolls back).
//
// One timer per session, made the first time it is needed, serves both. It
// is lazy: moving a deadline later (every request, every ReadyForQuery) only
// records it, and a timer that fires early re-arms itself for the rest, so
// the hot path takes no timer operation and allocates nothing.
type watch struct {
	stmt   time.Duration // statement timeout plus grace; 0: off
	idleTx time.Duration // idle-in-transaction timeout; 0: off

	kind     watchKind
	deadline time.Time // when kind expires
	seq      uint64    // counts requests started, so a late cancel spares the next one
	timer    *time.Timer
	firesAt  time.Time // when timer fires; zero when it is not scheduled
}

type watchKind uint8

const (
	watchNone      watchKind = iota
	watchStatement           // a statement runs on the backend
	watchIdleTx              // the backend waits for the client inside a transaction
)

// on reports whether either timeout is in force.
func (w *watch) on() bool { return w.stmt > 0 || w.idleTx > 0 }

// setTimeoutsLocked takes the session's timeouts from pol. Holds ss.mu.
func (ss *session) setTimeoutsLocked(pol *policy.Policy) {
	w := &ss.mu.watch
	w.stmt, w.idleTx = 0, 0
	if pol.StatementTimeout > 0 {
		w.stmt = time.Duration(pol.StatementTimeout)*time.Millisecond + StatementTimeoutGrace
	}
	if pol.IdleInTxTimeout > 0 {
		w.idleTx = time.Duration(pol.IdleInTxTimeout) * time.Millisecond
	}
}

// armLocked makes kind expire at deadline. Holds ss.mu.
func (ss *session) armLocked(kind watchKind, deadline time.Time) {
	w := &ss.mu.watch
	w.kind, w.deadline = kind, deadline
	if kind == watchNone {
		return // a timer that fires finds nothing to do
	}
	switch {
	case w.timer == nil:
		w.timer = time.AfterFunc(deadline.Sub(time.Now()), ss.watchFired)
	case !w.firesAt.IsZero() && !w.firesAt.After(deadline):
		return // it fires first and re-arms for the rest
	default:
		w.timer.Reset(deadline.Sub(time.Now()))
	}
	w.firesAt = deadline
}

// statementStartedLocked starts the statement clock: a request began (or the
// backend goes on with the next pipelined one). Holds ss.mu.
func (ss *session) statementStartedLocked(now time.Time) {
	w := &ss.mu.watch
	if w.stmt <= 0 {
		ss.armLocked(watchNone, time.Time{})
		return
	}
	ss.armLocked(watchStatement, now.Add(w.stmt))
}

// waitingForClientLocked starts the idle clock when the backend now waits
// for the client inside a transaction (or an unsynced batch), and stops the
// clocks otherwise. Holds ss.mu; pending is zero.
func (ss *session) waitingForClientLocked(now time.Time) {
	w := &ss.mu.watch
	if w.idleTx > 0 && ss.idleInTxLocked() {
		ss.armLocked(watchIdleTx, now.Add(w.idleTx))
		return
	}
	ss.armLocked(watchNone, time.Time{})
}

// idleInTxLocked reports whether the backend waits for the client with a
// transaction open: nothing pending, and its last ReadyForQuery said in a
// (possibly failed) transaction, or an extended batch was begun without its
// Sync (an implicit transaction). Holds ss.mu.
func (ss *session) idleInTxLocked() bool {
	return ss.mu.pending == 0 && (ss.mu.txStatus != txIdle || ss.mu.unsynced)
}

// clientSentLocked updates the clocks for a client message forwarded to the
// backend; before is the count of pending requests before it (and before any
// injected ones). Holds ss.mu.
func (ss *session) clientSentLocked(before int32) {
	if !ss.mu.watch.on() {
		return
	}
	switch now := time.Now(); {
	case before == 0 && ss.mu.pending > 0:
		ss.mu.watch.seq++
		ss.statementStartedLocked(now)
	case ss.mu.pending == 0:
		ss.waitingForClientLocked(now)
	}
}

// backendReadyLocked updates the clocks for a ReadyForQuery (the client's or
// an injected request's), pending already counted down. Holds ss.mu.
func (ss *session) backendReadyLocked() {
	if !ss.mu.watch.on() {
		return
	}
	now := time.Now()
	if ss.mu.pending > 0 {
		ss.mu.watch.seq++
		ss.statementStartedLocked(now) // the next request in the pipeline
		return
	}
	ss.waitingForClientLocked(now)
}

// watchFired runs on the session's timer: it re-arms for a deadline that
// moved, or enforces the timeout that expired if the session is still where
// the clock was started.
func (ss *session) watchFired() {
	ss.mu.Lock()
	w := &ss.mu.watch
	w.firesAt = time.Time{}
	if w.kind == watchNone {
		ss.mu.Unlock()
		return
	}
	now := time.Now()
	if now.Before(w.deadline) {
		w.firesAt = w.deadline
		w.timer.Reset(w.deadline.Sub(now))
		ss.mu.Unlock()
		return
	}
	kind, seq, stmt, idle := w.kind, w.seq, w.stmt, w.idleTx
	w.kind = watchNone
	expired := kind == watchStatement && ss.mu.pending > 0 && ss.mu.att != nil ||
		kind == watchIdleTx && ss.idleInTxLocked()
	tenant := ss.mu.tenant
	ss.mu.Unlock()
	if !expired {
		return
	}
	switch kind {
	case watchStatement:
		ss.srv.metrics.countError("statement_timeout")
		ss.log.Info("cancelling a statement past the tenant's statement timeout",
			zap.Duration("timeout", stmt-StatementTimeoutGrace))
		ss.cancelRequest(seq)
	case watchIdleTx:
		ss.srv.metrics.countError("idle_in_transaction_timeout")
		ss.log.Info("ending a session idle in a transaction", zap.Duration("timeout", idle))
		e := fatalf(codeIdleInTxTimeout,
			"terminating connection due to idle-in-transaction timeout: tenant %q's session was idle in a transaction for %s (%s)",
			tenant.Slug, idle, policy.KeyIdleInTransactionTimeout)
		e.Hint = "commit or roll back transactions promptly; an operator can change " +
			policy.KeyIdleInTransactionTimeout + " through the admin API"
		ss.kill(e)
	}
}

// stopWatch stops the session's timer for good.
func (ss *session) stopWatch() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.mu.watch.kind = watchNone
	ss.mu.watch.stmt, ss.mu.watch.idleTx = 0, 0
	if t := ss.mu.watch.timer; t != nil {
		t.Stop()
	}
}
