package router

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/stratum-hq/stratum-proxy/catalog"
)

// readPolicy resolves the tenant's policy from the catalog.
func (r *Router) readPolicy(ctx context.Context, t *catalog.Tenant) (Policy, error) {
	blocker, err := r.cat.BlockingAncestor(ctx, t.ID)
	if err != nil {
		return Policy{}, fmt.Errorf("tenant %q: %w", t.Slug, err)
	}
	// Sensitive values never reach SQL, so they are not even decrypted here.
	_, cfg, err := r.cat.ReadConfig(ctx, t.ID, false)
	if err != nil {
		return Policy{}, fmt.Errorf("tenant %q: resolving config: %w", t.Slug, err)
	}
	perms, err := r.cat.ResolvePermissions(ctx, t.ID)
	if err != nil {
		return Policy{}, fmt.Errorf("tenant %q: resolving permissions: %w", t.Slug, err)
	}
	return makePolicy(t, blocker, cfg, perms), nil
}

// makePolicy folds resolved config and permissions into a Policy. Values the
// admin API would not have accepted (it validates proxy.* keys) are ignored
// rather than failing every session of the tenant.
func makePolicy(t, blocker *catalog.Tenant, cfg []catalog.ConfigEntry, perms []catalog.PermissionEntry) Policy {
	p := Policy{StatementTimeout: -1}
	if blocker != nil {
		switch {
		case blocker.ID == t.ID && blocker.Status == catalog.StatusProvisioning:
			p.Blocked = fmt.Sprintf("tenant %q is not ready (status %s)", t.Slug, t.Status)
		case blocker.ID == t.ID:
			p.Blocked = fmt.Sprintf("tenant %q is %s", t.Slug, blocker.Status)
		default:
			p.Blocked = fmt.Sprintf("tenant %q is unavailable: its ancestor %q is %s", t.Slug, blocker.Slug, blocker.Status)
		}
	}
	for _, e := range cfg {
		switch {
		case e.Key == KeyReadOnly:
			var on bool
			if json.Unmarshal(e.Value, &on) == nil && on {
				p.ReadOnly = fmt.Sprintf("tenant %q is read-only (%s is true, set on %q)", t.Slug, e.Key, e.Source.Slug)
			}
		case e.Key == KeyStatementTimeout:
			if ms, err := catalog.StatementTimeoutMillis(e.Value); err == nil {
				p.StatementTimeout = ms
			}
		case e.Key == KeyMaxConnections:
			var n int
			if json.Unmarshal(e.Value, &n) == nil && n > 0 {
				p.MaxConns = n
			}
		case strings.HasPrefix(e.Key, "proxy."), e.Sensitive:
			// Other proxy keys are the proxy's; sensitive values never
			// reach SQL, where any statement of the tenant could read them.
		case strings.IndexByte(settingText(e.Value), 0) >= 0:
			// PostgreSQL text cannot hold NUL; the catalog never stores one.
		default:
			p.Settings = append(p.Settings, Setting{Name: SettingPrefix + e.Key, Value: settingText(e.Value)})
		}
	}
	for _, e := range perms {
		var allowed bool
		if json.Unmarshal(e.Value, &allowed) != nil || allowed {
			continue
		}
		switch e.Key {
		case PermWrite:
			if p.ReadOnly == "" {
				p.ReadOnly = fmt.Sprintf("tenant %q may not write: permission %s is false (%s, from %q)", t.Slug, e.Key, e.Mode, e.Source.Slug)
			}
		case PermDDL:
			p.NoDDL = fmt.Sprintf("tenant %q may not change the schema: permission %s is false (%s, from %q)", t.Slug, e.Key, e.Mode, e.Source.Slug)
		}
	}
	sort.Slice(p.Settings, func(i, j int) bool { return p.Settings[i].Name < p.Settings[j].Name })
	p.SQL = p.applySQL()
	p.Sig = p.SQL
	if p.NoDDL != "" {
		// Not set on the backend, but a change of it must reach the backend
		// as a Query all the same: that drops the unnamed statement, which
		// was checked only under the policy of its Parse.
		p.Sig += "\x00no ddl"
	}
	return p
}

// settingText is a config value as a setting's text: a JSON string without its
// quotes, anything else as its JSON text.
func settingText(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	return string(v)
}
