package catalog

// Permission delegation.
//
// A policy is set on a tenant T for a key K (for example sql.write) and flows
// down T's subtree. Each policy has a value (any JSON), a mode and a
// revocation; granted_by is the tenant whose key made the grant, NULL for the
// platform (a key bound to no tenant, which acts above every tenant). The
// "actor tenant" of a change is the tenant the caller's key is bound to
// (ActorFrom(ctx).TenantID).
//
// Resolution for tenant X walks the policies for K from the root down to X;
// the first one found becomes effective. Below an effective LOCKED or
// INHERITED policy nothing else counts. Below an effective DELEGATED policy,
// a descendant's own policy replaces it only when its value is
// narrower-or-equal (NarrowerOrEqual); it then becomes effective with its own
// mode. The answer per key is the effective policy's value, mode, revocation,
// source (the tenant holding it), inherited (source is not X) and granted_by.
//
// Modes:
//   - LOCKED: fixed for T's whole subtree, and binding on T itself: it may be
//     changed or revoked only by its granter or a tenant above the granter (an
//     ancestor of it, or the platform). No descendant of T may set K at all.
//   - INHERITED: descendants receive it and may neither change nor re-grant
//     it: any write of K on a descendant of T is refused. T itself may change
//     or revoke it (subject to PERMANENT).
//   - DELEGATED: descendants may set K for their own subtrees, with any mode,
//     but only narrowing: a value wider than the effective value above is
//     refused (ErrWidening).
//
// Revocation (of the tenant's own policy):
//   - CASCADE removes the policy on T and every policy for K in T's subtree.
//   - SOFT removes only T's policy; descendants keep their explicit copies.
//   - PERMANENT may be revoked or downgraded (a narrower value, or another
//     mode or revocation) only by its granting tenant or a tenant above the
//     granter, and always by the platform (NULL granter: only platform
//     keys). PERMANENT means "nothing below the granter may remove it",
//     never "nothing above may": the holder, its other ancestors below the
//     granter and every descendant are refused. Revoked, it is removed like
//     CASCADE. A cascading revocation that meets, below, a PERMANENT policy
//     the actor may not revoke is refused, as is one that meets a LOCKED
//     policy the actor may not revoke; nothing is then removed. Every
//     removal writes a "permission.revoke" audit row naming the actor.
//
// Every write takes the tree lock shared (so no move changes paths under it)
// and a per-key advisory lock (so concurrent writes of one key serialise).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stratum-hq/stratum-proxy/policy"
)

// Policy modes.
const (
	PolicyLocked    = "LOCKED"
	PolicyInherited = "INHERITED"
	PolicyDelegated = "DELEGATED"
)

// Policy revocations.
const (
	RevokeCascade   = "CASCADE"
	RevokeSoft      = "SOFT"
	RevokePermanent = "PERMANENT"
)

// ErrWidening: a delegated permission may only be narrowed. Errors carrying it
// also match ErrInvalid.
var ErrWidening = errors.New("widening")

// permKeyPattern is the permission_policies.key CHECK (with length <= 200).
var permKeyPattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}(\.[a-z][a-z0-9_]{0,62}){0,7}$`)

// permLockClass is the first half of the two-key advisory lock that
// serialises writes of one permission key ("perm" in ASCII).
const permLockClass int32 = 0x7065726d

// PermissionEntry is one key of a tenant's resolved permissions.
type PermissionEntry struct {
	Key        string          `json:"key"`
	Value      json.RawMessage `json:"value"`
	Mode       string          `json:"mode"`
	Revocation string          `json:"revocation"`
	// Source is the tenant holding the effective policy.
	Source TenantRef `json:"source"`
	// Inherited is true when Source is not the tenant resolved.
	Inherited bool `json:"inherited"`
	// GrantedBy is the tenant whose key made the grant; nil: the platform.
	GrantedBy *TenantRef `json:"granted_by"`
}

// PermissionPolicy is a policy to set on a tenant.
type PermissionPolicy struct {
	Key string
	// Value is any JSON value; sql.write and sql.ddl take booleans.
	Value json.RawMessage
	// Mode is LOCKED, INHERITED or DELEGATED; Revocation CASCADE, SOFT or
	// PERMANENT (upper case).
	Mode, Revocation string
}

// PermissionGrant is one policy as stored on one tenant (audit state and what
// a revocation removed).
type PermissionGrant struct {
	Tenant     TenantRef       `json:"tenant"`
	Key        string          `json:"key"`
	Value      json.RawMessage `json:"value"`
	Mode       string          `json:"mode"`
	Revocation string          `json:"revocation"`
	GrantedBy  *TenantRef      `json:"granted_by"`
}

// PermissionRevocation is what RevokePermission removed: the tenant's own
// policy, and for a cascading revocation every copy below it.
type PermissionRevocation struct {
	Revoked PermissionGrant   `json:"revoked"`
	Removed []PermissionGrant `json:"removed"`
}

// Reasons of a PermissionError.
const (
	// ReasonLocked: a LOCKED policy forbids the change (an ancestor's, or the
	// tenant's own when the actor is not its granter or above it).
	ReasonLocked = "locked"
	// ReasonInherited: an ancestor's INHERITED policy forbids the change.
	ReasonInherited = "inherited"
	// ReasonPermanent: a PERMANENT policy another tenant granted.
	ReasonPermanent = "permanent"
	// ReasonWidening: the value is wider than the delegated one above.
	ReasonWidening = "widening"
)

// PermissionError is a permission change refused by a policy. It matches
// ErrLocked, or for ReasonWidening ErrWidening and ErrInvalid.
type PermissionError struct {
	Reason string
	Key    string
	// Target is the tenant the change was aimed at.
	Target TenantRef
	// Holder is the tenant holding the policy that refused the change (for
	// widening: the delegating tenant).
	Holder TenantRef
	// Mode and Revocation are the refusing policy's.
	Mode, Revocation string
	// GrantedBy is who granted the refusing policy (nil: the platform).
	GrantedBy *TenantRef
	// Value is the refused value and Limit the delegated value it may not
	// exceed (widening only).
	Value, Limit json.RawMessage
	msg          string
}

func (e *PermissionError) Error() string { return e.msg }

// Unwrap makes the error match its sentinels.
func (e *PermissionError) Unwrap() []error {
	if e.Reason == ReasonWidening {
		return []error{ErrWidening, ErrInvalid}
	}
	return []error{ErrLocked}
}

// policyRow is one stored policy with the tenants it names.
type policyRow struct {
	tenant      TenantRef
	path        string
	depth       int
	key         string
	value       json.RawMessage
	mode        string
	revocation  string
	grantedBy   *string
	granterSlug *string
	granterPath *string
}

func (p *policyRow) granter() *TenantRef {
	if p.grantedBy == nil {
		return nil
	}
	r := &TenantRef{ID: *p.grantedBy}
	if p.granterSlug != nil {
		r.Slug = *p.granterSlug
	}
	return r
}

func (p *policyRow) grant() PermissionGrant {
	return PermissionGrant{Tenant: p.tenant, Key: p.key, Value: p.value, Mode: p.mode,
		Revocation: p.revocation, GrantedBy: p.granter()}
}

// granterName names the granter in messages.
func (p *policyRow) granterName() string {
	if p.grantedBy == nil {
		return "the platform"
	}
	if p.granterSlug != nil {
		return fmt.Sprintf("tenant %q", *p.granterSlug)
	}
	return fmt.Sprintf("tenant %s (since removed)", *p.grantedBy)
}

// resolvePolicyChain returns the effective policy of one key, given that
// key's policies on a tenant and its ancestors ordered root first; nil for
// none.
func resolvePolicyChain(chain []*policyRow) *policyRow {
	var eff *policyRow
	for _, p := range chain {
		switch {
		case eff == nil:
			eff = p
		case eff.mode != PolicyDelegated:
			return eff
		case NarrowerOrEqual(p.value, eff.value):
			eff = p
		}
	}
	return eff
}

// ResolvePermissions returns the resolved permissions of the tenant with id
// tenantID, sorted by key; ErrNotFound when there is no such tenant.
func (c *Catalog) ResolvePermissions(ctx context.Context, tenantID string) ([]PermissionEntry, error) {
	if !IsUUID(tenantID) {
		return nil, fmt.Errorf("tenant %q: %w", tenantID, ErrNotFound)
	}
	// One row per policy on the tenant or an ancestor, root first per key;
	// one row of NULLs when there is none; no row for no tenant.
	rows, err := c.pool.Query(ctx, `SELECT x.slug, q.key, q.value, q.mode, q.revocation,
			q.id, q.slug, q.path, q.depth, q.granted_by, q.granter_slug, q.granter_path
		FROM tenants x
		LEFT JOIN LATERAL (
			SELECT p.key, p.value, p.mode, p.revocation, t.id, t.slug, t.path::text AS path, t.depth,
				p.granted_by, g.slug AS granter_slug, g.path::text AS granter_path
			FROM tenants t
			JOIN permission_policies p ON p.tenant_id = t.id
			LEFT JOIN tenants g ON g.id = p.granted_by
			WHERE t.path @> x.path) q ON true
		WHERE x.id = $1
		ORDER BY q.key, q.depth`, strings.ToLower(tenantID))
	if err != nil {
		return nil, fmt.Errorf("resolving permissions: %w", err)
	}
	defer rows.Close()
	found := false
	var chains [][]*policyRow
	for rows.Next() {
		found = true
		var (
			slug                      string
			key, mode, rev, id, tslug *string
			path                      *string
			depth                     *int
			value                     []byte
			p                         policyRow
		)
		if err := rows.Scan(&slug, &key, &value, &mode, &rev, &id, &tslug, &path, &depth,
			&p.grantedBy, &p.granterSlug, &p.granterPath); err != nil {
			return nil, fmt.Errorf("resolving permissions: %w", err)
		}
		if key == nil {
			continue
		}
		p.key, p.value, p.mode, p.revocation = *key, json.RawMessage(value), *mode, *rev
		p.tenant, p.path, p.depth = TenantRef{ID: *id, Slug: *tslug}, *path, *depth
		if n := len(chains); n > 0 && chains[n-1][0].key == p.key {
			chains[n-1] = append(chains[n-1], &p)
		} else {
			chains = append(chains, []*policyRow{&p})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("resolving permissions: %w", err)
	}
	if !found {
		return nil, fmt.Errorf("tenant %q: %w", tenantID, ErrNotFound)
	}
	id := strings.ToLower(tenantID)
	out := make([]PermissionEntry, 0, len(chains))
	for _, chain := range chains {
		eff := resolvePolicyChain(chain)
		out = append(out, PermissionEntry{Key: eff.key, Value: eff.value, Mode: eff.mode,
			Revocation: eff.revocation, Source: eff.tenant, Inherited: eff.tenant.ID != id,
			GrantedBy: eff.granter()})
	}
	// ORDER BY p.key uses the database's collation; keys are ASCII, but sort
	// bytewise so the order never depends on it.
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// ResolvePermission returns the resolved policy for one key of the tenant
// with id tenantID; ErrNotFound when no policy for key reaches the tenant, or
// there is no such tenant.
func (c *Catalog) ResolvePermission(ctx context.Context, tenantID, key string) (*PermissionEntry, error) {
	all, err := c.ResolvePermissions(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	for i := range all {
		if all[i].Key == key {
			return &all[i], nil
		}
	}
	return nil, fmt.Errorf("no permission policy for %q reaches the tenant: %w", key, ErrNotFound)
}

// validatePolicy checks a policy to set; errors match ErrInvalid.
func validatePolicy(p PermissionPolicy) error {
	if err := validPermKey(p.Key); err != nil {
		return err
	}
	switch p.Mode {
	case PolicyLocked, PolicyInherited, PolicyDelegated:
	default:
		return fmt.Errorf("%w mode %q: use LOCKED, INHERITED or DELEGATED", ErrInvalid, p.Mode)
	}
	switch p.Revocation {
	case RevokeCascade, RevokeSoft, RevokePermanent:
	default:
		return fmt.Errorf("%w revocation %q: use CASCADE, SOFT or PERMANENT", ErrInvalid, p.Revocation)
	}
	if len(p.Value) == 0 {
		return fmt.Errorf("%w permission %q: a value is required", ErrInvalid, p.Key)
	}
	v, err := decodePermValue(p.Value)
	if err != nil {
		return fmt.Errorf("%w permission %q value: %v", ErrInvalid, p.Key, err)
	}
	if d := jsonDepth(p.Value); d > MaxValueDepth {
		return fmt.Errorf("%w permission %q value: it nests arrays and objects %d deep; at most %d levels are allowed", ErrInvalid, p.Key, d, MaxValueDepth)
	}
	if permHasNUL(v) {
		return fmt.Errorf("%w permission %q value: text must not contain a NUL character", ErrInvalid, p.Key)
	}
	if policy.IsPermission(p.Key) { // the data plane's permissions take booleans
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%w permission %q value %s: it must be true or false", ErrInvalid, p.Key, p.Value)
		}
	}
	return nil
}

func validPermKey(key string) error {
	if len(key) > 200 || !permKeyPattern.MatchString(key) {
		return fmt.Errorf("%w permission key %q: use up to 8 dot-separated names, each a lower-case letter then lower-case letters, digits or underscores", ErrInvalid, key)
	}
	return nil
}

// ValidPermissionKey reports whether key is a well-formed permission key.
func ValidPermissionKey(key string) bool { return validPermKey(key) == nil }

// decodePermValue decodes exactly one JSON value, numbers as json.Number.
func decodePermValue(raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, errors.New("not valid JSON")
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value")
	}
	return v, nil
}

func permHasNUL(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.IndexByte(v, 0) >= 0
	case []any:
		for _, e := range v {
			if permHasNUL(e) {
				return true
			}
		}
	case map[string]any:
		for k, e := range v {
			if strings.IndexByte(k, 0) >= 0 || permHasNUL(e) {
				return true
			}
		}
	}
	return false
}

// NarrowerOrEqual reports whether permission value a is narrower than or
// equal to b: booleans false ≤ true; numbers by value; arrays when every
// element of a is in b (as sets of JSON values); strings, objects and null
// only when equal. Values of different types, or not JSON, are not.
func NarrowerOrEqual(a, b json.RawMessage) bool {
	va, erra := decodePermValue(a)
	vb, errb := decodePermValue(b)
	if erra != nil || errb != nil {
		return false
	}
	switch x := va.(type) {
	case bool:
		y, ok := vb.(bool)
		return ok && (!x || y)
	case json.Number:
		y, ok := vb.(json.Number)
		if !ok {
			return false
		}
		c, ok := permCompareNumbers(x, y)
		return ok && c <= 0
	case []any:
		y, ok := vb.([]any)
		if !ok {
			return false
		}
		for _, e := range x {
			if !permContains(y, e) {
				return false
			}
		}
		return true
	}
	return permEqual(va, vb)
}

func permContains(set []any, v any) bool {
	for _, e := range set {
		if permEqual(e, v) {
			return true
		}
	}
	return false
}

// permEqual compares decoded JSON values, numbers by value.
func permEqual(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case string:
		y, ok := b.(string)
		return ok && x == y
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		c, ok := permCompareNumbers(x, y)
		return ok && c == 0
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !permEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, e := range x {
			f, ok := y[k]
			if !ok || !permEqual(e, f) {
				return false
			}
		}
		return true
	}
	return false
}

// permCompareNumbers compares two JSON numbers by value. big.Float parses large
// exponents in logarithmic time (big.Rat would not), so no input is slow.
func permCompareNumbers(a, b json.Number) (int, bool) {
	if a == b {
		return 0, true
	}
	x, _, errx := new(big.Float).SetPrec(512).Parse(string(a), 10)
	y, _, erry := new(big.Float).SetPrec(512).Parse(string(b), 10)
	if errx != nil || erry != nil {
		return 0, false
	}
	return x.Cmp(y), true
}

// permActor is who changes a policy: the tenant the caller's key is bound to,
// or the platform (id nil).
type permActor struct {
	id   *string
	slug string
	path string
}

// isGranter reports whether the actor is the policy's granting tenant (both
// the platform counts too).
func (a permActor) isGranter(p *policyRow) bool {
	if a.id == nil || p.grantedBy == nil {
		return a.id == nil && p.grantedBy == nil
	}
	return *a.id == *p.grantedBy
}

// atOrAboveGranter reports whether the actor is the policy's granter or above
// it: an ancestor of the granting tenant, or the platform.
func (a permActor) atOrAboveGranter(p *policyRow) bool {
	if a.id == nil || a.isGranter(p) {
		return true
	}
	return p.granterPath != nil && strings.HasPrefix(*p.granterPath, a.path+".")
}

func (a permActor) name() string {
	if a.id == nil {
		return "the platform"
	}
	return fmt.Sprintf("tenant %q", a.slug)
}

// beginPermWrite takes the locks of a write of key and returns the target
// tenant (by ref) and the actor. A tenant outside a bound actor's subtree is
// reported as missing.
func beginPermWrite(ctx context.Context, tx pgx.Tx, ref, key string) (*Tenant, permActor, error) {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock_shared($1)`, treeLockKey); err != nil {
		return nil, permActor{}, fmt.Errorf("locking the tenant tree: %w", err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, permLockClass, key); err != nil {
		return nil, permActor{}, fmt.Errorf("locking permission %q: %w", key, err)
	}
	t, err := reachable(ctx, tx, ref, "")
	if err != nil {
		return nil, permActor{}, fmt.Errorf("tenant %q: %w", ref, err)
	}
	var a permActor
	if id := ActorFrom(ctx).TenantID; id != nil {
		at, err := getTenant(ctx, tx, *id, "")
		if errors.Is(err, ErrNotFound) || err == nil && !t.Within(at) {
			return nil, permActor{}, fmt.Errorf("tenant %q: %w", ref, ErrNotFound)
		}
		if err != nil {
			return nil, permActor{}, err
		}
		a = permActor{id: &at.ID, slug: at.Slug, path: at.Path}
	}
	return t, a, nil
}

const policyRowColumns = `t.id, t.slug, t.path::text, t.depth, p.key, p.value, p.mode, p.revocation,
	p.granted_by, g.slug, g.path::text`

func queryPolicies(ctx context.Context, tx pgx.Tx, where string, args ...any) ([]*policyRow, error) {
	rows, err := tx.Query(ctx, `SELECT `+policyRowColumns+`
		FROM permission_policies p
		JOIN tenants t ON t.id = p.tenant_id
		LEFT JOIN tenants g ON g.id = p.granted_by
		WHERE `+where+`
		ORDER BY t.depth, t.path`, args...)
	if err != nil {
		return nil, fmt.Errorf("reading permission policies: %w", err)
	}
	defer rows.Close()
	var out []*policyRow
	for rows.Next() {
		var p policyRow
		var value []byte
		if err := rows.Scan(&p.tenant.ID, &p.tenant.Slug, &p.path, &p.depth, &p.key, &value, &p.mode,
			&p.revocation, &p.grantedBy, &p.granterSlug, &p.granterPath); err != nil {
			return nil, fmt.Errorf("reading permission policies: %w", err)
		}
		p.value = json.RawMessage(value)
		out = append(out, &p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading permission policies: %w", err)
	}
	return out, nil
}

func permTenantRef(t *Tenant) TenantRef { return TenantRef{ID: t.ID, Slug: t.Slug} }

// refuseOwnChange checks that the actor may change or revoke the policy p
// (the target's own, or a copy a cascade would remove): a LOCKED policy only
// by its granter or above it, and, when downgrade is true, a PERMANENT one
// likewise (the platform is above every granter). verb says what was tried,
// for the message.
func refuseOwnChange(a permActor, p *policyRow, downgrade bool, target TenantRef, verb string) error {
	if p.mode == PolicyLocked && !a.atOrAboveGranter(p) {
		return &PermissionError{Reason: ReasonLocked, Key: p.key, Target: target, Holder: p.tenant,
			Mode: p.mode, Revocation: p.revocation, GrantedBy: p.granter(),
			msg: fmt.Sprintf("cannot %s: permission %q on tenant %q is LOCKED by %s; only it or a tenant above it may change or revoke it, not %s",
				verb, p.key, p.tenant.Slug, p.granterName(), a.name())}
	}
	if downgrade && p.revocation == RevokePermanent && !a.atOrAboveGranter(p) {
		return &PermissionError{Reason: ReasonPermanent, Key: p.key, Target: target, Holder: p.tenant,
			Mode: p.mode, Revocation: p.revocation, GrantedBy: p.granter(),
			msg: fmt.Sprintf("cannot %s: permission %q on tenant %q is PERMANENT, granted by %s; only it or a tenant above it may revoke or downgrade it, not %s",
				verb, p.key, p.tenant.Slug, p.granterName(), a.name())}
	}
	return nil
}

// SetPermission grants or changes the policy for p.Key on the tenant named by
// ref (slug or id), as the actor in ctx, and returns the tenant's resolved
// entry for the key. It fails with ErrInvalid for a malformed policy,
// ErrNotFound for a tenant that does not exist or is outside a bound actor's
// subtree, and a *PermissionError (ErrLocked, or ErrWidening) when a policy
// forbids the change. The change and its audit row ("permission.set") are
// one transaction; a change that changes nothing writes nothing.
func (c *Catalog) SetPermission(ctx context.Context, ref string, p PermissionPolicy) (*PermissionEntry, error) {
	if err := validatePolicy(p); err != nil {
		return nil, err
	}
	var out *PermissionEntry
	err := c.inTx(ctx, func(tx pgx.Tx) error {
		t, a, err := beginPermWrite(ctx, tx, ref, p.Key)
		if err != nil {
			return err
		}
		chain, err := queryPolicies(ctx, tx, `p.key = $1 AND t.path @> $2::ltree`, p.Key, t.Path)
		if err != nil {
			return err
		}
		var above []*policyRow
		var own *policyRow
		for _, r := range chain {
			if r.tenant.ID == t.ID {
				own = r
			} else {
				above = append(above, r)
			}
		}
		target := permTenantRef(t)
		// Any LOCKED or INHERITED policy above forbids every write below it.
		for _, r := range above {
			if r.mode == PolicyLocked || r.mode == PolicyInherited {
				reason, why := ReasonLocked, "no tenant below it may set it"
				if r.mode == PolicyInherited {
					reason, why = ReasonInherited, "tenants below it receive it and may neither change nor re-grant it"
				}
				return &PermissionError{Reason: reason, Key: p.Key, Target: target, Holder: r.tenant,
					Mode: r.mode, Revocation: r.revocation, GrantedBy: r.granter(),
					msg: fmt.Sprintf("cannot set permission %q on tenant %q: tenant %q holds it %s; %s",
						p.Key, t.Slug, r.tenant.Slug, r.mode, why)}
			}
		}
		if eff := resolvePolicyChain(above); eff != nil && !NarrowerOrEqual(p.Value, eff.value) {
			return &PermissionError{Reason: ReasonWidening, Key: p.Key, Target: target, Holder: eff.tenant,
				Mode: eff.mode, Revocation: eff.revocation, GrantedBy: eff.granter(),
				Value: p.Value, Limit: eff.value,
				msg: fmt.Sprintf("cannot set permission %q on tenant %q to %s: tenant %q delegates it with value %s, and a delegated permission may only be narrowed, never widened",
					p.Key, t.Slug, permCompact(p.Value), eff.tenant.Slug, permCompact(eff.value))}
		}
		grantedBy := a.id
		var before *PermissionGrant
		if own != nil {
			g := own.grant()
			before = &g
			downgrade := own.mode != p.Mode || own.revocation != p.Revocation || !NarrowerOrEqual(own.value, p.Value)
			if err := refuseOwnChange(a, own, downgrade, target, "change it"); err != nil {
				return err
			}
			if own.revocation == RevokePermanent && !a.isGranter(own) {
				// A widening, or a change from above the granter: the grant
				// stays the granter's, so the granter can still revoke it.
				grantedBy = own.grantedBy
			}
			if own.mode == p.Mode && own.revocation == p.Revocation && permEqualRaw(own.value, p.Value) &&
				permSameID(own.grantedBy, grantedBy) {
				out = &PermissionEntry{Key: p.Key, Value: own.value, Mode: own.mode, Revocation: own.revocation,
					Source: target, GrantedBy: own.granter()}
				return nil
			}
		}
		var value []byte
		err = tx.QueryRow(ctx, `INSERT INTO permission_policies (tenant_id, key, value, mode, revocation, granted_by)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (tenant_id, key) DO UPDATE SET value = excluded.value, mode = excluded.mode,
				revocation = excluded.revocation, granted_by = excluded.granted_by, updated_at = now()
			RETURNING value`, t.ID, p.Key, []byte(p.Value), p.Mode, p.Revocation, grantedBy).Scan(&value)
		if err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && strings.HasPrefix(pe.Code, "22") {
				return fmt.Errorf("%w permission %q value: %s", ErrInvalid, p.Key, pe.Message)
			}
			return fmt.Errorf("storing permission policy: %w", err)
		}
		var by *TenantRef
		switch {
		case grantedBy == nil:
		case a.id != nil && *grantedBy == *a.id:
			by = &TenantRef{ID: *a.id, Slug: a.slug}
		default:
			by = own.granter()
		}
		after := PermissionGrant{Tenant: target, Key: p.Key, Value: json.RawMessage(value), Mode: p.Mode,
			Revocation: p.Revocation, GrantedBy: by}
		out = &PermissionEntry{Key: p.Key, Value: after.Value, Mode: p.Mode, Revocation: p.Revocation,
			Source: target, GrantedBy: by}
		var beforeState any
		if before != nil {
			beforeState = before
		}
		return appendAudit(ctx, tx, AuditEvent{Action: "permission.set", Target: "permission:" + t.Slug + "/" + p.Key,
			TenantID: &t.ID, Before: beforeState, After: after})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// RevokePermission revokes the policy for key that the tenant named by ref
// (slug or id) holds itself, as the actor in ctx: SOFT removes only it;
// CASCADE, and PERMANENT (by its granter), remove it and every policy for key
// in the tenant's subtree. It fails with ErrNotFound when the tenant holds no
// policy for key (or is outside a bound actor's subtree) and with a
// *PermissionError (ErrLocked) when a LOCKED or PERMANENT policy, the
// tenant's or one the cascade would remove, forbids it; then nothing is
// removed. Each removed policy gets a "permission.revoke" audit row in the
// same transaction.
func (c *Catalog) RevokePermission(ctx context.Context, ref, key string) (*PermissionRevocation, error) {
	if err := validPermKey(key); err != nil {
		return nil, err
	}
	var out *PermissionRevocation
	err := c.inTx(ctx, func(tx pgx.Tx) error {
		t, a, err := beginPermWrite(ctx, tx, ref, key)
		if err != nil {
			return err
		}
		own, err := queryPolicies(ctx, tx, `p.key = $1 AND p.tenant_id = $2`, key, t.ID)
		if err != nil {
			return err
		}
		if len(own) == 0 {
			return fmt.Errorf("tenant %q holds no policy for permission %q: %w", t.Slug, key, ErrNotFound)
		}
		target := permTenantRef(t)
		if err := refuseOwnChange(a, own[0], true, target, "revoke it"); err != nil {
			return err
		}
		out = &PermissionRevocation{Revoked: own[0].grant(), Removed: []PermissionGrant{}}
		removed := []*policyRow{own[0]}
		if own[0].revocation != RevokeSoft {
			below, err := queryPolicies(ctx, tx, `p.key = $1 AND t.path <@ $2::ltree AND t.id <> $3`, key, t.Path, t.ID)
			if err != nil {
				return err
			}
			for _, r := range below {
				if err := refuseOwnChange(a, r, true, target,
					fmt.Sprintf("revoke permission %q on tenant %q (%s, which cascades)", key, t.Slug, own[0].revocation)); err != nil {
					return err
				}
				out.Removed = append(out.Removed, r.grant())
			}
			removed = append(removed, below...)
		}
		ids := make([]string, len(removed))
		for i, r := range removed {
			ids[i] = r.tenant.ID
		}
		tag, err := tx.Exec(ctx, `DELETE FROM permission_policies WHERE key = $1 AND tenant_id = ANY($2::uuid[])`, key, ids)
		if err != nil {
			return fmt.Errorf("removing permission policies: %w", err)
		}
		if int(tag.RowsAffected()) != len(removed) {
			return fmt.Errorf("removing permission policies: %d removed, %d expected", tag.RowsAffected(), len(removed))
		}
		for _, r := range removed {
			g := r.grant()
			if err := appendAudit(ctx, tx, AuditEvent{Action: "permission.revoke",
				Target: "permission:" + r.tenant.Slug + "/" + key, TenantID: &r.tenant.ID, Before: g}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// permEqualRaw compares two JSON texts as values.
func permEqualRaw(a, b json.RawMessage) bool {
	va, erra := decodePermValue(a)
	vb, errb := decodePermValue(b)
	return erra == nil && errb == nil && permEqual(va, vb)
}

func permSameID(a, b *string) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

// permCompact is raw without insignificant space, for messages.
func permCompact(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}
