package router

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/stratum-hq/stratum-proxy/catalog"
)

// Placement is a tenant together with what it takes to connect to its data.
type Placement struct {
	Tenant *catalog.Tenant
	// MaxConns is the tenant's own connection limit; zero means the default.
	MaxConns int
	// PoolMode is the tenant's own pool mode ("session" or "transaction");
	// empty means the proxy's.
	PoolMode string
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

	pools *pools
	stop  context.CancelFunc
	done  sync.WaitGroup
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
	r.pools = newPools(&r.cfg)
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
