package moves

import (
	"context"
	"errors"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
	"github.com/stratum-hq/stratum-proxy/provision"
	"github.com/stratum-hq/stratum-proxy/server"
)

// revertHooks is a move hook for the move-back tests: it slows the copy,
// the reconcile and the catch-up down (so a writer's changes are captured
// and applied) but for the tenants marked fast, records the steps each
// move went through, and runs, in the move's goroutine, a function a test
// set (set, from tenantHooks) for a tenant at any step of its next move.
type revertHooks struct {
	*tenantHooks
	mu    sync.Mutex
	steps map[string][]string // by move id: the steps seen
	fast  map[string]bool     // by tenant id: moves not slowed
}

func newRevertHooks(ts *stacktest.Stack) *revertHooks {
	h := &revertHooks{tenantHooks: &tenantHooks{cat: ts.Catalog, at: map[string]tenantHook{}},
		steps: map[string][]string{}, fast: map[string]bool{}}
	ts.Provisioner.SetMoveHook(h.hook)
	return h
}

// setFast makes the moves of tenant id go at full speed.
func (h *revertHooks) setFast(id string) {
	h.mu.Lock()
	h.fast[id] = true
	h.mu.Unlock()
}

// isFast reports whether move id's tenant was made fast.
func (h *revertHooks) isFast(ctx context.Context, id string) bool {
	m, err := h.cat.GetMove(context.WithoutCancel(ctx), id)
	h.mu.Lock()
	defer h.mu.Unlock()
	return err == nil && h.fast[m.TenantID]
}

func (h *revertHooks) hook(ctx context.Context, id, step string) {
	h.mu.Lock()
	h.steps[id] = append(h.steps[id], step)
	h.mu.Unlock()
	slow := step == "copy:orders" || step == "reconcile:orders" || step == catalog.MoveCatchingUp
	if slow && !h.isFast(ctx, id) {
		select {
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	h.run(ctx, id, step)
}

// seen reports the steps move id went through.
func (h *revertHooks) seen(id string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.steps[id]...)
}

// placementOID identifies a move's source placement on the server (the
// schema's or the database's oid; 0 for the shared tables), to tell the
// kept copy from one made again.
func placementOID(t *testing.T, ts *stacktest.Stack, isolation, database, schema string) uint32 {
	t.Helper()
	var oid uint32
	var err error
	switch isolation {
	case catalog.IsolationSchema:
		err = ts.SrvConn(t, database).QueryRow(context.Background(), "SELECT oid FROM pg_namespace WHERE nspname = $1", schema).Scan(&oid)
	case catalog.IsolationDatabase:
		err = ts.SrvConn(t, "postgres").QueryRow(context.Background(), "SELECT oid FROM pg_database WHERE datname = $1", database).Scan(&oid)
	}
	if err != nil {
		t.Fatal(err)
	}
	return oid
}

// staleWriteFails tries, as the tenant's own role straight on the server,
// a write to table (qualified) in database and returns what PostgreSQL
// answered unless it is the moved fence's 40001.
func staleWriteFails(ctx context.Context, ts *stacktest.Stack, tn *catalog.Tenant, database, table string) error {
	pw, err := ts.Catalog.BackendPassword(ctx, tn.ID)
	if err != nil {
		return err
	}
	u := &url.URL{Scheme: "postgres", User: url.UserPassword(tn.RoleName, pw),
		Host: net.JoinHostPort(ts.Srv.Host(), strconv.Itoa(ts.Srv.Port())), Path: "/" + database, RawQuery: "sslmode=disable"}
	c, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, "INSERT INTO "+table+" (id, tenant_id, item) VALUES (7777777, $1, 'stale write')", tn.ID)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "40001" && strings.Contains(pe.Message, "moved to another placement") {
		return nil
	}
	return errors.New("a stale write to the kept copy during its move back: " + errText(err) + ", want 40001 saying the tenant moved")
}

func errText(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

// revertCases: a move and its move back, into each kind of kept copy: the
// shared tables, a schema, a database.
var revertCases = []revertCase{
	{moveCase{"shared_to_schema_and_back", "client_alpha", provision.MoveTarget{Isolation: "schema"}}, false},
	{moveCase{"schema_to_database_and_back", "client_beta", provision.MoveTarget{Isolation: "database"}}, false},
	{moveCase{"database_to_shared_and_back", "client_gamma", provision.MoveTarget{Isolation: "shared"}}, true},
}

// revertCase is a move and its move back; full makes the move back compare
// every row (the first move's switch transaction id forgotten).
type revertCase struct {
	moveCase
	full bool
}

// TestMoveBackWithWriter: per kept copy (shared, schema, database), a
// tenant moves while a writer runs, is changed on its new
// placement (rows inserted, updated and deleted), and is moved back
// (RevertMove) with the writer still running: the move back goes through
// no provisioning and no copy (it reconciles: the rows written since the
// switch, told by xmin, or for the database-kept copy every row, as for a
// switch that recorded no transaction id), a stale write to the kept
// copy still fails 40001 during it, it switches with the writer seeing no
// error, every committed key is back in the kept copy (the same schema or
// database, not a new one) with its last value and the deleted rows gone,
// the first move is "reverted" (not finalizable), the move back refuses a
// stale write to the placement it left, and finalizing it drops that one.
//
// Transaction pooling only (to keep the suite's time): how each pool mode's
// sessions follow a switch is the move's machinery (TestMoveWithWriter,
// both modes), and TestMoveBackCancelAndRecover moves back in session
// pooling. The move back's attack matrix (attackMoveBacks) shares the
// stack.
func TestMoveBackWithWriter(t *testing.T) {
	ts := stacktest.Start(t, otherBackend(t), func(c *server.Config) { c.Proxy.PoolMode = "transaction" })
	stopMoves(t, ts)
	if rep, err := ts.Provisioner.ApplySchema(context.Background(), notesSchema); err != nil || rep.Failed() > 0 {
		t.Fatalf("applying the schema: %+v %v", rep, err)
	}
	h := newRevertHooks(ts)
	for i, mc := range revertCases {
		src, err := ts.Catalog.GetTenant(context.Background(), mc.tenant)
		if err != nil {
			t.Fatal(err)
		}
		tn, err := ts.Provisioner.CreateTenant(context.Background(), provision.TenantSpec{Slug: "mb_" + mc.name[:len(mc.name)-len("_and_back")],
			Name: mc.name, Parent: "northstar_msp", Isolation: src.Isolation})
		if err != nil {
			t.Fatal(err)
		}
		mc.tenant = tn.Slug
		t.Run(mc.name, func(t *testing.T) {
			t.Parallel()
			testMoveBackWithWriter(t, ts, h, mc, int64(1_000_000*(i+1)))
		})
	}
	attackMoveBacks(t, ts, h) // the move back's attack matrix shares the stack
}

func testMoveBackWithWriter(t *testing.T, ts *stacktest.Stack, h *revertHooks, mc revertCase, base int64) {
	ctx := context.Background()
	dsn := ts.URL("demo", "demo", mc.tenant, "")
	watcher := stacktest.Connect(t, dsn)
	// Rows the test changes itself after the first switch: 10 deleted, 10
	// updated; 10 more inserted then.
	for k := base - 100; k < base-80; k++ {
		if _, err := watcher.Exec(ctx, "INSERT INTO orders (id, item) VALUES ($1, 'before')", k); err != nil {
			t.Fatal(err)
		}
	}
	w := startWriter(t, dsn, base)
	w.waitCommitted(t, 30)
	m, err := ts.Provisioner.StartMove(ctx, mc.tenant, mc.to, "test")
	if err != nil {
		t.Fatal(err)
	}
	m = waitMove(t, ts.Catalog, m.ID, catalog.MoveSwitched)
	keptOID := placementOID(t, ts, m.FromIsolation, m.FromDatabase, m.FromSchema)
	mode := "reconcile-mode:since-switch"
	if mc.full {
		// A switch without a recorded transaction id (as before it was
		// recorded): the move back compares every row.
		if _, err := stacktest.Connect(t, ts.CatalogURL).Exec(ctx, "UPDATE tenant_moves SET switch_xid = NULL WHERE id = $1", m.ID); err != nil {
			t.Fatal(err)
		}
		mode = "reconcile-mode:full"
	}
	if _, err := watcher.Exec(ctx, "DELETE FROM orders WHERE id >= $1 AND id < $2", base-100, base-90); err != nil {
		t.Fatal(err)
	}
	if _, err := watcher.Exec(ctx, "UPDATE orders SET quantity = 77 WHERE id >= $1 AND id < $2", base-90, base-80); err != nil {
		t.Fatal(err)
	}
	for k := base - 200; k < base-190; k++ {
		if _, err := watcher.Exec(ctx, "INSERT INTO orders (id, item) VALUES ($1, 'after the switch')", k); err != nil {
			t.Fatal(err)
		}
	}
	n := w.count()
	w.waitCommitted(t, n+20)

	tn, err := ts.Catalog.GetTenant(ctx, mc.tenant)
	if err != nil {
		t.Fatal(err)
	}
	keptTable := pgx.Identifier{m.FromSchema, "orders"}.Sanitize()
	stale := h.set(mc.tenant, "reconcile:orders", func(string) error {
		return staleWriteFails(ctx, ts, tn, m.FromDatabase, keptTable)
	})
	back, err := ts.Provisioner.RevertMove(ctx, m.ID, "test")
	if err != nil {
		t.Fatal(err)
	}
	if back.Reverts != m.ID || back.ToIsolation != m.FromIsolation || back.ToDatabase != m.FromDatabase || back.ToSchema != m.FromSchema {
		t.Fatalf("the move back: %+v, of %+v", back, m)
	}
	if rm, err := ts.Catalog.GetMove(ctx, m.ID); err != nil || rm.Phase != catalog.MoveReverting {
		t.Fatalf("the moved-back move while its move back runs: %+v %v, want reverting", rm, err)
	}
	if _, err := ts.Provisioner.FinalizeMove(ctx, m.ID, "test"); !errors.Is(err, catalog.ErrMovePhase) {
		t.Fatalf("finalizing a move while its move back runs: %v, want ErrMovePhase", err)
	}
	if err := hookOrFail(t, ts.Catalog, back.ID, stale); err != nil {
		t.Error(err)
	}
	back = waitMove(t, ts.Catalog, back.ID, catalog.MoveSwitched)
	n = w.count()
	w.waitCommitted(t, n+20) // writes after the move back land in the kept copy
	want := w.finish(t)
	for k := base - 90; k < base-80; k++ {
		want[k] = 77
	}
	for k := base - 200; k < base-190; k++ {
		want[k] = 1
	}

	for _, s := range h.seen(back.ID) {
		if strings.HasPrefix(s, "copy:") {
			t.Errorf("the move back copied (step %s): %v", s, h.seen(back.ID))
		}
	}
	if !slices.Contains(h.seen(back.ID), mode) {
		t.Errorf("the move back's steps %v lack %s", h.seen(back.ID), mode)
	}
	if got := placementOID(t, ts, m.FromIsolation, m.FromDatabase, m.FromSchema); got != keptOID {
		t.Errorf("the move back made its target again (oid %d, the kept copy's %d)", got, keptOID)
	}
	tn, err = ts.Catalog.GetTenant(ctx, mc.tenant)
	if err != nil {
		t.Fatal(err)
	}
	if tn.Isolation != m.FromIsolation || tn.Backend != m.FromBackend || tn.Database != m.FromDatabase || tn.Schema != m.FromSchema {
		t.Fatalf("tenant placement after the move back: %+v, first move %+v", tn, m)
	}
	if db, schema := placementOf(t, watcher); db != m.FromDatabase || schema != m.FromSchema {
		t.Fatalf("the tenant's session runs in %s.%s after the move back, want %s.%s", db, schema, m.FromDatabase, m.FromSchema)
	}
	all := orderKeys(t, watcher, "SELECT id, quantity FROM orders WHERE id >= $1", base-300)
	sameKeys(t, "through the proxy", want, all)
	if len(all) != len(want) { // the rows deleted after the first switch are gone
		var extra []int64
		for k := range all {
			if _, ok := want[k]; !ok {
				extra = append(extra, k)
			}
		}
		t.Errorf("after the move back the tenant has %d rows, want %d; not committed (or deleted): %v", len(all), len(want), extra)
	}
	direct := ts.SrvConn(t, m.FromDatabase)
	sameKeys(t, "on the server", want, orderKeys(t, direct,
		"SELECT id, quantity FROM "+keptTable+" WHERE id >= $1 AND tenant_id = $2", base-300, tn.ID))
	// Dropped after the switch (DDL that waits for the other tenants'
	// writers of a shared copy's tables), so not always yet.
	eventually(t, "the first move's capture gone from the kept copy", func() bool {
		return stacktest.Count(t, direct, `SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE $1)
			+ (SELECT count(*) FROM pg_proc WHERE proname LIKE $2) + (SELECT count(*) FROM pg_class WHERE relname LIKE $3)`,
			captureTrigger(m.ID)+"%", "move_capture_"+captureTrigger(m.ID)[len("stratum_move_"):]+"%",
			"move_log_"+captureTrigger(m.ID)[len("stratum_move_"):]+"%") == 0
	})
	if rm, err := ts.Catalog.GetMove(ctx, m.ID); err != nil || rm.Phase != catalog.MoveReverted {
		t.Fatalf("the moved-back move: %+v %v, want reverted", rm, err)
	}
	if _, err := ts.Provisioner.FinalizeMove(ctx, m.ID, "test"); !errors.Is(err, catalog.ErrMovePhase) {
		t.Fatalf("finalizing a reverted move: %v, want ErrMovePhase", err)
	}
	staleWriteRefused(t, ts, tn, back.FromDatabase, pgx.Identifier{back.FromSchema, "orders"}.Sanitize())
	if _, err := ts.Provisioner.FinalizeMove(ctx, back.ID, "test"); err != nil {
		t.Fatal(err)
	}
	sourceGone(t, ts, back)
	if _, err := watcher.Exec(ctx, "INSERT INTO orders (id, item) VALUES ($1, 'after finalize')", base-1); err != nil {
		t.Fatalf("writing after finalizing the move back: %v", err)
	}
}

// keptFence reports whether the kept copy of move m is fenced as a switched
// move's source is (its capture function refuses every writer, with no
// exception for a move back's applier) and how many of the copy's app
// triggers are off.
func keptFence(t *testing.T, c *pgx.Conn, m *catalog.Move) (fenced bool, triggersOff int) {
	t.Helper()
	fn := "move_capture_" + captureTrigger(m.ID)[len("stratum_move_"):]
	var src string
	if err := c.QueryRow(context.Background(), "SELECT prosrc FROM pg_proc WHERE proname = $1", fn).Scan(&src); err != nil {
		t.Fatalf("the kept copy's fence function %s: %v", fn, err)
	}
	fenced = strings.Contains(src, "moved to another placement") && !strings.Contains(src, "pg_backend_pid")
	triggersOff = stacktest.Count(t, c, `SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND NOT t.tgisinternal AND t.tgenabled = 'D'`, m.FromSchema)
	return fenced, triggersOff
}

// itemsSchema is an app schema with a foreign key, a unique value and a
// trigger that writes another table: what a move back's reconcile must
// write in an order the constraints accept, with the app's triggers off.
const itemsSchema = `CREATE TABLE lists (id bigint PRIMARY KEY, tenant_id uuid NOT NULL, name text NOT NULL);
CREATE TABLE items (id bigint PRIMARY KEY, tenant_id uuid NOT NULL, list_id bigint NOT NULL REFERENCES lists (id),
	email text NOT NULL, UNIQUE (tenant_id, email));
CREATE TABLE item_log (id bigserial PRIMARY KEY, tenant_id uuid NOT NULL, item bigint NOT NULL);
CREATE FUNCTION log_item() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO item_log (tenant_id, item) VALUES (NEW.tenant_id, NEW.id); RETURN NEW; END $$;
CREATE TRIGGER log_item AFTER INSERT OR UPDATE ON items FOR EACH ROW EXECUTE FUNCTION log_item();`

// TestMoveBackCancelAndRecover: a move back held in its reconcile refuses
// another move of the tenant and a second move back, and the move it
// reverts cannot be finalized meanwhile. Cancelled, it leaves the first
// move switched, the tenant serving from its new placement with what it
// wrote, and the kept copy fenced again (no exception) with its triggers
// on. A move back whose proxy dies in its reconcile is failed by
// RecoverMoves with the same outcome. A third move back then switches:
// after a foreign key re-pointed and its old parent deleted, and a unique
// value moved to a new row, the reconcile writes in an order the
// constraints accept, the app's trigger did not fire on the kept copy
// during it (its log table matches), and fires again afterwards.
func TestMoveBackCancelAndRecover(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	stopMoves(t, ts)
	if rep, err := ts.Provisioner.ApplySchema(ctx, itemsSchema); err != nil || rep.Failed() > 0 {
		t.Fatalf("applying the schema: %+v %v", rep, err)
	}
	h := newRevertHooks(ts)
	dsn := ts.URL("demo", "demo", "client_beta", "")
	c := stacktest.Connect(t, dsn)
	for _, q := range []string{"INSERT INTO lists (id, name) VALUES (1, 'one'), (2, 'two')",
		"INSERT INTO items (id, list_id, email) VALUES (1, 1, 'a@x'), (2, 1, 'b@x')"} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	const base = 5_000_000
	w := startWriter(t, dsn, base)
	w.waitCommitted(t, 20)
	m, err := ts.Provisioner.StartMove(ctx, "client_beta", provision.MoveTarget{Isolation: "database"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	m = waitMove(t, ts.Catalog, m.ID, catalog.MoveSwitched)
	for _, q := range []string{"UPDATE items SET list_id = 2 WHERE id = 1", "DELETE FROM items WHERE id = 2",
		"DELETE FROM lists WHERE id = 1", "INSERT INTO items (id, list_id, email) VALUES (3, 2, 'b@x')"} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	// held makes the tenant's next move back wait in its reconcile of
	// items: entered is closed when it waits there, release lets it go on,
	// done gets the hook's result.
	held := func() (entered chan struct{}, done <-chan error, release chan struct{}) {
		entered, release = make(chan struct{}), make(chan struct{})
		done = h.set("client_beta", "reconcile:items", func(string) error { close(entered); <-release; return nil })
		return entered, done, release
	}
	waitEntered := func(entered <-chan struct{}, done <-chan error, id string) {
		t.Helper()
		select {
		case <-entered:
		case err := <-done:
			t.Fatalf("the move back's hook ended before it waited: %v", err)
		case <-time.After(45 * time.Second):
			m, _ := ts.Catalog.GetMove(ctx, id)
			t.Fatalf("the move back did not reach its reconcile of items: %+v", m)
		}
	}
	checkBack := func(what string) {
		t.Helper()
		if rm, err := ts.Catalog.GetMove(ctx, m.ID); err != nil || rm.Phase != catalog.MoveSwitched {
			t.Fatalf("%s: the first move is %+v %v, want switched", what, rm, err)
		}
		if db, _ := placementOf(t, c); db != m.ToDatabase {
			t.Fatalf("%s: the tenant's session runs in %s, want %s", what, db, m.ToDatabase)
		}
		kc := ts.SrvConn(t, m.FromDatabase)
		if fenced, _ := keptFence(t, kc, m); !fenced {
			t.Errorf("%s: the kept copy is not fenced as before", what)
		}
		// A failed move is marked so before its cleanup ends.
		eventually(t, what+": the kept copy's app triggers on again", func() bool {
			_, off := keptFence(t, kc, m)
			return off == 0
		})
		tn, err := ts.Catalog.GetTenant(ctx, "client_beta")
		if err != nil {
			t.Fatal(err)
		}
		staleWriteRefused(t, ts, tn, m.FromDatabase, pgx.Identifier{m.FromSchema, "orders"}.Sanitize())
	}

	// Cancelled mid-reconcile.
	entered, reached, release := held()
	back, err := ts.Provisioner.RevertMove(ctx, m.ID, "test")
	if err != nil {
		t.Fatal(err)
	}
	waitEntered(entered, reached, back.ID)
	if fenced, off := keptFence(t, ts.SrvConn(t, m.FromDatabase), m); fenced || off == 0 {
		t.Errorf("during the move back the kept copy's fence has no exception (%v) or its triggers are on (%d off)", fenced, off)
	}
	if _, err := ts.Provisioner.RevertMove(ctx, m.ID, "test"); !errors.Is(err, catalog.ErrMovePhase) {
		t.Errorf("a second move back while one runs: %v, want ErrMovePhase", err)
	}
	if _, err := ts.Provisioner.StartMove(ctx, "client_beta", provision.MoveTarget{Isolation: "shared"}, "test"); !errors.Is(err, catalog.ErrMoveRunning) {
		t.Errorf("a move while a move back runs: %v, want ErrMoveRunning", err)
	}
	if _, err := ts.Provisioner.FinalizeMove(ctx, m.ID, "test"); !errors.Is(err, catalog.ErrMovePhase) {
		t.Errorf("finalizing while the move back runs: %v, want ErrMovePhase", err)
	}
	cancelled := make(chan error, 1)
	go func() { _, err := ts.Provisioner.CancelMove(ctx, back.ID, "test"); cancelled <- err }()
	time.Sleep(100 * time.Millisecond)
	close(release)
	if err := <-cancelled; err != nil {
		t.Fatal(err)
	}
	<-reached
	if cm, _ := ts.Catalog.GetMove(ctx, back.ID); cm.Phase != catalog.MoveCancelled {
		t.Fatalf("the cancelled move back is %s (%s)", cm.Phase, cm.Error)
	}
	checkBack("after the cancel")

	// The proxy dies mid-reconcile; RecoverMoves cleans up.
	entered, reached, release = held()
	back, err = ts.Provisioner.RevertMove(ctx, m.ID, "test")
	if err != nil {
		t.Fatal(err)
	}
	waitEntered(entered, reached, back.ID)
	go func() { time.Sleep(100 * time.Millisecond); close(release) }()
	ts.Provisioner.AbandonMove(back.ID)
	<-reached
	if err := ts.Provisioner.RecoverMoves(ctx); err != nil {
		t.Fatal(err)
	}
	if fm, _ := ts.Catalog.GetMove(ctx, back.ID); fm.Phase != catalog.MoveFailed || fm.Error == "" {
		t.Fatalf("the dead move back after RecoverMoves: %s (%q), want failed with a reason", fm.Phase, fm.Error)
	}
	checkBack("after the recovery")

	// The tenant turns its move back's capture off (plain, then hidden in
	// dynamic SQL) and writes: the move back fails as any move would.
	for i, wrap := range []func(string) string{func(q string) string { return q }, hexHidden} {
		tampered := h.set("client_beta", catalog.MoveCatchingUp, func(id string) error {
			if _, err := c.Exec(ctx, wrap(`ALTER TABLE orders DISABLE TRIGGER "`+captureTrigger(id)+`"`)); err != nil {
				return err
			}
			_, err := c.Exec(ctx, "INSERT INTO orders (id, item) VALUES ($1, 'uncaptured')", 4_000_000+i)
			return err
		})
		back, err = ts.Provisioner.RevertMove(ctx, m.ID, "test")
		if err != nil {
			t.Fatal(err)
		}
		if err := hookOrFail(t, ts.Catalog, back.ID, tampered); err != nil {
			t.Fatalf("the tenant's tampering (variant %d): %v", i, err)
		}
		fm := waitMove(t, ts.Catalog, back.ID, catalog.MoveFailed)
		if !strings.Contains(fm.Error, "tampered") {
			t.Errorf("the tampered move back failed with %q, want the capture check's reason", fm.Error)
		}
		checkBack("after a tampered move back")
		if n := stacktest.Count(t, c, "SELECT count(*) FROM orders WHERE id = $1", 4_000_000+i); n != 1 {
			t.Errorf("the row written while the capture was off: %d on the live placement", n)
		}
	}

	// A third one switches.
	back, err = ts.Provisioner.RevertMove(ctx, m.ID, "test")
	if err != nil {
		t.Fatal(err)
	}
	back = waitMove(t, ts.Catalog, back.ID, catalog.MoveSwitched)
	w.waitCommitted(t, w.count()+10)
	want := w.finish(t)
	if db, schema := placementOf(t, c); db != m.FromDatabase || schema != m.FromSchema {
		t.Fatalf("after the move back the session runs in %s.%s, want %s.%s", db, schema, m.FromDatabase, m.FromSchema)
	}
	sameKeys(t, "after the move back", want, orderKeys(t, c, "SELECT id, quantity FROM orders WHERE id >= $1", base))
	var state string
	if err := c.QueryRow(ctx, `SELECT (SELECT string_agg(id || ':' || name, ',' ORDER BY id) FROM lists) || ' ' ||
		(SELECT string_agg(id || ':' || list_id || ':' || email, ',' ORDER BY id) FROM items) || ' ' ||
		(SELECT count(*) FROM item_log)`).Scan(&state); err != nil {
		t.Fatal(err)
	}
	// item_log: 2 rows from the first inserts, 1 from the update, 1 from
	// the insert after the switch; none added by the reconcile.
	if state != "2:two 1:2:a@x,3:2:b@x 4" {
		t.Errorf("after the move back lists, items and item_log are %q", state)
	}
	if _, err := c.Exec(ctx, "UPDATE items SET email = 'c@x' WHERE id = 3"); err != nil {
		t.Fatal(err)
	}
	if n := stacktest.Count(t, c, "SELECT count(*) FROM item_log"); n != 5 {
		t.Errorf("the app's trigger after the move back: item_log has %d rows, want 5", n)
	}
	finalizeRefusesMovesBack(t, ts, back)
}

// hookOrFail waits for the result of a hook function set for move id's
// tenant, and fails the test at once when the move ends before.
func hookOrFail(t *testing.T, cat *catalog.Catalog, id string, errc <-chan error) error {
	t.Helper()
	for deadline := time.Now().Add(45 * time.Second); time.Now().Before(deadline); {
		select {
		case err := <-errc:
			return err
		case <-time.After(50 * time.Millisecond):
		}
		if m, err := cat.GetMove(context.Background(), id); err == nil && !m.Running() {
			select {
			case err := <-errc:
				return err
			default:
			}
			t.Fatalf("move %s ended %s (%s) before the hook's step", id, m.Phase, m.Error)
		}
	}
	t.Fatal("the move did not reach the hook's step within 45s")
	return nil
}
