package catalog

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Sentinel errors of tree changes.
var (
	// ErrCycle refuses moving a tenant under itself or one of its descendants.
	ErrCycle = errors.New("tenant tree cycle")
	// ErrStatus refuses a lifecycle change the tenant's current status does
	// not allow (an archived tenant is final; a provisioning one cannot change).
	ErrStatus = errors.New("tenant status change refused")
	// ErrBadCursor refuses a page cursor that this catalog did not hand out
	// (or one of another listing's order).
	ErrBadCursor = errors.New("malformed page cursor")
)

// DepthError refuses a change that would put a tenant below MaxDepth. It
// matches ErrDepthExceeded with errors.Is.
type DepthError struct {
	// Tenant is the slug of the tenant being moved, Parent the slug of its
	// new parent.
	Tenant, Parent string
	// Level is the level the deepest tenant of the moved subtree would reach.
	Level int
}

func (e *DepthError) Error() string {
	return fmt.Sprintf("%v: moving %q under %q would put a tenant of its subtree at level %d; the deepest allowed is %d",
		ErrDepthExceeded, e.Tenant, e.Parent, e.Level, MaxDepth)
}

// Is makes a DepthError match ErrDepthExceeded.
func (e *DepthError) Is(target error) bool { return target == ErrDepthExceeded }

// treeLockKey names the transaction-scoped advisory lock that serialises every
// change to the tree's shape (creates and moves): whoever holds it reads
// paths that no one else can change before it commits, so concurrent changes
// never make a cycle, a stale path or a lost update. ("stratumT" in ASCII.)
const treeLockKey int64 = 8319400174551395668

// lockTree takes the tree lock for the rest of tx. Take it before reading any
// path the change depends on: in READ COMMITTED each later statement sees
// every change committed by earlier holders.
func lockTree(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, treeLockKey); err != nil {
		return fmt.Errorf("locking the tenant tree: %w", err)
	}
	return nil
}

// treePlace is a tenant's place in the tree, the before and after state of a
// move's audit row.
type treePlace struct {
	ParentID *string `json:"parent_id"`
	Parent   *string `json:"parent"` // the parent's slug
	Path     string  `json:"path"`
	Depth    int     `json:"depth"`
	// Subtree counts the tenants that moved (the tenant and its descendants).
	Subtree int `json:"subtree,omitempty"`
}

// MoveTenant makes the tenant named by ref (slug or id) a child of the tenant
// named by newParentRef, or a root tenant when newParentRef is empty, and
// rewrites the path and depth of its whole subtree in one statement. Moving a
// tenant to the parent it has is a successful no-op.
//
// It fails with ErrNotFound for an unknown tenant or parent, ErrCycle for a
// parent inside the moved subtree and a *DepthError (ErrDepthExceeded) when
// the subtree's deepest tenant would end below MaxDepth.
func (c *Catalog) MoveTenant(ctx context.Context, ref, newParentRef string) (*Tenant, error) {
	var out *Tenant
	err := c.inTx(ctx, func(tx pgx.Tx) error {
		if err := lockTree(ctx, tx); err != nil {
			return err
		}
		t, err := reachable(ctx, tx, ref, " FOR UPDATE")
		if err != nil {
			return fmt.Errorf("tenant %q: %w", ref, err)
		}
		newPath, newDepth := t.ShortID, 1
		var parent *Tenant
		if newParentRef != "" {
			parent, err = reachable(ctx, tx, newParentRef, " FOR UPDATE")
			if err != nil {
				return fmt.Errorf("parent tenant %q: %w", newParentRef, err)
			}
			if parent.Within(t) {
				if parent.ID == t.ID {
					return fmt.Errorf("%w: tenant %q cannot be its own parent", ErrCycle, t.Slug)
				}
				return fmt.Errorf("%w: tenant %q cannot move under %q, which is inside its own subtree", ErrCycle, t.Slug, parent.Slug)
			}
			if parent.Status == StatusArchived {
				return fmt.Errorf("%w: tenant %q cannot move under %q, which is archived", ErrStatus, t.Slug, parent.Slug)
			}
			newPath, newDepth = parent.Path+"."+t.ShortID, parent.Depth+1
		}
		if parent == nil && t.ParentID == nil || parent != nil && t.ParentID != nil && *t.ParentID == parent.ID {
			out = t
			return nil
		}
		var deepest, size int
		if err := tx.QueryRow(ctx, `SELECT max(depth), count(*) FROM tenants WHERE path <@ $1::ltree`, t.Path).Scan(&deepest, &size); err != nil {
			return fmt.Errorf("measuring the subtree: %w", err)
		}
		if level := deepest - t.Depth + newDepth; level > MaxDepth {
			// Only a move under a parent can deepen a subtree.
			return &DepthError{Tenant: t.Slug, Parent: parent.Slug, Level: level}
		}
		var parentID *string
		if parent != nil {
			parentID = &parent.ID
		}
		// One statement moves the whole subtree: the tenant gets newPath, and
		// each descendant newPath followed by its labels below the tenant.
		tag, err := tx.Exec(ctx, `UPDATE tenants SET
				path = CASE WHEN id = $1 THEN $3::ltree ELSE $3::ltree || subpath(path, nlevel($2::ltree)) END,
				depth = depth - nlevel($2::ltree) + nlevel($3::ltree),
				parent_id = CASE WHEN id = $1 THEN $4::uuid ELSE parent_id END,
				updated_at = now()
			WHERE path <@ $2::ltree`, t.ID, t.Path, newPath, parentID)
		if err != nil {
			return fmt.Errorf("moving the subtree: %w", err)
		}
		if int(tag.RowsAffected()) != size {
			return fmt.Errorf("moving the subtree: %d rows moved, %d expected", tag.RowsAffected(), size)
		}
		after, err := getTenant(ctx, tx, t.ID, "")
		if err != nil {
			return err
		}
		before := treePlace{ParentID: t.ParentID, Path: t.Path, Depth: t.Depth, Subtree: size}
		if t.ParentID != nil {
			var slug string
			if err := tx.QueryRow(ctx, `SELECT slug FROM tenants WHERE id = $1`, *t.ParentID).Scan(&slug); err != nil {
				return fmt.Errorf("reading the old parent: %w", err)
			}
			before.Parent = &slug
		}
		place := treePlace{ParentID: after.ParentID, Path: after.Path, Depth: after.Depth, Subtree: size}
		if parent != nil {
			place.Parent = &parent.Slug
		}
		out = after
		return appendAudit(ctx, tx, AuditEvent{Action: "tenant.move", Target: "tenant:" + after.Slug,
			TenantID: &after.ID, Before: before, After: place})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// TenantUpdate is what UpdateTenant changes; nil fields stay as they are.
type TenantUpdate struct {
	Slug *string
	Name *string
}

// UpdateTenant renames the tenant named by ref (slug or id): a new slug, a new
// display name or both. Placements, roles, schemas, users and keys refer to
// the tenant by id, so a new slug breaks none of them. It fails with
// ErrInvalid for a malformed slug or name and ErrConflict for a taken slug,
// including one another tenant had before (tenant_slugs keeps every slug a
// tenant has had, reserved for it; TenantByOldSlug reads it). An update that
// changes nothing writes nothing.
func (c *Catalog) UpdateTenant(ctx context.Context, ref string, u TenantUpdate) (*Tenant, error) {
	if u.Slug != nil && !ValidSlug(*u.Slug) {
		return nil, fmt.Errorf("%w slug %q: use a lower-case letter then up to 62 lower-case letters, digits or underscores", ErrInvalid, *u.Slug)
	}
	if u.Name != nil && (len(*u.Name) == 0 || len([]rune(*u.Name)) > 200) {
		return nil, fmt.Errorf("%w name: 1 to 200 characters", ErrInvalid)
	}
	var out *Tenant
	err := c.inTx(ctx, func(tx pgx.Tx) error {
		before, err := reachable(ctx, tx, ref, " FOR UPDATE")
		if err != nil {
			return fmt.Errorf("tenant %q: %w", ref, err)
		}
		slug, name := before.Slug, before.Name
		if u.Slug != nil {
			slug = *u.Slug
		}
		if u.Name != nil {
			name = *u.Name
		}
		if slug == before.Slug && name == before.Name {
			out = before
			return nil
		}
		after, err := scanTenant(tx.QueryRow(ctx, `UPDATE tenants SET slug = $2, name = $3, updated_at = now()
			WHERE id = $1 RETURNING `+tenantColumns, before.ID, slug, name))
		if err != nil {
			if e := slugConflict(err, slug); e != nil {
				return e
			}
			var pe *pgconn.PgError
			switch {
			case errors.As(err, &pe) && pe.Code == "23514":
				return fmt.Errorf("%w tenant: %s", ErrInvalid, pe.ConstraintName)
			}
			return fmt.Errorf("updating tenant: %w", err)
		}
		out = after
		return appendAudit(ctx, tx, AuditEvent{Action: "tenant.update", Target: "tenant:" + after.Slug,
			TenantID: &after.ID, Before: before, After: after})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SuspendTenant suspends an active tenant (audited "tenant.suspend").
// Suspending a suspended tenant is a no-op; an archived or provisioning
// tenant is refused with ErrStatus.
func (c *Catalog) SuspendTenant(ctx context.Context, ref string) (*Tenant, error) {
	return c.changeStatus(ctx, ref, StatusSuspended, false)
}

// ResumeTenant makes a suspended tenant active again (audited
// "tenant.resume"). Resuming an active tenant is a no-op; an archived or
// provisioning tenant is refused with ErrStatus.
func (c *Catalog) ResumeTenant(ctx context.Context, ref string) (*Tenant, error) {
	return c.changeStatus(ctx, ref, StatusActive, false)
}

// ArchiveTenant archives an active or suspended tenant, for good (audited
// "tenant.archive"). Archiving an archived tenant is a no-op; a provisioning
// tenant is refused with ErrStatus.
func (c *Catalog) ArchiveTenant(ctx context.Context, ref string) (*Tenant, error) {
	return c.changeStatus(ctx, ref, StatusArchived, false)
}

// changeStatus moves the tenant named by ref to status to, in one transaction
// with its audit row. Setting the status a tenant has is a no-op that writes
// nothing. activate allows provisioning -> active (the router, once a tenant
// is provisioned; audited "tenant.activate").
func (c *Catalog) changeStatus(ctx context.Context, ref, to string, activate bool) (*Tenant, error) {
	var out *Tenant
	err := c.inTx(ctx, func(tx pgx.Tx) error {
		before, err := reachable(ctx, tx, ref, " FOR UPDATE")
		if err != nil {
			return fmt.Errorf("tenant %q: %w", ref, err)
		}
		if before.Status == to {
			out = before
			return nil
		}
		action, err := statusAction(before, to, activate)
		if err != nil {
			return err
		}
		after, err := scanTenant(tx.QueryRow(ctx, `UPDATE tenants SET status = $2, updated_at = now()
			WHERE id = $1 RETURNING `+tenantColumns, before.ID, to))
		if err != nil {
			return fmt.Errorf("setting tenant status: %w", err)
		}
		out = after
		return appendAudit(ctx, tx, AuditEvent{Action: action, Target: "tenant:" + after.Slug,
			TenantID: &after.ID, Before: before, After: after})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// statusAction is the audit action of moving t to status to, or why the
// lifecycle forbids it: active <-> suspended, active | suspended -> archived,
// provisioning -> active only when activate, archived never changes.
func statusAction(t *Tenant, to string, activate bool) (string, error) {
	verb := map[string]string{StatusActive: "resumed", StatusSuspended: "suspended", StatusArchived: "archived"}[to]
	if verb == "" {
		return "", fmt.Errorf("%w status %q: use active, suspended or archived", ErrInvalid, to)
	}
	switch t.Status {
	case StatusArchived:
		return "", fmt.Errorf("%w: tenant %q is archived, which is final; it cannot be %s", ErrStatus, t.Slug, verb)
	case StatusProvisioning:
		if activate && to == StatusActive {
			return "tenant.activate", nil
		}
		return "", fmt.Errorf("%w: tenant %q is still provisioning; it cannot be %s until it is active", ErrStatus, t.Slug, verb)
	}
	switch to {
	case StatusActive:
		return "tenant.resume", nil
	case StatusSuspended:
		return "tenant.suspend", nil
	}
	return "tenant.archive", nil
}

// TenantFilter says which tenants ListTenantsPage lists, and in which order.
// Fields name tenants by id; the empty filter lists every tenant.
type TenantFilter struct {
	// Within keeps only this tenant and its descendants.
	Within string
	// ChildrenOf keeps only this tenant's direct children, and orders the
	// page by slug, then id (every other filter orders by path, which is
	// tree order).
	ChildrenOf string
	// DescendantsOf keeps only this tenant's descendants, not the tenant itself.
	DescendantsOf string
}

// Page sizes of tenant listings.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// pageCursor is the keyset position a page cursor encodes: the last row of
// the previous page. Path orders are keyed by P, the children order by S and I.
type pageCursor struct {
	P string `json:"p,omitempty"`
	S string `json:"s,omitempty"`
	I string `json:"i,omitempty"`
}

// pathPattern matches the ltree paths this catalog makes (short ids).
var pathPattern = regexp.MustCompile(`^[0-9a-f]{16}(\.[0-9a-f]{16}){0,19}$`)

func encodeCursor(pc pageCursor) string {
	b, _ := json.Marshal(pc) // strings only: never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string, byChildren bool) (pageCursor, error) {
	var pc pageCursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(b, &pc) != nil {
		return pc, ErrBadCursor
	}
	if byChildren && (pc.P != "" || !ValidSlug(pc.S) || !IsUUID(pc.I)) ||
		!byChildren && (pc.S != "" || pc.I != "" || !pathPattern.MatchString(pc.P)) {
		return pc, ErrBadCursor
	}
	return pc, nil
}

// ListTenantsPage returns up to limit tenants that f selects, after the
// position the cursor after names ("" for the first page), and the cursor of
// the next page ("" after the last one). Positions are keys, not offsets, so
// tenants created or deleted between pages never make a page repeat or skip
// another row. It fails with ErrBadCursor for a cursor it did not hand out and
// ErrInvalid for a limit outside 1..MaxPageSize or a filter id that is not a
// UUID.
func (c *Catalog) ListTenantsPage(ctx context.Context, f TenantFilter, after string, limit int) ([]*Tenant, string, error) {
	if limit < 1 || limit > MaxPageSize {
		return nil, "", fmt.Errorf("%w limit %d: use 1 to %d", ErrInvalid, limit, MaxPageSize)
	}
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	for _, id := range []string{f.Within, f.ChildrenOf, f.DescendantsOf} {
		if id != "" && !IsUUID(id) {
			return nil, "", fmt.Errorf("%w tenant id %q", ErrInvalid, id)
		}
	}
	if f.Within != "" {
		where = append(where, `path <@ (SELECT path FROM tenants WHERE id = `+arg(strings.ToLower(f.Within))+`)`)
	}
	if f.ChildrenOf != "" {
		where = append(where, `parent_id = `+arg(strings.ToLower(f.ChildrenOf))+`::uuid`)
	}
	if f.DescendantsOf != "" {
		p := arg(strings.ToLower(f.DescendantsOf))
		where = append(where, `path <@ (SELECT path FROM tenants WHERE id = `+p+`) AND id <> `+p+`::uuid`)
	}
	byChildren := f.ChildrenOf != ""
	order := ` ORDER BY path`
	if byChildren {
		order = ` ORDER BY slug, id`
	}
	if after != "" {
		pc, err := decodeCursor(after, byChildren)
		if err != nil {
			return nil, "", err
		}
		if byChildren {
			where = append(where, `(slug, id) > (`+arg(pc.S)+`, `+arg(strings.ToLower(pc.I))+`::uuid)`)
		} else {
			where = append(where, `path > `+arg(pc.P)+`::ltree`)
		}
	}
	q := `SELECT ` + tenantColumns + ` FROM tenants`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += order + ` LIMIT ` + arg(limit+1)
	ts, err := c.queryTenants(ctx, q, args...)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(ts) > limit {
		ts = ts[:limit]
		last := ts[limit-1]
		if byChildren {
			next = encodeCursor(pageCursor{S: last.Slug, I: last.ID})
		} else {
			next = encodeCursor(pageCursor{P: last.Path})
		}
	}
	return ts, next, nil
}

// ListAncestors returns the ancestors of the tenant with id, root first, not
// the tenant itself. When stopAt (an id) is set the list starts there: only
// stopAt and its descendants are listed (a key bound to stopAt sees no
// higher). It fails with ErrInvalid for an id that is not a UUID.
func (c *Catalog) ListAncestors(ctx context.Context, id, stopAt string) ([]*Tenant, error) {
	if !IsUUID(id) || stopAt != "" && !IsUUID(stopAt) {
		return nil, fmt.Errorf("%w tenant id", ErrInvalid)
	}
	var stop *string
	if stopAt != "" {
		s := strings.ToLower(stopAt)
		stop = &s
	}
	return c.queryTenants(ctx, `SELECT `+tenantColumns+` FROM tenants
		WHERE path @> (SELECT path FROM tenants WHERE id = $1) AND id <> $1
		  AND ($2::uuid IS NULL OR path <@ (SELECT path FROM tenants WHERE id = $2))
		ORDER BY depth`, strings.ToLower(id), stop)
}

// queryTenants runs a query selecting tenantColumns.
func (c *Catalog) queryTenants(ctx context.Context, q string, args ...any) ([]*Tenant, error) {
	rows, err := c.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing tenants: %w", err)
	}
	defer rows.Close()
	out := []*Tenant{}
	for rows.Next() {
		t, err := scanTenant(rows)
		if err != nil {
			return nil, fmt.Errorf("listing tenants: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing tenants: %w", err)
	}
	return out, nil
}
