package catalog

import (
	"context"
	"errors"
	"fmt"

	"github.com/stratum-hq/stratum-proxy/policy"
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

// PolicyInput reads what the tenant's policy is resolved from (its blocking
// ancestor, resolved config and permissions) as policy.Resolve takes it.
// Sensitive config values are not decrypted: they never reach a policy.
func (c *Catalog) PolicyInput(ctx context.Context, t *Tenant) (policy.Input, error) {
	in := policy.Input{Tenant: t.Slug}
	blocker, err := c.BlockingAncestor(ctx, t.ID)
	if err != nil {
		return in, fmt.Errorf("tenant %q: %w", t.Slug, err)
	}
	if blocker != nil {
		in.Blocker = &policy.Blocker{Slug: blocker.Slug, Status: blocker.Status,
			Self: blocker.ID == t.ID, Provisioning: blocker.Status == StatusProvisioning}
	}
	pause, err := c.PausingAncestor(ctx, t.ID)
	if err != nil {
		return in, fmt.Errorf("tenant %q: %w", t.Slug, err)
	}
	if pause != nil {
		in.Pause = &policy.Pause{Slug: pause.Slug, Reason: pause.Reason, Self: pause.TenantID == t.ID}
	}
	_, cfg, err := c.ReadConfig(ctx, t.ID, false)
	if err != nil {
		return in, fmt.Errorf("tenant %q: resolving config: %w", t.Slug, err)
	}
	for _, e := range cfg {
		in.Config = append(in.Config, policy.ConfigEntry{Key: e.Key, Value: e.Value, Source: e.Source.Slug, Sensitive: e.Sensitive})
	}
	if in.Limits, err = limitValues(ctx, c.pool, t.ID, true); err != nil {
		return in, fmt.Errorf("tenant %q: %w", t.Slug, err)
	}
	in.Shared = t.Isolation == IsolationShared
	perms, err := c.ResolvePermissions(ctx, t.ID)
	if err != nil {
		return in, fmt.Errorf("tenant %q: resolving permissions: %w", t.Slug, err)
	}
	for _, e := range perms {
		in.Permissions = append(in.Permissions, policy.PermissionEntry{Key: e.Key, Value: e.Value, Mode: e.Mode, Source: e.Source.Slug})
	}
	return in, nil
}

// limitValues reads the values of the limit keys (policy.IsLimit) set on the
// ancestors of the tenant with id tenantID, and on the tenant itself when self
// is set, root first. Sensitive values (the catalog refuses sensitive proxy.*
// keys) are skipped.
func limitValues(ctx context.Context, q configQuerier, tenantID string, self bool) ([]policy.LimitValue, error) {
	rows, err := q.Query(ctx, `SELECT cv.key, cv.value::text, t.slug, cv.locked
		FROM tenants tg
		JOIN tenants t ON t.path @> tg.path AND ($2 OR t.id <> tg.id)
		JOIN config_values cv ON cv.tenant_id = t.id
		WHERE tg.id = $1 AND cv.key = ANY($3) AND NOT cv.sensitive
		ORDER BY t.depth`, tenantID, self, policy.LimitKeys())
	if err != nil {
		return nil, fmt.Errorf("reading limits: %w", err)
	}
	defer rows.Close()
	var out []policy.LimitValue
	for rows.Next() {
		var (
			v     policy.LimitValue
			value string
		)
		if err := rows.Scan(&v.Key, &value, &v.Source, &v.Locked); err != nil {
			return nil, fmt.Errorf("reading limits: %w", err)
		}
		v.Value = []byte(value)
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading limits: %w", err)
	}
	return out, nil
}
