package router

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/stratum-hq/stratum-proxy/catalog"
)

// Placement is a tenant together with what it takes to connect to its data.
type Placement struct {
	Tenant   *catalog.Tenant
	password string
}

// Router resolves tenants to placements and hands out backend connections.
type Router struct {
	cfg   Config
	cat   *catalog.Catalog
	depID string

	// placements caches tenants (and their opened credentials) by slug and by id.
	placements *lru.Cache[string, *Placement]
	// users caches proxy users by name.
	users *lru.Cache[string, *catalog.User]

	mu struct {
		sync.Mutex
		pools  map[poolKey]*pool
		closed bool
	}
	stop context.CancelFunc
	done sync.WaitGroup
}

// New makes a Router over the catalog. It starts a goroutine that listens for
// catalog changes and reaps idle connections; Close stops it. The caller keeps
// ownership of cat and closes it after the Router.
func New(ctx context.Context, cfg Config, cat *catalog.Catalog) (*Router, error) {
	if err := cfg.fillDefaults(); err != nil {
		return nil, err
	}
	depID, err := cat.DeploymentID(ctx)
	if err != nil {
		return nil, err
	}
	r := &Router{cfg: cfg, cat: cat, depID: depID}
	r.placements, _ = lru.New[string, *Placement](cfg.CacheSize)
	r.users, _ = lru.New[string, *catalog.User](cfg.CacheSize)
	r.mu.pools = map[poolKey]*pool{}
	bg, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	r.done.Add(2)
	go func() {
		defer r.done.Done()
		cat.Listen(bg, func(catalog.Change) { r.Invalidate() })
	}()
	go func() {
		defer r.done.Done()
		r.reapLoop(bg)
	}()
	return r, nil
}

// Close stops background work and closes every idle backend connection.
// Connections still held are closed when released. Close is idempotent.
func (r *Router) Close() {
	r.mu.Lock()
	if r.mu.closed {
		r.mu.Unlock()
		return
	}
	r.mu.closed = true
	pools := r.mu.pools
	r.mu.pools = map[poolKey]*pool{}
	r.mu.Unlock()
	r.stop()
	r.done.Wait()
	for _, p := range pools {
		p.closeIdle()
	}
}

// Config returns the router's configuration with defaults filled in.
func (r *Router) Config() Config { return r.cfg }

// Catalog returns the catalog the router reads.
func (r *Router) Catalog() *catalog.Catalog { return r.cat }

// Invalidate forgets every cached tenant and user. Catalog changes call it; it is
// cheap because changes are rare next to lookups.
func (r *Router) Invalidate() {
	r.placements.Purge()
	r.users.Purge()
}

// Resolve returns the placement of the tenant named by ref (slug or id), from the
// cache when it can. It fails with catalog.ErrNotFound for an unknown tenant.
func (r *Router) Resolve(ctx context.Context, ref string) (*Placement, error) {
	key := strings.ToLower(ref)
	if p, ok := r.placements.Get(key); ok {
		return p, nil
	}
	t, err := r.cat.GetTenant(ctx, ref)
	if err != nil {
		return nil, err
	}
	pw, err := r.cat.BackendPassword(ctx, t.ID)
	if err != nil {
		return nil, fmt.Errorf("tenant %q: %w", t.Slug, err)
	}
	p := &Placement{Tenant: t, password: pw}
	r.placements.Add(t.Slug, p)
	r.placements.Add(t.ID, p)
	return p, nil
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

// User returns the proxy user called name, or catalog.ErrNotFound.
func (r *Router) User(ctx context.Context, name string) (*catalog.User, error) {
	if u, ok := r.users.Get(name); ok {
		return u, nil
	}
	u, err := r.cat.GetUser(ctx, name)
	if err != nil {
		return nil, err
	}
	r.users.Add(name, u)
	return u, nil
}

// ErrClosed is returned by Acquire after Close.
var ErrClosed = errors.New("router closed")

// poolKey says which backend connections are interchangeable: same tenant role
// and placement, same startup parameters.
type poolKey struct {
	tenantID string
	params   string
}

func makePoolKey(tenantID string, params map[string]string) poolKey {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(params[k])
		b.WriteByte(0)
	}
	return poolKey{tenantID: tenantID, params: b.String()}
}

// Acquire returns a backend connection for the placement, opened with the
// client's startup parameters: an idle one from the pool, or a new one. The
// caller must hand it back with Release.
func (r *Router) Acquire(ctx context.Context, p *Placement, params map[string]string) (*ServerConn, error) {
	key := makePoolKey(p.Tenant.ID, params)
	r.mu.Lock()
	if r.mu.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	pl := r.mu.pools[key]
	if pl == nil {
		pl = &pool{}
		r.mu.pools[key] = pl
	}
	r.mu.Unlock()
	if sc := pl.take(r.cfg.ServerLifetime); sc != nil {
		return sc, nil
	}
	sc, err := r.dialTenant(ctx, p, params)
	if err != nil {
		return nil, err
	}
	sc.key = key
	return sc, nil
}

// Release hands a connection back. With reusable false (the session broke, or
// the connection is mid-transaction) it is closed; otherwise it is reset with
// DISCARD ALL and kept idle for the next session of the same tenant.
func (r *Router) Release(sc *ServerConn, reusable bool) {
	if !reusable || time.Since(sc.created) > r.cfg.ServerLifetime || !sc.reset(r.cfg.DialTimeout) {
		sc.Close()
		return
	}
	r.mu.Lock()
	pl := r.mu.pools[sc.key]
	closed := r.mu.closed
	r.mu.Unlock()
	if closed || pl == nil || !pl.put(sc, r.cfg.MaxIdlePerKey) {
		sc.Close()
	}
}

func (r *Router) reapLoop(ctx context.Context) {
	t := time.NewTicker(time.Second * 10)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		pools := make([]*pool, 0, len(r.mu.pools))
		for _, p := range r.mu.pools {
			pools = append(pools, p)
		}
		r.mu.Unlock()
		for _, p := range pools {
			p.reap(r.cfg.IdleTimeout)
		}
	}
}
