package catalog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stratum-hq/stratum-proxy/internal/scramverifier"
)

// User is a proxy login, bound to a tenant subtree.
type User struct {
	Name      string    `json:"name"`
	TenantID  string    `json:"tenant_id"`
	CanSwitch bool      `json:"can_switch"`
	CreatedAt time.Time `json:"created_at"`
	// Verifier is the SCRAM-SHA-256 verifier; never serialised.
	Verifier string `json:"-"`
}

// CreateUser stores a proxy user with a SCRAM verifier of password, bound to the
// subtree of the tenant named by tenantRef.
func (c *Catalog) CreateUser(ctx context.Context, name, password, tenantRef string, canSwitch bool) (*User, error) {
	if err := CheckUserName(name); err != nil {
		return nil, err
	}
	if len(password) < 4 {
		return nil, fmt.Errorf("%w password: at least 4 characters", ErrInvalid)
	}
	t, err := c.GetTenant(ctx, tenantRef)
	if err != nil {
		return nil, fmt.Errorf("tenant %q: %w", tenantRef, err)
	}
	v, err := scramverifier.Make(password)
	if err != nil {
		return nil, fmt.Errorf("%w password: %v", ErrInvalid, err)
	}
	u := &User{Name: name, TenantID: t.ID, CanSwitch: canSwitch, Verifier: v}
	err = c.inTx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO proxy_users (name, verifier, tenant_id, can_switch)
			VALUES ($1, $2, $3, $4) RETURNING created_at`, name, v, t.ID, canSwitch).Scan(&u.CreatedAt); err != nil {
			return err
		}
		return appendAudit(ctx, tx, AuditEvent{Action: "user.create", Target: "user:" + name, TenantID: &t.ID,
			After: map[string]any{"name": name, "tenant_id": t.ID, "can_switch": canSwitch}})
	})
	if err := userWriteError(name, err); err != nil {
		return nil, fmt.Errorf("inserting user: %w", err)
	}
	return u, nil
}

// userWriteError classifies an error from writing proxy_users: a taken name
// (23505, also raised by the case-insensitive name trigger) is ErrConflict,
// a name the trigger refuses (23514) is ErrInvalid.
func userWriteError(name string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return fmt.Errorf("user %q (names are unique ignoring case): %w", name, ErrConflict)
	}
	if errors.As(err, &pe) && pe.Code == "23514" {
		return fmt.Errorf("%w user name: %s", ErrInvalid, pe.Message)
	}
	return err
}

// CheckUserName applies the rules every new proxy user name follows (the
// catalog's proxy_users_check_name trigger enforces the same): 1 to 63
// bytes, no NUL, no "." (a login user.tenant names a tenant), and not
// reserved: postgres, public, none, current_user, session_user,
// current_role, root, admin, replication, pgbouncer, or a name starting with
// pg_ or stratum (ignoring case). Uniqueness ignoring case is checked when
// the row is written. It fails with ErrInvalid.
func CheckUserName(name string) error {
	if name == "" || len(name) > 63 || strings.ContainsRune(name, 0) {
		return fmt.Errorf("%w user name: 1 to 63 bytes, no NUL", ErrInvalid)
	}
	if strings.Contains(name, ".") {
		return fmt.Errorf("%w user name %q: must not contain \".\" (a login user.tenant names a tenant)", ErrInvalid, name)
	}
	l := strings.ToLower(name)
	if slices.Contains(reservedUserNames, l) || strings.HasPrefix(l, "pg_") || strings.HasPrefix(l, "stratum") {
		return fmt.Errorf("%w user name %q: reserved (postgres, pg_*, stratum*, role keywords and admin names)", ErrInvalid, name)
	}
	return nil
}

var reservedUserNames = []string{"postgres", "public", "none", "current_user", "session_user", "current_role",
	"root", "admin", "replication", "pgbouncer"}

// UserFilter selects users for ListUsers.
type UserFilter struct {
	// Within, when set, is a tenant id: only users bound to that tenant or
	// one of its descendants.
	Within *string
}

// ListUsers returns the users f selects, by name. Verifiers are not read.
func (c *Catalog) ListUsers(ctx context.Context, f UserFilter) ([]*User, error) {
	rows, err := c.pool.Query(ctx, `SELECT name, tenant_id, can_switch, created_at FROM proxy_users
		WHERE $1::uuid IS NULL OR tenant_id IN (SELECT id FROM tenants
		      WHERE path <@ (SELECT path FROM tenants WHERE id = $1::uuid))
		ORDER BY name`, f.Within)
	if err != nil {
		return nil, fmt.Errorf("listing users: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*User, error) {
		var u User
		return &u, row.Scan(&u.Name, &u.TenantID, &u.CanSwitch, &u.CreatedAt)
	})
	if err != nil {
		return nil, fmt.Errorf("listing users: %w", err)
	}
	if out == nil {
		out = []*User{}
	}
	return out, nil
}

// UserChange is what UpdateUser changes; nil fields stay.
type UserChange struct {
	Password  *string
	TenantID  *string // a tenant id
	CanSwitch *bool
	// Within, when set, is the tenant id of a bound caller: the user and its
	// new tenant must lie in that subtree when the change is made, else
	// ErrNotFound (checked again here, inside the transaction).
	Within *string
}

// tenantWithin reports whether the tenant tenantID lies in within's subtree
// (always, for a nil within).
func tenantWithin(ctx context.Context, tx pgx.Tx, tenantID string, within *string) (bool, error) {
	if within == nil {
		return true, nil
	}
	var ok bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1
		AND path <@ (SELECT path FROM tenants WHERE id = $2))`, tenantID, *within).Scan(&ok)
	return ok, err
}

// UpdateUser changes the user called name, with the "user.update" audit row
// (before/after never carry the verifier; a password change shows as
// "password_changed": true), in one transaction. The proxy_users NOTIFY
// moves every router's generation, so new logins see the change at once.
// ErrNotFound when there is no such user.
func (c *Catalog) UpdateUser(ctx context.Context, name string, ch UserChange) (*User, error) {
	var verifier *string
	if ch.Password != nil {
		if len(*ch.Password) < 4 {
			return nil, fmt.Errorf("%w password: at least 4 characters", ErrInvalid)
		}
		v, err := scramverifier.Make(*ch.Password)
		if err != nil {
			return nil, fmt.Errorf("%w password: %v", ErrInvalid, err)
		}
		verifier = &v
	}
	var out User
	err := c.inTx(ctx, func(tx pgx.Tx) error {
		var before User
		err := tx.QueryRow(ctx, `SELECT name, tenant_id, can_switch, created_at FROM proxy_users
			WHERE name = $1 FOR UPDATE`, name).Scan(&before.Name, &before.TenantID, &before.CanSwitch, &before.CreatedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		for _, id := range []*string{&before.TenantID, ch.TenantID} {
			if id == nil {
				continue
			}
			if ok, err := tenantWithin(ctx, tx, *id, ch.Within); err != nil || !ok {
				if err == nil {
					err = ErrNotFound
				}
				return err
			}
		}
		if err := tx.QueryRow(ctx, `UPDATE proxy_users SET verifier = coalesce($2, verifier),
			tenant_id = coalesce($3::uuid, tenant_id), can_switch = coalesce($4, can_switch)
			WHERE name = $1 RETURNING name, tenant_id, can_switch, created_at`,
			name, verifier, ch.TenantID, ch.CanSwitch).Scan(&out.Name, &out.TenantID, &out.CanSwitch, &out.CreatedAt); err != nil {
			return err
		}
		after := map[string]any{"name": out.Name, "tenant_id": out.TenantID, "can_switch": out.CanSwitch}
		if verifier != nil {
			after["password_changed"] = true
		}
		tenants := &out.TenantID
		return appendAudit(ctx, tx, AuditEvent{Action: "user.update", Target: "user:" + name, TenantID: tenants,
			Before: map[string]any{"name": before.Name, "tenant_id": before.TenantID, "can_switch": before.CanSwitch},
			After:  after})
	})
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("updating user: %w", err)
	}
	return &out, nil
}

// DeleteUser removes the user called name, with the "user.delete" audit
// row, in one transaction. Sessions already logged in are not ended here.
// ErrNotFound when there is no such user, or (within set: a bound caller's
// tenant id) when it is not bound inside within's subtree.
func (c *Catalog) DeleteUser(ctx context.Context, name string, within *string) error {
	err := c.inTx(ctx, func(tx pgx.Tx) error {
		var u User
		err := tx.QueryRow(ctx, `DELETE FROM proxy_users WHERE name = $1 RETURNING name, tenant_id, can_switch`,
			name).Scan(&u.Name, &u.TenantID, &u.CanSwitch)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if ok, err := tenantWithin(ctx, tx, u.TenantID, within); err != nil || !ok {
			if err == nil {
				err = ErrNotFound // rolls the DELETE back
			}
			return err
		}
		return appendAudit(ctx, tx, AuditEvent{Action: "user.delete", Target: "user:" + name, TenantID: &u.TenantID,
			Before: map[string]any{"name": u.Name, "tenant_id": u.TenantID, "can_switch": u.CanSwitch}})
	})
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("deleting user: %w", err)
	}
	return nil
}

// GetUser finds a proxy user by name; ErrNotFound when there is none.
func (c *Catalog) GetUser(ctx context.Context, name string) (*User, error) {
	var u User
	err := c.pool.QueryRow(ctx, `SELECT name, tenant_id, can_switch, created_at, verifier
		FROM proxy_users WHERE name = $1`, name).Scan(&u.Name, &u.TenantID, &u.CanSwitch, &u.CreatedAt, &u.Verifier)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading user: %w", err)
	}
	return &u, nil
}
