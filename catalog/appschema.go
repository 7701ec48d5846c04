package catalog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// AppSchema is one applied piece of the app's DDL.
type AppSchema struct {
	Version int
	SQL     string
}

// AddAppSchema records DDL as the next app schema version, or returns the
// existing version when the same text was recorded before (re-runs are no-ops).
func (c *Catalog) AddAppSchema(ctx context.Context, sql string) (version int, added bool, err error) {
	sum := sha256.Sum256([]byte(sql))
	checksum := hex.EncodeToString(sum[:])
	err = c.pool.QueryRow(ctx, `SELECT version FROM app_schema WHERE checksum = $1`, checksum).Scan(&version)
	if err == nil {
		return version, false, nil
	}
	if err != pgx.ErrNoRows {
		return 0, false, fmt.Errorf("reading app schema: %w", err)
	}
	err = c.pool.QueryRow(ctx, `INSERT INTO app_schema (checksum, sql) VALUES ($1, $2)
		ON CONFLICT (checksum) DO UPDATE SET checksum = excluded.checksum RETURNING version`, checksum, sql).Scan(&version)
	if err != nil {
		return 0, false, fmt.Errorf("recording app schema: %w", err)
	}
	return version, true, nil
}

// AppSchemas returns every recorded app schema version in order.
func (c *Catalog) AppSchemas(ctx context.Context) ([]AppSchema, error) {
	rows, err := c.pool.Query(ctx, `SELECT version, sql FROM app_schema ORDER BY version`)
	if err != nil {
		return nil, fmt.Errorf("listing app schema: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (AppSchema, error) {
		var s AppSchema
		return s, r.Scan(&s.Version, &s.SQL)
	})
}

// AppSchemaApplied reports the versions a placement ("shared", "template" or a
// tenant id) already has.
func (c *Catalog) AppSchemaApplied(ctx context.Context, placement string) (map[int]bool, error) {
	rows, err := c.pool.Query(ctx, `SELECT version FROM app_schema_applied WHERE placement = $1`, placement)
	if err != nil {
		return nil, fmt.Errorf("listing applied app schema: %w", err)
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil, fmt.Errorf("listing applied app schema: %w", err)
	}
	out := make(map[int]bool, len(vs))
	for _, v := range vs {
		out[v] = true
	}
	return out, nil
}

// MarkAppSchemaApplied records that a placement has a version.
func (c *Catalog) MarkAppSchemaApplied(ctx context.Context, version int, placement string) error {
	_, err := c.pool.Exec(ctx, `INSERT INTO app_schema_applied (version, placement) VALUES ($1, $2)
		ON CONFLICT DO NOTHING`, version, placement)
	if err != nil {
		return fmt.Errorf("recording applied app schema: %w", err)
	}
	return nil
}

// ForgetAppSchemaPlacement removes the record of a placement's versions (a
// placement move's target that was dropped).
func (c *Catalog) ForgetAppSchemaPlacement(ctx context.Context, placement string) error {
	if _, err := c.pool.Exec(ctx, `DELETE FROM app_schema_applied WHERE placement = $1`, placement); err != nil {
		return fmt.Errorf("forgetting applied app schema: %w", err)
	}
	return nil
}
