package catalog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Isolation strategies.
const (
	IsolationShared   = "shared"
	IsolationSchema   = "schema"
	IsolationDatabase = "database"
)

// Tenant statuses.
const (
	StatusProvisioning = "provisioning"
	StatusActive       = "active"
	StatusSuspended    = "suspended"
	StatusArchived     = "archived"
)

// Tenant is one node of the tenant tree and where its data lives.
type Tenant struct {
	ID        string  `json:"id"`
	ShortID   string  `json:"short_id"`
	Slug      string  `json:"slug"`
	Name      string  `json:"name"`
	ParentID  *string `json:"parent_id"`
	Path      string  `json:"path"`
	Depth     int     `json:"depth"`
	Isolation string  `json:"isolation"`
	Backend   string  `json:"backend"`
	Database  string  `json:"database"`
	Schema    string  `json:"schema"`
	RoleName  string  `json:"role_name"`
	Status    string  `json:"status"`
	// PoolMode overrides the proxy's pool mode for this tenant; empty: the proxy's.
	PoolMode  string    `json:"pool_mode,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Within reports whether t is root or one of root's descendants.
func (t *Tenant) Within(root *Tenant) bool {
	return t.Path == root.Path || strings.HasPrefix(t.Path, root.Path+".")
}

var (
	slugPattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
	uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// ValidSlug reports whether s is a well-formed tenant slug.
func ValidSlug(s string) bool { return slugPattern.MatchString(s) }

// IsUUID reports whether s is written as a UUID.
func IsUUID(s string) bool { return uuidPattern.MatchString(s) }

// ValidRef reports whether s can name a tenant: a slug or a UUID.
func ValidRef(s string) bool { return ValidSlug(s) || IsUUID(s) }

// NewID returns a random (version 4) UUID and the short id derived from it.
func NewID() (id, shortID string, err error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("making tenant id: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], h[:16], nil
}

const tenantColumns = `id, short_id, slug, name, parent_id, path::text, depth, isolation, backend,
	database, schema, role_name, status, coalesce(pool_mode, ''), created_at, updated_at`

func scanTenant(row pgx.Row) (*Tenant, error) {
	var t Tenant
	err := row.Scan(&t.ID, &t.ShortID, &t.Slug, &t.Name, &t.ParentID, &t.Path, &t.Depth,
		&t.Isolation, &t.Backend, &t.Database, &t.Schema, &t.RoleName, &t.Status, &t.PoolMode,
		&t.CreatedAt, &t.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	return &t, err
}

// NewTenant is what InsertTenant needs. ID, ShortID and the placement names are
// chosen by the caller (the router decides placements); path and depth follow
// from the parent.
type NewTenant struct {
	ID, ShortID, Slug, Name string
	Parent                  string // slug or id of the parent; empty for a root tenant
	Isolation, Backend      string
	Database, Schema, Role  string
	// PoolMode is "", "session" or "transaction".
	PoolMode string
	// RolePassword is the backend role's generated password; stored encrypted.
	RolePassword string
}

// InsertTenant records a new tenant in status provisioning, with its backend
// credential sealed. It fails with ErrNotFound for an unknown parent,
// ErrDepthExceeded below level 20 and ErrConflict for a taken slug.
func (c *Catalog) InsertTenant(ctx context.Context, nt NewTenant) (*Tenant, error) {
	if !ValidSlug(nt.Slug) {
		return nil, fmt.Errorf("%w slug %q: use a lower-case letter then up to 62 lower-case letters, digits or underscores", ErrInvalid, nt.Slug)
	}
	var out *Tenant
	err := pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		// The tree lock first: the parent's path must not move under us.
		if err := lockTree(ctx, tx); err != nil {
			return err
		}
		path, depth := nt.ShortID, 1
		var parentID *string
		if nt.Parent != "" {
			parent, err := reachable(ctx, tx, nt.Parent, " FOR UPDATE")
			if err != nil {
				if errors.Is(err, ErrNotFound) {
					return fmt.Errorf("parent tenant %q: %w", nt.Parent, ErrNotFound)
				}
				return err
			}
			if parent.Status == StatusArchived {
				return fmt.Errorf("%w: parent %q is archived; archived tenants get no new children", ErrStatus, parent.Slug)
			}
			if parent.Depth >= MaxDepth {
				return fmt.Errorf("%w: parent %q is at level %d, the deepest allowed is %d", ErrDepthExceeded, parent.Slug, parent.Depth, MaxDepth)
			}
			path, depth, parentID = parent.Path+"."+nt.ShortID, parent.Depth+1, &parent.ID
		}
		t, err := scanTenant(tx.QueryRow(ctx, `INSERT INTO tenants
			(id, short_id, slug, name, parent_id, path, depth, isolation, backend, database, schema, role_name, pool_mode)
			VALUES ($1, $2, $3, $4, $5, $6::ltree, $7, $8, $9, $10, $11, $12, nullif($13, ''))
			RETURNING `+tenantColumns,
			nt.ID, nt.ShortID, nt.Slug, nt.Name, parentID, path, depth, nt.Isolation, nt.Backend,
			nt.Database, nt.Schema, nt.Role, nt.PoolMode))
		if err != nil {
			if e := slugConflict(err, nt.Slug); e != nil {
				return e
			}
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "23514" {
				return fmt.Errorf("%w tenant: %s", ErrInvalid, pe.ConstraintName)
			}
			return fmt.Errorf("inserting tenant: %w", err)
		}
		keyID, ct, err := c.keys.Seal([]byte(nt.RolePassword), []byte(t.ID))
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO backend_credentials (tenant_id, key_id, ciphertext) VALUES ($1, $2, $3)`,
			t.ID, keyID, ct); err != nil {
			return fmt.Errorf("storing backend credential: %w", err)
		}
		out = t
		return appendAudit(ctx, tx, AuditEvent{Action: "tenant.create", Target: "tenant:" + t.Slug,
			TenantID: &t.ID, After: t})
	})
	return out, err
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func getTenant(ctx context.Context, q querier, ref, suffix string) (*Tenant, error) {
	col := "slug"
	switch {
	case IsUUID(ref):
		col = "id"
		ref = strings.ToLower(ref)
	case !ValidSlug(ref):
		return nil, ErrNotFound
	}
	t, err := scanTenant(q.QueryRow(ctx, `SELECT `+tenantColumns+` FROM tenants WHERE `+col+` = $1`+suffix, ref))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("reading tenant: %w", err)
	}
	return t, err
}

// GetTenant finds a tenant by slug or id; ErrNotFound when there is none.
func (c *Catalog) GetTenant(ctx context.Context, ref string) (*Tenant, error) {
	return getTenant(ctx, c.pool, ref, "")
}

// slugConflict turns a unique violation on a tenant's slug into ErrConflict
// with a message saying whether the slug is some tenant's current one or a
// reserved old one (a renamed or deleted tenant's); nil for other errors.
func slugConflict(err error, slug string) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23505" {
		return nil
	}
	if pe.ConstraintName == "tenant_slugs_pkey" {
		return fmt.Errorf("tenant slug %q: %w: it belonged to a tenant before (renamed or deleted), and old slugs stay reserved so that connections naming them never reach another tenant", slug, ErrConflict)
	}
	return fmt.Errorf("tenant %q: %w", slug, ErrConflict)
}

// TenantByOldSlug returns the id of the tenant that had slug before a rename,
// and the tenant's current slug; ErrNotFound when slug is no old slug or its
// tenant has been deleted (the slug stays reserved all the same).
func (c *Catalog) TenantByOldSlug(ctx context.Context, slug string) (id, current string, err error) {
	if !ValidSlug(slug) {
		return "", "", ErrNotFound
	}
	err = c.pool.QueryRow(ctx, `SELECT t.id, t.slug FROM tenant_slugs s JOIN tenants t ON t.id = s.tenant_id
		WHERE s.slug = $1 AND s.retired_at IS NOT NULL`, slug).Scan(&id, &current)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", ErrNotFound
	}
	if err != nil {
		return "", "", fmt.Errorf("reading old slugs: %w", err)
	}
	return id, current, nil
}

// ListTenants returns all tenants in tree order (by path).
func (c *Catalog) ListTenants(ctx context.Context) ([]*Tenant, error) {
	rows, err := c.pool.Query(ctx, `SELECT `+tenantColumns+` FROM tenants ORDER BY path`)
	if err != nil {
		return nil, fmt.Errorf("listing tenants: %w", err)
	}
	defer rows.Close()
	var out []*Tenant
	for rows.Next() {
		t, err := scanTenant(rows)
		if err != nil {
			return nil, fmt.Errorf("listing tenants: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// SetTenantStatus changes a tenant's lifecycle status, with an audit row
// (tenant.activate for provisioning -> active, then tenant.suspend,
// tenant.resume or tenant.archive). Setting the status the tenant has is a
// no-op; a change the lifecycle forbids fails with ErrStatus.
func (c *Catalog) SetTenantStatus(ctx context.Context, id, status string) error {
	_, err := c.changeStatus(ctx, id, status, true)
	return err
}

// DeleteTenant removes a tenant that has no children, with the proxy users and
// API keys bound to it (used to undo a failed provisioning and to drop a tenant).
func (c *Catalog) DeleteTenant(ctx context.Context, id string) error {
	err := pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		before, err := getTenant(ctx, tx, id, " FOR UPDATE")
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, q := range []string{`DELETE FROM proxy_users WHERE tenant_id = $1`, `DELETE FROM api_keys WHERE tenant_id = $1`} {
			if _, err := tx.Exec(ctx, q, id); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM tenants WHERE id = $1`, id); err != nil {
			return err
		}
		return appendAudit(ctx, tx, AuditEvent{Action: "tenant.delete", Target: "tenant:" + before.Slug,
			TenantID: &before.ID, Before: before})
	})
	if err != nil {
		return fmt.Errorf("deleting tenant: %w", err)
	}
	return nil
}

// BackendPassword opens the tenant's sealed backend role password.
func (c *Catalog) BackendPassword(ctx context.Context, tenantID string) (string, error) {
	var keyID string
	var ct []byte
	err := c.pool.QueryRow(ctx, `SELECT key_id, ciphertext FROM backend_credentials WHERE tenant_id = $1`, tenantID).Scan(&keyID, &ct)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("reading backend credential: %w", err)
	}
	pt, err := c.keys.Open(keyID, ct, []byte(tenantID))
	if err != nil {
		return "", err
	}
	return string(pt), nil
}

// MapDatabase makes a client's database name identify a tenant, with the
// "database_map.set" audit row. One mapping per name: ErrConflict when the
// name is mapped to another tenant (whichever), nothing done when it is
// mapped to this one already.
func (c *Catalog) MapDatabase(ctx context.Context, database, tenantID string) error {
	err := c.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO database_map (database_name, tenant_id) VALUES ($1, $2)
			ON CONFLICT (database_name) DO NOTHING`, database, tenantID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			var owner string
			if err := tx.QueryRow(ctx, `SELECT tenant_id FROM database_map WHERE database_name = $1`, database).Scan(&owner); err != nil {
				return err
			}
			if owner != tenantID {
				return fmt.Errorf("database name %q is mapped to another tenant: %w", database, ErrConflict)
			}
			return nil
		}
		return appendAudit(ctx, tx, AuditEvent{Action: "database_map.set", Target: "database:" + database,
			TenantID: &tenantID, After: map[string]string{"database_name": database, "tenant_id": tenantID}})
	})
	if err != nil {
		return fmt.Errorf("mapping database name: %w", err)
	}
	return nil
}

// UnmapDatabase removes the mapping of database to the tenant with
// tenantID, with the "database_map.delete" audit row; ErrNotFound when the
// name is not mapped to that tenant.
func (c *Catalog) UnmapDatabase(ctx context.Context, database, tenantID string) error {
	err := c.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM database_map WHERE database_name = $1 AND tenant_id = $2`, database, tenantID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("database name %q is not mapped to this tenant: %w", database, ErrNotFound)
		}
		return appendAudit(ctx, tx, AuditEvent{Action: "database_map.delete", Target: "database:" + database,
			TenantID: &tenantID, Before: map[string]string{"database_name": database, "tenant_id": tenantID}})
	})
	if err != nil {
		return fmt.Errorf("unmapping database name: %w", err)
	}
	return nil
}

// TenantDatabases returns the database names mapped to a tenant, sorted.
func (c *Catalog) TenantDatabases(ctx context.Context, tenantID string) ([]string, error) {
	rows, err := c.pool.Query(ctx, `SELECT database_name FROM database_map WHERE tenant_id = $1 ORDER BY 1`, tenantID)
	if err != nil {
		return nil, fmt.Errorf("listing database mappings: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("listing database mappings: %w", err)
	}
	if out == nil {
		out = []string{}
	}
	return out, nil
}

// TenantForDatabase returns the id of the tenant a database name is mapped to.
func (c *Catalog) TenantForDatabase(ctx context.Context, database string) (string, error) {
	var id string
	err := c.pool.QueryRow(ctx, `SELECT tenant_id FROM database_map WHERE database_name = $1`, database).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("reading database mapping: %w", err)
	}
	return id, nil
}
