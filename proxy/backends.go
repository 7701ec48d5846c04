package proxy

import (
	"context"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/router"
)

// Backends is what the proxy needs from the router: tenants and users looked
// up, backend connections handed out and back, and word of catalog changes.
// *router.Router implements it; proxytest.Backends is a scripted fake for the
// proxy's unit tests. The proxy declares it (it is the proxy's need, not the
// router's offer), so a fake needs only these methods.
type Backends interface {
	// Resolve returns the placement of the tenant named by ref (slug or id),
	// or catalog.ErrNotFound.
	Resolve(ctx context.Context, ref string) (*router.Placement, error)
	// ResolveDatabase returns the placement of the tenant a database name is
	// mapped to, or catalog.ErrNotFound.
	ResolveDatabase(ctx context.Context, database string) (*router.Placement, error)
	// User returns the proxy user called name, or catalog.ErrNotFound.
	User(ctx context.Context, name string) (*catalog.User, error)
	// Acquire returns a backend connection of the placement opened with the
	// client's startup parameters; the caller hands it back with Release.
	Acquire(ctx context.Context, p *router.Placement, params map[string]string) (*router.ServerConn, error)
	// Release hands back a connection Acquire returned, exactly once.
	Release(sc *router.ServerConn, mode router.ReleaseMode)
	// KnownStatus returns the ParameterStatus values a backend of the
	// placement with these parameters reported last, or nil when unknown.
	KnownStatus(p *router.Placement, params map[string]string) map[string]string
	// Sender reports whether the backend process senderPID (on sc's server)
	// is a connection of sc's tenant (false when unknown) and, when it is,
	// the process id the client of the session that last held it was given
	// (ServerConn.SetClientPID; 0 when none is recorded).
	Sender(sc *router.ServerConn, senderPID uint32) (clientPID uint32, sameTenant bool)
	// Gen is the catalog generation: it moves on at every catalog change.
	Gen() uint64
	// WaitGen waits until Gen is no longer gen (nil) or ctx ends (its
	// error): a session of a paused tenant waits so for the next change.
	WaitGen(ctx context.Context, gen uint64) error
	// Invalidate moves Gen on and makes cached tenants stale, as a catalog
	// change does (PauseBarrier).
	Invalidate()
	// OnChange registers fn to be told of every catalog change; fn must not block.
	OnChange(fn func(catalog.Change))
	// Config returns the router's configuration (the proxy reads the queue
	// and dial timeouts that bound an Acquire).
	Config() router.Config
}

var _ Backends = (*router.Router)(nil)
