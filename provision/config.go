package provision

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/backends"
)

// Config shapes a Provisioner. Zero fields get the defaults noted.
type Config struct {
	// Set is the backend servers, with the shared and default ones; its
	// defaults are filled as backends.Set.FillDefaults says. Give it the
	// same Set as the router's.
	backends.Set
	// Pools, when not nil, is told when a tenant is dropped (the router
	// implements it); default nil, nobody is told.
	Pools Pools

	// MoveDrainTimeout is how long a placement move's cut-over waits, with
	// the tenant paused, for the tenant's transactions under way on the
	// source to end; on timeout it unpauses, catches up again and retries
	// (three tries, then the move fails). Default 10s.
	MoveDrainTimeout time.Duration
	// MoveMaxLag is the number of captured changes not yet applied at
	// which a move cuts over (pauses the tenant). Default 100.
	MoveMaxLag int64
	// MoveRetention is how long a switched move keeps the source copy
	// before it is finalized by itself (checked by a sweep every minute and
	// at RecoverMoves); 0 (the default) keeps it until FinalizeMove.
	MoveRetention time.Duration
	// MoveCopyRowsPerSecond, when above 0, limits how fast a move copies
	// (and a move back streams) the tenant's rows, so that the copy leaves
	// the server's other tenants their share of it; the move takes longer.
	// 0 (the default) copies as fast as the servers go.
	MoveCopyRowsPerSecond int64
	// MoveHeartbeat is how often a running move records that it is alive
	// (tenant_moves.updated_at); RecoverMoves treats a move of another
	// process as dead after three missed beats. Default 5s.
	MoveHeartbeat time.Duration
	// MoveHook, when not nil, is called by a running move at each phase it
	// enters ("provisioning", "copying", "catching_up", "cutting_over"),
	// before each table's copy ("copy:<table>"), each time the cut-over
	// paused the tenant ("paused"), once the verification point's pause
	// ended ("verifying"), before each table's full checksum
	// ("checksum:source:<table>", "checksum:target:<table>", from two
	// goroutines; "checksum:truncated:<table>" in the switch's pause for a
	// table truncated since the verification point), when the verification
	// passed ("verified"), after the switch's check of the rows changed
	// since ("checked") and right before the switch ("switching"). For
	// tests: it may block (the move waits), must return when ctx ends, and
	// must be safe for concurrent calls.
	MoveHook func(ctx context.Context, moveID, step string)
	// PauseBarrier, when not nil, is called by a move's cut-over right
	// after it paused the tenant in the catalog: it returns once the proxy
	// of this process holds the tenant's new transactions and has sent on
	// every one it let through before (proxy.Server.PauseBarrier), or with
	// ctx's error. Without it (or for other proxies of the catalog) the
	// cut-over relies on the pause's NOTIFY arriving within moveSettle. Set
	// it with SetPauseBarrier.
	PauseBarrier func(ctx context.Context, tenantID string) error
	// Log, when not nil, gets a line per switched move with its cut-over's
	// pause (SetLogger).
	Log *zap.Logger
}

// Pools is what DropTenant needs of whoever holds backend connections and
// caches tenants: the router. Provision declares it so as not to import
// router.
type Pools interface {
	// CloseTenant closes the idle backend connections of the tenant with
	// this id; it is called before the tenant's role and data are dropped.
	CloseTenant(tenantID string)
	// Invalidate makes cached tenants stale; it is called after the tenant's
	// catalog rows are gone.
	Invalidate()
}

// Provisioner creates and drops tenants' roles, schemas and databases on the
// backends, and applies the app's schema everywhere.
type Provisioner struct {
	cfg   Config
	cat   *catalog.Catalog
	depID string
	moves *moveRunner // the placement moves this process runs (move.go)
}

// New makes a Provisioner over the catalog. It holds no connections between
// calls; placement moves run in goroutines of their own, which Close stops
// (a server calls RecoverMoves after New and Close at shutdown). The caller
// keeps ownership of cat.
func New(ctx context.Context, cfg Config, cat *catalog.Catalog) (*Provisioner, error) {
	if err := cfg.Set.FillDefaults(); err != nil {
		return nil, err
	}
	if cfg.MoveDrainTimeout <= 0 {
		cfg.MoveDrainTimeout = 10 * time.Second
	}
	if cfg.MoveMaxLag <= 0 {
		cfg.MoveMaxLag = 100
	}
	if cfg.MoveHeartbeat <= 0 {
		cfg.MoveHeartbeat = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	depID, err := cat.DeploymentID(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading deployment id: %w", err)
	}
	return &Provisioner{cfg: cfg, cat: cat, depID: depID, moves: newMoveRunner()}, nil
}

// Config returns the provisioner's configuration with defaults filled in.
func (p *Provisioner) Config() Config { return p.cfg }

// Catalog returns the catalog the provisioner records tenants in.
func (p *Provisioner) Catalog() *catalog.Catalog { return p.cat }
