package policy

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Input is what a tenant's Policy is resolved from: plain values, read by
// the caller (catalog.Catalog.PolicyInput) from wherever they live.
type Input struct {
	// Tenant is the slug of the tenant the policy is for.
	Tenant string
	// Blocker, when not nil, is the topmost tenant on the path from the root
	// to this one (itself included) that is not active.
	Blocker *Blocker
	// Pause, when not nil, is the topmost pause on the path from the root to
	// this tenant (itself included).
	Pause *Pause
	// Config is the tenant's resolved config (inheritance and locks applied).
	Config []ConfigEntry
	// Permissions are the tenant's resolved permissions.
	Permissions []PermissionEntry
	// Limits are the values of the limit keys (IsLimit) set on the tenant
	// and each of its ancestors, root first: each limit is the tightest of
	// them, not only the nearest.
	Limits []LimitValue
	// Shared is true for a tenant in the shared placement, which gets
	// DefaultSharedIdleInTxTimeout when no value is set on its path.
	Shared bool
}

// Blocker is a tenant that keeps a tenant (itself or a descendant) from
// being used.
type Blocker struct {
	Slug, Status string
	// Self is true when the blocker is the tenant the policy is for.
	Self bool
	// Provisioning is true when its status says it is not provisioned yet.
	Provisioning bool
}

// Pause is a tenant's pause that holds a tenant (itself or a descendant).
type Pause struct {
	Slug, Reason string
	// Self is true when the paused tenant is the one the policy is for.
	Self bool
}

// ConfigEntry is one key of a tenant's resolved config.
type ConfigEntry struct {
	Key   string
	Value json.RawMessage
	// Source is the slug of the tenant the value is set on.
	Source string
	// Sensitive values never reach SQL; Value may be masked.
	Sensitive bool
}

// PermissionEntry is one key of a tenant's resolved permissions.
type PermissionEntry struct {
	Key   string
	Value json.RawMessage
	// Mode is the policy's mode (LOCKED, INHERITED or DELEGATED).
	Mode string
	// Source is the slug of the tenant holding the effective policy.
	Source string
}

// Resolve folds a tenant's blocking ancestor, resolved config and
// permissions into a Policy; each limit key takes the tightest value on the
// tenant's path (Input.Limits). Values the catalog would not have accepted (it
// validates proxy.* keys with Validate) are ignored rather than failing every
// session of the tenant.
func Resolve(in Input) Policy {
	p := Policy{StatementTimeout: -1, IdleInTxTimeout: -1}
	if b := in.Blocker; b != nil {
		switch {
		case b.Self && b.Provisioning:
			p.Blocked = fmt.Sprintf("tenant %q is not ready (status %s)", in.Tenant, b.Status)
		case b.Self:
			p.Blocked = fmt.Sprintf("tenant %q is %s", in.Tenant, b.Status)
		default:
			p.Blocked = fmt.Sprintf("tenant %q is unavailable: its ancestor %q is %s", in.Tenant, b.Slug, b.Status)
		}
	}
	if ps := in.Pause; ps != nil {
		if ps.Self {
			p.Paused = fmt.Sprintf("tenant %q is paused (%s)", in.Tenant, ps.Reason)
		} else {
			p.Paused = fmt.Sprintf("tenant %q is paused: its ancestor %q is paused (%s)", in.Tenant, ps.Slug, ps.Reason)
		}
	}
	for _, e := range in.Config {
		switch k := lookup(e.Key); {
		case k != nil:
			k.apply(&p, e.Value, in.Tenant, e.Source)
		case Governs(e.Key), e.Sensitive:
			// Other proxy keys are the proxy's; sensitive values never
			// reach SQL, where any statement of the tenant could read them.
		case strings.IndexByte(settingText(e.Value), 0) >= 0:
			// PostgreSQL text cannot hold NUL; the catalog never stores one.
		default:
			p.Settings = append(p.Settings, Setting{Name: SettingPrefix + e.Key, Value: settingText(e.Value)})
		}
	}
	p.applyCaps(in.Limits, in.Shared)
	for _, e := range in.Permissions {
		var allowed bool
		if json.Unmarshal(e.Value, &allowed) != nil || allowed {
			continue
		}
		switch e.Key {
		case PermWrite:
			if p.ReadOnly == "" {
				p.ReadOnly = fmt.Sprintf("tenant %q may not write: permission %s is false (%s, from %q)", in.Tenant, e.Key, e.Mode, e.Source)
			}
		case PermDDL:
			p.NoDDL = fmt.Sprintf("tenant %q may not change the schema: permission %s is false (%s, from %q)", in.Tenant, e.Key, e.Mode, e.Source)
		}
	}
	switch {
	case p.ReadOnly != "":
		p.Access = AccessRead
	case p.NoDDL != "":
		p.Access = AccessWrite
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
	if p.Access != AccessFull {
		// The backend role follows the level (router); sessions holding a
		// backend of another level move at their next boundary.
		p.Sig += "\x00access " + p.Access.String()
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
