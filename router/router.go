package router

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/policy"
)

// Placement is a tenant together with what it takes to connect to its data.
type Placement struct {
	Tenant *catalog.Tenant
	// gen is the cache generation it was read in (see Router.gen).
	gen uint64
	// MaxConns is the tenant's own connection limit; zero means the default.
	MaxConns int
	// PoolMode is the tenant's own pool mode ("session" or "transaction");
	// empty means the proxy's.
	PoolMode string
	// Policy is what the tenant's config, permissions and ancestors ask of
	// its sessions.
	Policy   policy.Policy
	password string
	// where is Where, computed when the router read the placement.
	where string
}

// Gen is the router generation the placement was read in: when Router.Gen
// has moved on, the catalog changed since and the placement may be stale.
func (p *Placement) Gen() uint64 { return p.gen }

// Where names where the tenant's rows live: isolation, backend server,
// database and schema. A placement move changes it; a connection dialed for
// one Where never serves another (ServerConn.Placement).
// The router computes it once per placement it reads (every Acquire asks);
// placements made elsewhere (tests' fakes) get it computed on each call.
func (p *Placement) Where() string {
	if p.where != "" {
		return p.where
	}
	return whereOf(p.Tenant)
}

func whereOf(t *catalog.Tenant) string {
	return "isolation=" + t.Isolation + " backend=" + t.Backend + " database=" + t.Database + " schema=" + t.Schema
}

// Router resolves tenants to placements and hands out backend connections.
type Router struct {
	cfg Config
	cat *catalog.Catalog

	// placements caches tenants (and their opened credentials) by slug and by id.
	placements *lru.Cache[string, *Placement]
	// missing caches, by lower-cased ref, the generation in which a tenant
	// ref was found to name no tenant: a ref asked for again in the same
	// generation is answered without the catalog, as fast as a cached
	// tenant, so timing tells a user little about which slugs exist. Kept
	// apart from placements so that unknown refs evict no tenant.
	missing *lru.Cache[string, uint64]
	// users caches proxy users by name.
	users *lru.Cache[string, cachedUser]
	// gen counts catalog changes and reconnections: entries read before the
	// latest one may be out of date and are read again, but still serve when
	// the catalog cannot be reached, so that known tenants keep working
	// through a catalog outage.
	gen atomic.Uint64
	// genWait is closed (and forgotten) when gen moves on, for WaitGen; made
	// only when someone waits.
	genWait struct {
		sync.Mutex
		ch chan struct{}
	}

	// subs are told of every catalog change (OnChange).
	subs struct {
		sync.Mutex
		fns []func(catalog.Change)
	}

	pools *pools
	// pids are the open backend connections by process id (Sender).
	pids  backendPIDs
	knobs knobs
	stop  context.CancelFunc
	done  sync.WaitGroup
}

// knobs are test seams; the zero knobs are production behaviour.
type knobs struct {
	// dial opens a backend connection for a placement; default dialTenant.
	// Unit tests of the pools give connections not backed by PostgreSQL.
	dial func(ctx context.Context, p *Placement, params map[string]string) (*ServerConn, error)
	// now is the pools' clock; default time.Now.
	now func() time.Time
}

// New makes a Router over the catalog. It starts a goroutine that listens for
// catalog changes and reaps idle connections; Close stops it. The caller keeps
// ownership of cat and closes it after the Router.
func New(ctx context.Context, cfg Config, cat *catalog.Catalog) (*Router, error) {
	if err := cfg.fillDefaults(); err != nil {
		return nil, err
	}
	r := newRouter(cfg, cat, knobs{})
	bg, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	r.done.Add(2)
	go func() {
		defer r.done.Done()
		cat.Listen(bg, func(c catalog.Change) {
			r.Invalidate()
			r.subs.Lock()
			fns := r.subs.fns
			r.subs.Unlock()
			for _, fn := range fns {
				fn(c)
			}
		})
	}()
	go func() {
		defer r.done.Done()
		r.reapLoop(bg)
	}()
	return r, nil
}

// newRouter makes a Router without starting its background work (New does);
// cfg has its defaults filled in.
func newRouter(cfg Config, cat *catalog.Catalog, k knobs) *Router {
	r := &Router{cfg: cfg, cat: cat, knobs: k}
	r.placements, _ = lru.New[string, *Placement](cfg.CacheSize)
	r.users, _ = lru.New[string, cachedUser](cfg.CacheSize)
	r.missing, _ = lru.New[string, uint64](cfg.CacheSize)
	if r.knobs.now == nil {
		r.knobs.now = time.Now
	}
	r.pools = newPools(&r.cfg, r.knobs.now)
	return r
}

// dial opens a backend connection for the placement (knobs.dial in tests).
func (r *Router) dial(ctx context.Context, p *Placement, params map[string]string) (*ServerConn, error) {
	if r.knobs.dial != nil {
		return r.knobs.dial(ctx, p, params)
	}
	return r.dialTenant(ctx, p, params)
}

// Close stops background work and closes every idle backend connection.
// Connections still held are closed when released. Close is idempotent.
func (r *Router) Close() {
	if !r.pools.close() {
		return
	}
	r.stop()
	r.done.Wait()
}

// Config returns the router's configuration with defaults filled in.
func (r *Router) Config() Config { return r.cfg }

// Catalog returns the catalog the router reads.
func (r *Router) Catalog() *catalog.Catalog { return r.cat }

// Invalidate makes every cached tenant and user stale: each is read again at
// its next use, and served from the cache only while the catalog cannot be
// reached. Catalog changes (and reconnections) call it; a config change at a
// tenant reaches its whole subtree, so nothing finer is worth tracking.
func (r *Router) Invalidate() {
	r.genWait.Lock()
	r.gen.Add(1)
	if r.genWait.ch != nil {
		close(r.genWait.ch)
		r.genWait.ch = nil
	}
	r.genWait.Unlock()
}

// WaitGen waits until the generation is no longer gen (at once when it has
// moved already) and returns nil, or returns ctx's error when ctx ends
// first. A session whose tenant is paused waits so for the catalog's next
// change, without polling.
func (r *Router) WaitGen(ctx context.Context, gen uint64) error {
	r.genWait.Lock()
	if r.gen.Load() != gen {
		r.genWait.Unlock()
		return nil
	}
	if r.genWait.ch == nil {
		r.genWait.ch = make(chan struct{})
	}
	ch := r.genWait.ch
	r.genWait.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Gen is the current generation: it moves on at every catalog change. A
// session compares it with its placement's Gen at transaction boundaries,
// one atomic load, to pick up changes without a restart.
func (r *Router) Gen() uint64 { return r.gen.Load() }

// OnChange registers fn to be told of every catalog change, after the caches
// were invalidated; a zero Change means changes may have been missed. fn runs
// on the router's listener goroutine and must not block.
func (r *Router) OnChange(fn func(catalog.Change)) {
	r.subs.Lock()
	r.subs.fns = append(r.subs.fns, fn)
	r.subs.Unlock()
}

// CloseTenant closes the idle backend connections of the tenant with this id
// (its tenant is going away); connections in use are closed when released.
// provision.Provisioner.DropTenant calls it through provision.Pools.
func (r *Router) CloseTenant(tenantID string) { r.pools.closeTenant(tenantID) }

// Resolve returns the placement of the tenant named by ref (slug, old slug
// of a renamed tenant, or id), from the cache when it can. It fails with
// catalog.ErrNotFound for an unknown tenant. A caller tells an old slug by
// comparing ref with the placement's Tenant.Slug.
func (r *Router) Resolve(ctx context.Context, ref string) (*Placement, error) {
	key := strings.ToLower(ref)
	cached, ok := r.placements.Get(key)
	if ok && cached.gen == r.gen.Load() {
		return cached, nil
	}
	if g, miss := r.missing.Get(key); miss && g == r.gen.Load() {
		return nil, catalog.ErrNotFound
	}
	gen := r.gen.Load()
	p, err := r.readPlacement(ctx, ref)
	if errors.Is(err, catalog.ErrNotFound) {
		r.missing.Add(key, gen)
	}
	if err != nil {
		if ok && !errors.Is(err, catalog.ErrNotFound) {
			return cached, nil // the catalog is unreachable: the last known placement serves
		}
		return nil, err
	}
	if p.Tenant.Status == catalog.StatusProvisioning {
		// Not cached: whoever is provisioning it marks it active next, and a
		// session connecting right after must not wait for that change's
		// NOTIFY to see it (a change sweep may have read it in between).
		return p, nil
	}
	r.placements.Add(p.Tenant.Slug, p)
	r.placements.Add(p.Tenant.ID, p)
	if key != p.Tenant.Slug && key != p.Tenant.ID {
		r.placements.Add(key, p) // an old slug
	}
	return p, nil
}

func (r *Router) readPlacement(ctx context.Context, ref string) (*Placement, error) {
	gen := r.gen.Load()
	t, err := r.cat.GetTenant(ctx, ref)
	if errors.Is(err, catalog.ErrNotFound) && catalog.ValidSlug(ref) {
		// A slug the tenant had before a rename still names it.
		var id string
		if id, _, err = r.cat.TenantByOldSlug(ctx, ref); err == nil {
			t, err = r.cat.GetTenant(ctx, id)
		}
	}
	if err != nil {
		return nil, err
	}
	pw, err := r.cat.BackendPassword(ctx, t.ID)
	if err != nil {
		return nil, fmt.Errorf("tenant %q: %w", t.Slug, err)
	}
	in, err := r.cat.PolicyInput(ctx, t)
	if err != nil {
		return nil, err
	}
	pol := policy.Resolve(in)
	return &Placement{Tenant: t, password: pw, gen: gen, PoolMode: t.PoolMode, Policy: pol, MaxConns: pol.MaxConns,
		where: whereOf(t)}, nil
}

// ResolveDatabase returns the placement of the tenant a database name is mapped
// to, or catalog.ErrNotFound.
func (r *Router) ResolveDatabase(ctx context.Context, database string) (*Placement, error) {
	id, err := r.cat.TenantForDatabase(ctx, database)
	if err != nil {
		return nil, err
	}
	return r.Resolve(ctx, id)
}

// User returns the proxy user called name, or catalog.ErrNotFound. Like
// Resolve, it falls back to the last known user when the catalog is unreachable.
func (r *Router) User(ctx context.Context, name string) (*catalog.User, error) {
	cached, ok := r.users.Get(name)
	if ok && cached.gen == r.gen.Load() {
		return cached.user, nil
	}
	gen := r.gen.Load()
	u, err := r.cat.GetUser(ctx, name)
	if err != nil {
		if ok && !errors.Is(err, catalog.ErrNotFound) {
			return cached.user, nil
		}
		return nil, err
	}
	r.users.Add(name, cachedUser{user: u, gen: gen})
	return u, nil
}

type cachedUser struct {
	user *catalog.User
	gen  uint64
}

func (r *Router) reapLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.IdleTimeout / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.pools.reap(r.cfg.IdleTimeout, r.cfg.ServerLifetime)
	}
}
