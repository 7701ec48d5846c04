package catalog

import (
	"context"
	"errors"
	"fmt"
)

// BlockingAncestor returns the topmost tenant on the path from the root to the
// tenant with id tenantID (that tenant included) whose status is not active,
// or nil when the whole path is active. A suspended or archived tenant blocks
// its whole subtree: a reseller suspended means its clients too.
func (c *Catalog) BlockingAncestor(ctx context.Context, tenantID string) (*Tenant, error) {
	t, err := scanTenant(c.pool.QueryRow(ctx, `SELECT `+tenantColumns+` FROM tenants
		WHERE path @> (SELECT path FROM tenants WHERE id = $1) AND status <> 'active'
		ORDER BY depth LIMIT 1`, tenantID))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading tenant status: %w", err)
	}
	return t, nil
}
