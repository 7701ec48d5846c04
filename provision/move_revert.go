package provision

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/sqlquote"
)

// Moving a tenant back fast. A switched move M keeps the tenant's source
// copy (fenced: movedFenceSQL) until it is finalized. RevertMove starts a
// move back M2 (Reverts = M) from M's target to that copy, which runs as any
// move (capture on the live placement, catch-up, verification point,
// narrowing, switch) but makes no placement and copies nothing whole:
//
//   - prepareKept: M's fence on the copy lets exactly M2's applier through
//     (keptFenceSQL: by the backend's pid; every other writer, a stale
//     session of the tenant included, still gets 40001), and the copy's app
//     triggers are off (one by one: not M's capture triggers, which are the
//     fence);
//   - reconcile, in place of the copy: from one snapshot of the live
//     placement (taken after M2's capture was installed, as the copy's is),
//     each table's keys and row hashes are streamed into a temporary table
//     of the copy's session and compared there with the copy's rows (hash
//     joins), and only the rows that differ are written: rows missing or
//     different upserted, rows only in the copy deleted. Reads are
//     O(table), writes O(changes since M switched): no CREATE DATABASE, no
//     copy of the rows, no index builds;
//   - in the switch's pause, after the checks, M's capture function becomes
//     a no-op (the copy is live again the moment the catalog says so), and
//     after the switch M's capture goes; M becomes "reverted".
//
// A move back that fails or is cancelled leaves M switched (catalog) and
// its copy fenced again without the exception, its triggers on; the copy is
// then partly brought up to date, which a later move back compares again
// and a finalize drops. Everything a move back writes into the copy, it
// writes as the tenant's role, as a move does.

// moveAppSchemaName is the app schema placement name of a move's target
// until the switch hands its versions to the tenant's id: for a move back
// the versions its target (the kept copy) was left with, kept under the
// reverted move's keptAppSchemaName.
func moveAppSchemaName(m *catalog.Move) string {
	if m.Reverts != "" {
		return "move:" + m.Reverts
	}
	return "move:" + m.ID
}

// keptAppSchemaName is the name a switched move's source versions are kept
// under (a schema or database source) until it is finalized or moved back.
func keptAppSchemaName(m *catalog.Move) string { return "move:" + m.ID }

// RevertMove starts a move back of the switched move id to its kept source
// copy (see above) and returns it (phase pending; Reverts = id); the move it
// reverts is "reverting" while it runs. Errors: catalog.ErrMoveNotFound,
// catalog.ErrMovePhase unless the move is switched, ErrInvalidMove when the
// kept copy cannot take the tenant back (the app schema changed since the
// switch, tables the tenant made itself).
func (p *Provisioner) RevertMove(ctx context.Context, id, actor string) (*catalog.Move, error) {
	m, err := p.cat.GetMove(ctx, id)
	if err != nil {
		return nil, err
	}
	if m.Phase != catalog.MoveSwitched {
		return nil, fmt.Errorf("%w: move %s is %s; only a switched move (its source copy kept) can be moved back",
			catalog.ErrMovePhase, id, m.Phase)
	}
	kept, cur, err := p.moveTenants(ctx, m)
	if err != nil {
		return nil, err
	}
	if cur.Status != catalog.StatusActive && cur.Status != catalog.StatusSuspended {
		return nil, fmt.Errorf("%w: tenant %q is %s; only active or suspended tenants move", ErrInvalidMove, cur.Slug, cur.Status)
	}
	if err := p.keptSchemaCurrent(ctx, m, kept, cur); err != nil {
		return nil, err
	}
	if err := p.checkMovable(ctx, cur, kept); err != nil {
		return nil, err
	}
	nid, _, err := catalog.NewID()
	if err != nil {
		return nil, err
	}
	return p.insertAndLaunch(ctx, &catalog.Move{ID: nid, TenantID: m.TenantID,
		FromIsolation: m.ToIsolation, FromBackend: m.ToBackend, FromDatabase: m.ToDatabase, FromSchema: m.ToSchema,
		ToIsolation: m.FromIsolation, ToBackend: m.FromBackend, ToDatabase: m.FromDatabase, ToSchema: m.FromSchema,
		CreatedBy: actor, Reverts: m.ID})
}

// keptSchemaCurrent refuses (ErrInvalidMove) a move back to a kept copy
// that lacks an app schema version the tenant's placement has: schema
// changes are applied to the placements tenants serve from, not to kept
// copies.
func (p *Provisioner) keptSchemaCurrent(ctx context.Context, m *catalog.Move, kept, cur *catalog.Tenant) error {
	if kept.Isolation == catalog.IsolationShared {
		return nil // the shared tables get every version
	}
	have, err := p.cat.AppSchemaApplied(ctx, keptAppSchemaName(m))
	if err != nil {
		return err
	}
	name := cur.ID
	if cur.Isolation == catalog.IsolationShared {
		name = "shared"
	}
	want, err := p.cat.AppSchemaApplied(ctx, name)
	if err != nil {
		return err
	}
	var missing []string
	for v := range want {
		if !have[v] {
			missing = append(missing, fmt.Sprint(v))
		}
	}
	if len(have) == 0 || len(missing) > 0 {
		return fmt.Errorf("%w: the kept copy of move %s lacks app schema versions applied since its switch (%s); move the tenant with a new move instead",
			ErrInvalidMove, m.ID, strings.Join(missing, ", "))
	}
	return nil
}

// revertedMove is the move r moves back (only its id matters to moveNames).
func (r *moveRun) revertedMove() *catalog.Move {
	return &catalog.Move{ID: r.m.Reverts, TenantID: r.m.TenantID}
}

// keptFenceSQL is movedFenceSQL with one exception: the backend with pid
// (move back id's applier, logged in as the tenant's role) may write. A
// tenant cannot become that backend: its sessions reach this copy only
// through a proxy that has not yet seen the earlier switch, each on a
// backend of its own, and the pid is unique among live backends. The
// applier's backend ends only with the move back, whose failure puts
// movedFenceSQL back (quiesceMove, before anything else). The function's
// source names the move back (anotherMoveBack reads it).
func keptFenceSQL(fn string, pid uint32, id string) string {
	return strings.Replace(movedFenceSQL(fn), "BEGIN\n",
		fmt.Sprintf("BEGIN\n\t-- %s%s\n\tIF pg_catalog.pg_backend_pid() = %d THEN RETURN NULL; END IF;\n", keptFenceMark, id, pid), 1)
}

// keptFenceMark precedes, in a kept copy's fence with an exception
// (keptFenceSQL), the id of the move back whose applier it lets through.
const keptFenceMark = "the applier of move back "

// anotherMoveBack reports, in tx (which holds the reverted move's advisory
// lock), whether the kept copy's fence fn lets through the applier of a
// move back other than id: that one runs now and the copy is its to
// re-fence, so a late cleanup of id (a retry of the recovery sweep, or one
// that waited for the tenant's locks) must leave the fence and the
// triggers alone.
func anotherMoveBack(ctx context.Context, tx pgx.Tx, fn, id string) (bool, error) {
	var src string
	err := tx.QueryRow(ctx, `SELECT COALESCE((SELECT prosrc FROM pg_catalog.pg_proc WHERE oid = pg_catalog.to_regprocedure($1)), '')`, fn+"()").Scan(&src)
	return strings.Contains(src, keptFenceMark) && !strings.Contains(src, keptFenceMark+id), err
}

// prepareKept readies the kept copy (r's target) for a move back: the
// reverted move's fence lets r's applier (dstT) through, and the copy's app
// triggers (every user trigger but the reverted move's capture triggers)
// are off, as a new target's are during its copy.
func (r *moveRun) prepareKept(ctx context.Context) error {
	old := r.revertedMove()
	_, fn, trig := moveNames(old)
	exists, err := functionExists(ctx, r.dstAdmin, fn)
	if err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("the kept copy has no fence of move %s (finalized or cleaned up?); it cannot be moved back to", old.ID)
	}
	if err := replaceFunction(ctx, r.dstAdmin, old.ID, keptFenceSQL(fn, r.dstT.PgConn().PID(), r.m.ID)); err != nil {
		return fmt.Errorf("letting the move back's writer past the kept copy's fence: %w", err)
	}
	if r.dst.Isolation == catalog.IsolationShared {
		return nil // the shared tables' triggers are the admin's, on for every tenant
	}
	rows, err := r.dstAdmin.Query(ctx, `SELECT c.relname::pg_catalog.text, t.tgname::pg_catalog.text FROM pg_catalog.pg_trigger t
		JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND NOT t.tgisinternal AND t.tgenabled <> 'D' AND NOT t.tgname = ANY($2)`,
		r.dst.Schema, captureTriggerNames(trig))
	if err != nil {
		return err
	}
	var stmts []string
	var rel, name string
	if _, err := pgx.ForEachRow(rows, []any{&rel, &name}, func() error {
		stmts = append(stmts, "ALTER TABLE "+quoteIdent(r.dst.Schema)+"."+quoteIdent(rel)+" DISABLE TRIGGER "+quoteIdent(name))
		return nil
	}); err != nil {
		return err
	}
	if err := execAll(ctx, r.dstT, stmts...); err != nil {
		return fmt.Errorf("turning off the kept copy's triggers: %w", err)
	}
	return r.recordKept(ctx, fn, trig)
}

// The tenant's role owns a kept schema or database copy, so it may run DDL
// there, which no fence (a row trigger) stops: turn the fence off and
// write, rewrite a table (ALTER … TYPE … USING), drop one. Before the move
// back's verification point the full verification sees what that did to
// the rows; after it only the switch's keyed check of the captured changes
// runs, and the switch would make such a copy live. So prepareKept records
// the copy's catalog (keptCatalogSQL) once the fence lets the applier
// through and the app's triggers are off, after checking that the fence's
// triggers are on and every other trigger off (the tenant may have turned
// the fence off since the switch, or turn a trigger on meanwhile), and
// lockKept compares it in the switch's pause.

// keptCatalogSQL lists, for a kept copy's schema ($1), each catalog row
// that decides what the copy holds or what a write there runs, as a name
// and the row's identity: the schema, its relations (with relfilenode,
// which a rewrite changes), their columns, defaults, constraints, indexes,
// triggers, rules and policies, and the schema's functions and types. DDL
// updates, adds or removes such a row, and an update changes its xmin (a
// trigger turned off and on again is not the one recorded). Catalogs only,
// run by the admin.
const keptCatalogSQL = `WITH n AS (SELECT oid, xmin, nspname FROM pg_catalog.pg_namespace WHERE nspname = $1),
	r AS (SELECT c.oid, c.relname FROM pg_catalog.pg_class c JOIN n ON c.relnamespace = n.oid)
SELECT 'schema ' || n.nspname, ROW(n.oid, n.xmin)::pg_catalog.text FROM n
UNION ALL SELECT CASE WHEN c.relkind IN ('r', 'p') THEN 'table ' WHEN c.relkind = 'i' THEN 'index ' ELSE 'relation ' END || c.relname,
	ROW(c.oid, c.xmin, c.relfilenode)::pg_catalog.text FROM pg_catalog.pg_class c JOIN n ON c.relnamespace = n.oid
UNION ALL SELECT 'column ' || a.attname || ' of table ' || r.relname, ROW(a.attnum, a.xmin)::pg_catalog.text
	FROM pg_catalog.pg_attribute a JOIN r ON a.attrelid = r.oid WHERE a.attnum > 0
UNION ALL SELECT 'default ' || d.adnum || ' of table ' || r.relname, ROW(d.oid, d.xmin)::pg_catalog.text
	FROM pg_catalog.pg_attrdef d JOIN r ON d.adrelid = r.oid
UNION ALL SELECT 'constraint ' || k.conname || COALESCE(' on table ' || r.relname, ' on type ' || k.contypid::pg_catalog.regtype::pg_catalog.text),
	ROW(k.oid, k.xmin)::pg_catalog.text
	FROM pg_catalog.pg_constraint k JOIN n ON k.connamespace = n.oid LEFT JOIN r ON k.conrelid = r.oid
UNION ALL SELECT 'index ' || i.indexrelid::pg_catalog.regclass::pg_catalog.text || ' on table ' || r.relname, ROW(i.indexrelid, i.xmin)::pg_catalog.text
	FROM pg_catalog.pg_index i JOIN r ON i.indrelid = r.oid
UNION ALL SELECT 'trigger ' || t.tgname || ' on table ' || r.relname, ROW(t.oid, t.xmin)::pg_catalog.text
	FROM pg_catalog.pg_trigger t JOIN r ON t.tgrelid = r.oid
UNION ALL SELECT 'rule ' || w.rulename || ' on table ' || r.relname, ROW(w.oid, w.xmin)::pg_catalog.text
	FROM pg_catalog.pg_rewrite w JOIN r ON w.ev_class = r.oid
UNION ALL SELECT 'policy ' || p.polname || ' on table ' || r.relname, ROW(p.oid, p.xmin)::pg_catalog.text
	FROM pg_catalog.pg_policy p JOIN r ON p.polrelid = r.oid
UNION ALL SELECT 'function ' || f.oid::pg_catalog.regprocedure::pg_catalog.text, ROW(f.oid, f.xmin)::pg_catalog.text
	FROM pg_catalog.pg_proc f JOIN n ON f.pronamespace = n.oid
UNION ALL SELECT 'type ' || y.typname, ROW(y.oid, y.xmin)::pg_catalog.text FROM pg_catalog.pg_type y JOIN n ON y.typnamespace = n.oid`

// keptCatalog reads keptCatalogSQL for schema on q (the admin), by name.
func keptCatalog(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, schema string) (map[string]string, error) {
	rows, err := q.Query(ctx, keptCatalogSQL, schema)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	var name, id string
	_, err = pgx.ForEachRow(rows, []any{&name, &id}, func() error {
		out[name] = id
		return nil
	})
	return out, err
}

// recordKept checks that the kept copy's triggers are as a move back needs
// them (the reverted move's fence, function fn, on; every other off) and
// records the copy's catalog (r.kept). trig is the fence triggers' name.
func (r *moveRun) recordKept(ctx context.Context, fn, trig string) error {
	var bad []string
	err := pgx.BeginTxFunc(ctx, r.dstAdmin, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT c.relname::pg_catalog.text, t.tgname::pg_catalog.text, t.tgenabled::pg_catalog.text,
			t.tgfoid = pg_catalog.to_regprocedure($2)::pg_catalog.oid
			FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND NOT t.tgisinternal`, r.dst.Schema, fn+"()")
		if err != nil {
			return err
		}
		fence := map[captureKey]string{} // the fence's triggers: tgenabled
		var rel, name, enabled string
		var fenceFn bool
		if _, err := pgx.ForEachRow(rows, []any{&rel, &name, &enabled, &fenceFn}, func() error {
			if fenceFn && (name == trig || name == trig+"_t") {
				fence[captureKey{rel, name}] = enabled
			} else if enabled != "D" {
				bad = append(bad, fmt.Sprintf("trigger %s on table %s is on", name, rel))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, t := range r.tables {
			for _, name := range []string{trig, trig + "_t"} {
				switch enabled, ok := fence[captureKey{t.name, name}]; {
				case !ok:
					bad = append(bad, fmt.Sprintf("the fence's trigger %s on table %s is missing or replaced", name, t.name))
				case enabled != "O":
					bad = append(bad, fmt.Sprintf("the fence's trigger %s on table %s is off (tgenabled %q)", name, t.name, enabled))
				}
			}
		}
		r.kept, err = keptCatalog(ctx, tx, r.dst.Schema)
		return err
	})
	if err != nil {
		return fmt.Errorf("reading the kept copy's catalog: %w", err)
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("the kept copy is not fenced as the move back needs (%s): the tenant turned its fence off or a trigger on since the switch; the failed move back's cleanup turns the fence on again",
			strings.Join(bad, "; "))
	}
	return nil
}

// lockKept begins, in the switch's pause of a move back to a kept copy the
// tenant owns, a transaction on dstAdmin that holds SHARE UPDATE EXCLUSIVE
// on the copy's tables (as lockSourceTriggers does on the source: every
// DDL of the tenant there waits for it, its writes do not and meet the
// fence), compares the copy's catalog with prepareKept's record, and turns
// the copy's triggers on. Any difference fails the move back. The caller
// lifts the fence in the transaction and commits it just before the
// switch.
func (r *moveRun) lockKept(ctx context.Context) (pgx.Tx, error) {
	if r.kept == nil {
		return nil, errors.New("the kept copy's catalog was not recorded when the move back began; the switch cannot check it")
	}
	tx, err := r.dstAdmin.Begin(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(r.tables))
	for _, t := range r.tables {
		names = append(names, r.dstTable(t))
	}
	stmts := []string{"SET LOCAL deadlock_timeout = '" + pauseDeadlockTimeout + "'", "SET LOCAL lock_timeout = '" + moveTriggerLockWait + "'",
		"LOCK TABLE " + strings.Join(names, ", ") + " IN SHARE UPDATE EXCLUSIVE MODE"}
	if err := execAll(ctx, tx.Conn(), stmts...); err != nil {
		tx.Rollback(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("locking the kept copy's tables against DDL for the switch: %w", err)
	}
	now, err := keptCatalog(ctx, tx, r.dst.Schema)
	if err != nil {
		tx.Rollback(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("reading the kept copy's catalog: %w", err)
	}
	var bad []string
	for name, was := range r.kept {
		switch is, ok := now[name]; {
		case !ok:
			bad = append(bad, name+" dropped or renamed")
		case is != was:
			bad = append(bad, name+" altered")
		}
	}
	for name := range now {
		if _, ok := r.kept[name]; !ok {
			bad = append(bad, name+" added")
		}
	}
	if len(bad) > 0 {
		tx.Rollback(context.WithoutCancel(ctx))
		sort.Strings(bad)
		return nil, fmt.Errorf("the kept copy was changed during the move back, by DDL that no fence stops and that may have changed its rows unseen: %s",
			strings.Join(bad, "; "))
	}
	stmts = stmts[:0]
	for _, t := range r.tables {
		stmts = append(stmts, "ALTER TABLE "+r.dstTable(t)+" ENABLE TRIGGER USER")
	}
	if err := execAll(ctx, tx.Conn(), stmts...); err != nil {
		tx.Rollback(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("turning the kept copy's triggers on: %w", err)
	}
	return tx, nil
}

// refenceKept undoes prepareKept after a move back m that did not switch:
// the reverted move's fence without the exception and, with triggers, the
// copy's triggers on (DDL that may wait for locks; the fence is a function
// swap that waits for none). Each step takes the reverted move's advisory
// lock and does nothing once another move back of the copy has let its
// applier through (anotherMoveBack): a cleanup that runs late must not
// undo that one's preparation.
func (p *Provisioner) refenceKept(ctx context.Context, m *catalog.Move, kept *catalog.Tenant, triggers bool) error {
	conn, err := p.cfg.AdminConn(ctx, kept.Backend, kept.Database)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, fn, _ := moveNames(&catalog.Move{ID: m.Reverts})
	exists, err := functionExists(ctx, conn, fn)
	if err != nil {
		return err
	}
	var another bool
	if exists {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, moveLockSQL, "stratum.move."+m.Reverts)
			if err == nil {
				another, err = anotherMoveBack(ctx, tx, fn, m.ID)
			}
			if err == nil && !another {
				_, err = tx.Exec(ctx, movedFenceSQL(fn))
			}
			return err
		})
		if err != nil || another {
			return err
		}
	}
	if !triggers || kept.Isolation == catalog.IsolationShared {
		return nil
	}
	tables, err := listRelations(ctx, conn, kept.Schema)
	if err != nil {
		return err
	}
	return withLockTimeout(ctx, conn, moveDDLWait, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, moveLockSQL, "stratum.move."+m.Reverts); err != nil {
			return err
		}
		if another, err := anotherMoveBack(ctx, tx, fn, m.ID); err != nil || another {
			return err
		}
		var stmts []string
		for name := range tables {
			stmts = append(stmts, "ALTER TABLE "+quoteIdent(kept.Schema)+"."+quoteIdent(name)+" ENABLE TRIGGER USER")
		}
		return execAll(ctx, tx.Conn(), stmts...)
	})
}

// reconcileBatch is how many rows one write of the reconcile carries.
const reconcileBatch = 500

// reconcile brings the kept copy (r's target) to the live placement's
// state in one snapshot taken after r's capture was installed (r.snapshot,
// as copySnapshot's: the captured changes it holds are skipped later).
// Per table, the snapshot's keys and row hashes are streamed (COPY) into a
// temporary table of the copy's session and compared there with the copy's
// rows (hash joins: no sort, no index build). Rows are written parents
// first; rows only in the copy are deleted after all writes, children
// first. A write refused by a constraint (a unique value or a reference
// that only the rest of the reconcile frees) is tried again at the end,
// once.
func (r *moveRun) reconcile(ctx context.Context) error {
	since, err := r.changedSince(ctx)
	if err != nil {
		return err
	}
	mode := "full"
	if since > 0 {
		mode = "since-switch"
	}
	if r.p.cfg.MoveHook != nil {
		r.p.cfg.MoveHook(ctx, r.m.ID, "reconcile-mode:"+mode)
	}
	var deletes [][]reconcileOp // by table
	var retry []reconcileOp
	err = r.inSnapshot(ctx, func(tx pgx.Tx) error {
		for i, t := range r.tables {
			if r.p.cfg.MoveHook != nil {
				r.p.cfg.MoveHook(ctx, r.m.ID, "reconcile:"+t.name)
			}
			started := time.Now()
			upserts, dels, err := r.diffTable(ctx, tx, i, t, since)
			if err != nil {
				return fmt.Errorf("comparing table %s with the kept copy: %w", t.name, err)
			}
			deletes = append(deletes, dels)
			compared := time.Since(started)
			// The rows to write, read from the snapshot by key.
			for start := 0; start < len(upserts); start += reconcileBatch {
				keys := upserts[start:min(start+reconcileBatch, len(upserts))]
				rows, err := r.snapshotRows(ctx, tx, t, keys)
				if err != nil {
					return err
				}
				failed, err := r.writeOps(ctx, rows)
				if err != nil {
					return err
				}
				retry = append(retry, failed...)
			}
			r.p.cfg.Log.Info("placement move back: table compared with the kept copy", zap.String("move", r.m.ID),
				zap.String("table", t.name), zap.Int64("rows", r.progress[i].Copied), zap.Int("written", len(upserts)),
				zap.Int("to_delete", len(dels)), zap.Duration("compare", compared), zap.Duration("write", time.Since(started)-compared))
			if err := r.saveProgress(ctx, -1, true); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := len(deletes) - 1; i >= 0; i-- {
		for start := 0; start < len(deletes[i]); start += reconcileBatch {
			failed, err := r.writeOps(ctx, deletes[i][start:min(start+reconcileBatch, len(deletes[i]))])
			if err != nil {
				return err
			}
			retry = append(retry, failed...)
		}
	}
	if len(retry) > 0 {
		r.p.cfg.Log.Info("placement move back: writes a constraint refused, tried again after the rest",
			zap.String("move", r.m.ID), zap.Int("rows", len(retry)))
		failed, err := r.writeOps(ctx, retry)
		if err != nil {
			return err
		}
		if len(failed) > 0 {
			return fmt.Errorf("the kept copy could not be brought up to date (table %s: %v); move the tenant with a new move instead",
				failed[0].t.name, failed[0].err)
		}
	}
	return nil
}

// changedSince returns the reverted move's SwitchXID when the rows written
// since its switch can be told by their xmin (see diffTable): recorded, and
// less than a billion transactions old on the live placement's server (an
// xmin compares by age, modulo 2^32). 0 means compare every row. Either way
// the verification point compares the whole copy afterwards.
func (r *moveRun) changedSince(ctx context.Context) (int64, error) {
	old, err := r.p.cat.GetMove(ctx, r.m.Reverts)
	if err != nil || old.SwitchXID <= 0 {
		return 0, err
	}
	var young bool
	if err := r.srcAdmin.QueryRow(ctx, "SELECT pg_catalog.age($1::pg_catalog.int8::pg_catalog.text::pg_catalog.xid8::pg_catalog.xid) OPERATOR(pg_catalog.<) 1000000000",
		old.SwitchXID).Scan(&young); err != nil {
		return 0, err
	}
	if !young {
		return 0, nil
	}
	return old.SwitchXID, nil
}

// reconcileOp is one write of the reconcile: an upsert ("U", the row) or a
// delete ("D", the key) of table t, and why it failed (writeOps).
type reconcileOp struct {
	t   *moveTable
	op  string
	row []byte
	err error
}

// matchKeys are the columns a reconcile matches rows by: the primary key's
// but tenant_id (the tenant filter covers it; a shared and an own
// placement may differ there), or tenant_id alone when the key is only that.
func matchKeys(t *moveTable) []string {
	if kc := keyCols(t); len(kc) > 0 {
		return kc
	}
	return t.pk
}

// rowHash is the hash of a row of t (alias a) that the reconcile compares:
// its copied columns but tenant_id, as checksumSQL hashes them.
func rowHash(t *moveTable, a string) string {
	cols := without(t.cols, "tenant_id")
	if len(cols) == 0 {
		cols = t.pk
	}
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = a + "." + quoteIdent(c)
	}
	return "pg_catalog.md5(ROW(" + strings.Join(q, ", ") + ")::pg_catalog.text)"
}

// keyJSON is a jsonb object of columns cols of alias a, as text.
func keyJSON(cols []string, a string) string {
	obj := make([]string, 0, len(cols))
	for _, c := range cols {
		obj = append(obj, sqlquote.Literal(c)+", "+a+"."+quoteIdent(c))
	}
	return "pg_catalog.jsonb_build_object(" + strings.Join(obj, ", ") + ")::pg_catalog.text"
}

// keysEqual joins aliases a and b on cols.
func keysEqual(cols []string, a, b string) string {
	on := make([]string, len(cols))
	for i, c := range cols {
		on[i] = a + "." + quoteIdent(c) + " OPERATOR(pg_catalog.=) " + b + "." + quoteIdent(c)
	}
	return strings.Join(on, " AND ")
}

// diffTable compares table t's rows of the tenant in the snapshot (tx) with
// the kept copy's: the snapshot's keys and row hashes go by COPY into a
// temporary table of the copy's session (dstT, the tenant's role), where
// one full join finds the keys whose rows the copy lacks or has different
// (returned as JSON objects of matchKeys, to read from the snapshot) and
// the copy's rows whose key the snapshot lacks (returned as deletes).
//
// With since (the reverted move's SwitchXID, valid: see reconcile), the
// hashes are left out: the rows to write are those of the snapshot whose
// xmin is newer than since (written after that switch; the rest equals the
// copy, which was equal to the source at the switch and fenced since), and
// only the keys are streamed, for the deletes.
func (r *moveRun) diffTable(ctx context.Context, tx pgx.Tx, i int, t *moveTable, since int64) (upserts [][]byte, deletes []reconcileOp, err error) {
	mk := matchKeys(t)
	keys := "pg_temp." + quoteIdent("stratum_move_keys")
	dstShared := r.dst.Isolation == catalog.IsolationShared
	srcFilter := r.tenantFilter(t, r.src.Isolation == catalog.IsolationShared)
	if _, err := r.dstT.Exec(ctx, "DROP TABLE IF EXISTS "+keys+"; CREATE TEMPORARY TABLE "+quoteIdent("stratum_move_keys")+
		" AS SELECT "+columnList(mk)+", ''::pg_catalog.text AS stratum_h FROM "+r.dstTable(t)+" WITH NO DATA"); err != nil {
		return nil, nil, err
	}
	defer r.dstT.Exec(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+keys)
	sel, into := columnList(mk)+", "+rowHash(t, r.srcTable(t)), "COPY "+keys+" ("+columnList(mk)+", stratum_h) FROM STDIN"
	if since > 0 {
		sel, into = columnList(mk), "COPY "+keys+" ("+columnList(mk)+") FROM STDIN"
		where := " WHERE "
		if srcFilter != "" {
			where = srcFilter + " AND "
		}
		rows, err := tx.Query(ctx, "SELECT "+keyJSON(mk, r.srcTable(t))+" FROM "+r.srcTable(t)+where+
			"pg_catalog.age("+r.srcTable(t)+".xmin) OPERATOR(pg_catalog.<) pg_catalog.age($1::pg_catalog.int8::pg_catalog.text::pg_catalog.xid8::pg_catalog.xid)", since)
		if err != nil {
			return nil, nil, err
		}
		if upserts, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) ([]byte, error) {
			var s string
			err := row.Scan(&s)
			return []byte(s), err
		}); err != nil {
			return nil, nil, err
		}
	}
	out := "COPY (SELECT " + sel + " FROM " + r.srcTable(t) + srcFilter + ") TO STDOUT"
	if err := r.pipeCopy(ctx, tx, i, out, into); err != nil {
		return nil, nil, err
	}
	streamed := time.Now()
	if _, err := r.dstT.Exec(ctx, "ANALYZE "+keys); err != nil {
		return nil, nil, err
	}
	defer func() {
		r.p.cfg.Log.Debug("placement move back: keys streamed, then compared", zap.String("table", t.name),
			zap.Duration("compare", time.Since(streamed)))
	}()
	// The copy's rows of the tenant (in a shared copy: its filter).
	mine := "SELECT * FROM " + r.dstTable(t) + r.tenantFilter(t, dstShared)
	k0, t0 := "k."+quoteIdent(mk[0]), "t."+quoteIdent(mk[0])
	if since > 0 {
		rows, err := r.dstT.Query(ctx, "SELECT "+keyJSON(t.pk, "t")+" FROM ("+mine+") AS t WHERE NOT EXISTS (SELECT FROM "+
			keys+" AS k WHERE "+keysEqual(mk, "k", "t")+")")
		if err != nil {
			return nil, nil, err
		}
		deletes, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (reconcileOp, error) {
			var s string
			err := row.Scan(&s)
			return reconcileOp{t: t, op: "D", row: []byte(s)}, err
		})
		return upserts, deletes, err
	}
	// One pass over both: a key only in the snapshot, or whose row differs,
	// is written; a key only in the copy is deleted.
	rows, err := r.dstT.Query(ctx, "SELECT "+k0+" IS NULL, CASE WHEN "+k0+" IS NULL THEN "+keyJSON(t.pk, "t")+" ELSE "+
		keyJSON(mk, "k")+" END FROM "+keys+" AS k FULL JOIN ("+mine+") AS t ON "+keysEqual(mk, "k", "t")+
		" WHERE "+k0+" IS NULL OR "+t0+" IS NULL OR "+rowHash(t, "t")+" OPERATOR(pg_catalog.<>) k.stratum_h")
	if err != nil {
		return nil, nil, err
	}
	var onlyCopy bool
	var key string
	if _, err := pgx.ForEachRow(rows, []any{&onlyCopy, &key}, func() error {
		if onlyCopy {
			deletes = append(deletes, reconcileOp{t: t, op: "D", row: []byte(key)})
		} else {
			upserts = append(upserts, []byte(key))
		}
		return nil
	}); err != nil {
		return nil, nil, err
	}
	return upserts, deletes, nil
}

// snapshotRows reads the rows of keys (JSON objects of matchKeys) of table
// t from the snapshot (tx), as upserts.
func (r *moveRun) snapshotRows(ctx context.Context, tx pgx.Tx, t *moveTable, keys [][]byte) ([]reconcileOp, error) {
	table := r.srcTable(t)
	where := ""
	if f := r.tenantFilter(t, r.src.Isolation == catalog.IsolationShared); f != "" {
		where = " AND t." + strings.TrimPrefix(f, " WHERE ")
	}
	rows, err := tx.Query(ctx, "SELECT pg_catalog.to_jsonb(t)::pg_catalog.text FROM pg_catalog.jsonb_populate_recordset(NULL::"+table+
		", $1::pg_catalog.jsonb) AS k JOIN "+table+" AS t ON "+keysEqual(matchKeys(t), "t", "k")+where, jsonArray(keys))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (reconcileOp, error) {
		var s string
		err := row.Scan(&s)
		return reconcileOp{t: t, op: "U", row: []byte(s)}, err
	})
}

// writeOps applies ops to the kept copy (dstT) in one transaction; when a
// constraint refuses one (23xxx), each op is tried on its own and those a
// constraint still refuses are returned (with the error) for later.
func (r *moveRun) writeOps(ctx context.Context, ops []reconcileOp) ([]reconcileOp, error) {
	if len(ops) == 0 {
		return nil, nil
	}
	err := pgx.BeginFunc(ctx, r.dstT, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, o := range ops {
			sql, _ := r.applySQL(o.t, o.op)
			b.Queue(sql, string(o.row))
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err == nil || !isConstraint(err) {
		return nil, err
	}
	var failed []reconcileOp
	for _, o := range ops {
		sql, _ := r.applySQL(o.t, o.op)
		if _, err := r.dstT.Exec(ctx, sql, string(o.row)); err != nil {
			if !isConstraint(err) {
				return nil, err
			}
			o.err = err
			failed = append(failed, o)
		}
	}
	return failed, nil
}

// isConstraint reports whether err is an integrity constraint violation
// (SQLSTATE class 23).
func isConstraint(err error) bool {
	for _, c := range []string{"23505", "23503", "23514", "23502", "23P01"} {
		if isCode(err, c) {
			return true
		}
	}
	return false
}
