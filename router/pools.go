package router

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/stratum-hq/stratum-proxy/policy"
)

// ErrClosed is returned by Acquire after Close.
var ErrClosed = errors.New("router closed")

// ErrQueueTimeout is returned by Acquire when no backend connection became
// free within Config.QueueTimeout.
var ErrQueueTimeout = errors.New("timed out waiting for a backend connection")

// ReleaseMode says what becomes of a backend connection handed back.
type ReleaseMode int

const (
	// Close the connection: it is broken, or mid-transaction, or unwanted.
	Close ReleaseMode = iota
	// Reset it with DISCARD ALL, then keep it idle (session pooling: the next
	// session must start clean).
	Reset
	// Keep it idle as it is (transaction pooling: the proxy tracks the
	// session state it must not leave behind).
	Keep
)

// pools holds every backend connection the router manages, idle or in use,
// and the queues of sessions waiting for one. One mutex guards it all: the
// work under it is a few map and slice operations.
//
// Limits: each tenant may have at most its limit of connections open (idle or
// in use, across its parameter sets) and each backend server at most its cap.
// A session that finds its tenant at the limit waits in the tenant's queue and
// is handed the next connection its tenant releases. A session whose tenant is
// under the limit but whose backend is at its cap waits in the backend's queue,
// which serves tenants round-robin, so one busy tenant cannot starve the others.
//
// Fair share of a backend at its cap: a tenant's idle connections are closed
// for another tenant that needs capacity (evictIdleLocked); a connection a
// tenant releases while another tenant has waited longer than fairnessBound
// is closed and its slot goes to a tenant waiting ahead of the releasing one
// (yieldTurnLocked). A waiting tenant so gets a connection at the latest when
// fairnessBound has passed and any holder then releases one: the end of a
// transaction in transaction pooling, of a session in session pooling (which
// proxy.max_connections and the proxy's timeouts bound).
type pools struct {
	cfg *Config
	// now is the clock of connection ages, idle times and queue fairness
	// (knobs.now; time.Now in production).
	now func() time.Time

	mu struct {
		sync.Mutex
		tenants  map[string]*tenantPool
		backends map[string]*backendPool
		closed   bool
	}
}

type tenantPool struct {
	id      string
	backend string
	limit   int
	open    int                      // connections open, idle or in use
	idle    map[string][]*ServerConn // by pool key (access level, placement and parameters), newest last
	spares  map[string]int           // spare connections being dialed, by pool key (addSpare)
	// access and where are the access level and the placement
	// (Placement.Where) the tenant's newest placement seen asks for, read in
	// router generation gen; idle connections of another level or placement
	// are stale and closed when they change. backend is that placement's
	// server: where the tenant's new connections are counted and queued.
	access  policy.Access
	where   string
	slug    string // the tenant's slug, which its connections were told (stratum.tenant)
	gen     uint64
	waiters []*waiter // waiting because open == limit
	// status is the ParameterStatus set the last new connection reported, by
	// parameter key: what a client is told at startup without a backend.
	status map[string]map[string]string
}

type backendPool struct {
	open int
	cap  int
	// ring of tenants with sessions waiting for backend capacity, served in turn.
	ring    []string
	waiting map[string][]*waiter
}

// waiter is a session queued for a connection. It is given either a
// connection (same tenant and parameters) or a permit to dial a new one, whose
// slot has already been counted.
type waiter struct {
	tenant string
	// backend is the server whose queue it waits in, if any (a tenant
	// that moves to another server changes tenantPool.backend meanwhile).
	backend string
	key     string
	since   time.Time
	ready   chan grant
}

// fairnessBound: a released connection goes straight to a waiting session of
// its own tenant (cheap: no close, no new connection) unless a session of
// another tenant has waited longer than this for the backend's capacity;
// then the connection is closed and that tenant gets the slot.
const fairnessBound = 50 * time.Millisecond

type grant struct {
	sc     *ServerConn // a connection to use, or
	permit bool        // a counted slot to dial into
}

func newPools(cfg *Config, now func() time.Time) *pools {
	p := &pools{cfg: cfg, now: now}
	p.mu.tenants = map[string]*tenantPool{}
	p.mu.backends = map[string]*backendPool{}
	return p
}

// keyOf is the pool key of p's connections with these startup parameters.
func keyOf(p *Placement, params map[string]string) string {
	return poolKey(p.Policy.Access, p.Where(), p.Tenant.Slug, params)
}

// poolKey is the map key of connections logged in as the role of access
// level a to the placement where (Placement.Where), told the tenant's slug
// (stratum.tenant; a rename changes it), with these startup parameters:
// connections of another level, placement, slug or parameters are never
// handed out for it.
func poolKey(a policy.Access, where, slug string, params map[string]string) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(a.String())
	b.WriteByte(0)
	b.WriteString(where)
	b.WriteByte(0)
	b.WriteString(slug)
	b.WriteByte(0)
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(params[k])
		b.WriteByte(0)
	}
	return b.String()
}

func (p *pools) tenantLocked(pl *Placement) *tenantPool {
	tp := p.mu.tenants[pl.Tenant.ID]
	if tp == nil {
		tp = &tenantPool{id: pl.Tenant.ID, backend: pl.Tenant.Backend, idle: map[string][]*ServerConn{},
			status: map[string]map[string]string{}, access: pl.Policy.Access, where: pl.Where(), slug: pl.Tenant.Slug, gen: pl.gen}
		p.mu.tenants[pl.Tenant.ID] = tp
	}
	tp.limit = p.cfg.MaxConnsPerTenant
	if pl.MaxConns > 0 {
		tp.limit = pl.MaxConns
	}
	return tp
}

func (p *pools) backendLocked(name string) *backendPool {
	bp := p.mu.backends[name]
	if bp == nil {
		bp = &backendPool{cap: p.cfg.Backends[name].MaxConnections, waiting: map[string][]*waiter{}}
		p.mu.backends[name] = bp
	}
	return bp
}

// Acquire returns a backend connection for the placement, opened with the
// client's startup parameters: an idle one, a new one, or, at a limit, the next
// one freed, waiting at most Config.QueueTimeout. The caller hands it back with
// Release.
func (r *Router) Acquire(ctx context.Context, p *Placement, params map[string]string) (*ServerConn, error) {
	key := keyOf(p, params)
	for {
		sc, permit, w, err := r.pools.take(p, key)
		if err != nil {
			return nil, err
		}
		if w != nil {
			g, err := r.pools.wait(ctx, w, r.cfg.QueueTimeout)
			if err != nil {
				return nil, fmt.Errorf("tenant %q: %w after %s (%d connections in use, limit %d per tenant)",
					p.Tenant.Slug, err, r.cfg.QueueTimeout, r.pools.openFor(p.Tenant.ID), r.pools.limitFor(p))
			}
			sc, permit = g.sc, g.permit
		}
		if sc != nil {
			if !sc.inUse.CompareAndSwap(false, true) {
				panic("router: an idle connection is in use")
			}
			if sc.alive(r.cfg.HealthCheckAfter) {
				sc.key = key
				r.addSpare(p, params, key)
				return sc, nil
			}
			r.Release(sc, Close) // broken while idle: drop it and try again
			continue
		}
		if permit {
			sc, err := r.dialCounted(ctx, p, params, key)
			if err != nil {
				return nil, err
			}
			r.addSpare(p, params, key)
			return sc, nil
		}
	}
}

// dialCounted dials a connection into a slot already counted for the
// tenant, and uncounts the slot when the dial fails. The connection is
// returned in use.
func (r *Router) dialCounted(ctx context.Context, p *Placement, params map[string]string, key string) (*ServerConn, error) {
	sc, err := r.dial(ctx, p, params)
	if err != nil {
		r.pools.forget(p.Tenant.ID, p.Tenant.Backend)
		return nil, err
	}
	sc.key, sc.tenantID, sc.backend, sc.Access, sc.Placement = key, p.Tenant.ID, p.Tenant.Backend, p.Policy.Access, p.Where()
	sc.slug = p.Tenant.Slug
	r.pids.add(sc)
	sc.inUse.Store(true)
	r.pools.noteStatus(p.Tenant.ID, key, sc.Params)
	return sc, nil
}

// addSpare dials one spare connection of this kind in the background when
// the pool has fewer idle than Config.SpareConns (spareSlot says when there
// is room), so that the tenant's next concurrent checkout does not wait for a
// dial. The spare joins the pool as a released connection would: a waiter of
// the tenant takes it, or it waits idle (and is reaped, or evicted for
// another tenant at the backend's cap, like any idle connection).
func (r *Router) addSpare(p *Placement, params map[string]string, key string) {
	if !r.pools.spareSlot(p, key, r.cfg.spares()) {
		return
	}
	go func() {
		defer r.pools.spareDone(p.Tenant.ID, key)
		sc, err := r.dialCounted(context.Background(), p, params, key)
		if err != nil {
			return // the next checkout dials for itself and reports the error
		}
		sc.spare = true
		r.Release(sc, Keep)
	}()
}

// spareSlot counts a slot for a spare connection of kind key when the
// tenant's pool holds fewer than want idle or being dialed, the tenant is
// under its limit, and its backend has a free slot beyond the spare with
// nobody waiting for it. The caller then dials and calls spareDone.
func (p *pools) spareSlot(pl *Placement, key string, want int) bool {
	if want == 0 {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return false
	}
	tp := p.mu.tenants[pl.Tenant.ID]
	if tp == nil || tp.backend != pl.Tenant.Backend || tp.access != pl.Policy.Access || tp.where != pl.Where() || tp.slug != pl.Tenant.Slug {
		return false
	}
	bp := p.mu.backends[tp.backend]
	if len(tp.idle[key])+tp.spares[key] >= want || tp.open >= tp.limit || len(tp.waiters) > 0 ||
		bp.open+1 >= bp.cap || len(bp.ring) > 0 {
		return false
	}
	if tp.spares == nil {
		tp.spares = map[string]int{}
	}
	tp.spares[key]++
	tp.open++
	bp.open++
	return true
}

func (p *pools) spareDone(tenantID, key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if tp := p.mu.tenants[tenantID]; tp != nil {
		if tp.spares[key]--; tp.spares[key] <= 0 {
			delete(tp.spares, key)
		}
	}
}

func (p *pools) noteStatus(tenantID, key string, status map[string]string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if tp := p.mu.tenants[tenantID]; tp != nil {
		tp.status[key] = status
	}
}

// KnownStatus returns the ParameterStatus values a backend connection of the
// placement with these startup parameters reported last, or nil when none was
// opened yet. Transaction pooling tells a new client these at startup instead
// of taking a backend connection just to learn them.
func (r *Router) KnownStatus(p *Placement, params map[string]string) map[string]string {
	r.pools.mu.Lock()
	defer r.pools.mu.Unlock()
	if tp := r.pools.mu.tenants[p.Tenant.ID]; tp != nil {
		return tp.status[keyOf(p, params)]
	}
	return nil
}

// take finds an idle connection, or counts a slot to dial, or queues a waiter.
func (p *pools) take(pl *Placement, key string) (*ServerConn, bool, *waiter, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return nil, false, nil, ErrClosed
	}
	tp := p.tenantLocked(pl)
	p.followLocked(tp, pl)
	bp := p.backendLocked(pl.Tenant.Backend)
	now := p.now()
	for idle := tp.idle[key]; len(idle) > 0; idle = tp.idle[key] {
		sc := idle[len(idle)-1]
		tp.idle[key] = idle[:len(idle)-1]
		if now.Sub(sc.created) < p.cfg.ServerLifetime {
			return sc, false, nil, nil
		}
		tp.open--
		bp.open--
		go sc.Close()
	}
	if tp.open < tp.limit {
		if bp.open >= bp.cap && !p.evictIdleLocked(pl.Tenant.Backend, "") {
			w := &waiter{tenant: tp.id, backend: tp.backend, key: key, since: now, ready: make(chan grant, 1)}
			if len(bp.waiting[tp.id]) == 0 {
				bp.ring = append(bp.ring, tp.id)
			}
			bp.waiting[tp.id] = append(bp.waiting[tp.id], w)
			return nil, false, w, nil
		}
		tp.open++
		bp.open++
		return nil, true, nil, nil
	}
	// At the tenant's limit: an idle connection with other parameters can
	// make room; otherwise wait for one of the tenant's own.
	for k, idle := range tp.idle {
		if len(idle) > 0 {
			sc := idle[0]
			tp.idle[k] = idle[1:]
			go sc.Close()
			return nil, true, nil, nil // the slot passes from sc to the new connection
		}
	}
	w := &waiter{tenant: tp.id, key: key, since: now, ready: make(chan grant, 1)}
	tp.waiters = append(tp.waiters, w)
	return nil, false, w, nil
}

// followLocked makes tp follow the tenant's placement pl when it is not
// older than the one tp follows (a session that read its placement before a
// change must not turn the pool back): a new access level or a new
// placement (a move) makes the idle connections of the old one stale.
func (p *pools) followLocked(tp *tenantPool, pl *Placement) {
	if pl.gen < tp.gen {
		return
	}
	tp.gen = pl.gen
	where := pl.Where()
	if tp.access == pl.Policy.Access && tp.where == where && tp.slug == pl.Tenant.Slug {
		return
	}
	tp.access, tp.where, tp.slug = pl.Policy.Access, where, pl.Tenant.Slug
	tp.backend = pl.Tenant.Backend
	p.backendLocked(tp.backend)
	p.closeStaleLocked(tp)
}

// stale reports whether sc may no longer serve tp's sessions: it is logged in
// at another access level than tp.access, dialed for another placement than
// tp.where, or told a slug the tenant no longer has (it was renamed: a new
// session would see the old one in stratum.tenant).
func (tp *tenantPool) stale(sc *ServerConn) bool {
	return sc.Access != tp.access || sc.Placement != tp.where || sc.slug != tp.slug
}

// closeStaleLocked closes tp's idle connections that are stale: the tenant's
// policy changed, or it moved (rarely), and they would only take slots. Held
// connections of the old level or placement are kept by their sessions
// until those move (proxy) and are never handed out again (the pool key
// differs; release closes them).
func (p *pools) closeStaleLocked(tp *tenantPool) {
	for k, idle := range tp.idle {
		keep := idle[:0]
		var stale []*ServerConn
		for _, sc := range idle {
			if !tp.stale(sc) {
				keep = append(keep, sc)
				continue
			}
			stale = append(stale, sc)
		}
		clear(idle[len(keep):])
		tp.idle[k] = keep
		for _, sc := range stale {
			p.uncountLocked(tp, sc)
			go sc.Close()
		}
	}
}

// uncountLocked uncounts a connection of tp that is being closed and hands
// its slots on (freedLocked). The backend slot is the connection's own
// server's, which after a move to another server is not tp.backend; that
// server's queue is then served too.
func (p *pools) uncountLocked(tp *tenantPool, sc *ServerConn) {
	tp.open--
	p.mu.backends[sc.backend].open--
	p.freedLocked(tp)
	if sc.backend != tp.backend {
		p.serveBackendLocked(p.mu.backends[sc.backend])
	}
}

// evictIdleLocked closes one idle connection on backend (of another tenant
// than except) to free backend capacity. It reports whether it did.
func (p *pools) evictIdleLocked(backend, except string) bool {
	var oldest *ServerConn
	var from *tenantPool
	var fromKey string
	for _, tp := range p.mu.tenants {
		if tp.backend != backend || tp.id == except {
			continue
		}
		for k, idle := range tp.idle {
			if len(idle) > 0 && (oldest == nil || idle[0].idleAt.Before(oldest.idleAt)) {
				oldest, from, fromKey = idle[0], tp, k
			}
		}
	}
	if oldest == nil {
		return false
	}
	from.idle[fromKey] = from.idle[fromKey][1:]
	from.open--
	p.mu.backends[backend].open--
	go oldest.Close()
	return true
}

// wait blocks until w is granted, ctx ends or the timeout passes.
func (p *pools) wait(ctx context.Context, w *waiter, timeout time.Duration) (grant, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	var err error
	select {
	case g := <-w.ready:
		return g, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-t.C:
		err = ErrQueueTimeout
	}
	p.mu.Lock()
	removed := p.removeWaiterLocked(w)
	p.mu.Unlock()
	if !removed {
		// Granted while we gave up: take it and hand it back.
		g := <-w.ready
		return g, nil
	}
	return grant{}, err
}

func (p *pools) removeWaiterLocked(w *waiter) bool {
	remove := func(ws []*waiter) ([]*waiter, bool) {
		for i, x := range ws {
			if x == w {
				return append(ws[:i], ws[i+1:]...), true
			}
		}
		return ws, false
	}
	tp := p.mu.tenants[w.tenant]
	if tp == nil {
		return false
	}
	var ok bool
	if tp.waiters, ok = remove(tp.waiters); ok {
		return true
	}
	bp := p.mu.backends[w.backend]
	if bp == nil {
		return false
	}
	if bp.waiting[w.tenant], ok = remove(bp.waiting[w.tenant]); ok {
		if len(bp.waiting[w.tenant]) == 0 {
			delete(bp.waiting, w.tenant)
			for i, id := range bp.ring {
				if id == w.tenant {
					bp.ring = append(bp.ring[:i], bp.ring[i+1:]...)
					break
				}
			}
		}
		return true
	}
	return false
}

// forget uncounts a slot whose dial failed, and passes it on.
func (p *pools) forget(tenantID, backend string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if tp := p.mu.tenants[tenantID]; tp != nil {
		tp.open--
		p.mu.backends[backend].open--
		p.freedLocked(tp)
	}
}

// freedLocked hands a freed slot of tp (already uncounted) to a waiter: first
// tp's own queue, then the backend's queue, tenant by tenant in turn.
func (p *pools) freedLocked(tp *tenantPool) {
	if len(tp.waiters) > 0 && tp.open < tp.limit {
		w := tp.waiters[0]
		tp.waiters = tp.waiters[1:]
		tp.open++
		p.mu.backends[tp.backend].open++
		w.ready <- grant{permit: true}
		return
	}
	p.serveBackendLocked(p.mu.backends[tp.backend])
}

// serveBackendLocked gives free capacity of bp to the sessions waiting in
// its queue, tenant by tenant in turn, as long as it lasts.
func (p *pools) serveBackendLocked(bp *backendPool) {
	for len(bp.ring) > 0 && bp.open < bp.cap {
		id := bp.ring[0]
		bp.ring = bp.ring[1:]
		ws := bp.waiting[id]
		w := ws[0]
		if len(ws) > 1 {
			bp.waiting[id] = ws[1:]
			bp.ring = append(bp.ring, id) // its next waiter goes to the back
		} else {
			delete(bp.waiting, id)
		}
		other := p.mu.tenants[id]
		if other.open >= other.limit {
			// It reached its limit meanwhile: it waits for its own.
			other.waiters = append(other.waiters, w)
			continue
		}
		other.open++
		bp.open++
		w.ready <- grant{permit: true}
		return
	}
}

// Release hands a connection back. Close drops it; Reset runs DISCARD ALL and
// keeps it; Keep keeps it as it is. A kept connection goes straight to a
// session of its tenant waiting with the same parameters, else it waits idle.
func (r *Router) Release(sc *ServerConn, mode ReleaseMode) {
	if !sc.inUse.CompareAndSwap(true, false) {
		panic("router: connection released twice")
	}
	if mode != Close && r.pools.now().Sub(sc.created) > r.cfg.ServerLifetime {
		mode = Close
	}
	if mode == Reset && !sc.reset(r.cfg.DialTimeout) {
		mode = Close
	}
	r.pools.release(sc, mode)
}

func (p *pools) release(sc *ServerConn, mode ReleaseMode) {
	spare := sc.spare
	sc.spare = false
	p.mu.Lock()
	tp := p.mu.tenants[sc.tenantID]
	if tp == nil || p.mu.closed {
		p.mu.Unlock()
		sc.Close()
		return
	}
	if mode != Close && tp.stale(sc) {
		mode = Close // of a level or placement the tenant no longer has
	}
	if mode != Close {
		// A waiter of the same tenant and parameters takes it as it is.
		for i, w := range tp.waiters {
			if w.key == sc.key {
				tp.waiters = append(tp.waiters[:i], tp.waiters[i+1:]...)
				p.mu.Unlock()
				w.ready <- grant{sc: sc}
				return
			}
		}
		// A session of the same tenant waiting for backend capacity takes it,
		// unless another tenant has waited too long (fairnessBound).
		bp := p.mu.backends[tp.backend]
		if ws := bp.waiting[tp.id]; len(ws) > 0 && !p.otherWaitedTooLongLocked(bp, tp.id) {
			for _, w := range ws {
				if w.key == sc.key {
					p.removeWaiterLocked(w)
					p.mu.Unlock()
					w.ready <- grant{sc: sc}
					return
				}
			}
		}
		// Another tenant waiting for this backend's capacity comes first.
		if len(tp.waiters) == 0 && len(bp.ring) == 0 {
			sc.idleAt = p.now()
			if spare {
				tp.idle[sc.key] = append([]*ServerConn{sc}, tp.idle[sc.key]...)
			} else {
				tp.idle[sc.key] = append(tp.idle[sc.key], sc)
			}
			p.mu.Unlock()
			return
		}
	}
	yieldTurnLocked(p.mu.backends[sc.backend], tp.id)
	p.uncountLocked(tp, sc)
	p.mu.Unlock()
	sc.Close()
}

// yieldTurnLocked moves tenant id to the back of bp's turn: a slot it gives
// up goes to the other tenants waiting for the backend before its own
// sessions queued there, even those that queued first.
func yieldTurnLocked(bp *backendPool, id string) {
	for i, other := range bp.ring {
		if other == id && i < len(bp.ring)-1 {
			bp.ring = append(append(bp.ring[:i:i], bp.ring[i+1:]...), id)
			return
		}
	}
}

// otherWaitedTooLongLocked reports whether a session of a tenant other than
// id has waited in bp's queue for longer than fairnessBound.
func (p *pools) otherWaitedTooLongLocked(bp *backendPool, id string) bool {
	for _, other := range bp.ring {
		if other != id && p.now().Sub(bp.waiting[other][0].since) > fairnessBound {
			return true
		}
	}
	return false
}

// reap closes idle connections idle longer than idleTimeout or older than lifetime.
func (p *pools) reap(idleTimeout, lifetime time.Duration) {
	var old []*ServerConn
	now := p.now()
	p.mu.Lock()
	for _, tp := range p.mu.tenants {
		freed := 0
		for k, idle := range tp.idle {
			keep := idle[:0]
			for _, sc := range idle {
				if now.Sub(sc.idleAt) > idleTimeout || now.Sub(sc.created) > lifetime {
					old = append(old, sc)
					tp.open--
					p.mu.backends[tp.backend].open--
					freed++
				} else {
					keep = append(keep, sc)
				}
			}
			tp.idle[k] = keep
		}
		for range freed {
			p.freedLocked(tp)
		}
	}
	p.mu.Unlock()
	for _, sc := range old {
		sc.Close()
	}
}

// closeTenant closes a tenant's idle connections (its tenant is going away).
func (p *pools) closeTenant(tenantID string) {
	p.mu.Lock()
	tp := p.mu.tenants[tenantID]
	var idle []*ServerConn
	if tp != nil {
		for k, l := range tp.idle {
			idle = append(idle, l...)
			tp.open -= len(l)
			p.mu.backends[tp.backend].open -= len(l)
			delete(tp.idle, k)
		}
	}
	p.mu.Unlock()
	for _, sc := range idle {
		sc.Close()
	}
}

// close marks the pools closed and closes every idle connection. It reports
// whether this call closed them (false when already closed).
func (p *pools) close() bool {
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		return false
	}
	p.mu.closed = true
	var idle []*ServerConn
	for _, tp := range p.mu.tenants {
		for _, l := range tp.idle {
			idle = append(idle, l...)
		}
		tp.idle = map[string][]*ServerConn{}
	}
	p.mu.Unlock()
	for _, sc := range idle {
		sc.Close()
	}
	return true
}

func (p *pools) openFor(tenantID string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if tp := p.mu.tenants[tenantID]; tp != nil {
		return tp.open
	}
	return 0
}

func (p *pools) limitFor(pl *Placement) int {
	if pl.MaxConns > 0 {
		return pl.MaxConns
	}
	return p.cfg.MaxConnsPerTenant
}

// PoolStats is a snapshot of one tenant's connections, for metrics.
type PoolStats struct {
	TenantID string
	Open     int
	Idle     int
	Waiting  int
}

// Stats returns every tenant's pool counts.
func (r *Router) Stats() []PoolStats {
	p := r.pools
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]PoolStats, 0, len(p.mu.tenants))
	for _, tp := range p.mu.tenants {
		s := PoolStats{TenantID: tp.id, Open: tp.open, Waiting: len(tp.waiters) + len(p.mu.backends[tp.backend].waiting[tp.id])}
		for _, l := range tp.idle {
			s.Idle += len(l)
		}
		out = append(out, s)
	}
	return out
}
