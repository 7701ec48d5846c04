package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xdg-go/scram"
	"go.uber.org/zap"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/rewrite"
	"github.com/stratum-hq/stratum-proxy/router"
)

// Pool modes.
const (
	// PoolSession: a client session holds one backend connection from start to end.
	PoolSession = "session"
	// PoolTransaction: a client session holds a backend connection only for
	// the length of a transaction.
	PoolTransaction = "transaction"
)

// Config shapes a Server. Zero fields get the defaults noted.
type Config struct {
	// PoolMode is session or transaction (default session); a tenant may
	// override it (router.Placement.PoolMode).
	PoolMode string
	// TLS, when set, is offered to clients that send SSLRequest.
	TLS *tls.Config
	// RequireTLS refuses clients that do not use TLS.
	RequireTLS bool
	// MaxMessageSize bounds one client message; default 64 MiB.
	MaxMessageSize int
	// StartupTimeout bounds the startup and authentication phase; default 15s.
	StartupTimeout time.Duration
	// ShutdownGrace is how long Shutdown lets sessions finish; default 10s.
	ShutdownGrace time.Duration
	// MaxClientConnections caps client connections, counted from accept (so
	// connections that never finish their startup count too); default 10000,
	// negative: no cap.
	MaxClientConnections int
	// MaxTenantConnections caps one tenant's client sessions; 0: no cap.
	MaxTenantConnections int
	// AuthFailureThreshold failed authentications of one user name from one
	// source address within AuthFailureWindow refuse that name from that
	// source for AuthLockout (doubling with each further failure); defaults
	// 10, 1m, 5s. Other users behind the same address are not refused.
	AuthFailureThreshold int
	AuthFailureWindow    time.Duration
	AuthLockout          time.Duration
	// AuthSourceFailureThreshold failed authentications from one source
	// address, whatever the user names, within AuthFailureWindow refuse the
	// whole source likewise: a cap against spraying many names; default 10
	// times AuthFailureThreshold.
	AuthSourceFailureThreshold int
	// MockAuthKey is the server secret the SCRAM salt and keys shown for an
	// unknown user are derived from (with the user name), so that they stay
	// the same at every attempt, as a known user's do. Replicas and restarts
	// should share it (server derives it from the keyring); default a random
	// key for this process.
	MockAuthKey []byte
	// DatabaseNames are the database names a client may connect with besides
	// the names mapped to a tenant its user may use; any other name is
	// refused with FATAL 3D000 after authentication (checkDatabase). Names
	// compare exactly, as PostgreSQL's do; a listed name is not looked up
	// as a mapping. Default: the router's shared database name ("app" when
	// it has none).
	DatabaseNames []string
	// AllowAnyDatabase accepts every database name: the name then only
	// matters for naming a tenant by a mapped name.
	AllowAnyDatabase bool
	// Metrics receives the proxy's series; default: unregistered ones.
	Metrics *Metrics
	// RankEvery is how often the most active tenants are re-ranked for the
	// per-tenant metric labels; default 1m.
	RankEvery time.Duration

	// knobs are the test seams; zero fields get the real thing.
	knobs knobs
}

// knobs are the proxy's dependencies on the clock and the network, which
// tests replace (STYLE #7). Deadlines on net.Conns are not among them: the
// runtime compares those with the wall clock, so they use time.Now.
type knobs struct {
	// now is the clock of the authentication lockout windows and of the
	// acquire timings; default time.Now.
	now func() time.Time
	// dialCancel opens the connection a client's cancel request is forwarded
	// to its backend on; default a net.Dialer's DialContext.
	dialCancel router.DialFunc
	// cancelTimeout bounds forwarding one cancel request; default 5s.
	cancelTimeout time.Duration
}

func (k *knobs) fillDefaults() {
	if k.now == nil {
		k.now = time.Now
	}
	if k.dialCancel == nil {
		var d net.Dialer
		k.dialCancel = d.DialContext
	}
	if k.cancelTimeout <= 0 {
		k.cancelTimeout = 5 * time.Second
	}
}

func (c *Config) fillDefaults() {
	if c.PoolMode == "" {
		c.PoolMode = PoolSession
	}
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = 64 << 20
	}
	if c.StartupTimeout <= 0 {
		c.StartupTimeout = 15 * time.Second
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 10 * time.Second
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	if c.MaxClientConnections == 0 {
		c.MaxClientConnections = 10000
	}
	if c.RankEvery <= 0 {
		c.RankEvery = time.Minute
	}
	if c.AuthFailureThreshold <= 0 {
		c.AuthFailureThreshold = 10
	}
	if c.AuthSourceFailureThreshold <= 0 {
		c.AuthSourceFailureThreshold = 10 * c.AuthFailureThreshold
	}
	if c.AuthFailureWindow <= 0 {
		c.AuthFailureWindow = time.Minute
	}
	if c.AuthLockout <= 0 {
		c.AuthLockout = 5 * time.Second
	}
	if len(c.MockAuthKey) == 0 {
		c.MockAuthKey = make([]byte, 32)
		rand.Read(c.MockAuthKey)
	}
	c.knobs.fillDefaults()
}

// Server accepts PostgreSQL clients and relays each session to its tenant's
// placement.
type Server struct {
	cfg      Config
	backends Backends
	log      *zap.Logger

	nextID atomic.Uint64
	// nextUnnamed numbers the clients' Parses of the unnamed statement
	// (sessionState.unnamed, router.ServerConn.Unnamed).
	nextUnnamed atomic.Uint64
	binding     scram.ChannelBinding // of the TLS certificate, for SCRAM-SHA-256-PLUS
	guard       *rewrite.Guard
	metrics     *Metrics
	limits      *limits

	mu struct {
		sync.Mutex
		listeners map[net.Listener]struct{}
		// sessions by the cancel key (process id and secret) handed to
		// the client. The pair is unique, the process id alone is not: in
		// session pooling it is the backend's, and backends on different
		// servers, or one handed to a later session, share it.
		sessions map[cancelKey]*session
		// starting are connections still in startup or authentication.
		starting map[net.Conn]struct{}
		closing  bool
	}
	wg sync.WaitGroup

	stopRank chan struct{} // closed by Shutdown: ends the metric ranking loop
	stopOnce sync.Once
}

// New returns a Server that routes through b (a *router.Router in
// production). The caller owns b and log and must keep them open until the
// Server is closed.
func New(cfg Config, b Backends, log *zap.Logger) *Server {
	cfg.fillDefaults()
	if len(cfg.DatabaseNames) == 0 {
		cfg.DatabaseNames = []string{defaultDatabaseName(b.Config())}
	}
	s := &Server{cfg: cfg, backends: b, log: log, binding: serverEndpointBinding(cfg.TLS),
		guard: rewrite.NewGuard(rewrite.GuardConfig{}), metrics: cfg.Metrics, limits: newLimits()}
	s.mu.listeners = map[net.Listener]struct{}{}
	s.mu.sessions = map[cancelKey]*session{}
	s.mu.starting = map[net.Conn]struct{}{}
	s.stopRank = make(chan struct{})
	go s.rankLoop()
	// A suspended or archived tenant's open sessions end at their next idle
	// point; the lookup reads the catalog, so not on the router's goroutine.
	b.OnChange(func(c catalog.Change) { go s.stopBlockedSessions(c) })
	return s
}

// Serve accepts connections on ln until Close or Shutdown. It returns nil after
// those and the accept error otherwise. The Server closes ln.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.mu.closing {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.mu.listeners[ln] = struct{}{}
	s.mu.Unlock()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.mu.closing
			s.mu.Unlock()
			if closing {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
		}()
	}
}

// Shutdown stops accepting, lets sessions finish their current transaction for
// up to ShutdownGrace, then ends the rest with a FATAL admin_shutdown error.
func (s *Server) Shutdown(ctx context.Context) {
	s.stopOnce.Do(func() { close(s.stopRank) })
	s.mu.Lock()
	s.mu.closing = true
	for ln := range s.mu.listeners {
		ln.Close()
	}
	for c := range s.mu.starting {
		c.Close() // not a session yet: nothing to finish
	}
	sessions := make([]*session, 0, len(s.mu.sessions))
	for _, ss := range s.mu.sessions {
		sessions = append(sessions, ss)
	}
	s.mu.Unlock()
	for _, ss := range sessions {
		ss.requestStop(fatalf(codeAdminShutdown, "stratum-proxy is shutting down"))
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	grace, cancel := context.WithTimeout(ctx, s.cfg.ShutdownGrace)
	defer cancel()
	select {
	case <-done:
		return
	case <-grace.Done():
	}
	s.mu.Lock()
	for _, ss := range s.mu.sessions {
		ss.kill(fatalf(codeAdminShutdown, "stratum-proxy is shutting down"))
	}
	s.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// trackStarting records a connection in its startup phase (so Shutdown can
// close it) or, with starting false, forgets it. It reports false when the
// server is closing and the connection should be dropped.
func (s *Server) trackStarting(c net.Conn, starting bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !starting {
		delete(s.mu.starting, c)
		return true
	}
	if s.mu.closing {
		return false
	}
	s.mu.starting[c] = struct{}{}
	return true
}

// Close is Shutdown without grace. It is idempotent.
func (s *Server) Close() {
	// An already cancelled context: Shutdown with no grace at all. Background
	// is its only sensible parent.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Shutdown(ctx)
}

// cancelKey is a cancel key as BackendKeyData hands it out and
// CancelRequest sends it back.
type cancelKey struct {
	pid    uint32
	secret [4]byte
}

// register gives ss a unique cancel key, a random process id of the proxy's
// own (proxyPID) and a random secret, and records it.
func (s *Server) register(ss *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closing {
		return false
	}
	s.keyLocked(ss, 0)
	return true
}

// proxyPID is a random process id for a session that has no backend of its
// own (transaction pooling, and every session until its backend is known):
// at least 2^22, Linux's largest possible process id (PID_MAX_LIMIT), so
// that it never names a real backend, which pg_terminate_backend of it could
// otherwise reach, and below 2^31, since clients read it as a signed Int32.
func proxyPID() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])&0x7fffffff | 1<<22
}

// rekey gives ss a cancel key with the process id pid (its backend's, in
// session pooling) and a fresh secret. The old key stops working.
func (s *Server) rekey(ss *session, pid uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.sessions[ss.key] == ss {
		delete(s.mu.sessions, ss.key)
	}
	s.keyLocked(ss, pid)
}

// keyLocked records ss under pid (0: a proxyPID) and a random secret, drawn
// again while the pair is taken. Holds s.mu.
func (s *Server) keyLocked(ss *session, pid uint32) {
	if pid == 0 {
		pid = proxyPID()
	}
	var b [4]byte
	for {
		rand.Read(b[:])
		k := cancelKey{pid: pid, secret: b}
		if _, taken := s.mu.sessions[k]; !taken {
			ss.key = k
			s.mu.sessions[k] = ss
			return
		}
	}
}

func (s *Server) unregister(ss *session) {
	s.mu.Lock()
	if s.mu.sessions[ss.key] == ss {
		delete(s.mu.sessions, ss.key)
	}
	s.mu.Unlock()
}

// PauseBarrier is called by a placement move's cut-over after it paused the
// tenant with this id in the catalog: it moves the router's generation on
// (every session reads its tenant again before its next transaction, and so
// sees the pause without waiting for the catalog's NOTIFY) and waits until
// no session of the tenant has a message this proxy let through under an
// older generation still unsent to its backend (relayer.admit). From then
// on every transaction of the tenant that this proxy started is visible on
// its backend, where the cut-over's drain waits for it, and no new one
// starts until the pause ends. It returns ctx's error when ctx ends first.
// Other proxies of the catalog hear of the pause by NOTIFY only.
func (s *Server) PauseBarrier(ctx context.Context, tenantID string) error {
	s.backends.Invalidate()
	gen := s.backends.Gen()
	for wait := 100 * time.Microsecond; ; wait = min(2*wait, 10*time.Millisecond) {
		if !s.admittedBefore(tenantID, gen) {
			return nil
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// admittedBefore reports whether a session of the tenant (or one whose
// tenant is not known yet) has a message admitted under a generation older
// than gen and not yet flushed.
func (s *Server) admittedBefore(tenantID string, gen uint64) bool {
	var older []*session
	s.mu.Lock()
	for _, ss := range s.mu.sessions {
		if a := ss.admitted.Load(); a != 0 && a-1 < gen {
			older = append(older, ss)
		}
	}
	s.mu.Unlock()
	for _, ss := range older {
		ss.mu.Lock()
		tn := ss.mu.tenant
		ss.mu.Unlock()
		if tn == nil || tn.ID == tenantID {
			return true
		}
	}
	return false
}

// cancel handles a CancelRequest: when the key matches a session, the session's
// current backend query is cancelled. A wrong key is ignored silently, as
// PostgreSQL does, so keys cannot be probed. A key reaches only the session it
// was handed to, which forwards the cancel to the backend it holds, always
// one of its own tenant's: never another session's query.
func (s *Server) cancel(k cancelKey) {
	s.mu.Lock()
	ss := s.mu.sessions[k]
	s.mu.Unlock()
	if ss == nil {
		return
	}
	ss.cancelBackend()
}

// rankLoop re-ranks the tenants for the per-tenant metric labels until Shutdown.
func (s *Server) rankLoop() {
	t := time.NewTicker(s.cfg.RankEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stopRank:
			return
		case <-t.C:
			s.metrics.rerank()
		}
	}
}
