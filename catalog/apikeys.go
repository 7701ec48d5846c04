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
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrKeyRevoked is returned for a change that needs a live key (a rotation)
// when the key is revoked.
var ErrKeyRevoked = errors.New("api key is revoked")

// APIKey is an admin API credential. The secret is shown once, at creation; only
// its SHA-256 is stored.
type APIKey struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Scopes    []string   `json:"scopes"`
	TenantID  *string    `json:"tenant_id"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at"`
	// RateLimit is the key's own limit in requests per minute; 0: the server's default.
	RateLimit int `json:"rate_limit,omitempty"`
	// RotatedFrom is the id of the key this one replaced; nil for a key that
	// was created, not rotated.
	RotatedFrom *string `json:"rotated_from"`
}

// NewAPIKey is what InsertAPIKey needs.
type NewAPIKey struct {
	// Name is a label for people; names need not be unique.
	Name string
	// Scopes the key holds; the catalog stores them as given (the admin API
	// checks them).
	Scopes []string
	// TenantID binds the key to that tenant's subtree; nil: unbound.
	TenantID *string
	// RateLimit in requests per minute; 0: the server's default.
	RateLimit int
}

// MaxAPIKeyNameLen bounds an API key's name, in bytes.
const MaxAPIKeyNameLen = 200

const apiKeyColumns = `id, name, scopes, tenant_id, created_at, revoked_at, coalesce(rate_limit, 0), rotated_from`

func scanAPIKey(row pgx.Row) (*APIKey, error) {
	var k APIKey
	err := row.Scan(&k.ID, &k.Name, &k.Scopes, &k.TenantID, &k.CreatedAt, &k.RevokedAt, &k.RateLimit, &k.RotatedFrom)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading api key: %w", err)
	}
	return &k, nil
}

// HashAPIKey is how secrets are compared: by their SHA-256.
func HashAPIKey(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// newAPIKeySecret returns a fresh random secret, "stk_" and 32 base64url
// characters (192 bits).
func newAPIKeySecret() (string, error) {
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("making key: %w", err)
	}
	return "stk_" + base64.RawURLEncoding.EncodeToString(raw), nil
}

// CreateAPIKey makes a key with the server's default rate limit and returns
// it with its secret (shown once). See InsertAPIKey.
func (c *Catalog) CreateAPIKey(ctx context.Context, name string, scopes []string, tenantID *string) (*APIKey, string, error) {
	return c.InsertAPIKey(ctx, NewAPIKey{Name: name, Scopes: scopes, TenantID: tenantID})
}

// InsertAPIKey stores a new key, with its "key.create" audit row, and returns
// it with its secret: the only time the secret exists outside the caller's
// hands, since only its hash is stored. It fails with ErrInvalid for an empty
// or overlong name or a negative rate limit, and ErrNotFound for an unknown
// tenant.
func (c *Catalog) InsertAPIKey(ctx context.Context, nk NewAPIKey) (*APIKey, string, error) {
	if nk.Name == "" || len(nk.Name) > MaxAPIKeyNameLen {
		return nil, "", fmt.Errorf("%w api key name: give 1 to %d bytes", ErrInvalid, MaxAPIKeyNameLen)
	}
	if nk.RateLimit < 0 {
		return nil, "", fmt.Errorf("%w rate limit %d: give a positive number of requests per minute", ErrInvalid, nk.RateLimit)
	}
	var out *APIKey
	var secret string
	err := c.inTx(ctx, func(tx pgx.Tx) error {
		if err := keyReachable(ctx, tx, &APIKey{TenantID: nk.TenantID}); err != nil {
			return err
		}
		var err error
		out, secret, err = insertAPIKey(ctx, tx, nk, nil)
		if err != nil {
			return err
		}
		return appendAudit(ctx, tx, AuditEvent{Action: "key.create", Target: "key:" + out.ID, TenantID: out.TenantID, After: out})
	})
	if err != nil {
		return nil, "", fmt.Errorf("creating api key: %w", err)
	}
	return out, secret, nil
}

// insertAPIKey writes one key row in tx.
func insertAPIKey(ctx context.Context, tx pgx.Tx, nk NewAPIKey, rotatedFrom *string) (*APIKey, string, error) {
	id, _, err := NewID()
	if err != nil {
		return nil, "", err
	}
	secret, err := newAPIKeySecret()
	if err != nil {
		return nil, "", err
	}
	scopes := nk.Scopes
	if scopes == nil {
		scopes = []string{} // the column refuses NULL
	}
	k, err := scanAPIKey(tx.QueryRow(ctx, `INSERT INTO api_keys (id, name, key_hash, scopes, tenant_id, rate_limit, rotated_from)
		VALUES ($1, $2, $3, $4, $5, nullif($6, 0), $7) RETURNING `+apiKeyColumns,
		id, nk.Name, HashAPIKey(secret), scopes, nk.TenantID, nk.RateLimit, rotatedFrom))
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23503" {
		return nil, "", fmt.Errorf("tenant of the key: %w", ErrNotFound)
	}
	if errors.As(err, &pe) && pe.Code == "22P02" {
		return nil, "", fmt.Errorf("tenant of the key: %w", ErrNotFound) // not a uuid
	}
	if err != nil {
		return nil, "", err
	}
	return k, secret, nil
}

// LookupAPIKey finds the live key whose secret is given; ErrNotFound when
// there is none (unknown or revoked).
func (c *Catalog) LookupAPIKey(ctx context.Context, secret string) (*APIKey, error) {
	return scanAPIKey(c.pool.QueryRow(ctx, `SELECT `+apiKeyColumns+` FROM api_keys
		WHERE key_hash = $1 AND revoked_at IS NULL`, HashAPIKey(secret)))
}

// GetAPIKey returns the key with id, live or revoked; ErrNotFound when there
// is none (an id that is not a UUID included).
func (c *Catalog) GetAPIKey(ctx context.Context, id string) (*APIKey, error) {
	return getAPIKey(ctx, c.pool, id, "")
}

func getAPIKey(ctx context.Context, q querier, id, suffix string) (*APIKey, error) {
	if !IsUUID(id) {
		return nil, ErrNotFound
	}
	return scanAPIKey(q.QueryRow(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE id = $1`+suffix, id))
}

// APIKeyFilter selects the keys ListAPIKeys returns.
type APIKeyFilter struct {
	// IncludeRevoked lists revoked keys too.
	IncludeRevoked bool
	// Within, when set, is a tenant id: only keys bound to that tenant or one
	// of its descendants are listed (never unbound keys).
	Within *string
}

// ListAPIKeys returns the keys f selects, oldest first. There are few keys,
// so the list is not paged.
func (c *Catalog) ListAPIKeys(ctx context.Context, f APIKeyFilter) ([]*APIKey, error) {
	rows, err := c.pool.Query(ctx, `SELECT `+apiKeyColumns+` FROM api_keys
		WHERE ($1 OR revoked_at IS NULL)
		  AND ($2::uuid IS NULL OR tenant_id IN (SELECT id FROM tenants
		       WHERE path <@ (SELECT path FROM tenants WHERE id = $2::uuid)))
		ORDER BY created_at, id`, f.IncludeRevoked, f.Within)
	if err != nil {
		return nil, fmt.Errorf("listing api keys: %w", err)
	}
	defer rows.Close()
	out := []*APIKey{}
	for rows.Next() {
		k, err := scanAPIKey(rows)
		if err != nil {
			return nil, fmt.Errorf("listing api keys: %w", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing api keys: %w", err)
	}
	return out, nil
}

// RevokeAPIKey revokes the key with id and returns it. Revoking a revoked key
// changes nothing and writes no audit row; otherwise the "key.revoke" audit
// row is written in the same transaction. ErrNotFound when there is no such
// key.
func (c *Catalog) RevokeAPIKey(ctx context.Context, id string) (*APIKey, error) {
	var out *APIKey
	err := c.inTx(ctx, func(tx pgx.Tx) error {
		before, err := getAPIKey(ctx, tx, id, " FOR UPDATE")
		if err == nil {
			err = keyReachable(ctx, tx, before)
		}
		if err != nil {
			return err
		}
		if before.RevokedAt != nil {
			out = before
			return nil
		}
		out, err = scanAPIKey(tx.QueryRow(ctx, `UPDATE api_keys SET revoked_at = now() WHERE id = $1 RETURNING `+apiKeyColumns, before.ID))
		if err != nil {
			return err
		}
		return appendAudit(ctx, tx, AuditEvent{Action: "key.revoke", Target: "key:" + out.ID, TenantID: out.TenantID,
			Before: before, After: out})
	})
	if err != nil {
		return nil, fmt.Errorf("revoking api key: %w", err)
	}
	return out, nil
}

// RotateAPIKey replaces the live key with id by a new key with a new secret
// and the same name, scopes, tenant and rate limit (its RotatedFrom is id),
// and revokes the old key, in one transaction with the "key.rotate" audit
// row (before: the old key, after: the new one). It returns the new key and
// its secret. ErrNotFound when there is no such key, ErrKeyRevoked when it is
// revoked.
func (c *Catalog) RotateAPIKey(ctx context.Context, id string) (*APIKey, string, error) {
	var out *APIKey
	var secret string
	err := c.inTx(ctx, func(tx pgx.Tx) error {
		old, err := getAPIKey(ctx, tx, id, " FOR UPDATE")
		if err == nil {
			err = keyReachable(ctx, tx, old)
		}
		if err != nil {
			return err
		}
		if old.RevokedAt != nil {
			return fmt.Errorf("key %s: %w", old.ID, ErrKeyRevoked)
		}
		if _, err := tx.Exec(ctx, `UPDATE api_keys SET revoked_at = now() WHERE id = $1`, old.ID); err != nil {
			return err
		}
		out, secret, err = insertAPIKey(ctx, tx, NewAPIKey{Name: old.Name, Scopes: old.Scopes,
			TenantID: old.TenantID, RateLimit: old.RateLimit}, &old.ID)
		if err != nil {
			return err
		}
		return appendAudit(ctx, tx, AuditEvent{Action: "key.rotate", Target: "key:" + old.ID, TenantID: old.TenantID,
			Before: old, After: out})
	})
	if err != nil {
		return nil, "", fmt.Errorf("rotating api key: %w", err)
	}
	return out, secret, nil
}
