package provision

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/sqlquote"
	"github.com/stratum-hq/stratum-proxy/policy"
)

// The move engine. Who runs what (docs/security.md, "Placement moves"):
//
//   - the admin (pinned search_path, everything qualified) makes the target
//     (placeTenant), installs and drops the capture (a log table, a trigger
//     function and triggers in the source), reads and empties the log, reads
//     sequences and pg_stat_activity, and drops placements: DDL and reads of
//     its own tables, which run no code a tenant made;
//   - the tenant's own full role reads the source (the snapshot COPY, under
//     row-level security in the shared database), writes the target (COPY,
//     the log's upserts and deletes) and computes the checksums on both
//     sides (the full ones on connections of their own, in snapshots): whatever of the tenant's (casts, operators, triggers, types)
//     that touches runs as the tenant;
//   - the capture trigger function is not SECURITY DEFINER: it runs as the
//     writer, a tenant role with INSERT (only) on the move's log.

// moveTable is an app table a move copies.
type moveTable struct {
	name     string
	cols     []string // the columns copied, in the source's order (no generated ones)
	pk       []string
	tenantID string // type of its tenant_id column (uuid or text); "" when it has none
}

// moveRun is one run of a move's engine.
type moveRun struct {
	p        *Provisioner
	m        *catalog.Move
	src, dst *catalog.Tenant
	cancel   context.CancelCauseFunc

	tables             []*moveTable
	srcAdmin, dstAdmin *pgx.Conn
	srcT, dstT         *pgx.Conn // logged in as the tenant's full role
	snapshot           string    // pg_current_snapshot() of the copy, on the source

	mu       sync.Mutex
	progress []catalog.MoveTable
	lastSave time.Time
	// From the verification point on (see cutOver): the rows applyLog
	// applied, by table and key (the key's JSON), and the tables it
	// truncated; nil before.
	touched   map[string]map[string][]byte
	truncated map[string]bool
	// The capture triggers as installCapture made them (read in its
	// transaction), by table and trigger name; checkCapture compares the
	// source's with them in each pause of the cut-over.
	capture map[captureKey]captureTrigger
	// A move back to a kept copy the tenant owns: the copy's catalog as
	// prepareKept left it (keptCatalog), which lockKept compares in the
	// switch's pause.
	kept map[string]string
}

// captureKey names one capture trigger: its table and its name.
type captureKey struct{ table, trigger string }

// captureTrigger is what checkCapture compares of a capture trigger's
// pg_trigger row. xmin changes with every update of the row (ALTER TABLE
// … ENABLE/DISABLE TRIGGER, ALTER TRIGGER, CREATE OR REPLACE TRIGGER), so
// a trigger disabled and enabled again is not the one installed either.
type captureTrigger struct {
	oid     uint32
	xmin    string
	foid    uint32
	enabled string // tgenabled: 'O' as installed
	rest    string // tgrelid, tgtype, tgqual, tgargs, tgattr, … as one record's text
}

// moveNames are the names of a move's capture objects in the source
// database's stratum schema.
func moveNames(m *catalog.Move) (logTable, fn, trigger string) {
	h := strings.ReplaceAll(m.ID, "-", "")[:16]
	return "stratum." + quoteIdent("move_log_"+h), "stratum." + quoteIdent("move_capture_"+h), "stratum_move_" + h
}

// runMove is the goroutine of one move: it runs the engine and, when that
// fails or is cancelled, cleans up (the tenant stays on its source) and
// records the outcome. A simulated death (AbandonMove) leaves everything.
func (p *Provisioner) runMove(ctx context.Context, cancel context.CancelCauseFunc, m *catalog.Move) {
	src, dst, err := p.moveTenants(ctx, m)
	r := &moveRun{p: p, m: m, src: src, dst: dst, cancel: cancel}
	if err == nil {
		hb := make(chan struct{})
		go r.heartbeat(ctx, m.ID, hb)
		err = r.run(ctx)
		close(hb)
		r.close()
	}
	cause := context.Cause(ctx)
	if errors.Is(cause, errMoveAbandoned) || err == nil {
		return
	}
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer ccancel()
	phase, action, reason := catalog.MoveFailed, "move.fail", err.Error()
	var mc moveCancelled
	switch {
	case errors.As(cause, &mc):
		phase, action, reason = catalog.MoveCancelled, "move.cancel", mc.Error()
	case errors.Is(cause, errMoveShutdown):
		reason = errMoveShutdown.Error() + "; the tenant serves from its source"
	}
	// First what needs no lock on the tenant's tables (its long transaction
	// may hold them): the capture turned inert, the pause ended.
	p.quiesceMove(cctx, m)
	p.cat.SetMovePhase(cctx, m.ID, nil, phase, reason, action) // ErrMovePhase: cancelled elsewhere
	p.finishCleanup(cctx, m, p.cleanupMove(cctx, m))
}

// finishCleanup records the outcome of a cleanup after a move: when err is
// not nil, the recovery sweep retries it.
func (p *Provisioner) finishCleanup(ctx context.Context, m *catalog.Move, err error) {
	text := ""
	if err != nil {
		text = err.Error()
	}
	p.cat.SetMoveCleanup(ctx, m.ID, text)
}

// quiesceMove makes a move that did not switch harmless at once, without
// waiting for any lock on the tenant's tables: the capture function becomes
// a no-op (no fence, nothing logged), the roles' search_path in the shared
// database is the source's again, and the move's pause ends. cleanupMove
// then removes what is left.
func (p *Provisioner) quiesceMove(ctx context.Context, m *catalog.Move) {
	src, _, err := p.moveTenants(ctx, m)
	if err != nil {
		return
	}
	if conn, err := p.cfg.AdminConn(ctx, src.Backend, src.Database); err == nil {
		_, fn, _ := moveNames(m)
		if exists, err := functionExists(ctx, conn, fn); err == nil && exists {
			replaceFunction(ctx, conn, m.ID, noopCaptureSQL(fn))
		}
		conn.Close(ctx)
	}
	if m.Reverts != "" {
		_, dst, err := p.moveTenants(ctx, m)
		if err == nil {
			p.refenceKept(ctx, m, dst, false)
		}
	}
	if p.inSharedDB(src) {
		p.setSharedPath(ctx, src)
	}
	p.cat.UnpauseMove(ctx, m.ID)
}

// replaceFunction runs sql (a CREATE OR REPLACE FUNCTION of move id's
// capture function) under the move's advisory lock, as dropCapture drops
// it: two replacements of one function at once (a recovery sweep and a
// cleanup, say) fail with "tuple concurrently updated". conn may be a
// transaction (the swap is then a savepoint of it, and the lock is held
// until it ends).
func replaceFunction(ctx context.Context, conn interface {
	Begin(context.Context) (pgx.Tx, error)
}, id, sql string) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, moveLockSQL, "stratum.move."+id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, sql)
		return err
	})
}

// functionExists reports whether the function fn() (qualified) is there.
func functionExists(ctx context.Context, conn *pgx.Conn, fn string) (bool, error) {
	var exists bool
	err := conn.QueryRow(ctx, `SELECT pg_catalog.to_regprocedure($1) IS NOT NULL`, fn+"()").Scan(&exists)
	return exists, err
}

// moveLockSQL takes a move's advisory lock ($1: "stratum.move.<id>") for
// the transaction.
const moveLockSQL = "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext($1))"

// noopCaptureSQL makes the capture function do nothing.
func noopCaptureSQL(fn string) string {
	return `CREATE OR REPLACE FUNCTION ` + fn + `() RETURNS trigger LANGUAGE plpgsql
	SET search_path = pg_catalog AS $capture$ BEGIN RETURN NULL; END $capture$`
}

// heartbeat records every Config.MoveHeartbeat that the move id is alive
// and stops it when the catalog says it no longer runs (cancelled by
// another process). It reads nothing of r but what does not change (the
// run's goroutine replaces r.m as the move goes on).
func (r *moveRun) heartbeat(ctx context.Context, id string, stop <-chan struct{}) {
	t := time.NewTicker(r.p.cfg.MoveHeartbeat)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			ok, err := r.p.cat.MoveProgress(ctx, id, nil, -1)
			if err == nil && !ok {
				r.cancel(moveCancelled{actor: "another proxy"})
				return
			}
		}
	}
}

func (r *moveRun) close() {
	for _, c := range []*pgx.Conn{r.srcAdmin, r.dstAdmin, r.srcT, r.dstT} {
		if c != nil {
			c.Close(context.Background())
		}
	}
}

// cleanupMove undoes a move that did not switch: the capture (and fence) on
// the source goes, the roles' search_path in the shared database is the
// source's again, the move's pause ends and the target is dropped (a move
// back's target, the kept copy, is fenced again instead).
// Idempotent.
func (p *Provisioner) cleanupMove(ctx context.Context, m *catalog.Move) error {
	src, dst, err := p.moveTenants(ctx, m)
	if err != nil {
		return err
	}
	var errs []error
	errs = append(errs, p.dropCapture(ctx, m, src))
	if p.inSharedDB(src) {
		errs = append(errs, p.setSharedPath(ctx, src))
	}
	errs = append(errs, p.cat.UnpauseMove(ctx, m.ID))
	if m.Reverts != "" {
		// The target is the reverted move's kept copy: fenced again, kept.
		errs = append(errs, p.refenceKept(ctx, m, dst, true))
	} else {
		errs = append(errs, p.dropTarget(ctx, m, src, dst))
	}
	return errors.Join(errs...)
}

// setPhase moves the run to phase, refusing when the move stopped running.
func (r *moveRun) setPhase(ctx context.Context, phase string) error {
	if r.p.cfg.MoveHook != nil {
		r.p.cfg.MoveHook(ctx, r.m.ID, phase)
	}
	if err := context.Cause(ctx); err != nil && ctx.Err() != nil {
		return err
	}
	m, err := r.p.cat.SetMovePhase(ctx, r.m.ID, nil, phase, "", "move.phase")
	if err != nil {
		return err
	}
	r.m = m
	return nil
}

// ctxErr is the reason ctx ended (its cause), or nil.
func ctxErr(ctx context.Context) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

func (r *moveRun) run(ctx context.Context) error {
	p := r.p
	if err := r.setPhase(ctx, catalog.MoveProvisioning); err != nil {
		return err
	}
	if r.m.Reverts == "" {
		if err := p.provisionTarget(ctx, r.m, r.dst); err != nil {
			return fmt.Errorf("making the target placement: %w", err)
		}
	}
	pw, err := p.cat.BackendPassword(ctx, r.src.ID)
	if err != nil {
		return err
	}
	if r.srcAdmin, err = p.cfg.AdminConn(ctx, r.src.Backend, r.src.Database); err != nil {
		return err
	}
	if r.dstAdmin, err = p.cfg.AdminConn(ctx, r.dst.Backend, r.dst.Database); err != nil {
		return err
	}
	if r.srcT, err = p.cfg.RoleConn(ctx, r.src.Backend, r.src.Database, r.src.RoleName, pw); err != nil {
		return err
	}
	if r.dstT, err = p.cfg.RoleConn(ctx, r.dst.Backend, r.dst.Database, r.dst.RoleName, pw); err != nil {
		return err
	}
	if r.tables, err = r.loadTables(ctx); err != nil {
		return err
	}
	if r.m.Reverts != "" {
		if err := r.prepareKept(ctx); err != nil {
			return err
		}
	}
	if err := r.setPhase(ctx, catalog.MoveCopying); err != nil {
		return err
	}
	if err := r.installCapture(ctx); err != nil {
		return fmt.Errorf("installing change capture on the source: %w", err)
	}
	if r.m.Reverts != "" {
		if err := r.reconcile(ctx); err != nil {
			return err
		}
	} else if err := r.copySnapshot(ctx); err != nil {
		return err
	}
	if err := r.setPhase(ctx, catalog.MoveCatchingUp); err != nil {
		return err
	}
	if err := r.catchUp(ctx); err != nil {
		return err
	}
	if err := r.setPhase(ctx, catalog.MoveCuttingOver); err != nil {
		return err
	}
	return r.cutOver(ctx)
}

// srcTable and dstTable are a table's qualified names in the placements.
func (r *moveRun) srcTable(t *moveTable) string {
	return quoteIdent(r.src.Schema) + "." + quoteIdent(t.name)
}
func (r *moveRun) dstTable(t *moveTable) string {
	return quoteIdent(r.dst.Schema) + "." + quoteIdent(t.name)
}

// tenantFilter is the WHERE of a table's rows of the tenant in a shared
// placement ("" elsewhere or for a table without tenant_id).
func (r *moveRun) tenantFilter(t *moveTable, shared bool) string {
	if !shared || t.tenantID == "" {
		return ""
	}
	return " WHERE tenant_id OPERATOR(pg_catalog.=) " + sqlquote.Literal(r.src.ID) + "::pg_catalog." + t.tenantID
}

// relInfo is a table as listRelations reads it.
type relInfo struct {
	cols     []string
	gen      map[string]bool
	pk       []string
	tenantID string
}

// listRelations reads the tables of schema on conn (admin, catalogs only).
func listRelations(ctx context.Context, conn *pgx.Conn, schema string) (map[string]*relInfo, error) {
	rows, err := conn.Query(ctx, `SELECT c.relname::text, a.attname::text, a.attgenerated <> '',
		COALESCE(a.attnum = ANY(i.indkey::pg_catalog.int2[]), false),
		CASE WHEN a.attname = 'tenant_id' THEN CASE WHEN a.atttypid = 'pg_catalog.uuid'::pg_catalog.regtype THEN 'uuid' ELSE 'text' END ELSE '' END
		FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		LEFT JOIN pg_catalog.pg_index i ON i.indrelid = c.oid AND i.indisprimary
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
		ORDER BY c.relname, a.attnum`, schema)
	if err != nil {
		return nil, err
	}
	out := map[string]*relInfo{}
	var name, col, tid string
	var gen, pk bool
	_, err = pgx.ForEachRow(rows, []any{&name, &col, &gen, &pk, &tid}, func() error {
		ri := out[name]
		if ri == nil {
			ri = &relInfo{gen: map[string]bool{}}
			out[name] = ri
		}
		ri.cols = append(ri.cols, col)
		ri.gen[col] = gen
		if pk {
			ri.pk = append(ri.pk, col)
		}
		if tid != "" {
			ri.tenantID = tid
		}
		return nil
	})
	return out, err
}

// appTables lists the app's tables: those of the shared database's public
// schema, where every app schema version is applied.
func (p *Provisioner) appTables(ctx context.Context) (map[string]*relInfo, error) {
	conn, err := p.cfg.AdminConn(ctx, p.cfg.SharedBackend, p.cfg.SharedDatabase)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return listRelations(ctx, conn, "public")
}

// checkMovable refuses (ErrInvalidMove) a tenant whose placement holds
// tables the app schema does not have (the tenant made them itself: a move
// carries the app's tables only) or app tables without a primary key (the
// captured changes are applied by key).
func (p *Provisioner) checkMovable(ctx context.Context, src, dst *catalog.Tenant) error {
	app, err := p.appTables(ctx)
	if err != nil {
		return err
	}
	have := app
	if src.Isolation != catalog.IsolationShared {
		conn, err := p.cfg.AdminConn(ctx, src.Backend, src.Database)
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		if have, err = listRelations(ctx, conn, src.Schema); err != nil {
			return err
		}
	}
	return movableErr(src, app, have)
}

func movableErr(src *catalog.Tenant, app, have map[string]*relInfo) error {
	var own, nopk []string
	for name, ri := range have {
		if app[name] == nil {
			own = append(own, name)
		} else if len(ri.pk) == 0 {
			nopk = append(nopk, name)
		}
	}
	sort.Strings(own)
	sort.Strings(nopk)
	if len(own) > 0 {
		return fmt.Errorf("%w: tenant %q has tables the app schema does not: %s (a move carries the app's tables only; drop them or add them to the app schema)",
			ErrInvalidMove, src.Slug, strings.Join(own, ", "))
	}
	if len(nopk) > 0 {
		return fmt.Errorf("%w: app tables without a primary key cannot be moved online: %s", ErrInvalidMove, strings.Join(nopk, ", "))
	}
	return nil
}

// loadTables decides what the move copies: every app table of the source
// with its columns, checked against the target's (same app schema); a
// shared target takes only tables with tenant_id (the others are reference
// data it has already). Parents come before the tables whose foreign keys
// reference them.
func (r *moveRun) loadTables(ctx context.Context) (out []*moveTable, err error) {
	app, err := r.p.appTables(ctx)
	if err != nil {
		return nil, err
	}
	srcRels, err := listRelations(ctx, r.srcAdmin, r.src.Schema)
	if err != nil {
		return nil, err
	}
	if err := movableErr(r.src, app, srcRels); err != nil {
		return nil, err
	}
	dstRels, err := listRelations(ctx, r.dstAdmin, r.dst.Schema)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(srcRels))
	for n := range srcRels {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s, d := srcRels[n], dstRels[n]
		if d == nil {
			return nil, fmt.Errorf("table %s is not in the target: the app schema changed during the move?", n)
		}
		if r.dst.Isolation == catalog.IsolationShared && s.tenantID == "" {
			continue // reference data: the shared database has its own
		}
		t := &moveTable{name: n, pk: d.pk, tenantID: s.tenantID}
		for _, c := range s.cols {
			if s.gen[c] {
				continue
			}
			if _, ok := d.gen[c]; !ok {
				return nil, fmt.Errorf("column %s.%s is not in the target: the app schema changed during the move?", n, c)
			}
			t.cols = append(t.cols, c)
		}
		if len(t.pk) == 0 {
			return nil, fmt.Errorf("%w: table %s has no primary key", ErrInvalidMove, n)
		}
		out = append(out, t)
	}
	return r.orderByForeignKeys(ctx, out)
}

// orderByForeignKeys sorts tables so that a table comes after those its
// foreign keys reference (in the target), as far as there is no cycle.
func (r *moveRun) orderByForeignKeys(ctx context.Context, tables []*moveTable) ([]*moveTable, error) {
	rows, err := r.dstAdmin.Query(ctx, `SELECT c.relname::text, f.relname::text FROM pg_catalog.pg_constraint k
		JOIN pg_catalog.pg_class c ON c.oid = k.conrelid JOIN pg_catalog.pg_class f ON f.oid = k.confrelid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE k.contype = 'f' AND n.nspname = $1 AND c.oid <> f.oid`, r.dst.Schema)
	if err != nil {
		return nil, err
	}
	deps := map[string][]string{}
	var child, parent string
	if _, err := pgx.ForEachRow(rows, []any{&child, &parent}, func() error {
		deps[child] = append(deps[child], parent)
		return nil
	}); err != nil {
		return nil, err
	}
	byName := map[string]*moveTable{}
	for _, t := range tables {
		byName[t.name] = t
	}
	var out []*moveTable
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(n string)
	visit = func(n string) {
		if state[n] != 0 || byName[n] == nil {
			return
		}
		state[n] = 1
		for _, d := range deps[n] {
			visit(d)
		}
		state[n] = 2
		out = append(out, byName[n])
	}
	for _, t := range tables {
		visit(t.name)
	}
	return out, nil
}

// captureFunctionSQL is the capture trigger function: plain (not SECURITY
// DEFINER), so it runs as the writer, which may only INSERT into the log.
// With fence it refuses every write instead (the cut-over's last step on
// the source: a write that slipped past the pause must fail, not be lost).
func captureFunctionSQL(fn, logTable string, fence bool) string {
	body := `
DECLARE
	o pg_catalog.jsonb;
	n pg_catalog.jsonb;
BEGIN
	IF TG_OP = 'TRUNCATE' THEN
		INSERT INTO ` + logTable + ` (tbl, op) VALUES (TG_TABLE_NAME, 'T');
		RETURN NULL;
	END IF;
	IF TG_OP <> 'INSERT' THEN o := pg_catalog.to_jsonb(OLD); END IF;
	IF TG_OP <> 'DELETE' THEN n := pg_catalog.to_jsonb(NEW); END IF;
	-- An update that changes the key is a delete of the old key, too.
	IF o IS NOT NULL AND (n IS NULL OR EXISTS (SELECT 1 FROM pg_catalog.unnest(TG_ARGV) k
			WHERE (o OPERATOR(pg_catalog.->) k) IS DISTINCT FROM (n OPERATOR(pg_catalog.->) k))) THEN
		INSERT INTO ` + logTable + ` (tbl, op, row) VALUES (TG_TABLE_NAME, 'D', o);
	END IF;
	IF n IS NOT NULL THEN
		INSERT INTO ` + logTable + ` (tbl, op, row) VALUES (TG_TABLE_NAME, 'U', n);
	END IF;
	RETURN NULL;
END`
	if fence {
		body = `
BEGIN
	RAISE EXCEPTION 'tenant is being moved to another placement; retry the transaction'
		USING ERRCODE = '40001';
END`
	}
	return `CREATE OR REPLACE FUNCTION ` + fn + `() RETURNS trigger LANGUAGE plpgsql
	SET search_path = pg_catalog AS $capture$` + body + `
$capture$`
}

// installCapture makes the move's log table and capture function in the
// source database and a capture trigger on every copied table (for a
// shared source only the tenant's rows: the trigger's WHEN). The tenant's
// full and _w roles (the writers) get INSERT on the log and USAGE on schema
// stratum for the move's duration.
func (r *moveRun) installCapture(ctx context.Context) error {
	logTable, fn, trig := moveNames(r.m)
	writers := quoteIdent(r.src.RoleName) + ", " + quoteIdent(policy.AccessWrite.Role(r.src.RoleName))
	shared := r.src.Isolation == catalog.IsolationShared
	return withLockTimeout(ctx, r.srcAdmin, moveDDLWait, func(tx pgx.Tx) error {
		// GRANT and REVOKE on schema stratum rewrite its one pg_namespace
		// row: two moves doing it at once in one database fail with "tuple
		// concurrently updated".
		if _, err := tx.Exec(ctx, stratumACLLockSQL); err != nil {
			return err
		}
		stmts := []string{
			`CREATE TABLE IF NOT EXISTS ` + logTable + ` (
				id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
				xid pg_catalog.xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
				tbl pg_catalog.text NOT NULL,
				op pg_catalog.text NOT NULL,
				row pg_catalog.jsonb)`,
			"REVOKE ALL ON " + logTable + " FROM PUBLIC",
			"GRANT INSERT ON " + logTable + " TO " + writers,
			"GRANT USAGE ON SCHEMA stratum TO " + writers,
			captureFunctionSQL(fn, logTable, false),
			"REVOKE ALL ON FUNCTION " + fn + "() FROM PUBLIC",
		}
		var made []captureKey
		for _, t := range r.tables {
			if shared && t.tenantID == "" {
				continue // reference data: tenants cannot write it
			}
			tn := r.srcTable(t)
			args := quoteList(t.pk)
			stmts = append(stmts, "DROP TRIGGER IF EXISTS "+quoteIdent(trig)+" ON "+tn,
				"DROP TRIGGER IF EXISTS "+quoteIdent(trig+"_d")+" ON "+tn,
				"DROP TRIGGER IF EXISTS "+quoteIdent(trig+"_u")+" ON "+tn,
				"DROP TRIGGER IF EXISTS "+quoteIdent(trig+"_t")+" ON "+tn)
			if shared {
				is := func(rec string) string {
					return rec + ".tenant_id OPERATOR(pg_catalog.=) " + sqlquote.Literal(r.src.ID) + "::pg_catalog." + t.tenantID
				}
				stmts = append(stmts,
					"CREATE TRIGGER "+quoteIdent(trig)+" AFTER INSERT ON "+tn+" FOR EACH ROW WHEN ("+is("NEW")+") EXECUTE FUNCTION "+fn+"("+args+")",
					"CREATE TRIGGER "+quoteIdent(trig+"_u")+" AFTER UPDATE ON "+tn+" FOR EACH ROW WHEN ("+is("OLD")+" OR "+is("NEW")+") EXECUTE FUNCTION "+fn+"("+args+")",
					"CREATE TRIGGER "+quoteIdent(trig+"_d")+" AFTER DELETE ON "+tn+" FOR EACH ROW WHEN ("+is("OLD")+") EXECUTE FUNCTION "+fn+"("+args+")")
				made = append(made, captureKey{t.name, trig}, captureKey{t.name, trig + "_u"}, captureKey{t.name, trig + "_d"})
			} else {
				stmts = append(stmts,
					"CREATE TRIGGER "+quoteIdent(trig)+" AFTER INSERT OR UPDATE OR DELETE ON "+tn+" FOR EACH ROW EXECUTE FUNCTION "+fn+"("+args+")",
					"CREATE TRIGGER "+quoteIdent(trig+"_t")+" AFTER TRUNCATE ON "+tn+" FOR EACH STATEMENT EXECUTE FUNCTION "+fn+"()")
				made = append(made, captureKey{t.name, trig}, captureKey{t.name, trig + "_t"})
			}
		}
		if err := execAll(ctx, tx.Conn(), stmts...); err != nil {
			return err
		}
		// Read in the same transaction: a change by the tenant after the
		// commit differs from this record.
		cur, err := r.captureTriggers(ctx, tx)
		if err != nil {
			return err
		}
		r.capture = map[captureKey]captureTrigger{}
		for _, k := range made {
			ct, ok := cur[k]
			if !ok {
				return fmt.Errorf("the capture trigger %s on table %s is not in pg_trigger after its CREATE TRIGGER", k.trigger, k.table)
			}
			r.capture[k] = ct
		}
		return nil
	})
}

// captureTriggerNames are the names a move's capture triggers may have.
func captureTriggerNames(trig string) []string {
	return []string{trig, trig + "_u", trig + "_d", trig + "_t"}
}

// captureTriggers reads the pg_trigger rows named as the move's capture
// triggers on the tables of the source's schema (admin, catalogs only).
func (r *moveRun) captureTriggers(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) (map[captureKey]captureTrigger, error) {
	_, _, trig := moveNames(r.m)
	rows, err := q.Query(ctx, `SELECT c.relname::pg_catalog.text, t.tgname::pg_catalog.text, t.oid, t.xmin::pg_catalog.text,
		t.tgfoid, t.tgenabled::pg_catalog.text,
		ROW(t.tgrelid, t.tgparentid, t.tgtype, t.tgisinternal, t.tgconstraint, t.tgdeferrable, t.tginitdeferred,
			t.tgnargs, t.tgattr, t.tgargs, t.tgqual, t.tgoldtable, t.tgnewtable)::pg_catalog.text
		FROM pg_catalog.pg_trigger t
		JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND t.tgname = ANY($2)`, r.src.Schema, captureTriggerNames(trig))
	if err != nil {
		return nil, err
	}
	out := map[captureKey]captureTrigger{}
	var k captureKey
	var ct captureTrigger
	_, err = pgx.ForEachRow(rows, []any{&k.table, &k.trigger, &ct.oid, &ct.xmin, &ct.foid, &ct.enabled, &ct.rest}, func() error {
		out[k] = ct
		return nil
	})
	return out, err
}

// checkCapture fails the move when a capture trigger on the source is not
// the one installCapture made: dropped or renamed, disabled (or enabled
// again since), or altered or replaced (another function, WHEN, events or
// arguments). A schema or database tenant owns its tables and may do any of
// that to them, and a change its tables make while their trigger does not
// fire would be missing from the target. It runs in both pauses of the
// cut-over, after the drain: no transaction of the tenant runs on the
// source then, and none starts until the pause ends, so a trigger found
// unchanged has captured every change since the capture was installed.
func (r *moveRun) checkCapture(ctx context.Context) error {
	if r.capture == nil {
		// Nothing recorded (a run that did not install the capture itself):
		// nothing to compare with, so nothing is known to have been captured.
		return errors.New("the change capture's triggers were not recorded when it was installed; the cut-over cannot check them")
	}
	cur, err := r.captureTriggers(ctx, r.srcAdmin)
	if err != nil {
		return fmt.Errorf("reading the source's capture triggers: %w", err)
	}
	var bad []string
	for k, want := range r.capture {
		got, ok := cur[k]
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("trigger %s on table %s was dropped or renamed", k.trigger, k.table))
		case got.enabled != want.enabled:
			bad = append(bad, fmt.Sprintf("trigger %s on table %s was disabled (tgenabled %q, installed %q)", k.trigger, k.table, got.enabled, want.enabled))
		case got != want:
			bad = append(bad, fmt.Sprintf("trigger %s on table %s was altered or replaced (or disabled and enabled again)", k.trigger, k.table))
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("the change capture on the source was tampered with, changes may have gone uncaptured: %s", strings.Join(bad, "; "))
	}
	return nil
}

// stratumACLLockSQL serialises, per database, the transactions of moves
// that GRANT or REVOKE on schema stratum (installCapture, dropCapture).
const stratumACLLockSQL = "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('stratum.schema-acl'))"

// moveDDLWait bounds how long a move's DDL on a placement (capture
// triggers on, off; the kept copy's app triggers) keeps trying to get its
// locks before the move gives up.
const moveDDLWait = 30 * time.Second

// moveDDLLockWait is the lock_timeout of one try of that DDL: what the
// tenant's writers of a table (other tenants' too, in the shared database)
// wait at most behind it. The bench measured a 2.5 s gap in a writer at a
// move back's switch with one second here: the DROP TRIGGER of the reverted
// move's capture on the tables just made live queued behind an autovacuum
// of them, and the writers queued behind the DROP.
const moveDDLLockWait = "100ms"

// withLockTimeout runs fn in a transaction on conn with a lock_timeout of
// moveDDLLockWait, and again after a short rest when a lock was not granted
// in time, until wait has passed. CREATE TRIGGER and DROP TRIGGER need
// locks that conflict with writers; waiting for them without a limit
// behind a long transaction would queue every later writer of the table
// behind the move. deadlock_timeout is short too: PostgreSQL cancels an
// autovacuum that blocks a lock request only after the waiter's
// deadlock_timeout.
func withLockTimeout(ctx context.Context, conn *pgx.Conn, wait time.Duration, fn func(pgx.Tx) error) error {
	deadline := time.Now().Add(wait)
	for rest := 50 * time.Millisecond; ; rest = min(2*rest, time.Second) {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '"+moveDDLLockWait+"'; SET LOCAL deadlock_timeout = '"+pauseDeadlockTimeout+"'"); err != nil {
				return err
			}
			return fn(tx)
		})
		if err == nil || !isCode(err, "55P03") {
			return err
		}
		if time.Now().Add(rest).After(deadline) {
			return fmt.Errorf("the tenant's (or another's) transactions held the table for %s: %w", wait, err)
		}
		select {
		case <-time.After(rest):
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// setFence swaps the capture function for one that refuses writes (on) or
// back (off).
func (r *moveRun) setFence(ctx context.Context, on bool) error {
	logTable, fn, _ := moveNames(r.m)
	return replaceFunction(ctx, r.srcAdmin, r.m.ID, captureFunctionSQL(fn, logTable, on))
}

// dropCapture removes a move's capture from its source: the trigger
// function with its triggers (CASCADE), any other trigger with a capture
// trigger's name on the source's tables (one a schema or database tenant
// made in place of the move's, with a function of its own), the log, and
// the writers' grants. Idempotent; a source database that is gone has
// nothing to remove.
//
// The log goes with CASCADE: the writers have USAGE on schema stratum, so
// a schema or database tenant can make objects that depend on the log in
// its own schema (a view over it, which needs no privilege on the table to
// be created, a function or a column of its row type), and in the shared
// database every shared tenant (its group has USAGE on stratum) can make a
// temporary view over any move's log there for as long as its session
// lasts. A plain DROP TABLE would fail on them, and with it the whole
// cleanup, every time it is retried. Those objects go with the log.
func (p *Provisioner) dropCapture(ctx context.Context, m *catalog.Move, src *catalog.Tenant) error {
	conn, err := p.cfg.AdminConn(ctx, src.Backend, src.Database)
	if err != nil {
		if isCode(err, "3D000") {
			return nil
		}
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	logTable, fn, trig := moveNames(m)
	writers := quoteIdent(src.RoleName) + ", " + quoteIdent(policy.AccessWrite.Role(src.RoleName))
	return withLockTimeout(ctx, conn, moveDDLWait, func(tx pgx.Tx) error {
		// One at a time per move: the switch's own cleanup and a finalize
		// (or the sweep) may run together, and two concurrent DROP FUNCTION
		// of one function can fail with "cache lookup failed" (XX000).
		if _, err := tx.Exec(ctx, moveLockSQL, "stratum.move."+m.ID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DROP FUNCTION IF EXISTS "+fn+"() CASCADE"); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT c.relname::pg_catalog.text, t.tgname::pg_catalog.text FROM pg_catalog.pg_trigger t
			JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND t.tgname = ANY($2) AND NOT t.tgisinternal`, src.Schema, captureTriggerNames(trig))
		if err != nil {
			return err
		}
		var stmts []string
		var rel, name string
		if _, err := pgx.ForEachRow(rows, []any{&rel, &name}, func() error {
			stmts = append(stmts, "DROP TRIGGER IF EXISTS "+quoteIdent(name)+" ON "+quoteIdent(src.Schema)+"."+quoteIdent(rel))
			return nil
		}); err != nil {
			return err
		}
		stmts = append(stmts, "DROP TABLE IF EXISTS "+logTable+" CASCADE")
		if err := execAll(ctx, tx.Conn(), stmts...); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, stratumACLLockSQL); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT pg_catalog.count(*) = 2 FROM pg_catalog.pg_roles WHERE rolname = ANY($1)`,
			[]string{src.RoleName, policy.AccessWrite.Role(src.RoleName)}).Scan(&exists); err != nil || !exists {
			return err
		}
		return execAll(ctx, tx.Conn(), "REVOKE USAGE ON SCHEMA stratum FROM "+writers)
	})
}

// saveProgress writes the copy progress to the move row, at most twice a
// second unless force.
func (r *moveRun) saveProgress(ctx context.Context, lag int64, force bool) error {
	r.mu.Lock()
	if !force && time.Since(r.lastSave) < 500*time.Millisecond {
		r.mu.Unlock()
		return nil
	}
	r.lastSave = time.Now()
	tables := append([]catalog.MoveTable(nil), r.progress...)
	r.mu.Unlock()
	ok, err := r.p.cat.MoveProgress(ctx, r.m.ID, tables, lag)
	if err == nil && !ok {
		r.cancel(moveCancelled{actor: "another proxy"})
		return moveCancelled{actor: "another proxy"}
	}
	return err
}

// rowCounter counts the rows COPY text passes through it (one newline per
// row: newlines in values are escaped) and reports progress. With a rate
// (rows per second, Config.MoveCopyRowsPerSecond) it reads no faster: the
// source's COPY then waits on its socket instead of taking a core.
type rowCounter struct {
	rd     io.Reader
	onRows func(n int64)
	rate   int64
	ctx    context.Context
	start  time.Time
	rows   int64
}

func (c *rowCounter) Read(b []byte) (int, error) {
	if c.rate > 0 {
		if c.start.IsZero() {
			c.start = time.Now()
		}
		// Ahead of the rate: wait until the rows read so far are due.
		if due := c.start.Add(time.Duration(float64(c.rows) / float64(c.rate) * float64(time.Second))); time.Until(due) > 0 {
			select {
			case <-time.After(time.Until(due)):
			case <-c.ctx.Done():
				return 0, context.Cause(c.ctx)
			}
		}
	}
	n, err := c.rd.Read(b)
	if n > 0 {
		rows := int64(bytes.Count(b[:n], []byte{'\n'}))
		c.rows += rows
		c.onRows(rows)
	}
	return n, err
}

func columnList(cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = quoteIdent(c)
	}
	return strings.Join(q, ", ")
}

// without returns cols without name.
func without(cols []string, name string) []string {
	var out []string
	for _, c := range cols {
		if c != name {
			out = append(out, c)
		}
	}
	return out
}

// inSnapshot runs fn in a REPEATABLE READ, read-only transaction on srcT
// (the tenant's role) whose snapshot it records as r.snapshot, after
// counting each table's rows of the tenant there as its progress total. A
// copy and a move back's reconcile read the source in it; opened after the
// capture was installed, every change it does not hold is in the log.
func (r *moveRun) inSnapshot(ctx context.Context, fn func(tx pgx.Tx) error) error {
	srcShared := r.src.Isolation == catalog.IsolationShared
	r.mu.Lock()
	r.progress = make([]catalog.MoveTable, len(r.tables))
	r.mu.Unlock()
	return pgx.BeginTxFunc(ctx, r.srcT, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT pg_catalog.pg_current_snapshot()::pg_catalog.text`).Scan(&r.snapshot); err != nil {
			return err
		}
		for i, t := range r.tables {
			var total int64
			if err := tx.QueryRow(ctx, "SELECT pg_catalog.count(*) FROM "+r.srcTable(t)+r.tenantFilter(t, srcShared)).Scan(&total); err != nil {
				return err
			}
			r.mu.Lock()
			r.progress[i] = catalog.MoveTable{Name: t.name, Total: total}
			r.mu.Unlock()
		}
		if err := r.saveProgress(ctx, -1, true); err != nil {
			return err
		}
		return fn(tx)
	})
}

// copySnapshot copies every table from one REPEATABLE READ snapshot of the
// source, opened after the capture triggers were installed (so every change
// after it is in the log), streaming COPY from the source's tenant role
// connection into the target's. The target's own (app) triggers are off
// during the copy and the catch-up, as a logical replica's are.
func (r *moveRun) copySnapshot(ctx context.Context) error {
	srcShared := r.src.Isolation == catalog.IsolationShared
	dstShared := r.dst.Isolation == catalog.IsolationShared
	if !dstShared {
		for _, t := range r.tables {
			if _, err := r.dstT.Exec(ctx, "ALTER TABLE "+r.dstTable(t)+" DISABLE TRIGGER USER"); err != nil {
				return fmt.Errorf("turning off the target's triggers: %w", err)
			}
		}
	}
	return r.inSnapshot(ctx, func(tx pgx.Tx) error {
		for i, t := range r.tables {
			if err := r.copyTable(ctx, tx, i, t, srcShared, dstShared); err != nil {
				return fmt.Errorf("copying table %s: %w", t.name, err)
			}
			if err := r.saveProgress(ctx, -1, true); err != nil {
				return err
			}
		}
		return nil
	})
}

func (r *moveRun) copyTable(ctx context.Context, tx pgx.Tx, i int, t *moveTable, srcShared, dstShared bool) error {
	cols := t.cols
	if dstShared {
		cols = without(cols, "tenant_id") // set to the tenant's id below
	}
	out := "COPY (SELECT " + columnList(cols) + " FROM " + r.srcTable(t) + r.tenantFilter(t, srcShared) + ") TO STDOUT"
	into := "COPY " + r.dstTable(t) + " (" + columnList(cols) + ") FROM STDIN"
	stage := "pg_temp." + quoteIdent("stratum_move_stage")
	if dstShared {
		// COPY FROM is not allowed into a table under row-level security:
		// through a temporary table, then INSERT (checked by the policy).
		if _, err := r.dstT.Exec(ctx, "DROP TABLE IF EXISTS "+stage+"; CREATE TEMPORARY TABLE "+
			quoteIdent("stratum_move_stage")+" AS SELECT "+columnList(cols)+" FROM "+r.dstTable(t)+" WITH NO DATA"); err != nil {
			return err
		}
		into = "COPY " + stage + " (" + columnList(cols) + ") FROM STDIN"
	}
	if r.p.cfg.MoveHook != nil {
		r.p.cfg.MoveHook(ctx, r.m.ID, "copy:"+t.name)
	}
	if err := r.pipeCopy(ctx, tx, i, out, into); err != nil {
		return err
	}
	if dstShared {
		ins := "INSERT INTO " + r.dstTable(t) + " (" + columnList(cols) + ", tenant_id) SELECT " + columnList(cols) + ", " +
			sqlquote.Literal(r.src.ID) + "::pg_catalog." + t.tenantID + " FROM " + stage
		if _, err := r.dstT.Exec(ctx, ins); err != nil {
			if isCode(err, "23505") {
				return fmt.Errorf("a row's primary key is taken in the shared table (by another tenant's row): %w", err)
			}
			return err
		}
		if _, err := r.dstT.Exec(ctx, "DROP TABLE "+stage); err != nil {
			return err
		}
	}
	return nil
}

// pipeCopy streams COPY out (run in tx, on the source) into COPY into (on
// dstT), counting the rows as table i's progress and keeping
// Config.MoveCopyRowsPerSecond. The error is the cause of ctx's end when it
// ended, else the first side's that failed.
func (r *moveRun) pipeCopy(ctx context.Context, tx pgx.Tx, i int, out, into string) error {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		// COPY TO hands over one row per write, and an io.Pipe passes
		// each write on as one read, which COPY FROM would send as a
		// message of its own: buffered, a read carries up to 64 KiB of rows
		// (the move back's stream of a million keys took 11.6 s unbuffered).
		bw := bufio.NewWriterSize(pw, 64<<10)
		_, err := tx.Conn().PgConn().CopyTo(ctx, bw, out)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
		done <- err
	}()
	rc := &rowCounter{rd: pr, rate: r.p.cfg.MoveCopyRowsPerSecond, ctx: ctx, onRows: func(n int64) {
		r.mu.Lock()
		r.progress[i].Copied += n
		r.mu.Unlock()
		r.saveProgress(ctx, -1, false)
	}}
	_, err := r.dstT.PgConn().CopyFrom(ctx, rc, into)
	pr.CloseWithError(errors.New("copy ended"))
	if serr := <-done; err == nil && serr != nil {
		err = serr
	}
	if e := ctxErr(ctx); e != nil {
		return e
	}
	return err
}

// logEntry is one captured change.
type logEntry struct {
	id      int64
	tbl, op string
	row     []byte
	seen    bool // visible in the copy's snapshot: the copy has it already
}

// applyLog applies the captured changes in log order to the target, in
// batches of one target transaction each, and deletes them from the log
// once applied (changes the copy's snapshot holds are only deleted). Each
// change is an idempotent upsert or delete by primary key, so a batch
// applied twice (a crash between commit and delete) does no harm. It
// returns when the log is empty.
//
// Why log order is enough: two changes of one row come from transactions
// that the row lock serialised, so the later one's entry has the higher id
// and becomes visible only after the earlier one's; a batch never holds a
// later change of a row without the earlier.
func (r *moveRun) applyLog(ctx context.Context) error {
	logTable, _, _ := moveNames(r.m)
	byName := map[string]*moveTable{}
	for _, t := range r.tables {
		byName[t.name] = t
	}
	for {
		if err := ctxErr(ctx); err != nil {
			return err
		}
		rows, err := r.srcAdmin.Query(ctx, `SELECT id, tbl, op, row::pg_catalog.text,
			pg_catalog.pg_visible_in_snapshot(xid, $1::pg_catalog.pg_snapshot)
			FROM `+logTable+` ORDER BY id LIMIT 500`, r.snapshot)
		if err != nil {
			return err
		}
		var batch []logEntry
		var e logEntry
		var row *string
		if _, err := pgx.ForEachRow(rows, []any{&e.id, &e.tbl, &e.op, &row, &e.seen}, func() error {
			ent := e
			if row != nil {
				ent.row = []byte(*row)
			}
			batch = append(batch, ent)
			return nil
		}); err != nil {
			return err
		}
		if len(batch) == 0 {
			return nil
		}
		b := &pgx.Batch{}
		ids := make([]int64, 0, len(batch))
		for _, e := range batch {
			ids = append(ids, e.id)
			if e.seen {
				continue
			}
			t := byName[e.tbl]
			if t == nil {
				if r.dst.Isolation == catalog.IsolationShared {
					continue // reference data (not moved into shared)
				}
				return fmt.Errorf("captured a change of table %q, which the move does not copy", e.tbl)
			}
			sql, withRow := r.applySQL(t, e.op)
			if sql == "" {
				return fmt.Errorf("captured change %d has operation %q", e.id, e.op)
			}
			if err := r.touch(t, e.op, e.row); err != nil {
				return err
			}
			if withRow {
				b.Queue(sql, string(e.row))
			} else {
				b.Queue(sql)
			}
		}
		if b.Len() > 0 {
			err := pgx.BeginFunc(ctx, r.dstT, func(tx pgx.Tx) error {
				return tx.SendBatch(ctx, b).Close()
			})
			if err != nil {
				if isCode(err, "23505") || isCode(err, "42501") {
					return fmt.Errorf("applying captured changes: a row's primary key is taken in the target (by another tenant's row?): %w", err)
				}
				return fmt.Errorf("applying captured changes: %w", err)
			}
		}
		if _, err := r.srcAdmin.Exec(ctx, `DELETE FROM `+logTable+` WHERE id = ANY($1)`, ids); err != nil {
			return err
		}
		r.mu.Lock()
		due := time.Since(r.lastSave) >= 500*time.Millisecond
		r.mu.Unlock()
		if due { // a long catch-up shows its lag as it goes
			lag, err := r.lag(ctx)
			if err != nil {
				return err
			}
			if err := r.saveProgress(ctx, lag, false); err != nil {
				return err
			}
		}
	}
}

// applySQL is the statement that applies a captured change of t: an upsert
// ("U", the row as jsonb in $1), a delete by key ("D") or a delete of all
// the tenant's rows ("T", a TRUNCATE).
func (r *moveRun) applySQL(t *moveTable, op string) (string, bool) {
	tn := r.dstTable(t)
	dstShared := r.dst.Isolation == catalog.IsolationShared
	rec := "pg_catalog.jsonb_populate_record(NULL::" + tn + ", $1::pg_catalog.jsonb)"
	switch op {
	case "U":
		cols := t.cols
		sel := columnList(cols)
		if dstShared {
			cols = without(cols, "tenant_id")
			sel = columnList(cols) + ", " + sqlquote.Literal(r.src.ID) + "::pg_catalog." + t.tenantID
			cols = append(cols, "tenant_id")
		}
		var set []string
		for _, c := range cols {
			isPK := false
			for _, k := range t.pk {
				isPK = isPK || k == c
			}
			if !isPK {
				set = append(set, quoteIdent(c)+" = EXCLUDED."+quoteIdent(c))
			}
		}
		conflict := " DO NOTHING"
		if len(set) > 0 {
			conflict = " DO UPDATE SET " + strings.Join(set, ", ")
		}
		return "INSERT INTO " + tn + " (" + columnList(cols) + ") SELECT " + sel + " FROM " + rec +
			" ON CONFLICT (" + columnList(t.pk) + ")" + conflict, true
	case "D":
		return "DELETE FROM " + tn + " WHERE (" + columnList(t.pk) + ") = (SELECT " + columnList(t.pk) + " FROM " + rec + ")", true
	case "T":
		return "DELETE FROM " + tn + r.tenantFilter(t, dstShared), false
	}
	return "", false
}

// lag counts the captured changes not yet applied.
func (r *moveRun) lag(ctx context.Context) (int64, error) {
	logTable, _, _ := moveNames(r.m)
	var n int64
	err := r.srcAdmin.QueryRow(ctx, `SELECT pg_catalog.count(*) FROM `+logTable).Scan(&n)
	return n, err
}

// catchUp applies the log until at most Config.MoveMaxLag changes wait.
func (r *moveRun) catchUp(ctx context.Context) error {
	for {
		if err := r.applyLog(ctx); err != nil {
			return err
		}
		lag, err := r.lag(ctx)
		if err != nil {
			return err
		}
		if err := r.saveProgress(ctx, lag, true); err != nil {
			return err
		}
		if lag <= r.p.cfg.MoveMaxLag {
			return nil
		}
	}
}

// moveSettle is how long a pause waits before it looks at the source: about
// the time the pause's NOTIFY takes to reach the other proxies of the
// catalog, after which they hold the tenant's new transactions (this
// process's proxy is held at once by Config.PauseBarrier). Safety does not
// depend on it (the fence makes a write that slips past the pause fail, and
// the drain after the fence waits for every transaction that began before
// it); it only spares most transactions begun while the NOTIFY is on its way
// a 40001.
const moveSettle = 100 * time.Millisecond

// moveDrainTries is how many times a pause waits for the tenant's
// transactions before the move fails.
const moveDrainTries = 3

// pauseAndFence pauses the tenant, waits for its transactions on the source
// to end and fences the source (a write that slipped past the pause fails),
// then waits again for transactions that began between the look and the
// fence. When they do not end within Config.MoveDrainTimeout it unfences,
// unpauses, catches up and tries again (moveDrainTries times in all, then
// the move fails). On success the tenant is paused and the source fenced;
// pausedAt is when the pause began.
func (r *moveRun) pauseAndFence(ctx context.Context) (pausedAt time.Time, err error) {
	p := r.p
	for try := 1; ; try++ {
		pausedAt = time.Now()
		if _, err := p.cat.PauseTenant(ctx, r.m.TenantID, "placement move "+r.m.ID, catalog.MovePauseBy+r.m.ID); err != nil {
			return pausedAt, fmt.Errorf("pausing the tenant for the cut-over: %w", err)
		}
		if p.cfg.MoveHook != nil {
			p.cfg.MoveHook(ctx, r.m.ID, "paused")
		}
		// This process's proxy at once; the others within moveSettle.
		held := true
		if p.cfg.PauseBarrier != nil {
			bctx, cancel := context.WithTimeout(ctx, p.cfg.MoveDrainTimeout)
			err := p.cfg.PauseBarrier(bctx, r.m.TenantID)
			cancel()
			if err := ctxErr(ctx); err != nil {
				return pausedAt, err
			}
			held = err == nil
		}
		select {
		case <-time.After(time.Until(pausedAt.Add(moveSettle))):
		case <-ctx.Done():
			return pausedAt, context.Cause(ctx)
		}
		drained, err := false, error(nil)
		if held {
			drained, err = r.drain(ctx, p.cfg.MoveDrainTimeout)
		}
		if err == nil && drained {
			if err = r.setFence(ctx, true); err == nil {
				// Transactions that began between the look and the fence
				// (one query when there are none).
				drained, err = r.drain(ctx, p.cfg.MoveDrainTimeout)
			}
		}
		if err != nil {
			return pausedAt, err
		}
		if drained {
			return pausedAt, nil
		}
		if err := r.setFence(ctx, false); err != nil {
			return pausedAt, err
		}
		if err := p.cat.UnpauseMove(ctx, r.m.ID); err != nil {
			return pausedAt, err
		}
		if try == moveDrainTries {
			return pausedAt, fmt.Errorf("the tenant's transactions on the source did not end within %s of the cut-over's pause, %d times; the tenant serves from its source",
				p.cfg.MoveDrainTimeout, moveDrainTries)
		}
		if err := r.catchUp(ctx); err != nil {
			return pausedAt, err
		}
	}
}

// cutOver verifies the copy and switches the tenant, in two pauses:
//
//  1. the verification point: a first short pause (pauseAndFence) and the
//     rest of the log applied make the target equal the source; one
//     REPEATABLE READ snapshot is taken on each side, then the fence is
//     lifted and the pause ends. Per table the tenant's row count and
//     checksum are compared between the two snapshots (verifySnapshots)
//     while the tenant runs; the capture keeps logging its changes, and the
//     changes applied from now on are remembered by key (r.touched).
//  2. after a catch-up, the keys changed since the verification point are
//     compared row by row with the tenant running, and the equal ones
//     forgotten (narrowTouched), so the switch's check is left with the
//     last changes only;
//  3. the switch: pauseAndFence again, the small rest of
//     the log applied, and the rows of every key changed since the
//     verification point compared between the source and the target
//     (checkTouched: O(changes), not O(table)); the app schema and the
//     source's tables are checked, sequences set past the source's, the
//     target's triggers turned on, and the catalog switches the tenant's
//     placement, which ends the pause.
//
// Any mismatch fails the move (the tenant stays on its source).
func (r *moveRun) cutOver(ctx context.Context) error {
	p := r.p
	if err := r.verificationPoint(ctx); err != nil {
		return err
	}
	if err := r.catchUp(ctx); err != nil {
		return err
	}
	remembered := r.touchedCount()
	if err := r.narrowTouched(ctx); err != nil {
		return err
	}
	p.cfg.Log.Info("placement move: rows changed since the verification, compared before the switch",
		zap.String("move", r.m.ID), zap.Int("changed", remembered), zap.Int("left_for_the_switch", r.touchedCount()))
	// The app's tables, read before the pause (a connection of its own to
	// the shared database): an app schema change after this read fails
	// sameAppSchema below, or leaves the source with a table this list
	// lacks, which movableErr refuses.
	app, err := p.appTables(ctx)
	if err != nil {
		return err
	}
	pausedAt, err := r.pauseAndFence(ctx)
	if err != nil {
		return err
	}
	// What the switch's pause spends its time on, for the log line of the
	// switch (the pause is what the tenant's writers wait out).
	var steps []string
	last := pausedAt
	mark := func(step string) {
		now := time.Now()
		steps = append(steps, fmt.Sprintf("%s %dms", step, now.Sub(last).Milliseconds()))
		last = now
	}
	mark("pause, drain and fence")
	if err := r.applyLog(ctx); err != nil {
		return err
	}
	mark("last changes")
	if err := r.sameAppSchema(ctx); err != nil {
		return err
	}
	// Tables the tenant made during the move.
	srcRels, err := listRelations(ctx, r.srcAdmin, r.src.Schema)
	if err != nil {
		return err
	}
	if err := movableErr(r.src, app, srcRels); err != nil {
		return err
	}
	mark("schema checks")
	if err := r.checkTouched(ctx); err != nil {
		return err
	}
	mark(fmt.Sprintf("keyed check of %d rows", r.touchedCount()))
	if p.cfg.MoveHook != nil {
		p.cfg.MoveHook(ctx, r.m.ID, "checked")
	}
	if err := r.copySequences(ctx); err != nil {
		return fmt.Errorf("setting the target's sequences: %w", err)
	}
	mark("sequences")
	// A move back's kept copy the tenant owns: checked, its triggers turned
	// on, and held against DDL until its fence is lifted (lockKept).
	var keptTx pgx.Tx
	if r.m.Reverts != "" && r.dst.Isolation != catalog.IsolationShared {
		if keptTx, err = r.lockKept(ctx); err != nil {
			return err
		}
		defer keptTx.Rollback(context.WithoutCancel(ctx)) // after the Commit below: a no-op
	} else if r.dst.Isolation != catalog.IsolationShared {
		// As the admin (DDL that runs nothing of the tenant's), so that the
		// wait for an autovacuum of the freshly copied tables is short.
		err := pgx.BeginFunc(ctx, r.dstAdmin, func(tx pgx.Tx) error {
			stmts := []string{"SET LOCAL deadlock_timeout = '" + pauseDeadlockTimeout + "'",
				"SET LOCAL lock_timeout = '" + moveTriggerLockWait + "'"}
			for _, t := range r.tables {
				stmts = append(stmts, "ALTER TABLE "+r.dstTable(t)+" ENABLE TRIGGER USER")
			}
			return execAll(ctx, tx.Conn(), stmts...)
		})
		if err != nil {
			return fmt.Errorf("turning the target's triggers on: %w", err)
		}
	}
	// The capture check of the switch's pause. A transaction that slipped
	// past the pause (its proxy slow to hear of it) has its writes stopped
	// by the fence, but not its DDL: on tables the tenant owns (a schema or
	// database source) it could turn a trigger off after the check and
	// then write past the fence. So the check runs in a transaction that
	// holds SHARE UPDATE EXCLUSIVE on those tables until after the switch
	// (and the moved fence): every trigger DDL conflicts with it, writes do
	// not (they reach the fence). The admin owns a shared source's tables.
	mark("target triggers")
	lockTx, err := r.lockSourceTriggers(ctx)
	if err != nil {
		return err
	}
	mark("source trigger lock")
	if lockTx != nil {
		defer lockTx.Rollback(context.WithoutCancel(ctx)) // after the Commit below: a no-op
	}
	if err := r.checkCapture(ctx); err != nil {
		return err
	}
	mark("capture check")
	if err := p.setSharedPath(ctx, r.dst); err != nil {
		return err
	}
	mark("search_path")
	if p.cfg.MoveHook != nil {
		p.cfg.MoveHook(ctx, r.m.ID, "switching")
	}
	if err := ctxErr(ctx); err != nil {
		return err
	}
	if r.m.Reverts != "" {
		// The kept copy is live from the switch on: the reverted move's
		// fence goes (a function swap; its triggers are dropped after the
		// switch). A failure from here on puts the fence back (quiesceMove).
		// A copy the tenant owns gets it in lockKept's transaction, which
		// ends here.
		_, fn, _ := moveNames(r.revertedMove())
		var err error
		if keptTx != nil {
			if err = replaceFunction(ctx, keptTx, r.m.Reverts, noopCaptureSQL(fn)); err == nil {
				err = keptTx.Commit(ctx)
			}
		} else {
			err = replaceFunction(ctx, r.dstAdmin, r.m.Reverts, noopCaptureSQL(fn))
		}
		if err != nil {
			return fmt.Errorf("lifting the kept copy's fence: %w", err)
		}
		mark("kept copy's fence")
	}
	// The target's transaction id after the move's last write there: what
	// the tenant writes from the switch on has a newer xmin (a move back
	// brings only those rows to the kept copy).
	var switchXID int64
	if err := r.dstAdmin.QueryRow(ctx, "SELECT pg_catalog.pg_current_xact_id()::pg_catalog.text::pg_catalog.int8").Scan(&switchXID); err != nil {
		return fmt.Errorf("reading the target's transaction id: %w", err)
	}
	apFrom, apKeep := moveAppSchemaName(r.m), keptAppSchemaName(r.m)
	if r.dst.Isolation == catalog.IsolationShared {
		apFrom = ""
	}
	if r.src.Isolation == catalog.IsolationShared {
		apKeep = ""
	}
	m, err := p.cat.SwitchMove(ctx, r.m.ID, catalog.MovePlacement{Isolation: r.dst.Isolation, Backend: r.dst.Backend,
		Database: r.dst.Database, Schema: r.dst.Schema, AppSchemaFrom: apFrom, AppSchemaKeep: apKeep,
		PauseMS: time.Since(pausedAt).Milliseconds(), SwitchXID: switchXID})
	if err != nil {
		return fmt.Errorf("switching the tenant's placement: %w", err)
	}
	r.m = m
	mark("switch")
	p.cfg.Log.Info("placement move switched", zap.String("move", m.ID), zap.String("tenant", m.TenantSlug),
		zap.String("from", m.FromIsolation), zap.String("to", m.ToIsolation), zap.Int64("pause_ms", m.PauseMS),
		zap.String("pause_steps", strings.Join(steps, ", ")))
	// The source copy stays fenced until FinalizeMove drops the capture
	// with it: the tenant's sessions leave it at their next transaction,
	// and a write that still reaches it (through a proxy that has not yet
	// seen the switch, or that serves from its cache while the catalog is
	// out of reach) fails instead of landing where nothing reads it. The
	// fence is a function swap: no lock on the tenant's tables.
	_, fn, _ := moveNames(r.m)
	// (On srcAdmin: inside lockTx when there is one, committed with it.)
	if _, err := r.srcAdmin.Exec(context.WithoutCancel(ctx), movedFenceSQL(fn)); err != nil {
		p.cfg.Log.Warn("placement move: marking the source copy as moved failed; it keeps the cut-over's fence",
			zap.String("move", m.ID), zap.Error(err))
	}
	if lockTx != nil {
		if err := lockTx.Commit(context.WithoutCancel(ctx)); err != nil {
			p.cfg.Log.Warn("placement move: ending the source's trigger lock failed", zap.String("move", m.ID), zap.Error(err))
		}
	}
	if r.m.Reverts != "" {
		// The reverted move's capture on the copy, now live (inert since
		// its function became a no-op); the sweep retries a failure.
		old := r.revertedMove()
		if err := p.dropCapture(context.WithoutCancel(ctx), old, r.dst); err != nil {
			p.cfg.Log.Warn("placement move back: dropping the reverted move's capture failed; the sweep retries",
				zap.String("move", m.ID), zap.Error(err))
			p.cat.SetMoveCleanup(context.WithoutCancel(ctx), old.ID, err.Error())
		}
	}
	return nil
}

// lockSourceTriggers begins a transaction on srcAdmin that holds SHARE
// UPDATE EXCLUSIVE on the source's copied tables when the tenant owns them
// (not a shared source: nil then), waiting at most moveTriggerLockWait
// (autovacuum gives way to it; a tenant transaction holding a conflicting
// lock past the drain fails the move).
func (r *moveRun) lockSourceTriggers(ctx context.Context) (pgx.Tx, error) {
	if r.src.Isolation == catalog.IsolationShared || len(r.tables) == 0 {
		return nil, nil
	}
	tx, err := r.srcAdmin.Begin(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(r.tables))
	for _, t := range r.tables {
		names = append(names, r.srcTable(t))
	}
	if _, err := tx.Exec(ctx, "SET LOCAL deadlock_timeout = '"+pauseDeadlockTimeout+"'; SET LOCAL lock_timeout = '"+moveTriggerLockWait+"'"); err == nil {
		_, err = tx.Exec(ctx, "LOCK TABLE "+strings.Join(names, ", ")+" IN SHARE UPDATE EXCLUSIVE MODE")
	}
	if err != nil {
		tx.Rollback(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("locking the source's tables against trigger changes for the switch: %w", err)
	}
	return tx, nil
}

// moveTriggerLockWait bounds the wait of the DDL locks the switch's pause
// takes (lockSourceTriggers, the target's triggers).
const moveTriggerLockWait = "5s"

// pauseDeadlockTimeout is deadlock_timeout for the DDL of the switch's
// pause. PostgreSQL cancels an autovacuum worker that blocks a lock request
// only once the waiter's deadlock_timeout (1s by default) has passed; the
// tables a move just copied are the ones autovacuum picks, and the bench
// measured that second in the pause.
const pauseDeadlockTimeout = "10ms"

// movedFenceSQL makes the capture function of a switched move refuse every
// write to the source copy, saying where the tenant went.
func movedFenceSQL(fn string) string {
	return `CREATE OR REPLACE FUNCTION ` + fn + `() RETURNS trigger LANGUAGE plpgsql
	SET search_path = pg_catalog AS $capture$
BEGIN
	RAISE EXCEPTION 'the tenant moved to another placement; this copy of its data is kept read-only until the move is finalized'
		USING ERRCODE = '40001', HINT = 'retry the transaction: the proxy routes it to the new placement';
END
$capture$`
}

// verificationPoint is the cut-over's first step (see cutOver): a short
// pause in which the target is made equal to the source and a snapshot of
// each is taken, then the full comparison of the two snapshots, with the
// tenant running. From the snapshots on, applyLog remembers the keys it
// applies (r.touched) for the switch's check.
func (r *moveRun) verificationPoint(ctx context.Context) error {
	p := r.p
	pw, err := p.cat.BackendPassword(ctx, r.src.ID)
	if err != nil {
		return err
	}
	// Connections of their own, as the tenant's full role: applyLog goes on
	// using srcT and dstT while the snapshots are compared.
	srcV, err := p.cfg.RoleConn(ctx, r.src.Backend, r.src.Database, r.src.RoleName, pw)
	if err != nil {
		return err
	}
	defer srcV.Close(context.WithoutCancel(ctx))
	dstV, err := p.cfg.RoleConn(ctx, r.dst.Backend, r.dst.Database, r.dst.RoleName, pw)
	if err != nil {
		return err
	}
	defer dstV.Close(context.WithoutCancel(ctx))
	if _, err := r.pauseAndFence(ctx); err != nil {
		return err
	}
	if err := r.checkCapture(ctx); err != nil {
		return err
	}
	if err := r.applyLog(ctx); err != nil {
		return err
	}
	// Both snapshots are taken (by their first query) while the source is
	// fenced and drained and the log is empty: source == target in them.
	snap := func(c *pgx.Conn) (pgx.Tx, error) {
		tx, err := c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return nil, err
		}
		_, err = tx.Exec(ctx, "SELECT 1")
		return tx, err
	}
	srcTx, err := snap(srcV)
	if err != nil {
		return fmt.Errorf("the verification snapshot of the source: %w", err)
	}
	defer srcTx.Rollback(context.WithoutCancel(ctx))
	dstTx, err := snap(dstV)
	if err != nil {
		return fmt.Errorf("the verification snapshot of the target: %w", err)
	}
	defer dstTx.Rollback(context.WithoutCancel(ctx))
	r.mu.Lock()
	r.touched = map[string]map[string][]byte{}
	r.truncated = map[string]bool{}
	r.mu.Unlock()
	if err := r.setFence(ctx, false); err != nil {
		return err
	}
	if err := p.cat.UnpauseMove(ctx, r.m.ID); err != nil {
		return err
	}
	if p.cfg.MoveHook != nil {
		p.cfg.MoveHook(ctx, r.m.ID, "verifying")
	}
	if err := r.verifySnapshots(ctx, srcTx, dstTx); err != nil {
		return err
	}
	if p.cfg.MoveHook != nil {
		p.cfg.MoveHook(ctx, r.m.ID, "verified")
	}
	return nil
}

// sameAppSchema fails the move when the source has an app schema version
// the target lacks (a schema apply ran during the move: the copy and the
// captured rows follow the old tables).
func (r *moveRun) sameAppSchema(ctx context.Context) error {
	name := func(t *catalog.Tenant, own string) string {
		if t.Isolation == catalog.IsolationShared {
			return "shared"
		}
		return own
	}
	srcV, err := r.p.cat.AppSchemaApplied(ctx, name(r.src, r.src.ID))
	if err != nil {
		return err
	}
	dstV, err := r.p.cat.AppSchemaApplied(ctx, name(r.dst, moveAppSchemaName(r.m)))
	if err != nil {
		return err
	}
	for v := range srcV {
		if !dstV[v] {
			return fmt.Errorf("the app schema changed during the move (version %d is in the source, not in the target); start the move again", v)
		}
	}
	return nil
}

// drain waits up to timeout until none of the tenant's transactions runs on
// the source (pg_stat_activity: a session of one of its roles in the source
// database with a transaction open, the move's own connections aside).
func (r *moveRun) drain(ctx context.Context, timeout time.Duration) (bool, error) {
	mine := []uint32{r.srcT.PgConn().PID(), r.srcAdmin.PgConn().PID()}
	if r.dstT != nil && r.p.sameServer(r.src.Backend, r.dst.Backend) {
		mine = append(mine, r.dstT.PgConn().PID(), r.dstAdmin.PgConn().PID())
	}
	deadline := time.Now().Add(timeout)
	for {
		var n int
		err := r.srcAdmin.QueryRow(ctx, `SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity
			WHERE usename = ANY($1) AND datname = $2 AND xact_start IS NOT NULL AND NOT pid = ANY($3::int4[])`,
			accessRoles(r.src), r.src.Database, mine).Scan(&n)
		if err != nil {
			return false, err
		}
		if n == 0 {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return false, context.Cause(ctx)
		}
	}
}

// checksumSQL counts a table's rows of the tenant and hashes them (all
// copied columns but tenant_id, ordered by primary key), the same way on
// both sides; it runs as the tenant's role.
func (r *moveRun) checksumSQL(t *moveTable, table string, shared bool) string {
	cols := without(t.cols, "tenant_id")
	if len(cols) == 0 {
		cols = t.pk
	}
	return "SELECT pg_catalog.count(*), COALESCE(pg_catalog.md5(pg_catalog.string_agg(pg_catalog.md5(ROW(" + columnList(cols) +
		")::pg_catalog.text), '' ORDER BY " + columnList(t.pk) + ")), '') FROM " + table + r.tenantFilter(t, shared)
}

// tableSums is one side's row count and checksum of each table.
type tableSums struct {
	n   []int64
	sum []string
}

// rowQuerier is a *pgx.Conn or a pgx.Tx.
type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// checksums computes the tenant's row count and checksum of every table in
// the source (or the target) on q, which runs as the tenant's role.
func (r *moveRun) checksums(ctx context.Context, q rowQuerier, target bool) (tableSums, error) {
	out := tableSums{n: make([]int64, len(r.tables)), sum: make([]string, len(r.tables))}
	side, shared := "source", r.src.Isolation == catalog.IsolationShared
	if target {
		side, shared = "target", r.dst.Isolation == catalog.IsolationShared
	}
	for i, t := range r.tables {
		if r.p.cfg.MoveHook != nil {
			r.p.cfg.MoveHook(ctx, r.m.ID, "checksum:"+side+":"+t.name)
		}
		table := r.srcTable(t)
		if target {
			table = r.dstTable(t)
		}
		if err := q.QueryRow(ctx, r.checksumSQL(t, table, shared)).Scan(&out.n[i], &out.sum[i]); err != nil {
			return out, fmt.Errorf("checksum of %s in the %s: %w", t.name, side, err)
		}
	}
	return out, nil
}

// verifySnapshots compares, per table, the tenant's row count and checksum
// in the source's and the target's verification snapshots; any difference
// fails the move. The two sides run one after the other: the tenant runs
// meanwhile, and so do the server's other tenants, whose share of the
// CPU two full scans at once would take.
func (r *moveRun) verifySnapshots(ctx context.Context, srcTx, dstTx pgx.Tx) error {
	ss, err := r.checksums(ctx, srcTx, false)
	if err != nil {
		return err
	}
	ds, err := r.checksums(ctx, dstTx, true)
	if err != nil {
		return err
	}
	var bad []string
	for i, t := range r.tables {
		if ss.n[i] != ds.n[i] || ss.sum[i] != ds.sum[i] {
			bad = append(bad, fmt.Sprintf("%s (source %d rows, target %d rows, checksums differ: %v)", t.name, ss.n[i], ds.n[i], ss.sum[i] != ds.sum[i]))
		}
		r.mu.Lock()
		for j := range r.progress {
			if r.progress[j].Name == t.name {
				r.progress[j].Copied, r.progress[j].Total = ds.n[i], ss.n[i]
			}
		}
		r.mu.Unlock()
	}
	if len(bad) > 0 {
		return fmt.Errorf("the target does not match the source: %s", strings.Join(bad, "; "))
	}
	return r.saveProgress(ctx, -1, true)
}

// keyCols are the primary key's columns but tenant_id (the tenant filter
// covers it; a shared and an own placement may differ there).
func keyCols(t *moveTable) []string {
	return without(t.pk, "tenant_id")
}

// touch remembers, after the verification point, the key of a change
// applyLog applies (the last row seen per key) or that a table was
// truncated.
func (r *moveRun) touch(t *moveTable, op string, row []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.touched == nil {
		return nil // before the verification point
	}
	kc := keyCols(t)
	if op == "T" || len(kc) == 0 {
		r.truncated[t.name] = true
		return nil
	}
	var rec map[string]json.RawMessage
	if err := json.Unmarshal(row, &rec); err != nil {
		return fmt.Errorf("a captured change of %s is not a JSON object: %w", t.name, err)
	}
	key := make([]json.RawMessage, len(kc))
	for i, c := range kc {
		key[i] = rec[c]
	}
	k, err := json.Marshal(key)
	if err != nil {
		return err
	}
	if r.touched[t.name] == nil {
		r.touched[t.name] = map[string][]byte{}
	}
	r.touched[t.name][string(k)] = row
	return nil
}

// checkTouched is the switch's check, in its pause, after the last
// applyLog: the source and the target were equal at the verification
// point, and since then the target changed only by the captured changes
// applyLog applied, so comparing the rows of those keys (as the tenant's
// role, row by row: keyRowSums, as the narrowing does) is enough; a forged log row shows up as a
// difference. A table truncated since the verification point (or keyed by
// tenant_id alone) is compared whole.
func (r *moveRun) checkTouched(ctx context.Context) error {
	r.mu.Lock()
	touched, truncated := r.touched, r.truncated
	r.mu.Unlock()
	if touched == nil {
		return errors.New("the switch's check ran before the verification point")
	}
	srcShared, dstShared := r.src.Isolation == catalog.IsolationShared, r.dst.Isolation == catalog.IsolationShared
	var bad []string
	for _, t := range r.tables {
		var sn, dn int64 // rows found on each side
		var differ bool  // the checksums (or a remembered key's row hashes) differ
		switch {
		case truncated[t.name]:
			if r.p.cfg.MoveHook != nil {
				r.p.cfg.MoveHook(ctx, r.m.ID, "checksum:truncated:"+t.name)
			}
			var ss, ds string
			if err := r.srcT.QueryRow(ctx, r.checksumSQL(t, r.srcTable(t), srcShared)).Scan(&sn, &ss); err != nil {
				return fmt.Errorf("checksum of %s in the source: %w", t.name, err)
			}
			if err := r.dstT.QueryRow(ctx, r.checksumSQL(t, r.dstTable(t), dstShared)).Scan(&dn, &ds); err != nil {
				return fmt.Errorf("checksum of %s in the target: %w", t.name, err)
			}
			differ = ss != ds
		case len(touched[t.name]) > 0:
			rows := slices.Collect(maps.Values(touched[t.name]))
			for start := 0; start < len(rows); start += narrowBatch {
				src, dst, err := r.keyRowSums(ctx, t, rows[start:min(start+narrowBatch, len(rows))])
				if err != nil {
					return err
				}
				sn, dn = sn+int64(len(src)), dn+int64(len(dst))
				differ = differ || !maps.Equal(src, dst)
			}
		default:
			continue
		}
		if sn != dn || differ {
			bad = append(bad, fmt.Sprintf("%s (rows changed since the verification: source %d, target %d, checksums differ: %v)", t.name, sn, dn, differ))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("the target does not match the source: %s", strings.Join(bad, "; "))
	}
	return nil
}

// copySequences sets each of the target's sequences past the source's
// value (never back: in the shared database a sequence serves every tenant).
func (r *moveRun) copySequences(ctx context.Context) error {
	list := func(conn *pgx.Conn, schema string) (map[string]bool, error) {
		rows, err := conn.Query(ctx, `SELECT c.relname::text FROM pg_catalog.pg_class c
			JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'S'`, schema)
		if err != nil {
			return nil, err
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		out := map[string]bool{}
		for _, n := range names {
			out[n] = true
		}
		return out, err
	}
	srcSeqs, err := list(r.srcAdmin, r.src.Schema)
	if err != nil {
		return err
	}
	dstSeqs, err := list(r.dstAdmin, r.dst.Schema)
	if err != nil {
		return err
	}
	for name := range srcSeqs {
		if !dstSeqs[name] {
			continue
		}
		var v int64
		var called bool
		if err := r.srcAdmin.QueryRow(ctx, "SELECT last_value, is_called FROM "+quoteIdent(r.src.Schema)+"."+quoteIdent(name)).Scan(&v, &called); err != nil {
			return err
		}
		if !called {
			continue
		}
		dq := quoteIdent(r.dst.Schema) + "." + quoteIdent(name)
		var cur int64
		var curCalled bool
		if err := r.dstAdmin.QueryRow(ctx, "SELECT last_value, is_called FROM "+dq).Scan(&cur, &curCalled); err != nil {
			return err
		}
		if curCalled && cur >= v {
			continue
		}
		conn := r.dstT // the tenant owns its sequences
		if r.dst.Isolation == catalog.IsolationShared {
			conn = r.dstAdmin // setval runs no user code
		}
		if _, err := conn.Exec(ctx, "SELECT pg_catalog.setval($1::pg_catalog.regclass, $2, true)", dq, v); err != nil {
			return err
		}
	}
	return nil
}
