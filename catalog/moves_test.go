package catalog_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stratum-hq/stratum-proxy/catalog"
)

func newMove(t *testing.T, tenantID string) *catalog.Move {
	t.Helper()
	id, _, err := catalog.NewID()
	if err != nil {
		t.Fatal(err)
	}
	return &catalog.Move{ID: id, TenantID: tenantID, FromIsolation: "shared", FromBackend: "main", FromDatabase: "app",
		FromSchema: "public", ToIsolation: "schema", ToBackend: "main", ToDatabase: "app", ToSchema: "t_x",
		CreatedBy: "test", Owner: "p1"}
}

// TestMoves: one unfinished move per tenant (a switched one counts until
// finalized), phase changes only from the phases allowed, each audited with
// the move as target; the switch changes the tenant's placement, hands the
// target's app schema record to the tenant and ends the move's pause in one
// transaction; ListMoves is newest first and scoped to the actor's subtree.
func TestMoves(t *testing.T) {
	e := newTreeEnv(t)
	ctx := context.Background()
	root := e.mustInsert("m_root", "")
	a := e.mustInsert("m_a", "m_root")
	b := e.mustInsert("m_b", "")

	m1, err := e.c.InsertMove(ctx, newMove(t, a.ID))
	if err != nil {
		t.Fatal(err)
	}
	if m1.Phase != catalog.MovePending || m1.TenantSlug != "m_a" || len(m1.Tables) != 0 {
		t.Fatalf("new move: %+v", m1)
	}
	if _, err := e.c.InsertMove(ctx, newMove(t, a.ID)); !errors.Is(err, catalog.ErrMoveRunning) {
		t.Fatalf("a second move of the tenant: %v, want ErrMoveRunning", err)
	}
	if _, err := e.c.SetMovePhase(ctx, m1.ID, []string{catalog.MoveSwitched}, catalog.MoveFinalized, "", "move.finalize"); !errors.Is(err, catalog.ErrMovePhase) {
		t.Fatalf("finalizing a pending move: %v, want ErrMovePhase", err)
	}
	for _, ph := range []string{catalog.MoveProvisioning, catalog.MoveCopying, catalog.MoveCatchingUp, catalog.MoveCuttingOver} {
		if _, err := e.c.SetMovePhase(ctx, m1.ID, nil, ph, "", "move.phase"); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := e.c.MoveProgress(ctx, m1.ID, []catalog.MoveTable{{Name: "orders", Copied: 3, Total: 5}}, 7); err != nil || !ok {
		t.Fatalf("progress: %v %v", ok, err)
	}
	if _, err := e.c.PauseTenant(ctx, a.ID, "move", catalog.MovePauseBy+m1.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.conn.Exec(ctx, `INSERT INTO app_schema (checksum, sql) VALUES ('x', 'SELECT 1')`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.conn.Exec(ctx, `INSERT INTO app_schema_applied (version, placement)
		SELECT version, 'move:' || $1 FROM app_schema`, m1.ID); err != nil {
		t.Fatal(err)
	}
	sw, err := e.c.SwitchMove(ctx, m1.ID, catalog.MovePlacement{Isolation: "schema", Backend: "main", Database: "app",
		Schema: "t_x", AppSchemaFrom: "move:" + m1.ID, PauseMS: 42})
	if err != nil {
		t.Fatal(err)
	}
	if sw.Phase != catalog.MoveSwitched || sw.FinishedAt == nil || sw.Lag != 0 || len(sw.Tables) != 1 || sw.Tables[0].Copied != 3 || sw.PauseMS != 42 {
		t.Fatalf("after the switch: %+v", sw)
	}
	if got := e.get("m_a"); got.Isolation != "schema" || got.Schema != "t_x" {
		t.Fatalf("tenant after the switch: %+v", got)
	}
	if p, err := e.c.PausingAncestor(ctx, a.ID); err != nil || p != nil {
		t.Fatalf("the move's pause after the switch: %+v %v", p, err)
	}
	if n := e.scalar(`SELECT count(*) FROM app_schema_applied WHERE placement = $1`, a.ID); n != 1 {
		t.Errorf("the tenant's app schema record after the switch: %d versions, want 1", n)
	}
	if _, err := e.c.InsertMove(ctx, newMove(t, a.ID)); !errors.Is(err, catalog.ErrMoveRunning) {
		t.Fatalf("a move while one is switched (not finalized): %v, want ErrMoveRunning", err)
	}
	if _, err := e.c.SetMovePhase(ctx, m1.ID, nil, catalog.MoveCancelled, "x", "move.cancel"); !errors.Is(err, catalog.ErrMovePhase) {
		t.Fatalf("cancelling a switched move: %v, want ErrMovePhase", err)
	}
	fin, err := e.c.SetMovePhase(ctx, m1.ID, []string{catalog.MoveSwitched}, catalog.MoveFinalized, "", "move.finalize")
	if err != nil || fin.FinalizedAt == nil || !fin.CleanupPending {
		t.Fatalf("finalizing: %+v %v", fin, err)
	}
	// Until the finalized move's source copy is dropped, no new move of the
	// tenant (it could build where the cleanup drops); the sweep retries a
	// cleanup that failed, or one pending long after its phase changed.
	if _, err := e.c.InsertMove(ctx, newMove(t, a.ID)); !errors.Is(err, catalog.ErrMoveRunning) || !strings.Contains(err.Error(), "cleanup") {
		t.Fatalf("a move while the finalized one's cleanup is pending: %v, want ErrMoveRunning", err)
	}
	toClean := func(stale time.Duration) bool {
		t.Helper()
		ms, err := e.c.MovesToClean(ctx, stale)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.ID == m1.ID {
				return true
			}
		}
		return false
	}
	if toClean(time.Hour) || !toClean(0) {
		t.Errorf("a pending cleanup just begun is for its own process (%v), one pending past the staleness for the sweep (%v)", toClean(time.Hour), toClean(0))
	}
	if err := e.c.SetMoveCleanup(ctx, m1.ID, "lock timeout"); err != nil || !toClean(time.Hour) {
		t.Fatalf("a failed cleanup is for the sweep at once: %v", err)
	}
	if err := e.c.SetMoveCleanup(ctx, m1.ID, ""); err != nil || toClean(0) {
		t.Fatalf("a finished cleanup is no longer listed: %v", err)
	}
	if got, err := e.c.GetMove(ctx, m1.ID); err != nil || got.CleanupPending || got.CleanupError != "" {
		t.Fatalf("after the cleanup: %+v %v", got, err)
	}
	m2, err := e.c.InsertMove(ctx, newMove(t, a.ID))
	if err != nil {
		t.Fatalf("a move after the finalized one: %v", err)
	}
	if _, err := e.c.SetMovePhase(ctx, m2.ID, nil, catalog.MoveFailed, "it broke", "move.fail"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.InsertMove(ctx, newMove(t, b.ID)); err != nil {
		t.Fatal(err)
	}
	for action, want := range map[string]int{"move.start": 3, "move.phase": 4, "move.switch": 1, "move.finalize": 1,
		"move.fail": 1, "tenant.unpause": 1, "tenant.pause": 1} {
		if n := e.auditCount(action); n != want {
			t.Errorf("%d audit rows %s, want %d", n, action, want)
		}
	}
	if n := e.scalar(`SELECT count(*) FROM audit_log WHERE action LIKE 'move.%' AND (tenant_id IS NULL OR target NOT LIKE 'move:%')`); n != 0 {
		t.Errorf("%d move audit rows without a tenant or a move target", n)
	}

	all, err := e.c.ListMoves(ctx, "", 0)
	if err != nil || len(all) != 3 || all[0].TenantID != b.ID || all[2].ID != m1.ID {
		t.Fatalf("ListMoves: %d %v", len(all), err)
	}
	if mine, err := e.c.ListMoves(ctx, a.ID, 1); err != nil || len(mine) != 1 || mine[0].ID != m2.ID {
		t.Fatalf("ListMoves of m_a, limit 1: %v %v", mine, err)
	}
	if mine, err := e.c.ListMoves(ctx, "m_a", 0); err != nil || len(mine) != 2 {
		t.Fatalf("ListMoves of m_a by slug: %v %v", mine, err)
	}
	bound := catalog.WithActor(ctx, catalog.Actor{KeyID: "k", TenantID: &root.ID})
	if scoped, err := e.c.ListMoves(bound, "", 0); err != nil || len(scoped) != 2 {
		t.Fatalf("ListMoves for a key bound to m_root: %d %v, want m_a's 2", len(scoped), err)
	}
	var bm *catalog.Move
	for _, m := range all {
		if m.TenantID == b.ID {
			bm = m
		}
	}
	if _, err := e.c.GetMove(bound, bm.ID); !errors.Is(err, catalog.ErrMoveNotFound) {
		t.Fatalf("GetMove outside the bound subtree: %v, want ErrMoveNotFound", err)
	}
	if _, err := e.c.GetMove(ctx, "not-a-uuid"); !errors.Is(err, catalog.ErrMoveNotFound) {
		t.Fatalf("GetMove of a bad id: %v", err)
	}
	js, _ := json.Marshal(fin)
	for _, k := range []string{`"id"`, `"tenant_id"`, `"tenant"`, `"from_isolation"`, `"from_backend"`, `"to_isolation"`,
		`"to_backend"`, `"phase"`, `"error"`, `"tables"`, `"lag"`, `"created_by"`, `"started_at"`, `"updated_at"`,
		`"finished_at"`, `"finalized_at"`, `"rows_copied"`, `"rows_total"`, `"pause_ms"`} {
		if !strings.Contains(string(js), k) {
			t.Errorf("Move JSON lacks %s: %s", k, js)
		}
	}
}
