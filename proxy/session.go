package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/wire"
	"github.com/stratum-hq/stratum-proxy/rewrite"
	"github.com/stratum-hq/stratum-proxy/router"
)

// session is one client connection after startup. Two goroutines work on it:
// run reads client messages and writes them to the backend; the pump reads
// backend messages and writes them to the client. Writes to the client go
// through cw under wmu, since both may write.
type session struct {
	srv     *Server
	cc      *clientConn
	log     *zap.Logger
	id      uint64
	startup map[string]string
	params  map[string]string // forwarded to the backend

	user    *catalog.User
	initial *router.Placement // the tenant named at startup; RESET goes back to it
	cur     *router.Placement // the tenant now

	keyPID    uint32
	keySecret []byte

	wmu sync.Mutex
	cw  *bufio.Writer

	mu struct {
		sync.Mutex
		sc   *router.ServerConn // the backend now; read by cancel requests
		stop bool               // shutdown asked: end at the next idle point
	}

	pending  atomic.Int32  // requests sent that await a ReadyForQuery
	txStatus atomic.Uint32 // status byte of the last ReadyForQuery
	idle     chan struct{} // the pump signals when pending drops to zero
	pumpDone chan error    // the pump's exit: nil when paused, else why it ended
	pausing  atomic.Bool

	skipUntilSync bool // after an error in an extended-protocol batch
	prepared      prepared
}

func newSession(s *Server, cc *clientConn, startup map[string]string, log *zap.Logger) *session {
	ss := &session{srv: s, cc: cc, startup: startup, id: s.nextID.Add(1),
		idle: make(chan struct{}, 1), pumpDone: make(chan error, 1)}
	ss.log = log.With(zap.Uint64("session", ss.id))
	ss.txStatus.Store(txIdle)
	return ss
}

// run authenticates, connects to the tenant and relays until the client leaves.
func (ss *session) run() {
	ctx, cancel := context.WithTimeout(context.Background(), ss.srv.cfg.StartupTimeout)
	sc, err := ss.start(ctx)
	cancel()
	if err != nil {
		e := asError(err, true)
		ss.cc.conn.Write(e.encode(nil))
		ss.log.Info("session refused", zap.String("code", e.Code), zap.String("reason", e.Message))
		return
	}
	ss.cc.conn.SetDeadline(time.Time{})
	ss.cw = newBufferedWriter(ss.cc.conn)
	ss.setBackend(sc)
	ss.log.Info("session started")
	go ss.pump(sc)
	err = ss.relay()
	ss.finish()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		ss.log.Info("session ended", zap.Error(err))
	} else {
		ss.log.Info("session ended")
	}
}

// start runs the startup phase: user lookup, SCRAM, tenant identification,
// backend connection, and the messages that open the session.
func (ss *session) start(ctx context.Context) (*router.ServerConn, error) {
	name := ss.startup[paramUser]
	if name == "" {
		return nil, fatalf(codeInvalidAuthSpec, "no PostgreSQL user name specified in startup packet")
	}
	u, suffix, err := ss.findUser(ctx, name)
	if err != nil {
		return nil, asError(err, true)
	}
	if err := ss.authenticate(u, name); err != nil {
		return nil, err
	}
	ss.user = u
	p, err := ss.identify(ctx, suffix)
	if err != nil {
		return nil, err
	}
	ss.initial, ss.cur = p, p
	ss.log = ss.log.With(zap.String("user", u.Name), zap.String("tenant", p.Tenant.Slug))
	sc, err := ss.srv.router.Acquire(ctx, p, ss.params)
	if err != nil {
		return nil, asError(err, true)
	}
	var out []byte
	for k, v := range sc.Params {
		out = appendMsg(out, &pgproto3.ParameterStatus{Name: k, Value: v})
	}
	out = appendMsg(out, &pgproto3.BackendKeyData{ProcessID: ss.keyPID, SecretKey: ss.keySecret})
	out = readyForQuery(out, txIdle)
	if _, err := ss.cc.conn.Write(out); err != nil {
		ss.srv.router.Release(sc, true)
		return nil, err
	}
	return sc, nil
}

func (ss *session) backend() *router.ServerConn {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.mu.sc
}

func (ss *session) setBackend(sc *router.ServerConn) {
	ss.mu.Lock()
	ss.mu.sc = sc
	ss.mu.Unlock()
}

// relay reads client messages and forwards them raw to the backend, handling
// the few the proxy answers itself. It returns when the client leaves or the
// session must end.
func (ss *session) relay() error {
	rd := ss.cc.rd
	for {
		sc := ss.backend()
		if !rd.HasMessage() {
			if err := sc.Writer.Flush(); err != nil {
				return err
			}
			rd.Shrink()
		}
		typ, msg, err := rd.Next()
		if err != nil {
			if errors.Is(err, wire.ErrMessageTooLarge) {
				ss.writeClient(fatalf(codeProgramLimit, "message too large: %v", err).encode(nil))
			} else if errors.Is(err, wire.ErrBadLength) {
				ss.writeClient(fatalf(codeProtocolViolation, "invalid message: %v", err).encode(nil))
			}
			return err
		}
		if ss.skipUntilSync {
			if typ == 'S' {
				ss.skipUntilSync = false
				ss.answer(nil)
			}
			continue
		}
		switch typ {
		case 'X': // Terminate
			return nil
		case 'Q':
			if rewrite.MentionsTenantSetting(msg[5:]) {
				handled, err := ss.tenantCommand(msg)
				if err != nil {
					return err
				}
				if handled {
					continue
				}
			}
		case 'P':
			if rewrite.MentionsTenantSetting(msg[5:]) && ss.parseIsTenantCommand(msg) {
				// Errors in an extended-protocol batch discard messages until
				// Sync, as a backend does.
				ss.skipUntilSync = true
				ss.answerError(errorf(codeFeatureNotSupported,
					"SET and RESET of stratum.tenant must be sent with the simple query protocol"), false)
				continue
			}
			ss.prepared.noteParse(msg)
		case 'C':
			ss.prepared.noteClose(msg)
		case 'B', 'E', 'D', 'H', 'S', 'F', 'd', 'c', 'f':
		default:
			ss.writeClient(fatalf(codeProtocolViolation, "invalid frontend message type %d", typ).encode(nil))
			return errors.New("protocol violation")
		}
		if expectsReadyForQuery(typ) {
			ss.pending.Add(1)
		}
		if _, err := sc.Writer.Write(msg); err != nil {
			return err
		}
	}
}

// parseIsTenantCommand reports whether a Parse message holds a tenant command.
func (ss *session) parseIsTenantCommand(msg []byte) bool {
	var p pgproto3.Parse
	if err := p.Decode(msg[5:]); err != nil {
		return false
	}
	cmd, err := rewrite.ClassifyTenantCommand(p.Query)
	return err != nil || cmd.Kind == rewrite.SetTenant || cmd.Kind == rewrite.ResetTenant
}

// pump relays backend messages to the client, raw, flushing when the backend
// has nothing more buffered. It tracks ReadyForQuery to know when the session
// is idle. It ends when paused (a read deadline set by pausePump) or when either
// side fails; in the latter case it closes the client connection.
func (ss *session) pump(sc *router.ServerConn) {
	rd := sc.Reader
	for {
		typ, msg, err := rd.Next()
		if err != nil {
			if ss.pausing.Load() && errors.Is(err, os.ErrDeadlineExceeded) {
				ss.pumpDone <- nil
				return
			}
			if !ss.pausing.Load() {
				ss.writeClient(fatalf(codeConnectionFailure,
					"lost the connection to tenant %q's database", ss.cur.Tenant.Slug).encode(nil))
				ss.log.Warn("backend connection lost", zap.Error(err))
			}
			ss.cc.conn.Close()
			ss.pumpDone <- err
			return
		}
		ss.wmu.Lock()
		_, werr := ss.cw.Write(msg)
		if werr == nil && !rd.HasMessage() {
			werr = ss.cw.Flush()
		}
		ss.wmu.Unlock()
		if werr != nil {
			ss.cc.conn.Close()
			ss.pumpDone <- werr
			return
		}
		if typ == 'Z' && len(msg) == 6 {
			ss.txStatus.Store(uint32(msg[5]))
			if ss.pending.Add(-1) <= 0 {
				ss.pending.Store(0)
				select {
				case ss.idle <- struct{}{}:
				default:
				}
				if ss.stopRequested() && msg[5] == txIdle {
					ss.writeClient(fatalf(codeAdminShutdown, "stratum-proxy is shutting down").encode(nil))
					ss.cc.conn.Close()
				}
			}
		}
	}
}

// waitIdle waits until every request sent has its ReadyForQuery. It fails when
// the pump ends first.
func (ss *session) waitIdle() error {
	for ss.pending.Load() > 0 {
		select {
		case <-ss.idle:
		case err := <-ss.pumpDone:
			ss.pumpDone <- err // leave it for finish
			if err == nil {
				err = errors.New("backend relay stopped")
			}
			return err
		}
	}
	return nil
}

// pausePump stops the pump without losing data: the reader is resumable, so a
// read cut off by the deadline consumes nothing. It returns the pump's exit.
func (ss *session) pausePump(sc *router.ServerConn) error {
	ss.pausing.Store(true)
	sc.Conn.SetReadDeadline(time.Now())
	err := <-ss.pumpDone
	sc.Conn.SetReadDeadline(time.Time{})
	ss.pausing.Store(false)
	return err
}

// finish stops the pump and hands the backend back: to the pool when the
// session ended idle, closed otherwise (PostgreSQL then rolls back).
func (ss *session) finish() {
	sc := ss.backend()
	if sc == nil {
		return
	}
	if err := sc.Writer.Flush(); err != nil {
		ss.srv.router.Release(sc, false)
		<-ss.pumpDone
		return
	}
	err := ss.pausePump(sc)
	reusable := err == nil && safeToSwitchTenant(ss.pending.Load(), byte(ss.txStatus.Load()))
	ss.srv.router.Release(sc, reusable)
}

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
	return ss.writeClient(readyForQuery(msgs, byte(ss.txStatus.Load())))
}

// answerError sends an error; with ready, also the ReadyForQuery that ends a
// simple query. In an extended batch the Sync brings it later.
func (ss *session) answerError(e *Error, ready bool) error {
	if err := ss.waitIdle(); err != nil {
		return err
	}
	b := e.encode(nil)
	if ready {
		b = readyForQuery(b, byte(ss.txStatus.Load()))
	}
	return ss.writeClient(b)
}

func (ss *session) stopRequested() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.mu.stop
}

// requestStop asks the session to end at its next idle point (shutdown).
func (ss *session) requestStop() {
	ss.mu.Lock()
	ss.mu.stop = true
	ss.mu.Unlock()
	if safeToSwitchTenant(ss.pending.Load(), byte(ss.txStatus.Load())) {
		ss.kill(fatalf(codeAdminShutdown, "stratum-proxy is shutting down"))
	}
}

// kill ends the session now with e.
func (ss *session) kill(e *Error) {
	ss.writeClient(e.encode(nil))
	ss.cc.conn.Close()
}

// cancelBackend forwards a client's cancel request to the current backend.
func (ss *session) cancelBackend() {
	sc := ss.backend()
	if sc == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sc.Cancel(ctx); err != nil {
		ss.srv.log.Warn("forwarding cancel request failed", zap.Uint64("session", ss.id), zap.Error(err))
	}
}
