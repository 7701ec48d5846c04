package catalog

import (
	"context"
	"errors"
	"fmt"
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
	if name == "" || len(name) > 63 {
		return nil, fmt.Errorf("%w user name: 1 to 63 characters", ErrInvalid)
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
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return nil, fmt.Errorf("user %q: %w", name, ErrConflict)
	}
	if err != nil {
		return nil, fmt.Errorf("inserting user: %w", err)
	}
	return u, nil
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
