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
	"github.com/stratum-hq/stratum-proxy/router"
)

// session is one client connection after startup. Two goroutines work on it:
// run (relay) reads client messages and writes them to the backend; a pump
// reads backend messages and writes them to the client. Writes to the client
// go through cw under wmu, since both may write.
//
// The session holds a backend connection (an attachment) while it needs one:
// for the whole session in session pooling, from a transaction's first message
// to its ReadyForQuery(idle) in transaction pooling. Lock order: mu before wmu.
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
	// pol is the current tenant's policy, refreshed at transaction
	// boundaries when the router's generation moves past polGen (relay
	// goroutine only; cur is replaced only while no pump runs).
	pol    *router.Policy
	polGen uint64

	keyPID    uint32
	keySecret []byte

	wmu   sync.Mutex
	cw    *bufio.Writer // client write buffer, held while a pump runs (pumps > 0)
	pumps int

	mu struct {
		sync.Mutex
		att      *attachment     // nil when no backend is held
		pending  int32           // requests sent that await a ReadyForQuery
		unsynced bool            // extended-protocol messages sent since the last Sync
		txStatus byte            // status byte of the last ReadyForQuery
		pinned   string          // why the session keeps its backend (transaction pooling), or ""
		stop     *Error          // end at the next idle point with this error (shutdown, tenant suspended)
		tenant   *catalog.Tenant // the current tenant, for other goroutines (ss.cur is the relay's)
		copyIn   bool            // the backend waits for COPY data from the client (CopyInResponse, no ReadyForQuery since)
	}
	idle chan struct{} // the pump signals when pending drops to zero

	skipUntilSync bool // after an error in an extended-protocol batch
	state         sessionState

	counters      tenantCounters // the current tenant's series
	tenantCounted string         // the tenant this session counts against (limits)
	bytesIn       int            // client bytes relayed since the last flush (relay only)
	bytesOut      int            // backend bytes relayed since the last ReadyForQuery (pump only)
}

// attachment is the session's hold on one backend connection and its pump.
type attachment struct {
	sc   *router.ServerConn
	done chan error // the pump's exit: nil when paused or released, else why it ended
	// Replies to messages the proxy injected, which the client must not see.
	dropParse   atomic.Int32 // ParseComplete of injected Parse
	dropClose   atomic.Int32 // CloseComplete of injected Close
	dropUntilRF atomic.Int32 // everything up to and including ReadyForQuery of injected Queries
	dropReady   atomic.Int32 // ReadyForQuery of an injected Sync (syncOpenBatch)
	pausing     atomic.Bool
	// wmu is held by the relay while it writes to or flushes sc.Writer. Its
	// last flush can bring the reply, and the pump's release, before the
	// flush call returns; the pump takes wmu before handing sc back so that
	// no write of ours is still under way on a connection another session owns.
	wmu sync.Mutex
}

// write buffers b for the backend.
func (a *attachment) write(b []byte) error {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	_, err := a.sc.Writer.Write(b)
	return err
}

// flush sends what is buffered.
func (a *attachment) flush() error {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	return a.sc.Writer.Flush()
}

func newSession(s *Server, cc *clientConn, startup map[string]string, log *zap.Logger) *session {
	ss := &session{srv: s, cc: cc, startup: startup, id: s.nextID.Add(1), idle: make(chan struct{}, 1)}
	ss.log = log.With(zap.Uint64("session", ss.id))
	ss.mu.txStatus = txIdle
	return ss
}

// transactionPooling reports whether the current tenant's sessions give their
// backend back after each transaction.
func (ss *session) transactionPooling() bool {
	mode := ss.cur.PoolMode
	if mode == "" {
		mode = ss.srv.cfg.PoolMode
	}
	return mode == PoolTransaction
}

// run authenticates, connects to the tenant and relays until the client leaves.
func (ss *session) run() {
	defer func() {
		if ss.tenantCounted != "" {
			ss.srv.limits.releaseTenant(ss.tenantCounted)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), ss.srv.cfg.StartupTimeout)
	sc, err := ss.start(ctx)
	cancel()
	if err != nil {
		e := asError(err, true)
		ss.cc.conn.Write(e.encode(nil))
		ss.srv.metrics.countError("refused_" + e.Code)
		ss.log.Info("session refused", zap.String("code", e.Code), zap.String("reason", e.Message), zap.String("detail", e.Detail))
		return
	}
	ss.cc.conn.SetDeadline(time.Time{})
	switch {
	case sc == nil: // transaction pooling with known parameters: no backend yet
	case ss.transactionPooling():
		ss.srv.backends.Release(sc, router.Keep)
	default:
		ss.attachLocked(sc)
	}
	ss.log.Info("session started")
	err = ss.relay()
	ss.finish()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		ss.log.Info("session ended", zap.Error(err))
	} else {
		ss.log.Info("session ended")
	}
}

// start runs the startup phase: user lookup, SCRAM, tenant identification,
// a backend connection (for its parameters), and the messages that open the session.
func (ss *session) start(ctx context.Context) (*router.ServerConn, error) {
	name := ss.startup[paramUser]
	if name == "" {
		return nil, fatalf(codeInvalidAuthSpec, "no PostgreSQL user name specified in startup packet")
	}
	ip := sourceIP(ss.cc.conn.RemoteAddr())
	lim := ss.srv.limits
	if wait := lim.throttled(ip, ss.srv.cfg.knobs.now()); wait > 0 {
		ss.srv.metrics.countError("auth_throttled")
		return nil, fatalf(codeInvalidAuthSpec, "too many failed authentications from %s: try again in %s", ip, wait.Round(time.Second))
	}
	u, suffix, err := ss.findUser(ctx, name)
	if err != nil {
		return nil, catalogError(err, true)
	}
	if err := ss.authenticate(u, name); err != nil {
		var e *Error
		if errors.As(err, &e) && e.Code == codeInvalidPassword {
			cfg := ss.srv.cfg
			lim.authFailed(ip, cfg.AuthFailureThreshold, cfg.AuthFailureWindow, cfg.AuthLockout, cfg.knobs.now())
			ss.srv.metrics.countError("auth_failed")
		}
		return nil, err
	}
	lim.authSucceeded(ip)
	ss.user = u
	p, err := ss.identify(ctx, suffix)
	if err != nil {
		return nil, err
	}
	if !lim.admitTenant(p.Tenant.ID, ss.srv.cfg.MaxTenantConnections) {
		ss.srv.metrics.countError("too_many_tenant_clients")
		return nil, fatalf(codeTooManyConnections, "too many connections for tenant %q (stratum-proxy allows %d per tenant)",
			p.Tenant.Slug, ss.srv.cfg.MaxTenantConnections)
	}
	ss.tenantCounted = p.Tenant.ID
	ss.initial = p
	ss.setTenant(p)
	ss.counters = ss.srv.metrics.forTenant(p.Tenant.Slug)
	ss.log = ss.log.With(zap.String("user", u.Name), zap.String("tenant", p.Tenant.Slug))
	// Authenticated: from here the client waits in the pool's queue, bounded
	// by the queue timeout rather than the startup timeout.
	ss.cc.conn.SetDeadline(time.Time{})
	var sc *router.ServerConn
	status := map[string]string(nil)
	if ss.transactionPooling() {
		// A backend is needed only to learn its parameters; a known set spares it.
		status = ss.srv.backends.KnownStatus(p, ss.params)
	}
	if status == nil {
		cfg := ss.srv.backends.Config()
		actx, cancel := context.WithTimeout(context.Background(), cfg.QueueTimeout+cfg.DialTimeout)
		defer cancel()
		if sc, err = ss.timedAcquire(actx, p); err != nil {
			return nil, ss.acquireError(err, true)
		}
		status = sc.Params
	}
	var out []byte
	for k, v := range status {
		out = appendMsg(out, &pgproto3.ParameterStatus{Name: k, Value: v})
	}
	out = appendMsg(out, &pgproto3.BackendKeyData{ProcessID: ss.keyPID, SecretKey: ss.keySecret})
	out = readyForQuery(out, txIdle)
	if _, err := ss.cc.conn.Write(out); err != nil {
		if sc != nil {
			ss.srv.backends.Release(sc, router.Reset)
		}
		return nil, err
	}
	return sc, nil
}

// timedAcquire acquires a backend for p and records how long it took.
func (ss *session) timedAcquire(ctx context.Context, p *router.Placement) (*router.ServerConn, error) {
	now := ss.srv.cfg.knobs.now
	start := now()
	sc, err := ss.srv.backends.Acquire(ctx, p, ss.params)
	d := now().Sub(start)
	ss.srv.metrics.acquireSeconds.Observe(d.Seconds())
	if d > 10*time.Millisecond {
		ss.srv.metrics.poolWaits.Inc()
	}
	if err != nil {
		ss.srv.metrics.countError("acquire")
	}
	return sc, err
}

// acquireError says why no backend connection could be had.
func (ss *session) acquireError(err error, fatal bool) *Error {
	if errors.Is(err, router.ErrQueueTimeout) {
		e := errorf(codeTooManyConnections, "too many connections for tenant %q: no backend connection became free in time", ss.cur.Tenant.Slug)
		e.Detail = err.Error()
		e.Hint = "raise the tenant's connection limit or shorten its transactions"
		e.Fatal = fatal
		return e
	}
	return asError(err, fatal)
}

// attachLocked makes sc the session's backend and starts its pump. The caller
// holds no lock; the name says the session's state is being set up.
func (ss *session) attachLocked(sc *router.ServerConn) *attachment {
	att := &attachment{sc: sc, done: make(chan error, 1)}
	ss.mu.Lock()
	ss.mu.att = att
	ss.mu.Unlock()
	go ss.pump(att)
	return att
}

// attach returns the session's backend for a client message of type typ,
// acquiring one (and bringing it up to the session's state) when none is held,
// and records what the message means for the release rule.
func (ss *session) attach(typ byte) (*attachment, error) {
	ss.mu.Lock()
	att := ss.mu.att
	fresh := att == nil
	if fresh {
		ss.mu.Unlock()
		var err error
		if att, err = ss.acquire(); err != nil {
			return nil, err
		}
		ss.mu.Lock()
	} else {
		ss.injectPolicyLocked(att)
	}
	if expectsReadyForQuery(typ) {
		ss.mu.pending++
	}
	switch typ {
	case wire.Sync:
		ss.mu.unsynced = false
	case wire.Parse, wire.Bind, wire.Execute, wire.Describe, wire.CloseMessage, wire.Flush:
		ss.mu.unsynced = true
	}
	ss.mu.Unlock()
	if fresh {
		go ss.pump(att)
	}
	return att, nil
}

// acquire gets a backend of the current tenant, brings it up to the session's
// state and attaches it. The caller starts its pump once the request that
// needed it is counted, so the pump cannot see the session idle in between.
func (ss *session) acquire() (*attachment, error) {
	cfg := ss.srv.backends.Config()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.QueueTimeout+cfg.DialTimeout)
	sc, err := ss.timedAcquire(ctx, ss.cur)
	cancel()
	if err != nil {
		return nil, ss.acquireError(err, false)
	}
	if err := ss.state.prepareBackend(ss, sc); err != nil {
		ss.srv.backends.Release(sc, router.Close)
		return nil, asError(err, false)
	}
	att := &attachment{sc: sc, done: make(chan error, 1)}
	ss.mu.Lock()
	ss.mu.att = att
	if n := ss.state.injectSettings(sc, ss.pol); n > 0 {
		att.dropUntilRF.Add(int32(n))
		ss.mu.pending += int32(n)
	}
	ss.mu.Unlock()
	return att, nil
}

// setTenant makes p the session's tenant and its policy the session's. Only
// the relay calls it, while no pump runs (or before the first).
func (ss *session) setTenant(p *router.Placement) {
	ss.cur, ss.pol, ss.polGen = p, &p.Policy, p.Gen()
	ss.mu.Lock()
	ss.mu.tenant = p.Tenant
	ss.mu.Unlock()
}

func (ss *session) attached() *attachment {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.mu.att
}

func (ss *session) pin(reason string) {
	ss.mu.Lock()
	if ss.mu.pinned == "" {
		ss.mu.pinned = reason
		ss.log.Debug("session pinned to its backend", zap.String("reason", reason))
	}
	ss.mu.Unlock()
}

// pump relays backend messages to the client, raw, flushing when the backend
// has nothing more buffered. It tracks ReadyForQuery to know when the session
// is idle, and in transaction pooling hands the backend back right there
// (releasableLocked). It ends when paused (a read deadline set by pausePump),
// on release, or when either side fails; then it closes the client connection.
func (ss *session) pump(att *attachment) {
	ss.wmu.Lock()
	ss.pumps++
	if ss.cw == nil {
		ss.cw = writers.Get().(*bufio.Writer)
		ss.cw.Reset(ss.cc.conn)
	}
	ss.wmu.Unlock()
	defer ss.dropWriter()
	sc := att.sc
	rd := sc.Reader
	for {
		typ, msg, err := rd.Next()
		if err != nil {
			if att.pausing.Load() && errors.Is(err, os.ErrDeadlineExceeded) {
				att.done <- nil
				return
			}
			if !att.pausing.Load() {
				ss.srv.metrics.countError("backend_lost")
				ss.writeClient(fatalf(codeConnectionFailure,
					"lost the connection to tenant %q's database", ss.cur.Tenant.Slug).encode(nil))
				ss.log.Warn("backend connection lost", zap.Error(err))
			}
			ss.cc.conn.Close()
			att.done <- err
			return
		}
		if att.dropUntilRF.Load() > 0 {
			if typ == wire.ErrorResponse {
				ss.log.Warn("replaying session settings failed", zap.ByteString("error", msg[5:]))
			}
			if typ == wire.ReadyForQuery {
				att.dropUntilRF.Add(-1)
				ss.mu.Lock()
				ss.mu.pending--
				idle := ss.mu.pending == 0
				ss.mu.Unlock()
				if idle { // switchTenant waits for the injected queries alone
					select {
					case ss.idle <- struct{}{}:
					default:
					}
				}
			}
			continue
		}
		switch {
		case typ == wire.ParseComplete && att.dropParse.Load() > 0:
			att.dropParse.Add(-1)
			continue
		case typ == wire.CloseComplete && att.dropClose.Load() > 0:
			att.dropClose.Add(-1)
			continue
		}
		if typ == wire.ReadyForQuery && att.dropReady.Load() > 0 {
			att.dropReady.Add(-1)
			ss.mu.Lock()
			ss.mu.pending--
			idle := ss.mu.pending == 0
			ss.mu.Unlock()
			if idle {
				select {
				case ss.idle <- struct{}{}:
				default:
				}
			}
			continue
		}
		if typ == wire.CopyInResponse || typ == wire.CopyBothResponse {
			ss.mu.Lock()
			ss.mu.copyIn = true
			ss.mu.Unlock()
			select { // a waitIdle must not wait for what needs the client
			case ss.idle <- struct{}{}:
			default:
			}
		}
		release := false
		ss.bytesOut += len(msg)
		if typ == wire.ReadyForQuery && len(msg) == 6 {
			if msg[5] == txIdle {
				ss.counters.transactions.Inc()
			}
			ss.srv.metrics.bytesOut.Add(float64(ss.bytesOut))
			ss.bytesOut = 0
			att.dropParse.Store(0)
			att.dropClose.Store(0)
			ss.mu.Lock()
			if ss.mu.pending <= 0 {
				// A ReadyForQuery nobody asked for: proxy and backend disagree
				// about the protocol state. The connection must never be pooled.
				ss.mu.Unlock()
				ss.log.Error("unexpected ReadyForQuery from backend; ending the session")
				ss.writeClient(fatalf(codeProtocolViolation, "stratum-proxy lost track of the protocol state").encode(nil))
				ss.cc.conn.Close()
				att.done <- errors.New("unexpected ReadyForQuery")
				return
			}
			ss.mu.txStatus = msg[5]
			ss.mu.copyIn = false
			ss.mu.pending--
			idle := ss.mu.pending == 0
			if idle && ss.releasableLocked() && !att.pausing.Load() {
				release = true
				ss.mu.att = nil
			}
			ss.mu.Unlock()
			if idle {
				select {
				case ss.idle <- struct{}{}:
				default:
				}
			}
		}
		ss.wmu.Lock()
		_, werr := ss.cw.Write(msg)
		if werr == nil && (release || !rd.HasMessage()) {
			werr = ss.cw.Flush()
		}
		ss.wmu.Unlock()
		if release {
			att.wmu.Lock() // see attachment.wmu
			att.wmu.Unlock()
			ss.srv.backends.Release(sc, router.Keep)
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

// releasableLocked is the transaction-pooling rule for handing the backend
// back: the session is in transaction pooling and not pinned, every request
// has its ReadyForQuery (and no extended-protocol batch is open), and that
// ReadyForQuery said idle. Holds ss.mu.
func (ss *session) releasableLocked() bool {
	return ss.transactionPooling() && ss.mu.pinned == "" && !ss.mu.unsynced &&
		safeToSwitchTenant(ss.mu.pending, ss.mu.txStatus)
}

// stopIfAsked ends the session at an idle point when shutdown (or a tenant's
// suspension) asked for it.
func (ss *session) stopIfAsked() {
	ss.mu.Lock()
	stop := ss.mu.stop
	if !safeToSwitchTenant(ss.mu.pending, ss.mu.txStatus) || ss.mu.unsynced {
		stop = nil
	}
	ss.mu.Unlock()
	if stop != nil {
		ss.kill(stop)
	}
}

// errCopyIn: waitIdle cannot wait, the backend waits for the client's COPY data.
var errCopyIn = errors.New("the backend waits for COPY data from the client")

// waitIdle waits until every request sent has its ReadyForQuery. It fails when
// the pump ends first, and with errCopyIn when the backend needs the client's
// COPY data first (the client sent another request in the middle of COPY
// FROM STDIN, which the relay would never read while waiting).
func (ss *session) waitIdle() error {
	for {
		ss.mu.Lock()
		pending, att, copyIn := ss.mu.pending, ss.mu.att, ss.mu.copyIn
		ss.mu.Unlock()
		if pending <= 0 {
			return nil
		}
		if copyIn {
			return errCopyIn
		}
		if att == nil {
			return errors.New("no backend while requests are pending")
		}
		select {
		case <-ss.idle:
		case err := <-att.done:
			att.done <- err // leave it for finish
			if err == nil {
				continue // released: pending is zero now
			}
			return err
		}
	}
}

// detach stops the pump without losing data (the reader is resumable, so a
// read cut off by the deadline consumes nothing) and takes the backend from
// the session. It returns the backend, or nil and the pump's error when the
// backend failed, or nil, nil when none was held.
func (ss *session) detach() (*router.ServerConn, error) {
	// Marking the pause under the lock orders it with the pump's release
	// decision (also under the lock): either the pump released the backend
	// first and att is gone, or it sees pausing and keeps it. A released
	// backend may already serve another session, so it must not be touched.
	ss.mu.Lock()
	att := ss.mu.att
	if att != nil {
		att.pausing.Store(true)
	}
	ss.mu.Unlock()
	if att == nil {
		return nil, nil
	}
	att.sc.Conn.SetReadDeadline(time.Now())
	err := <-att.done
	att.sc.Conn.SetReadDeadline(time.Time{})
	ss.mu.Lock()
	ss.mu.att = nil
	ss.mu.Unlock()
	if err != nil {
		ss.srv.backends.Release(att.sc, router.Close)
		return nil, err
	}
	return att.sc, nil
}

// finish hands the backend back when the client has gone: reset and pooled
// when the session ended idle, closed otherwise (PostgreSQL then rolls back).
func (ss *session) finish() {
	att := ss.attached()
	if att == nil {
		return
	}
	flushErr := att.flush()
	sc, err := ss.detach()
	if sc == nil || err != nil {
		return
	}
	ss.mu.Lock()
	clean := flushErr == nil && safeToSwitchTenant(ss.mu.pending, ss.mu.txStatus) && !ss.mu.unsynced
	ss.mu.Unlock()
	if clean {
		ss.srv.backends.Release(sc, router.Reset)
	} else {
		ss.srv.backends.Release(sc, router.Close)
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

func (ss *session) txStatus() byte {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.mu.txStatus
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

// requestStop asks the session to end with e at its next idle point (now,
// when it is idle): a transaction under way may finish first.
func (ss *session) requestStop(e *Error) {
	ss.mu.Lock()
	if ss.mu.stop == nil {
		ss.mu.stop = e
	}
	e = ss.mu.stop
	// An extended-protocol batch without its Sync yet is a transaction too.
	idle := safeToSwitchTenant(ss.mu.pending, ss.mu.txStatus) && !ss.mu.unsynced
	ss.mu.Unlock()
	if idle {
		ss.kill(e)
	}
}

// kill ends the session now with e.
func (ss *session) kill(e *Error) {
	ss.writeClient(e.encode(nil))
	ss.cc.conn.Close()
}

// cancelBackend forwards a client's cancel request to the backend the session
// holds, if any. The session lock is held while the cancel is sent so that the
// backend cannot pass to another session in between.
func (ss *session) cancelBackend() {
	ctx, cancel := context.WithTimeout(context.Background(), ss.srv.cfg.knobs.cancelTimeout)
	defer cancel()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.mu.att == nil {
		return
	}
	if err := ss.mu.att.sc.CancelVia(ctx, ss.srv.cfg.knobs.dialCancel); err != nil {
		ss.srv.log.Warn("forwarding cancel request failed", zap.Uint64("session", ss.id), zap.Error(err))
	}
}
