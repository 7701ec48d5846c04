package catalog

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratum-hq/stratum-proxy/internal/secrets"
)

// Sentinel errors, for callers to map onto SQLSTATEs and HTTP statuses.
var (
	ErrNotFound      = errors.New("not found")
	ErrConflict      = errors.New("already exists")
	ErrDepthExceeded = errors.New("tenant tree depth limit exceeded")
	ErrInvalid       = errors.New("invalid")
	// ErrLocked: an ancestor's lock forbids the change (config values, policies).
	ErrLocked = errors.New("locked")
)

// MaxDepth is the deepest level of the tenant tree; a root tenant is level 1.
const MaxDepth = 20

// Config says how to reach the catalog.
type Config struct {
	// URL is the catalog database's connection string (a role that owns it).
	URL string
	// Keys seals and opens backend credentials. Required.
	Keys *secrets.Keyring
	// MaxConns bounds the catalog connection pool; default 8.
	MaxConns int32
}

// Catalog is a handle on the catalog database. It is safe for concurrent use.
type Catalog struct {
	pool *pgxpool.Pool
	keys *secrets.Keyring
	url  string
}

// Open connects to the catalog. It does not migrate; call Migrate. The caller
// owns the Catalog and must Close it.
func Open(ctx context.Context, cfg Config) (*Catalog, error) {
	if cfg.Keys == nil {
		return nil, errors.New("opening catalog: no encryption keyring")
	}
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("parsing catalog url: %w", err)
	}
	pc.MaxConns = cfg.MaxConns
	if pc.MaxConns <= 0 {
		pc.MaxConns = 8
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connecting to catalog: %w", err)
	}
	return &Catalog{pool: pool, keys: cfg.Keys, url: cfg.URL}, nil
}

// Close releases the catalog's connections. It is idempotent.
func (c *Catalog) Close() { c.pool.Close() }

// Ping checks that the catalog answers.
func (c *Catalog) Ping(ctx context.Context) error {
	if err := c.pool.Ping(ctx); err != nil {
		return fmt.Errorf("pinging catalog: %w", err)
	}
	return nil
}

// DeploymentID is a short random id made when the catalog was first migrated. It
// names the group roles this deployment creates on backends.
func (c *Catalog) DeploymentID(ctx context.Context) (string, error) {
	var id string
	if err := c.pool.QueryRow(ctx, `SELECT deployment_id FROM stratum_meta`).Scan(&id); err != nil {
		return "", fmt.Errorf("reading deployment id: %w", err)
	}
	return id, nil
}
