package catalog

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// APIKey is an admin API credential. The secret is shown once, at creation; only
// its SHA-256 is stored.
type APIKey struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Scopes    []string   `json:"scopes"`
	TenantID  *string    `json:"tenant_id"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	// RateLimit is the key's own limit in requests per minute; 0: the server's default.
	RateLimit int `json:"rate_limit,omitempty"`
}

// HashAPIKey is how secrets are compared: by their SHA-256.
func HashAPIKey(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// CreateAPIKey makes a key and returns it with its secret (shown once).
func (c *Catalog) CreateAPIKey(ctx context.Context, name string, scopes []string, tenantID *string) (*APIKey, string, error) {
	id, _, err := NewID()
	if err != nil {
		return nil, "", err
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return nil, "", fmt.Errorf("making key: %w", err)
	}
	secret := "stk_" + base64.RawURLEncoding.EncodeToString(raw)
	if scopes == nil {
		scopes = []string{}
	}
	k := &APIKey{ID: id, Name: name, Scopes: scopes, TenantID: tenantID}
	err = c.inTx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO api_keys (id, name, key_hash, scopes, tenant_id)
			VALUES ($1, $2, $3, $4, $5) RETURNING created_at`, id, name, HashAPIKey(secret), scopes, tenantID).Scan(&k.CreatedAt); err != nil {
			return err
		}
		return appendAudit(ctx, tx, AuditEvent{Action: "key.create", Target: "key:" + id, TenantID: tenantID, After: k})
	})
	if err != nil {
		return nil, "", fmt.Errorf("inserting api key: %w", err)
	}
	return k, secret, nil
}

// LookupAPIKey finds the live key whose secret hashes to hash.
func (c *Catalog) LookupAPIKey(ctx context.Context, secret string) (*APIKey, error) {
	var k APIKey
	err := c.pool.QueryRow(ctx, `SELECT id, name, scopes, tenant_id, created_at, coalesce(rate_limit, 0) FROM api_keys
		WHERE key_hash = $1 AND revoked_at IS NULL`, HashAPIKey(secret)).Scan(&k.ID, &k.Name, &k.Scopes, &k.TenantID, &k.CreatedAt, &k.RateLimit)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading api key: %w", err)
	}
	return &k, nil
}
