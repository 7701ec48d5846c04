package provision

import (
	"context"
	"fmt"

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
}

// New makes a Provisioner over the catalog. It holds no connections between
// calls and needs no Close; the caller keeps ownership of cat.
func New(ctx context.Context, cfg Config, cat *catalog.Catalog) (*Provisioner, error) {
	if err := cfg.Set.FillDefaults(); err != nil {
		return nil, err
	}
	depID, err := cat.DeploymentID(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading deployment id: %w", err)
	}
	return &Provisioner{cfg: cfg, cat: cat, depID: depID}, nil
}

// Config returns the provisioner's configuration with defaults filled in.
func (p *Provisioner) Config() Config { return p.cfg }

// Catalog returns the catalog the provisioner records tenants in.
func (p *Provisioner) Catalog() *catalog.Catalog { return p.cat }
