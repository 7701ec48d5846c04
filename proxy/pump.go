package proxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"os"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/stratum-hq/stratum-proxy/internal/backends"
	"github.com/stratum-hq/stratum-proxy/internal/wire"
	"github.com/stratum-hq/stratum-proxy/router"
)

// deallocateTag is the CommandComplete tag of a DEALLOCATE of one
// statement; deallocateAllComplete is the reply a client reads for a
// DEALLOCATE ALL sent through Parse in transaction pooling (injectedReplies.takeRetag).
var (
	deallocateTag         = []byte("DEALLOCATE\x00")
	deallocateAllComplete = appendMsg(nil, &pgproto3.CommandComplete{CommandTag: []byte("DEALLOCATE ALL")})
)

// errUnexpectedReady ends a pump that got a ReadyForQuery nobody asked for.
var errUnexpectedReady = errors.New("unexpected ReadyForQuery")

// pump relays backend messages to the client, raw, flushing when the backend
// has nothing more buffered. It tracks ReadyForQuery to know when the session
// is idle, and in transaction pooling hands the backend back right there
// (releasableLocked). It ends when paused (a read deadline set by detach),
// on release, or when either side fails; then it closes the client connection.
func (ss *session) pump(att *attachment) {
	ss.holdWriter()
	defer ss.dropWriter()
	rd := att.sc.Reader
	fatal := false // the backend sent its FATAL and is closing
	for {
		typ, msg, err := rd.Next()
		if err != nil {
			ss.backendReadFailed(att, err, fatal)
			return
		}
		fatal = fatal || endsConnection(typ, msg)
		if typ == wire.ErrorResponse {
			ss.noteRequestFailed()
		}
		if !fatal && (ss.dropInjectedReply(att, typ, msg) || ss.foreignNotification(att, typ, msg) || ss.sessionLockNotice(typ, msg)) {
			continue
		}
		if typ == wire.CommandComplete && bytes.Equal(msg[5:], deallocateTag) && att.injected.takeRetag() {
			msg = deallocateAllComplete
		}
		if typ == wire.CopyInResponse || typ == wire.CopyBothResponse {
			ss.mu.Lock()
			ss.mu.copyIn = true
			ss.mu.Unlock()
			ss.signalIdle() // a waitIdle must not wait for what needs the client
		}
		release := false
		ss.bytesOut += len(msg)
		if typ == wire.ReadyForQuery && len(msg) == 6 {
			var ok bool
			if release, ok = ss.readyForQuery(att, msg[5]); !ok {
				return
			}
		}
		if release {
			// The backend goes back to its pool before the client can read
			// this ReadyForQuery: a query the client (or another client of
			// the tenant) sends on reading it then finds the connection idle
			// instead of opening another. msg lies in the backend's read
			// buffer, which the next holder reuses: keep a copy.
			var rfq [6]byte
			msg = rfq[:copy(rfq[:], msg)]
			ss.handBack(att)
		}
		ss.wmu.Lock()
		_, werr := ss.cw.Write(msg)
		if werr == nil && (release || !rd.HasMessage()) {
			werr = ss.cw.Flush()
		}
		ss.wmu.Unlock()
		if release {
			att.done <- nil
			if werr != nil {
				ss.cc.conn.Close()
			}
			ss.stopIfAsked()
			return
		}
		if werr != nil {
			ss.cc.conn.Close()
			att.done <- werr
			return
		}
		if typ == wire.ReadyForQuery {
			ss.stopIfAsked()
		}
	}
}

// backendReadFailed ends the pump after a failed read: quietly when detach
// paused it, else closing the client's connection as its backend closed.
// The client is told why with the proxy's own FATAL only when the backend did
// not say it itself (backendSaidFatal): PostgreSQL sends one FATAL and closes.
func (ss *session) backendReadFailed(att *attachment, err error, backendSaidFatal bool) {
	if att.pausing.Load() && errors.Is(err, os.ErrDeadlineExceeded) {
		att.done <- nil
		return
	}
	switch {
	case att.pausing.Load():
	case backendSaidFatal:
		ss.srv.metrics.countError("backend_fatal")
		ss.log.Info("backend ended the session with a FATAL error", zap.Error(err))
	default:
		ss.srv.metrics.countError("backend_lost")
		ss.writeClient(fatalf(codeConnectionFailure,
			"lost the connection to tenant %q's database", ss.cur.Tenant.Slug).encode(nil))
		ss.log.Warn("backend connection lost", zap.Error(err))
	}
	ss.cc.conn.Close()
	att.done <- err
}

// endsConnection reports whether a backend message is an ErrorResponse of
// severity FATAL or PANIC, after which PostgreSQL closes the connection
// (pg_terminate_backend: 57P01, idle_session_timeout: 57P05, a server shut
// down: 57P01 too). The client must get it whatever the proxy was dropping
// (the replies to its injected queries), and nothing of the proxy's after it.
func endsConnection(typ byte, msg []byte) bool {
	if typ != wire.ErrorResponse {
		return false
	}
	sev := errorSeverity(msg)
	return sev == "FATAL" || sev == "PANIC"
}

// errorSeverity is the severity of an ErrorResponse or NoticeResponse: its
// non-localized field (V, PostgreSQL 9.6 and later) if present, else S.
func errorSeverity(msg []byte) string {
	var s string
	for b := msg[5:]; len(b) > 0 && b[0] != 0; {
		f := b[0]
		end := bytes.IndexByte(b[1:], 0)
		if end < 0 {
			return s
		}
		switch f {
		case 'V':
			return string(b[1 : 1+end])
		case 'S':
			s = string(b[1 : 1+end])
		}
		b = b[2+end:]
	}
	return s
}

// dropInjectedReply reports whether a backend message answers a message the
// proxy injected (settings, a Parse or Close of a shared statement, a Sync of
// its own), which the client must not see; it counts the answered request.
func (ss *session) dropInjectedReply(att *attachment, typ byte, msg []byte) bool {
	switch {
	case att.dropUntilRF.Load() > 0:
		if typ == wire.ErrorResponse {
			ss.log.Warn("a query the proxy injected failed", zap.ByteString("error", msg[5:]))
		}
		if typ == wire.ReadyForQuery {
			att.dropUntilRF.Add(-1)
			ss.injectedAnswered() // switchTenant waits for the injected queries alone
		}
		return true
	case (typ == wire.ParseComplete || typ == wire.CloseComplete) && att.injected.take(typ):
		return true
	case typ == wire.ReadyForQuery && att.dropReady.Load() > 0:
		att.dropReady.Add(-1)
		att.injected.answered()
		if len(msg) == 6 {
			// The Sync ended the client's batch: its status is the
			// session's now (a failure in the batch failed a transaction).
			ss.mu.Lock()
			ss.mu.txStatus = msg[5]
			ss.mu.Unlock()
		}
		ss.injectedAnswered()
		return true
	}
	return false
}

// noteRequestFailed records that the request the backend works on (the one
// the next ReadyForQuery ends) had an error: in an extended-protocol batch,
// the messages after the failed one were skipped.
func (ss *session) noteRequestFailed() {
	ss.mu.Lock()
	ss.mu.failedReady = ss.mu.readies + 1
	ss.mu.Unlock()
}

// confirmReadyLocked counts a ReadyForQuery and settles the named statements
// whose Parse it answers: confirmed when their request had no error, so the
// statement exists (PostgreSQL refuses its name with 42P05 from then on);
// otherwise the Parse may not have run, and the proxy lets the name be
// prepared again. Holds ss.mu.
func (ss *session) confirmReadyLocked() {
	ss.mu.readies++
	if len(ss.mu.tentative) == 0 {
		return
	}
	failed := ss.mu.failedReady == ss.mu.readies
	keep := ss.mu.tentative[:0]
	for _, s := range ss.mu.tentative {
		switch {
		case s.ready == ss.mu.readies:
			s.confirmed = !failed
		case s.ready > ss.mu.readies:
			keep = append(keep, s)
		}
	}
	clear(ss.mu.tentative[len(keep):])
	ss.mu.tentative = keep
}

// injectedAnswered counts the ReadyForQuery of an injected request.
func (ss *session) injectedAnswered() {
	ss.mu.Lock()
	ss.mu.pending--
	ss.confirmReadyLocked()
	idle := ss.mu.pending == 0
	ss.backendReadyLocked()
	ss.mu.Unlock()
	if idle {
		ss.signalIdle()
	}
}

// readyForQuery records a ReadyForQuery for the client with transaction
// status status, and reports whether the backend is to be released now
// (releasableLocked). ok is false when the pump must end: the ReadyForQuery
// answers nothing the proxy sent.
func (ss *session) readyForQuery(att *attachment, status byte) (release, ok bool) {
	if status == txIdle {
		ss.counters.transactions.Inc()
	}
	ss.srv.metrics.bytesOut.Add(float64(ss.bytesOut))
	ss.bytesOut = 0
	att.injected.answered()
	ss.mu.Lock()
	if ss.mu.pending <= 0 {
		// A ReadyForQuery nobody asked for: proxy and backend disagree
		// about the protocol state. The connection must never be pooled.
		ss.mu.Unlock()
		ss.log.Error("unexpected ReadyForQuery from backend; ending the session")
		ss.writeClient(fatalf(codeProtocolViolation, "stratum-proxy lost track of the protocol state").encode(nil))
		ss.cc.conn.Close()
		att.done <- errUnexpectedReady
		return false, false
	}
	ss.mu.txStatus = status
	ss.mu.copyIn = false
	ss.mu.pending--
	ss.confirmReadyLocked()
	idle := ss.mu.pending == 0
	ss.backendReadyLocked()
	if idle && ss.releasableLocked() && !att.pausing.Load() {
		release = true
		ss.mu.att = nil
	}
	ss.mu.Unlock()
	if idle {
		ss.signalIdle()
	}
	return release, true
}

// handBack hands the backend back to its pool once the relay has no write
// under way on it (see attachment.wmu).
func (ss *session) handBack(att *attachment) {
	att.wmu.Lock()
	att.wmu.Unlock()
	ss.srv.backends.Release(att.sc, router.Keep)
}

// releasableLocked is the transaction-pooling rule for handing the backend
// back: the session is in transaction pooling and not pinned, and it is at
// an idle point (atIdlePoint). Holds ss.mu.
func (ss *session) releasableLocked() bool {
	return ss.transactionPooling() && ss.mu.pinned == "" && ss.idleLocked()
}

// holdWriter takes a client write buffer for a pump that starts.
func (ss *session) holdWriter() {
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	ss.pumps++
	if ss.cw == nil {
		ss.cw = writers.Get().(*bufio.Writer)
		ss.cw.Reset(ss.cc.conn)
	}
}

// dropWriter hands the client write buffer back to the pool when it is empty
// (the pump is ending, so nothing else fills it).
func (ss *session) dropWriter() {
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	ss.pumps--
	if ss.pumps == 0 && ss.cw != nil && ss.cw.Buffered() == 0 {
		ss.cw.Reset(nil)
		writers.Put(ss.cw)
		ss.cw = nil
	}
}

// foreignNotification reports whether a backend message is a notification
// (NotificationResponse: Int32 sender PID, channel, payload) sent by a backend
// that is not one of the session's tenant's, which the client must never get:
// NOTIFY has no privilege check, and tenants sharing a database share its
// channels. A sender the router does not know (another proxy replica's
// backend, a direct client) counts as foreign: such notifications are dropped.
// A notification it lets through is renamed in place (clientSenderPID).
func (ss *session) foreignNotification(att *attachment, typ byte, msg []byte) bool {
	if typ != wire.NotificationResponse {
		return false
	}
	if len(msg) < 9 {
		return true
	}
	sender := binary.BigEndian.Uint32(msg[5:9])
	clientPID, same := ss.srv.backends.Sender(att.sc, sender)
	if !same {
		return true
	}
	binary.BigEndian.PutUint32(msg[5:9], ss.clientSenderPID(att, sender, clientPID))
	return false
}

// clientSenderPID is the sender process id a notification from the backend
// process sender shows the client: clients compare it with the process id
// they were given to tell their own notifications from others'. The
// session's own backend is named by the session's process id (in
// transaction pooling, or after a tenant switch, it differs from the
// backend's); another session's backend by the process id that session's
// client was given (clientPID, from the router), when known; any other
// sender keeps its own.
func (ss *session) clientSenderPID(att *attachment, sender, clientPID uint32) uint32 {
	switch {
	case sender == att.sc.PID:
		return ss.key.pid
	case clientPID != 0:
		return clientPID
	}
	return sender
}

// sessionLockNotice reports whether a backend message is the NOTICE the
// shared database's advisory-lock wrappers send on taking a session-level
// lock (backends.SessionLockNotice), which only the proxy reads: in
// transaction pooling the session is pinned to its backend right away, before
// the ReadyForQuery that would release it, as for a session lock the guard
// sees in SQL text. Other notices are the client's.
func (ss *session) sessionLockNotice(typ byte, msg []byte) bool {
	if typ != wire.NoticeResponse || noticeCode(msg) != backends.SessionLockNotice {
		return false
	}
	if ss.transactionPooling() {
		ss.pin("session advisory lock")
	}
	return true
}

// noticeCode is the SQLSTATE field of a NoticeResponse or ErrorResponse
// (type, length, then fields: a code byte and a string each, then a zero).
func noticeCode(msg []byte) string {
	b := msg[5:]
	for len(b) > 0 && b[0] != 0 {
		f := b[0]
		end := bytes.IndexByte(b[1:], 0)
		if end < 0 {
			return ""
		}
		if f == 'C' {
			return string(b[1 : 1+end])
		}
		b = b[2+end:]
	}
	return ""
}
