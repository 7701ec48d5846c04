package catalog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// Pause is a tenant's pause: while it stands, the tenant's sessions (and
// those of its subtree) start no new transaction; each waits in the proxy
// until the pause ends.
type Pause struct {
	TenantID string `json:"tenant_id"`
	Slug     string `json:"slug"`
	// Reason says why, e.g. "placement move 3f2a…" or an operator's note.
	Reason string `json:"reason"`
	// By is who paused: "move:<id>" for a placement move's cut-over, else
	// the actor's key id.
	By       string    `json:"paused_by"`
	PausedAt time.Time `json:"paused_at"`
}

// MaxPauseReasonLen bounds a pause's reason, in bytes.
const MaxPauseReasonLen = 500

// PauseTenant pauses the tenant named by ref (within the actor's subtree)
// for reason, recording by as who paused it, and writes an audit row. A
// tenant already paused is refused with ErrConflict: one pause at a time, so
// a move's cut-over never resumes an operator's pause or the reverse.
func (c *Catalog) PauseTenant(ctx context.Context, ref, reason, by string) (*Pause, error) {
	if reason == "" || len(reason) > MaxPauseReasonLen || strings.IndexByte(reason, 0) >= 0 || !utf8.ValidString(reason) {
		return nil, fmt.Errorf("%w pause reason: give 1 to %d bytes of text", ErrInvalid, MaxPauseReasonLen)
	}
	var out *Pause
	err := c.inTx(ctx, func(tx pgx.Tx) error {
		t, err := reachable(ctx, tx, ref, " FOR UPDATE")
		if err != nil {
			return fmt.Errorf("tenant %q: %w", ref, err)
		}
		p := &Pause{TenantID: t.ID, Slug: t.Slug, Reason: reason, By: by}
		err = tx.QueryRow(ctx, `INSERT INTO tenant_pauses (tenant_id, reason, paused_by) VALUES ($1, $2, $3)
			ON CONFLICT (tenant_id) DO NOTHING RETURNING paused_at`, t.ID, reason, by).Scan(&p.PausedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: tenant %q is paused already", ErrConflict, t.Slug)
		}
		if err != nil {
			return fmt.Errorf("pausing tenant %q: %w", t.Slug, err)
		}
		out = p
		return appendAudit(ctx, tx, AuditEvent{Action: "tenant.pause", Target: "tenant:" + t.Slug,
			TenantID: &t.ID, After: p})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// MovePauseBy is the prefix of paused_by for a placement move's pause:
// "move:<move id>".
const MovePauseBy = "move:"

// UnpauseTenant ends the pause of the tenant named by ref when by paused it;
// by "" (an operator) ends any pause but a placement move's, which only the
// move ends (ErrConflict: cancel the move instead). It writes an audit row
// and returns false when the tenant was not paused (by by).
func (c *Catalog) UnpauseTenant(ctx context.Context, ref, by string) (bool, error) {
	var unpaused bool
	err := c.inTx(ctx, func(tx pgx.Tx) error {
		t, err := reachable(ctx, tx, ref, " FOR UPDATE")
		if err != nil {
			return fmt.Errorf("tenant %q: %w", ref, err)
		}
		p := &Pause{TenantID: t.ID, Slug: t.Slug}
		err = tx.QueryRow(ctx, `SELECT reason, paused_by, paused_at FROM tenant_pauses WHERE tenant_id = $1`,
			t.ID).Scan(&p.Reason, &p.By, &p.PausedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the pause of tenant %q: %w", t.Slug, err)
		}
		switch {
		case by == "" && strings.HasPrefix(p.By, MovePauseBy):
			return fmt.Errorf("%w: tenant %q is paused by placement move %s; cancel the move instead",
				ErrConflict, t.Slug, strings.TrimPrefix(p.By, MovePauseBy))
		case by != "" && p.By != by:
			return nil
		}
		if _, err := tx.Exec(ctx, `DELETE FROM tenant_pauses WHERE tenant_id = $1`, t.ID); err != nil {
			return fmt.Errorf("unpausing tenant %q: %w", t.Slug, err)
		}
		unpaused = true
		return appendAudit(ctx, tx, AuditEvent{Action: "tenant.unpause", Target: "tenant:" + t.Slug,
			TenantID: &t.ID, Before: p})
	})
	return unpaused, err
}

// PausingAncestor returns the topmost pause on the path from the root to the
// tenant with id tenantID (that tenant included), or nil when none of them
// is paused: a reseller paused pauses its clients too.
func (c *Catalog) PausingAncestor(ctx context.Context, tenantID string) (*Pause, error) {
	p := &Pause{}
	err := c.pool.QueryRow(ctx, `SELECT t.id, t.slug, p.reason, p.paused_by, p.paused_at
		FROM tenants tg
		JOIN tenants t ON t.path @> tg.path
		JOIN tenant_pauses p ON p.tenant_id = t.id
		WHERE tg.id = $1 ORDER BY t.depth LIMIT 1`, tenantID).Scan(&p.TenantID, &p.Slug, &p.Reason, &p.By, &p.PausedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading tenant pauses: %w", err)
	}
	return p, nil
}
