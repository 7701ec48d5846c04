package proxy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/stratum-hq/stratum-proxy/internal/wire"
	"github.com/stratum-hq/stratum-proxy/rewrite"
)

// relayer is the relay loop's state between two flushes to the backend.
// Only the relay goroutine uses it.
type relayer struct {
	ss  *session
	att *attachment // the backend written to since the last flush, or nil
}

// relay reads client messages and forwards them raw to the backend, handling
// the few the proxy answers or rewrites itself. It returns when the client
// leaves or the session must end.
func (ss *session) relay() error {
	r := &relayer{ss: ss}
	rd := ss.cc.rd
	for {
		if !rd.HasMessage() {
			// The client has nothing more buffered: send what was written.
			if err := r.flush(); err != nil {
				return err
			}
			rd.Shrink()
		}
		typ, msg, err := rd.Next()
		if err != nil {
			return ss.clientReadFailed(err)
		}
		done, err := r.handle(typ, msg)
		if done || err != nil {
			return err
		}
	}
}

// clientReadFailed tells the client why its message was not read, when that
// was its fault, and returns err.
func (ss *session) clientReadFailed(err error) error {
	if errors.Is(err, wire.ErrMessageTooLarge) {
		ss.writeClient(fatalf(codeProgramLimit, "message too large: %v", err).encode(nil))
	} else if errors.Is(err, wire.ErrBadLength) {
		ss.writeClient(fatalf(codeProtocolViolation, "invalid message: %v", err).encode(nil))
	}
	return err
}

// handle processes one client message: it is skipped (after an error in an
// extended batch), answered by the proxy, or forwarded. done is true when the
// client ended the session.
func (r *relayer) handle(typ byte, msg []byte) (done bool, err error) {
	ss := r.ss
	if ss.skipUntilSync {
		return false, r.skipUntilSync(typ)
	}
	ss.state.settleDeallocations(ss)
	if startsTransaction(typ) {
		if err := r.admit(); err != nil {
			return false, err
		}
	}
	var answered bool
	switch {
	case typ == wire.Terminate:
		return true, nil
	case typ == wire.Query:
		// A simple Query drops the client's unnamed statement, whatever
		// becomes of it.
		ss.state.unnamed = nil
		answered, err = r.query(msg)
	case typ == wire.Parse:
		answered, err = r.parse(msg)
	case typ == wire.Bind:
		answered, err = r.bind(msg)
	case typ == wire.FunctionCall:
		answered, err = r.functionCall(msg)
	case relayedAsIs(typ):
	default:
		ss.writeClient(fatalf(codeProtocolViolation, "invalid frontend message type %d", typ).encode(nil))
		return false, errors.New("protocol violation")
	}
	if answered || err != nil {
		return false, err
	}
	return false, r.forward(typ, msg)
}

// admit picks up catalog changes before a message that may start a
// transaction (refreshPolicy), announcing first (ss.admitted) the
// generation of the policy it will run under, until the flush that sends
// it: PauseBarrier moves the generation on and waits for the announced
// older ones, so that a message this proxy let through before it saw a
// pause is on the backend (where the cut-over's drain sees its
// transaction) before the source is fenced. Announcing before the look at
// the generation is what makes that hold: either the barrier sees the
// announcement, or the look sees the barrier's generation and the session
// reads the pause.
//
// A catalog that keeps changing while the session reads it makes it read
// again at most admitRereads times; past that the message goes on under the
// policy just read (the fence, not the barrier, is what keeps a move safe).
func (r *relayer) admit() error {
	ss := r.ss
	for reads := 0; ; reads++ {
		// An older announcement of this batch, still unflushed, stays.
		ss.admitted.CompareAndSwap(0, ss.polGen+1)
		if (ss.srv.backends.Gen() == ss.polGen || reads > admitRereads) && ss.pol.Paused == "" {
			return nil
		}
		before := ss.polGen
		if err := r.refreshPolicy(); err != nil {
			return err
		}
		if ss.polGen == before {
			return nil // inside a transaction: the policy changes at its end
		}
	}
}

// admitRereads bounds admit's extra reads of a changing catalog.
const admitRereads = 2

// flush sends what was written to the backend. The proxy's own answers wait
// for the backend's replies to everything before them, so it must go first.
// It ends the batch's announcement (admit).
func (r *relayer) flush() error {
	if r.att == nil {
		r.ss.admitted.Store(0)
		return nil
	}
	ss := r.ss
	ss.srv.metrics.bytesIn.Add(float64(ss.bytesIn))
	ss.bytesIn = 0
	err := r.att.flush()
	r.att = nil
	ss.admitted.Store(0)
	if err != nil {
		return fmt.Errorf("flushing to backend: %w", err)
	}
	return nil
}

// skipUntilSync discards a message of an extended-protocol batch that had an
// error, as a backend does; the Sync that ends the batch gets its
// ReadyForQuery.
func (r *relayer) skipUntilSync(typ byte) error {
	if typ != wire.Sync {
		return nil
	}
	if err := r.flush(); err != nil {
		return err
	}
	r.ss.skipUntilSync = false
	return r.ss.answer(nil)
}

// refreshPolicy picks up a catalog change before a message that may start a
// transaction (see session.refreshPolicy), and holds the message there while
// the tenant is paused (waitPaused).
func (r *relayer) refreshPolicy() error {
	ss := r.ss
	if ss.pipeliningOutsideTransaction() || ss.pipeliningWhilePaused() {
		// Earlier requests, transactions of their own, are still
		// pending: a client that always keeps one in flight would
		// never reach a boundary, and keep the old policy (or a
		// suspended tenant's session) forever. Let them finish. While
		// the tenant is paused, the same inside a transaction: a
		// request in flight may end it, and this message start the next.
		if err := r.flush(); err != nil {
			return err
		}
		if err := ss.waitIdle(); err != nil && !errors.Is(err, errCopyIn) {
			return err
		}
	}
	// Nothing of ours may stay buffered for a backend the refresh could
	// move the session off (moveBackend), nor wait unsent while the
	// session waits for a pause to end.
	if err := r.flush(); err != nil {
		return err
	}
	return r.waitPaused()
}

// waitPaused refreshes the session's policy and, while the tenant is paused
// and the session is at a transaction boundary, holds the message that would
// start the next transaction: nothing is forwarded and no backend acquired.
// Each catalog change ends a wait, and the tenant is resolved again
// (session.refreshPolicy), so that the transaction runs under the policy and
// on the placement the tenant has when the pause ends (a placement move's
// cut-over pauses it). A wait has no time limit, like PgBouncer's PAUSE; it
// ends early, with an error that ends the session, when the session is ended
// (ctx) or the client goes away.
func (r *relayer) waitPaused() error {
	ss := r.ss
	var since time.Time
	defer func() {
		if !since.IsZero() {
			ss.srv.metrics.sessionsPaused.Dec()
			ss.log.Debug("tenant's pause ended; the session goes on", zap.Duration("waited", time.Since(since)))
		}
	}()
	for {
		gen := ss.srv.backends.Gen()
		if gen != ss.polGen {
			if err := ss.refreshPolicy(); err != nil {
				return err
			}
		}
		if ss.pol.Paused == "" || !ss.atBoundary() {
			return nil
		}
		if since.IsZero() {
			since = time.Now()
			ss.srv.metrics.sessionsPaused.Inc()
			ss.log.Info("tenant paused; the session waits before its next transaction", zap.String("reason", ss.pol.Paused))
		}
		// gen was read before the refresh: a change committed since ends
		// the wait at once, and is read by the next round.
		if err := r.waitGen(gen); err != nil {
			return err
		}
	}
}

// waitGen waits until the router's generation moves past gen. Meanwhile it
// reads what the client sends (kept for the relay, up to pausedReadLimit
// bytes), to see it go: a client that disconnects ends the wait with its read
// error, and the session with it.
func (r *relayer) waitGen(gen uint64) error {
	ss := r.ss
	ctx, cancel := context.WithCancel(ss.ctx)
	defer cancel()
	gone := make(chan error, 1)
	go func() { gone <- ss.watchClient(ctx, cancel) }()
	err := ss.srv.backends.WaitGen(ctx, gen)
	cancel()
	ss.cc.conn.SetReadDeadline(time.Now()) // stops the watcher's read
	cerr := <-gone
	ss.cc.conn.SetReadDeadline(time.Time{})
	if cerr != nil {
		return fmt.Errorf("client went away while its tenant was paused: %w", cerr)
	}
	if err != nil {
		return fmt.Errorf("waiting for the tenant's pause to end: %w", err)
	}
	return nil
}

// pausedReadLimit bounds what a session waiting for its tenant's pause to end
// reads ahead from its client (watchClient). Past it, the proxy stops
// reading, and a client that goes away is seen when the pause ends.
const pausedReadLimit = 64 << 10

// watchClient reads from the client into its reader's buffer (the relay's,
// which waits meanwhile) until ctx ends or the read fails: a failed read that
// is not the deadline waitGen sets to stop it means the client is gone, and
// cancels the wait. It returns that error, or nil.
func (ss *session) watchClient(ctx context.Context, cancel context.CancelFunc) error {
	for {
		err := ss.cc.rd.ReadMore(pausedReadLimit)
		switch {
		case err == nil:
			continue
		case errors.Is(err, wire.ErrBufferFull):
			<-ctx.Done()
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil:
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			continue // not ours
		}
		cancel()
		return err
	}
}

// answerError flushes what was written and answers a request with e and, for
// a simple query or function call, ReadyForQuery.
func (r *relayer) answerError(e *Error) (answered bool, err error) {
	if err := r.flush(); err != nil {
		return true, err
	}
	if e.FailsTransaction {
		if err := r.ss.failTransaction(); err != nil {
			return true, err
		}
	}
	return true, r.ss.answerError(e, true)
}

// refuseInBatch answers an extended-protocol message the proxy refuses as
// a backend does after an error in a batch: report it, then discard
// messages until Sync. What the batch sent before is synced first, so
// its replies come in order ahead of the error.
func (r *relayer) refuseInBatch(e *Error) (answered bool, err error) {
	if err := r.flush(); err != nil {
		return true, err
	}
	if err := r.ss.syncOpenBatch(); err != nil {
		return true, err
	}
	if e.FailsTransaction {
		if err := r.ss.failTransaction(); err != nil {
			return true, err
		}
	}
	r.ss.skipUntilSync = true
	return true, r.ss.answerError(e, false)
}

// query handles a simple Query: SET/RESET stratum.tenant is the proxy's own;
// a statement the guard or the tenant's policy refuses is answered with the
// error; the rest is forwarded.
func (r *relayer) query(msg []byte) (answered bool, err error) {
	ss := r.ss
	if rewrite.MentionsTenantSetting(msg[5:]) {
		if err := r.flush(); err != nil {
			return true, err
		}
		handled, err := ss.tenantCommand(msg)
		if err != nil || handled {
			return true, err
		}
	}
	if e := ss.guardError(msg[5:len(msg)-1], true); e != nil {
		return r.answerError(e)
	}
	if ss.transactionPooling() && rewrite.MayDeallocate(msg[5:]) {
		return r.deallocate(msg[5 : len(msg)-1])
	}
	return false, nil
}

// parse handles a Parse: a statement the guard or policy refuses, one that
// sets the tenant (allowed only as a simple Query), a name the client has
// prepared already and a DEALLOCATE the proxy cannot run (transaction
// pooling) fail the batch.
func (r *relayer) parse(msg []byte) (answered bool, err error) {
	ss := r.ss
	var e *Error
	if q, ok := parseQuery(msg); ok {
		if e = ss.guardError(q, false); e == nil {
			e = ss.parseDeallocateError(q)
		}
	}
	if e == nil && rewrite.MentionsTenantSetting(msg[5:]) && ss.parseIsTenantCommand(msg) {
		e = errorf(codeFeatureNotSupported, "SET and RESET of stratum.tenant must be sent with the simple query protocol")
	}
	if e == nil {
		return r.duplicateName(msg)
	}
	if len(msg) > 5 && msg[5] == 0 {
		// PostgreSQL drops the unnamed statement before it parses the
		// new one, so a failed Parse of "" leaves none.
		ss.state.unnamed = nil
	}
	return r.refuseInBatch(e)
}

// bind handles a Bind: a named statement prepared under an earlier policy
// (or another tenant's, replayed after a switch) is checked again.
func (r *relayer) bind(msg []byte) (answered bool, err error) {
	if e := r.ss.bindPolicyError(msg); e != nil {
		return r.refuseInBatch(e)
	}
	return false, nil
}

// functionCall handles a FunctionCall: set_config through it is refused, and
// in transaction pooling any other pins the session to its backend, as the
// proxy cannot tell what the function leaves there (a session advisory lock,
// say, which another client of the tenant must not inherit).
func (r *relayer) functionCall(msg []byte) (answered bool, err error) {
	if e := functionCallError(msg); e != nil {
		return r.answerError(e)
	}
	if r.ss.transactionPooling() {
		r.ss.pin("function call")
	}
	return false, nil
}

// forward sends a client message to the session's backend, attaching one
// when none is held, rewritten where the session's state asks for it.
func (r *relayer) forward(typ byte, msg []byte) error {
	ss := r.ss
	ss.bytesIn += len(msg)
	if typ == wire.Query || typ == wire.Sync {
		ss.counters.countQuery()
	}
	att, err := ss.attach(typ)
	if err != nil {
		return ss.refuse(typ, asError(err, false))
	}
	if r.att != att {
		if err := r.flush(); err != nil {
			return err
		}
	}
	r.att = att
	out, err := ss.state.track(ss, att, typ, msg)
	if err != nil {
		return err
	}
	if expectsReadyForQuery(typ) {
		// Before the write: a full buffer may flush it, and the reply
		// may come before the write returns.
		att.injected.endRequest()
	}
	if err := att.write(out); err != nil {
		return fmt.Errorf("writing to backend: %w", err)
	}
	if typ == wire.Query && mayUndoReadOnly(ss.pol, att.sc) {
		// The Query resets the backend's settings (RESET ALL or DISCARD
		// ALL, alone: policyError refuses them with other statements, so
		// no COPY FROM STDIN can be waiting for the client), the
		// read-only default with them. Nothing more goes to the backend
		// before its reply: then attach applies the policy again ahead of
		// the next message, which would run writable otherwise.
		if err := r.flush(); err != nil {
			return err
		}
		if err := ss.syncOpenBatch(); err != nil {
			return err
		}
		if err := ss.waitIdle(); err != nil {
			return err
		}
	}
	return nil
}

// syncOpenBatch ends an extended-protocol batch the backend has begun (messages
// sent since the last Sync) with a Sync of the proxy's own, whose
// ReadyForQuery the pump drops, so that the batch's replies reach the client
// before an error the proxy reports itself.
func (ss *session) syncOpenBatch() error {
	ss.mu.Lock()
	att := ss.mu.att
	open := att != nil && ss.mu.unsynced
	if open {
		ss.mu.pending++
		ss.mu.unsynced = false
		att.dropReady.Add(1)
	}
	ss.mu.Unlock()
	if !open {
		return nil
	}
	att.injected.endRequest()
	if err := att.write([]byte(syncMsg)); err != nil {
		return err
	}
	return att.flush()
}
