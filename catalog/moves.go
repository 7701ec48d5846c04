package catalog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Placement-move errors.
var (
	// ErrMoveRunning refuses a second move of a tenant: one unfinished move
	// per tenant (a switched move counts until it is finalized).
	ErrMoveRunning = errors.New("catalog: the tenant has a move under way")
	// ErrMoveNotFound: no move has that id (or the actor may not see it).
	ErrMoveNotFound = errors.New("catalog: placement move not found")
	// ErrMovePhase refuses a step the move's current phase does not allow
	// (cancelling a switched move, finalizing a running one).
	ErrMovePhase = errors.New("catalog: the move's phase does not allow this")
)

// Move phases.
const (
	MovePending      = "pending"
	MoveProvisioning = "provisioning"
	MoveCopying      = "copying"
	MoveCatchingUp   = "catching_up"
	MoveCuttingOver  = "cutting_over"
	MoveSwitched     = "switched" // the tenant serves from the target; the source copy is kept
	MoveFinalized    = "finalized"
	MoveCancelled    = "cancelled"
	MoveFailed       = "failed"
	// MoveReverting: a switched move whose move back (a move with Reverts
	// naming it) runs; the tenant serves from its target still.
	MoveReverting = "reverting"
	// MoveReverted: a move whose move back switched (terminal).
	MoveReverted = "reverted"
)

// MoveRunningPhases are the phases before the switch, in which the tenant
// still serves from the source and the move can be cancelled.
var MoveRunningPhases = []string{MovePending, MoveProvisioning, MoveCopying, MoveCatchingUp, MoveCuttingOver}

// MoveTable is one table's copy progress.
type MoveTable struct {
	Name   string `json:"name"`
	Copied int64  `json:"rows_copied"`
	Total  int64  `json:"rows_total"`
}

// Move is a placement move of one tenant (tenant_moves, migration 0010).
type Move struct {
	ID            string `json:"id"`
	TenantID      string `json:"tenant_id"`
	TenantSlug    string `json:"tenant"`
	FromIsolation string `json:"from_isolation"`
	FromBackend   string `json:"from_backend"`
	FromDatabase  string `json:"from_database"`
	FromSchema    string `json:"from_schema"`
	ToIsolation   string `json:"to_isolation"`
	ToBackend     string `json:"to_backend"`
	ToDatabase    string `json:"to_database"`
	ToSchema      string `json:"to_schema"`
	// Phase is one of the Move* phase constants.
	Phase string `json:"phase"`
	// Error says why a move failed (or was cancelled).
	Error  string      `json:"error"`
	Tables []MoveTable `json:"tables"`
	// Lag is the captured changes not yet applied to the target.
	Lag       int64  `json:"lag"`
	CreatedBy string `json:"created_by"`
	// CleanupError says why cleaning up after the move (its capture on the
	// source, a half-built target) is not finished; the recovery sweep
	// retries while it is set.
	CleanupError string `json:"cleanup_error,omitempty"`
	// CleanupPending is set with a terminal phase (failed, cancelled,
	// finalized) until the cleanup after it succeeds: until then no new
	// move of the tenant starts.
	CleanupPending bool `json:"cleanup_pending"`
	// PauseMS is how long the cut-over held the tenant paused for the
	// switch, in milliseconds, up to the switch's catalog transaction (0
	// before the switch).
	PauseMS int64 `json:"pause_ms"`
	// Reverts is, for a move back (RevertMove), the switched move whose
	// kept source copy it brings up to date and switches to.
	Reverts string `json:"reverts,omitempty"`
	// SwitchXID is the target server's transaction id (xid8) taken in the
	// switch's pause (0: not recorded): the target's rows with a newer xmin
	// were written after the switch.
	SwitchXID int64 `json:"-"`
	// Owner is the proxy process (provisioner instance) running the move.
	Owner       string     `json:"-"`
	StartedAt   time.Time  `json:"started_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	FinishedAt  *time.Time `json:"finished_at"`
	FinalizedAt *time.Time `json:"finalized_at"`
}

// Running reports whether the move is before its switch (cancellable).
func (m *Move) Running() bool {
	for _, p := range MoveRunningPhases {
		if m.Phase == p {
			return true
		}
	}
	return false
}

const moveColumns = `m.id, m.tenant_id, t.slug, m.from_isolation, m.from_backend, m.from_database, m.from_schema,
	m.to_isolation, m.to_backend, m.to_database, m.to_schema, m.phase, m.error, m.tables, m.lag,
	m.created_by, m.cleanup_error, m.cleanup_pending, m.pause_ms, COALESCE(m.reverts::text, ''), COALESCE(m.switch_xid, 0), m.owner, m.started_at, m.updated_at,
	m.finished_at, m.finalized_at`

func scanMove(row pgx.Row) (*Move, error) {
	var m Move
	err := row.Scan(&m.ID, &m.TenantID, &m.TenantSlug, &m.FromIsolation, &m.FromBackend, &m.FromDatabase,
		&m.FromSchema, &m.ToIsolation, &m.ToBackend, &m.ToDatabase, &m.ToSchema, &m.Phase, &m.Error,
		&m.Tables, &m.Lag, &m.CreatedBy, &m.CleanupError, &m.CleanupPending, &m.PauseMS, &m.Reverts, &m.SwitchXID, &m.Owner, &m.StartedAt, &m.UpdatedAt, &m.FinishedAt, &m.FinalizedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrMoveNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading placement move: %w", err)
	}
	if m.Tables == nil {
		m.Tables = []MoveTable{}
	}
	return &m, nil
}

func getMove(ctx context.Context, q querier, id, suffix string) (*Move, error) {
	if !IsUUID(id) {
		return nil, ErrMoveNotFound
	}
	return scanMove(q.QueryRow(ctx, `SELECT `+moveColumns+` FROM tenant_moves m JOIN tenants t ON t.id = m.tenant_id
		WHERE m.id = $1`+suffix, id))
}

// reachableMove reads a move in tx and refuses (ErrMoveNotFound) one of a
// tenant outside the actor's subtree.
func reachableMove(ctx context.Context, tx pgx.Tx, id, suffix string) (*Move, error) {
	m, err := getMove(ctx, tx, id, suffix)
	if err != nil {
		return nil, err
	}
	t, err := getTenant(ctx, tx, m.TenantID, "")
	if err != nil {
		return nil, err
	}
	if err := checkReach(ctx, tx, t.Path); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, ErrMoveNotFound
		}
		return nil, err
	}
	return m, nil
}

// GetMove returns the move with this id; ErrMoveNotFound when there is none
// or its tenant is outside the subtree of the actor in ctx.
func (c *Catalog) GetMove(ctx context.Context, id string) (*Move, error) {
	var out *Move
	err := c.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		out, err = reachableMove(ctx, tx, id, "")
		return err
	})
	return out, err
}

// ListMoves returns the moves of the tenant with id tenantID (its slug will
// do; "" = of all tenants the actor in ctx reaches), newest first, at most
// limit (<= 0: 100). An unknown tenant has none.
func (c *Catalog) ListMoves(ctx context.Context, tenantID string, limit int) ([]*Move, error) {
	if limit <= 0 {
		limit = 100
	}
	if tenantID != "" && !IsUUID(tenantID) {
		t, err := c.GetTenant(ctx, tenantID)
		if errors.Is(err, ErrNotFound) {
			return []*Move{}, nil
		}
		if err != nil {
			return nil, err
		}
		tenantID = t.ID
	}
	var root *string
	if a := ActorFrom(ctx); a.TenantID != nil {
		root = a.TenantID
	}
	return c.queryMoves(ctx, "listing placement moves", `WHERE ($1::uuid IS NULL OR m.tenant_id = $1::uuid)
		AND ($2::uuid IS NULL OR t.path <@ (SELECT path FROM tenants WHERE id = $2::uuid))
		ORDER BY m.started_at DESC, m.id LIMIT $3`, nilIfEmpty(tenantID), root, limit)
}

// queryMoves returns the moves (joined with their tenants) that where
// (the rest of the query after the join) selects; what names the listing
// in an error.
func (c *Catalog) queryMoves(ctx context.Context, what, where string, args ...any) ([]*Move, error) {
	rows, err := c.pool.Query(ctx, `SELECT `+moveColumns+` FROM tenant_moves m JOIN tenants t ON t.id = m.tenant_id `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	out := []*Move{}
	for rows.Next() {
		m, err := scanMove(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

func nilIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// moveAudit is what an audit row records of a move.
func moveAudit(m *Move) map[string]any {
	out := map[string]any{"id": m.ID, "tenant": m.TenantSlug, "phase": m.Phase, "error": m.Error,
		"from_isolation": m.FromIsolation, "from_backend": m.FromBackend,
		"to_isolation": m.ToIsolation, "to_backend": m.ToBackend}
	if m.Reverts != "" {
		out["reverts"] = m.Reverts
	}
	return out
}

// setRevertedPhase moves the move that move back m reverts from phase from
// to phase to (in tx, with its audit row): reverting when m starts, switched
// again when m fails or is cancelled, reverted when m switches. Nothing
// when m is no move back or that move is not in phase from.
func setRevertedPhase(ctx context.Context, tx pgx.Tx, m *Move, from, to, action string) error {
	if m.Reverts == "" {
		return nil
	}
	before, err := getMove(ctx, tx, m.Reverts, " FOR UPDATE OF m")
	if err != nil {
		return err
	}
	if before.Phase != from {
		return nil
	}
	if _, err := tx.Exec(ctx, `UPDATE tenant_moves SET phase = $2, updated_at = now() WHERE id = $1`, before.ID, to); err != nil {
		return fmt.Errorf("updating the reverted move: %w", err)
	}
	after, err := getMove(ctx, tx, before.ID, "")
	if err != nil {
		return err
	}
	return appendAudit(ctx, tx, AuditEvent{Action: action, Target: "move:" + before.ID,
		TenantID: &after.TenantID, Before: moveAudit(before), After: map[string]any{"move": moveAudit(after), "move_back": m.ID}})
}

// InsertMove records a new move of m.TenantID in phase pending, with the
// "move.start" audit row. m's ID, placements, CreatedBy, Owner and Reverts
// are the caller's. ErrMoveRunning when the tenant has an unfinished move.
// A move back (Reverts set) needs the move it reverts switched (else
// ErrMovePhase), of the same tenant, from the placement it went to and to
// the one it left; that move becomes "reverting" (audit "move.revert").
func (c *Catalog) InsertMove(ctx context.Context, m *Move) (*Move, error) {
	var out *Move
	err := c.inTx(ctx, func(tx pgx.Tx) error {
		t, err := reachable(ctx, tx, m.TenantID, " FOR UPDATE")
		if err != nil {
			return fmt.Errorf("tenant %q: %w", m.TenantID, err)
		}
		var unclean string
		err = tx.QueryRow(ctx, `SELECT id::text FROM tenant_moves WHERE tenant_id = $1 AND cleanup_pending LIMIT 1`, t.ID).Scan(&unclean)
		if err == nil {
			return fmt.Errorf("%w: the cleanup after move %s of tenant %q has not finished yet (retried by the recovery sweep; see its cleanup_error)",
				ErrMoveRunning, unclean, t.Slug)
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("looking for unfinished move cleanups: %w", err)
		}
		if m.Reverts != "" {
			old, err := getMove(ctx, tx, m.Reverts, " FOR UPDATE OF m")
			if err != nil {
				return err
			}
			if old.Phase != MoveSwitched {
				return fmt.Errorf("%w: move %s is %s; only a switched move can be moved back", ErrMovePhase, old.ID, old.Phase)
			}
			if old.TenantID != t.ID || old.ToIsolation != m.FromIsolation || old.ToBackend != m.FromBackend ||
				old.ToDatabase != m.FromDatabase || old.ToSchema != m.FromSchema || old.FromIsolation != m.ToIsolation ||
				old.FromBackend != m.ToBackend || old.FromDatabase != m.ToDatabase || old.FromSchema != m.ToSchema {
				return fmt.Errorf("%w: a move back of move %s must go from its target to its source", ErrMovePhase, old.ID)
			}
			if t.Isolation != old.ToIsolation || t.Backend != old.ToBackend || t.Database != old.ToDatabase || t.Schema != old.ToSchema {
				return fmt.Errorf("%w: tenant %q is no longer where move %s put it", ErrMovePhase, t.Slug, old.ID)
			}
			// Before the insert: the one-open-move rule counts the move back.
			if err := setRevertedPhase(ctx, tx, m, MoveSwitched, MoveReverting, "move.revert"); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `INSERT INTO tenant_moves (id, tenant_id, from_isolation, from_backend, from_database,
			from_schema, to_isolation, to_backend, to_database, to_schema, created_by, owner, reverts)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
			m.ID, t.ID, m.FromIsolation, m.FromBackend, m.FromDatabase, m.FromSchema,
			m.ToIsolation, m.ToBackend, m.ToDatabase, m.ToSchema, m.CreatedBy, m.Owner, nilIfEmpty(m.Reverts))
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" && (pe.ConstraintName == "tenant_moves_one_open" || pe.ConstraintName == "tenant_moves_one_revert") {
			return fmt.Errorf("%w: tenant %q (finish, cancel or finalize it first)", ErrMoveRunning, t.Slug)
		}
		if err != nil {
			return fmt.Errorf("recording placement move: %w", err)
		}
		if out, err = getMove(ctx, tx, m.ID, ""); err != nil {
			return err
		}
		return appendAudit(ctx, tx, AuditEvent{Action: "move.start", Target: "move:" + m.ID,
			TenantID: &t.ID, After: moveAudit(out)})
	})
	return out, err
}

// SetMovePhase moves a move from one of the phases from (nil: any running
// phase) to phase, with errText as its error (kept when ""), and writes an
// audit row with action. A terminal phase (finalized, cancelled, failed)
// sets finished_at and cleanup_pending (SetMoveCleanup clears it); a move back cancelled or failed puts the move it reverts
// back to switched. ErrMovePhase when the move is in no phase of from;
// ErrMoveNotFound when the actor in ctx does not reach its tenant.
func (c *Catalog) SetMovePhase(ctx context.Context, id string, from []string, phase, errText, action string) (*Move, error) {
	if from == nil {
		from = MoveRunningPhases
	}
	var out *Move
	err := c.inTx(ctx, func(tx pgx.Tx) error {
		before, err := reachableMove(ctx, tx, id, " FOR UPDATE OF m")
		if err != nil {
			return err
		}
		ok := false
		for _, f := range from {
			ok = ok || before.Phase == f
		}
		if !ok {
			return fmt.Errorf("%w: move %s is %s", ErrMovePhase, id, before.Phase)
		}
		finished := phase == MoveFinalized || phase == MoveCancelled || phase == MoveFailed
		if _, err := tx.Exec(ctx, `UPDATE tenant_moves SET phase = $2, error = CASE WHEN $3 = '' THEN error ELSE $3 END,
			updated_at = now(),
			finished_at = CASE WHEN $4 AND finished_at IS NULL THEN now() ELSE finished_at END,
			cleanup_pending = cleanup_pending OR $4,
			finalized_at = CASE WHEN $2 = 'finalized' THEN now() ELSE finalized_at END
			WHERE id = $1`, id, phase, errText, finished); err != nil {
			return fmt.Errorf("updating placement move: %w", err)
		}
		if out, err = getMove(ctx, tx, id, ""); err != nil {
			return err
		}
		if err := appendAudit(ctx, tx, AuditEvent{Action: action, Target: "move:" + id,
			TenantID: &out.TenantID, Before: moveAudit(before), After: moveAudit(out)}); err != nil {
			return err
		}
		if phase == MoveCancelled || phase == MoveFailed {
			// A move back that gave up leaves the move it reverts switched.
			return setRevertedPhase(ctx, tx, out, MoveReverting, MoveSwitched, "move.revert_abandoned")
		}
		return nil
	})
	return out, err
}

// MoveProgress records a running move's per-table progress and lag, and is
// its heartbeat (updated_at). No audit row: no phase changes. It reports
// false when the move is no longer running (cancelled elsewhere).
func (c *Catalog) MoveProgress(ctx context.Context, id string, tables []MoveTable, lag int64) (bool, error) {
	var tv any // nil: keep the tables (a nil slice would be JSON null)
	if tables != nil {
		tv = tables
	}
	tag, err := c.pool.Exec(ctx, `UPDATE tenant_moves SET updated_at = now(),
		tables = COALESCE($2, tables), lag = CASE WHEN $3 < 0 THEN lag ELSE $3 END
		WHERE id = $1 AND phase = ANY($4)`, id, tv, lag, MoveRunningPhases)
	if err != nil {
		return false, fmt.Errorf("recording move progress: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// MovePlacement is where a switch puts a tenant.
type MovePlacement struct {
	Isolation, Backend, Database, Schema string
	// AppSchemaFrom is the app_schema_applied placement whose versions the
	// tenant's own placement record takes over ("" for a shared target:
	// shared tenants have none of their own).
	AppSchemaFrom string
	// AppSchemaKeep is the placement name the tenant's own versions (its
	// source's, a schema or database placement) are kept under after the
	// switch, for a move back to that copy ("": dropped).
	AppSchemaKeep string
	// PauseMS is how long the switch's pause has lasted, in milliseconds
	// (recorded as the move's pause_ms).
	PauseMS int64
	// SwitchXID is the target server's pg_current_xact_id() taken in the
	// pause, after the move's last write there (0: none).
	SwitchXID int64
}

// SwitchMove is a move's cut-over in the catalog, in one transaction: the
// tenant's placement (isolation, backend, database, schema) becomes the
// target's, its app schema record follows, the move goes from cutting_over
// to switched (audit "move.switch"), a move it moves back becomes reverted
// (audit "move.reverted"), and the move's pause of the tenant ends (audit
// "tenant.unpause"). The catalog's NOTIFY takes sessions there.
func (c *Catalog) SwitchMove(ctx context.Context, id string, to MovePlacement) (*Move, error) {
	var out *Move
	err := c.inTx(ctx, func(tx pgx.Tx) error {
		before, err := getMove(ctx, tx, id, " FOR UPDATE OF m")
		if err != nil {
			return err
		}
		if before.Phase != MoveCuttingOver {
			return fmt.Errorf("%w: move %s is %s, not cutting_over", ErrMovePhase, id, before.Phase)
		}
		t, err := getTenant(ctx, tx, before.TenantID, " FOR UPDATE")
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE tenants SET isolation = $2, backend = $3, database = $4, schema = $5,
			updated_at = now() WHERE id = $1`, t.ID, to.Isolation, to.Backend, to.Database, to.Schema); err != nil {
			return fmt.Errorf("switching the tenant's placement: %w", err)
		}
		// The source's versions are kept under AppSchemaKeep (a move back
		// switches to that copy again), the target's become the tenant's.
		stage := "switching:" + id
		steps := []struct{ from, to string }{{to.AppSchemaFrom, stage}, {t.ID, to.AppSchemaKeep}, {stage, t.ID}}
		for _, st := range steps {
			if st.from == "" {
				continue
			}
			if st.to == "" {
				if _, err := tx.Exec(ctx, `DELETE FROM app_schema_applied WHERE placement = $1`, st.from); err != nil {
					return err
				}
				continue
			}
			if _, err := tx.Exec(ctx, `DELETE FROM app_schema_applied WHERE placement = $1`, st.to); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE app_schema_applied SET placement = $2 WHERE placement = $1`, st.from, st.to); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE tenant_moves SET phase = 'switched', lag = 0, updated_at = now(),
			finished_at = now(), pause_ms = $2, switch_xid = NULLIF($3::bigint, 0) WHERE id = $1`, id, to.PauseMS, to.SwitchXID); err != nil {
			return err
		}
		if out, err = getMove(ctx, tx, id, ""); err != nil {
			return err
		}
		after, err := getTenant(ctx, tx, t.ID, "")
		if err != nil {
			return err
		}
		if err := appendAudit(ctx, tx, AuditEvent{Action: "move.switch", Target: "move:" + id,
			TenantID: &t.ID, Before: map[string]any{"move": moveAudit(before), "tenant": t},
			After: map[string]any{"move": moveAudit(out), "pause_ms": out.PauseMS, "tenant": after}}); err != nil {
			return err
		}
		if err := setRevertedPhase(ctx, tx, out, MoveReverting, MoveReverted, "move.reverted"); err != nil {
			return err
		}
		return unpauseMoveTx(ctx, tx, t, id)
	})
	return out, err
}

// unpauseMoveTx ends the pause move id holds on t, if any, with its audit row.
func unpauseMoveTx(ctx context.Context, tx pgx.Tx, t *Tenant, id string) error {
	p := &Pause{TenantID: t.ID, Slug: t.Slug}
	err := tx.QueryRow(ctx, `DELETE FROM tenant_pauses WHERE tenant_id = $1 AND paused_by = $2
		RETURNING reason, paused_by, paused_at`, t.ID, MovePauseBy+id).Scan(&p.Reason, &p.By, &p.PausedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ending the move's pause: %w", err)
	}
	return appendAudit(ctx, tx, AuditEvent{Action: "tenant.unpause", Target: "tenant:" + t.Slug,
		TenantID: &t.ID, Before: p})
}

// MovesToRecover returns the moves before their switch whose owner is not
// alive: owned by owner (this process, whose goroutines are gone) or with
// no heartbeat for stale.
func (c *Catalog) MovesToRecover(ctx context.Context, owner string, stale time.Duration) ([]*Move, error) {
	return c.queryMoves(ctx, "listing moves to recover", `WHERE m.phase = ANY($1) AND (m.owner = $2 OR m.updated_at < now() - pg_catalog.make_interval(secs => $3))
		ORDER BY m.started_at`, MoveRunningPhases, owner, stale.Seconds())
}

// MovesSwitchedBefore returns the switched (not finalized) moves that
// switched before t: their source copies have outlived the retention.
func (c *Catalog) MovesSwitchedBefore(ctx context.Context, t time.Time) ([]*Move, error) {
	return c.queryMoves(ctx, "listing switched moves", `WHERE m.phase = 'switched' AND m.finished_at < $1 ORDER BY m.finished_at`, t)
}

// SetMoveCleanup records the outcome of a cleanup after a move: why it is
// not finished (it stays pending), or "" when it is (no longer pending).
func (c *Catalog) SetMoveCleanup(ctx context.Context, id, errText string) error {
	if _, err := c.pool.Exec(ctx, `UPDATE tenant_moves SET cleanup_error = $2, cleanup_pending = $2 <> '' WHERE id = $1`, id, errText); err != nil {
		return fmt.Errorf("recording move cleanup: %w", err)
	}
	return nil
}

// MovesToClean returns the moves whose cleanup is not finished: it failed
// (cleanup_error), or it is pending since before stale ago (its process
// died while cleaning up; a live one records the outcome within moments).
func (c *Catalog) MovesToClean(ctx context.Context, stale time.Duration) ([]*Move, error) {
	return c.queryMoves(ctx, "listing moves to clean up", `WHERE (m.cleanup_error <> '' OR m.cleanup_pending AND m.updated_at < now() - $2 * interval '1 second')
		AND NOT m.phase = ANY($1) ORDER BY m.started_at`, MoveRunningPhases, stale.Seconds())
}

// OpenMoves returns the tenant's unfinished moves (running or switched).
func (c *Catalog) OpenMoves(ctx context.Context, tenantID string) ([]*Move, error) {
	return c.queryMoves(ctx, "listing open moves", `WHERE m.tenant_id = $1 AND m.phase NOT IN ('finalized', 'cancelled', 'failed', 'reverted')
		ORDER BY m.started_at DESC`, tenantID)
}

// UnpauseMove ends the pause move id holds on its tenant (a cut-over that
// gave up or failed), with the audit row; nothing when there is none.
func (c *Catalog) UnpauseMove(ctx context.Context, id string) error {
	return c.inTx(ctx, func(tx pgx.Tx) error {
		m, err := getMove(ctx, tx, id, "")
		if err != nil {
			return err
		}
		t, err := getTenant(ctx, tx, m.TenantID, " FOR UPDATE")
		if err != nil {
			return err
		}
		return unpauseMoveTx(ctx, tx, t, id)
	})
}
