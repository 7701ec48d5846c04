package proxy

import (
	"bufio"
	"context"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/policy"
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
	log     *zap.Logger // userLog with the current tenant
	userLog *zap.Logger // client, session id and user: the fields that never change
	id      uint64
	startup map[string]string
	params  map[string]string // forwarded to the backend
	// startupNotice is sent with the startup's answer (the NOTICE of a
	// renamed tenant's old slug), or nil.
	startupNotice []byte

	user    *catalog.User
	initial *router.Placement // the tenant named at startup; RESET goes back to it
	cur     *router.Placement // the tenant now
	// pol is the current tenant's policy, refreshed at transaction
	// boundaries when the router's generation moves past polGen (relay
	// goroutine only; cur is replaced only while no pump runs).
	pol    *policy.Policy
	polGen uint64
	// admitted is polGen+1 of the first message that may start a
	// transaction (startsTransaction) since the relay's last flush to the
	// backend, from before the relay compared polGen with the router's
	// generation until that flush; 0 when there is none. PauseBarrier waits
	// for the ones admitted under an older generation (relay.go, admit).
	admitted atomic.Uint64

	// key is the cancel key the client was given in BackendKeyData (set by
	// register, and by rekey before the client is told, never after), so
	// key.pid is the process id the client knows the session by.
	key cancelKey
	// pidConn is, in session pooling, the backend whose process id the
	// client was given, while the session holds it: it is closed rather than
	// pooled when the session moves off it (tenant switch), so that no other
	// session is handed the same process id while this one lives. Relay only.
	pidConn *router.ServerConn

	// ctx lives as long as the session: newSession makes it, and kill and
	// the end of run cancel it. The session's blocking calls (catalog
	// lookups, acquiring a backend, forwarding a cancel) derive from it.
	ctx    context.Context
	cancel context.CancelFunc

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
		watch    watch           // the protocol-level timeouts (timeouts.go)
		// readies counts the ReadyForQuery messages the backends sent
		// (the client's and the proxy's own); failedReady is the number
		// of the one that ended the last request with an ErrorResponse.
		// Together they tell whether a Parse of a named statement, whose
		// request ends with ReadyForQuery number stmt.ready, ran
		// (tentative, confirmReadyLocked).
		readies     uint64
		failedReady uint64
		tentative   []*stmt // named statements whose Parse's request is unanswered (transaction pooling)
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
	injected    injectedReplies // ParseComplete and CloseComplete of injected Parse and Close
	dropUntilRF atomic.Int32    // everything up to and including ReadyForQuery of injected Queries
	dropReady   atomic.Int32    // ReadyForQuery of an injected Sync (syncOpenBatch)
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
	// Background: no server-wide context outlives a session; Shutdown ends
	// sessions through requestStop and kill, which cancel this one.
	ss.ctx, ss.cancel = context.WithCancel(context.Background())
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

// setTenant makes p the session's tenant and its policy the session's. Only
// the relay calls it, while no pump runs (or before the first).
func (ss *session) setTenant(p *router.Placement) {
	ss.cur, ss.pol, ss.polGen = p, &p.Policy, p.Gen()
	ss.mu.Lock()
	ss.mu.tenant = p.Tenant
	ss.setTimeoutsLocked(ss.pol)
	ss.mu.Unlock()
}

func (ss *session) attached() *attachment {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.mu.att
}

// idleLocked reports whether the session is at an idle point (atIdlePoint).
// Holds ss.mu.
func (ss *session) idleLocked() bool {
	return atIdlePoint(ss.mu.pending, ss.mu.txStatus, ss.mu.unsynced)
}

// signalIdle wakes a waitIdle, if one waits.
func (ss *session) signalIdle() {
	select {
	case ss.idle <- struct{}{}:
	default:
	}
}

func (ss *session) pin(reason string) {
	ss.mu.Lock()
	if ss.mu.pinned == "" {
		ss.mu.pinned = reason
		ss.log.Debug("session pinned to its backend", zap.String("reason", reason))
	}
	ss.mu.Unlock()
}

// pinned reports whether the session keeps its backend (transaction pooling).
func (ss *session) pinned() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.mu.pinned != ""
}

func (ss *session) txStatus() byte {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.mu.txStatus
}
