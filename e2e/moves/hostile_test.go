package moves

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
	"github.com/stratum-hq/stratum-proxy/provision"
)

// tenantHooks runs, inside a move's goroutine, a function the test gave for
// the moving tenant at one step of its move: the tenant's statements then
// run at a known point of the engine (after the copy, or after the
// verification point), before the move goes on.
type tenantHooks struct {
	cat *catalog.Catalog
	mu  sync.Mutex
	at  map[string]tenantHook // by tenant slug
}

type tenantHook struct {
	step string
	fn   func(moveID string) error
	errc chan error // gets fn's result once
}

func (h *tenantHooks) hook(ctx context.Context, id, step string) {
	if step != catalog.MoveCatchingUp && step != "verified" {
		return
	}
	h.run(ctx, id, step)
}

// run runs the function set for move id's tenant at step, if any.
func (h *tenantHooks) run(ctx context.Context, id, step string) {
	m, err := h.cat.GetMove(context.WithoutCancel(ctx), id)
	if err != nil {
		return
	}
	h.mu.Lock()
	th, ok := h.at[m.TenantSlug]
	ok = ok && th.step == step
	if ok {
		delete(h.at, m.TenantSlug)
	}
	h.mu.Unlock()
	if ok {
		th.errc <- th.fn(id)
	}
}

// set makes the tenant's next move run fn at step; the returned channel
// gets fn's result.
func (h *tenantHooks) set(slug, step string, fn func(moveID string) error) <-chan error {
	errc := make(chan error, 1)
	h.mu.Lock()
	h.at[slug] = tenantHook{step: step, fn: fn, errc: errc}
	h.mu.Unlock()
	return errc
}

// hookResult waits for the result of a tenantHooks function.
func hookResult(t *testing.T, errc <-chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(45 * time.Second):
		t.Fatal("the move did not reach the tenant's step within 45s")
		return nil
	}
}

// captureTrigger is the name of a move's capture trigger (its INSERT OR
// UPDATE OR DELETE one in a schema or database source, its INSERT one in
// the shared database); captureLog is its log table.
func captureTrigger(moveID string) string {
	return "stratum_move_" + strings.ReplaceAll(moveID, "-", "")[:16]
}

func captureLog(moveID string) string {
	return `stratum."move_log_` + strings.ReplaceAll(moveID, "-", "")[:16] + `"`
}

// tamper is one way a tenant can tamper with its move's capture triggers
// (all but rename make its changes go uncaptured): stmts (for a table and the capture trigger's name) run as
// the tenant at step, and between stmts[:1] and stmts[1:] the tenant
// writes rows.
type tamper struct {
	name  string
	step  string
	stmts func(table, trig string) []string
}

var tampers = []tamper{
	{"drop", catalog.MoveCatchingUp, func(table, trig string) []string {
		return []string{`DROP TRIGGER "` + trig + `" ON ` + table}
	}},
	{"disable", catalog.MoveCatchingUp, func(table, trig string) []string {
		return []string{`ALTER TABLE ` + table + ` DISABLE TRIGGER "` + trig + `"`}
	}},
	{"disable_all", catalog.MoveCatchingUp, func(table, _ string) []string {
		return []string{`ALTER TABLE ` + table + ` DISABLE TRIGGER ALL`}
	}},
	{"disable_user", catalog.MoveCatchingUp, func(table, _ string) []string {
		return []string{`ALTER TABLE ` + table + ` DISABLE TRIGGER USER`}
	}},
	// A renamed trigger still fires (and captures), but the check looks
	// the triggers up by table and name, finds it missing and fails the
	// move all the same.
	{"rename", catalog.MoveCatchingUp, func(table, trig string) []string {
		return []string{`ALTER TRIGGER "` + trig + `" ON ` + table + ` RENAME TO mine`}
	}},
	// The tenant cannot EXECUTE the move's capture function (so cannot make
	// a trigger that calls it): the replacement calls one of its own.
	{"replace", catalog.MoveCatchingUp, func(table, trig string) []string {
		return []string{`CREATE OR REPLACE TRIGGER "` + trig + `" AFTER INSERT OR UPDATE OR DELETE ON ` + table +
			` FOR EACH ROW EXECUTE FUNCTION hush()`}
	}},
	// After the verification point the full comparison is over and the
	// switch's check compares only the keys the log brought: a write made
	// while the trigger was off would be lost by the switch. The trigger is
	// back as installed but for its pg_trigger row (xmin).
	{"off_and_on_after_verification", "verified", func(table, trig string) []string {
		return []string{`ALTER TABLE ` + table + ` DISABLE TRIGGER "` + trig + `"`,
			`ALTER TABLE ` + table + ` ENABLE TRIGGER "` + trig + `"`}
	}},
}

// TestTamperedCaptureFailsTheMove: a schema tenant and a database tenant
// (their roles own their tables) drop, disable (by name, ALL, USER),
// rename or replace their move's capture trigger after the copy and then write rows,
// or disable it, write and enable it again after the verification point.
// Each way runs in one move per tenant, plain on orders and hidden in
// dynamic SQL on notes (a second app table), and the move must name both.
// Each move fails with a reason naming the trigger and its tables, the
// tenant serves from its source with every row it wrote (by key), and the
// target and the capture are gone. A shared tenant (its tables are the
// admin's) is refused each of those statements, plain and hidden, and its
// move then switches. A view a tenant makes over its move's log (plain in
// one tenant, hidden in the other), or a temporary view another shared
// tenant makes over it, does not keep the cleanup from dropping the log and
// revoking the writers' grants.
func TestTamperedCaptureFailsTheMove(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	stopMoves(t, ts)
	rep, err := ts.Provisioner.ApplySchema(ctx, "CREATE TABLE notes (id bigint PRIMARY KEY, tenant_id uuid NOT NULL, item text NOT NULL);")
	if err != nil || rep.Failed() > 0 {
		t.Fatalf("applying the schema: %+v %v", rep, err)
	}
	hooks := &tenantHooks{cat: ts.Catalog, at: map[string]tenantHook{}}
	ts.Provisioner.SetMoveHook(hooks.hook)
	type variant struct {
		name, table string
		wrap        func(string) string
	}
	variants := []variant{{"plain", "orders", func(s string) string { return s }}, {"hidden", "notes", stacktest.Hidden}}

	t.Run("shared_refused", func(t *testing.T) {
		t.Parallel()
		c := stacktest.Connect(t, ts.URL("demo", "demo", "client_alpha", ""))
		// Another shared tenant: its group has USAGE on schema stratum.
		other := stacktest.Connect(t, ts.URL("demo", "demo", "apex_partners", ""))
		if _, err := c.Exec(ctx, "INSERT INTO orders (id, item) VALUES (1, 'before')"); err != nil {
			t.Fatal(err)
		}
		errc := hooks.set("client_alpha", catalog.MoveCatchingUp, func(id string) error {
			trig := captureTrigger(id)
			var bad []string
			// A shared tenant can CREATE nothing but temporary objects, and
			// a temporary view over a move's log (its own or another
			// tenant's) depends on the log as long as its session lasts.
			if _, err := other.Exec(ctx, stacktest.Hidden("CREATE TEMPORARY VIEW peek AS SELECT * FROM "+captureLog(id))); err != nil {
				bad = append(bad, fmt.Sprintf("another tenant's temporary view over the log: %v", err))
			}
			for _, tp := range tampers {
				stmts := tp.stmts("orders", trig)
				if tp.name == "replace" { // no function of its own: it cannot CREATE in the shared database
					stmts = []string{`CREATE OR REPLACE TRIGGER "` + trig + `" AFTER INSERT ON orders
						FOR EACH ROW WHEN (false) EXECUTE FUNCTION pg_catalog.suppress_redundant_updates_trigger()`}
				}
				for _, s := range stmts {
					for _, v := range variants {
						if _, err := c.Exec(ctx, v.wrap(s)); stacktest.SQLState(err) != "42501" {
							bad = append(bad, fmt.Sprintf("%s (%s): %v, want 42501", s, v.name, err))
						}
					}
				}
			}
			if _, err := c.Exec(ctx, "INSERT INTO orders (id, item) VALUES (2, 'during')"); err != nil {
				bad = append(bad, err.Error())
			}
			if len(bad) > 0 {
				return fmt.Errorf("the shared tenant's tampering: %s", strings.Join(bad, "; "))
			}
			return nil
		})
		m, err := ts.Provisioner.StartMove(ctx, "client_alpha", provision.MoveTarget{Isolation: "schema"}, "test")
		if err != nil {
			t.Fatal(err)
		}
		if err := hookResult(t, errc); err != nil {
			t.Error(err)
		}
		m = waitMove(t, ts.Catalog, m.ID, catalog.MoveSwitched)
		sameKeys(t, "after the switch", map[int64]int{1: 1, 2: 1}, orderKeys(t, c, "SELECT id, quantity FROM orders"))
		// The source copy keeps its capture (fenced) until FinalizeMove,
		// which drops it despite the other tenant's view over the log.
		if _, err := ts.Provisioner.FinalizeMove(ctx, m.ID, "test"); err != nil {
			t.Fatal(err)
		}
		src := ts.SrvConn(t, m.FromDatabase)
		if n := moveCaptureLeft(t, src, m); n != 0 {
			t.Errorf("the finalized move left %d capture objects", n)
		}
		if fm, err := ts.Catalog.GetMove(ctx, m.ID); err != nil || fm.CleanupError != "" {
			t.Errorf("the move's cleanup: %q %v", fm.CleanupError, err)
		}
		if n := stacktest.Count(t, other, "SELECT count(*) FROM pg_class WHERE relname = 'peek' AND relpersistence = 't'"); n != 0 {
			t.Error("the other tenant's temporary view over the log is still there")
		}
	})

	// Both lanes move into shared (the cheapest target to make and drop).
	lane := func(t *testing.T, slug string, view variant, base int64) {
		to := provision.MoveTarget{Isolation: catalog.IsolationShared}
		c := stacktest.Connect(t, ts.URL("demo", "demo", slug, ""))
		if _, err := c.Exec(ctx, `CREATE FUNCTION hush() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$`); err != nil {
			t.Fatal(err)
		}
		want := map[string]map[int64]int{"orders": {}, "notes": {}}
		for i, tp := range tampers {
			base += 100
			base := base
			t.Run(tp.name, func(t *testing.T) {
				errc := hooks.set(slug, tp.step, func(id string) error {
					trig := captureTrigger(id)
					if i == 0 {
						if _, err := c.Exec(ctx, view.wrap("CREATE VIEW peek AS SELECT * FROM "+captureLog(id))); err != nil {
							return fmt.Errorf("the tenant's view over its move's log (%s): %w", view.name, err)
						}
					}
					for j := 0; j < 2; j++ {
						for _, v := range variants {
							stmts := tp.stmts(v.table, trig)
							if j == 1 {
								stmts = stmts[1:]
							} else {
								stmts = stmts[:1]
							}
							for _, s := range stmts {
								if _, err := c.Exec(ctx, v.wrap(s)); err != nil {
									return fmt.Errorf("%s (%s): %w", s, v.name, err)
								}
							}
						}
						if j == 1 {
							break
						}
						for k := base + 1; k <= base+2; k++ {
							for _, table := range []string{"orders", "notes"} {
								if _, err := c.Exec(ctx, "INSERT INTO "+table+" (id, item) VALUES ($1, 'uncaptured?')", k); err != nil {
									return err
								}
								want[table][k] = 1
							}
						}
					}
					return nil
				})
				m, err := ts.Provisioner.StartMove(ctx, slug, to, "test")
				if err != nil {
					t.Fatal(err)
				}
				if err := hookResult(t, errc); err != nil {
					t.Fatalf("tampering: %v", err)
				}
				fm := waitMove(t, ts.Catalog, m.ID, catalog.MoveFailed)
				for _, v := range variants {
					if w := "trigger " + captureTrigger(m.ID) + " on table " + v.table; !strings.Contains(fm.Error, "tampered") || !strings.Contains(fm.Error, w) {
						t.Errorf("the move failed with %q, want the capture check naming %q (%s)", fm.Error, w, v.name)
					}
				}
				onSource(t, ts, m, c, want["orders"], 0)
				sameKeys(t, "notes on the source", want["notes"], orderKeys(t, c, "SELECT id, 1 FROM notes"))
				// One connection each for the polls (SrvConn connects anew).
				src, dst := ts.SrvConn(t, m.FromDatabase), ts.SrvConn(t, m.ToDatabase)
				eventually(t, "the failed move's target is dropped", func() bool {
					return stacktest.Count(t, dst, `SELECT (SELECT count(*) FROM public.orders WHERE tenant_id = $1)
						+ (SELECT count(*) FROM public.notes WHERE tenant_id = $1)`, m.TenantID) == 0
				})
				eventually(t, "the failed move's capture is dropped", func() bool { return moveCaptureLeft(t, src, m) == 0 })
				if i == 0 {
					checkLogCleanedUp(t, ts, src, m, slug)
				}
			})
		}
	}
	t.Run("schema", func(t *testing.T) {
		t.Parallel()
		lane(t, "client_beta", variants[0], 0)
	})
	t.Run("database", func(t *testing.T) {
		t.Parallel()
		lane(t, "client_gamma", variants[1], 10_000)
	})
}

// moveCaptureLeft counts the triggers with the names of a move's capture
// triggers and its log left on the tenant's source (captureLeft counts
// every move's, and moves of other tenants run in the shared database at
// the same time here).
func moveCaptureLeft(t *testing.T, src *pgx.Conn, m *catalog.Move) int {
	t.Helper()
	return stacktest.Count(t, src, `SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE $1 || '%')
		+ (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		   WHERE n.nspname = 'stratum' AND c.relname = 'move_log_' || $2)`, captureTrigger(m.ID), strings.ReplaceAll(m.ID, "-", "")[:16])
}

// checkLogCleanedUp checks, after a move's cleanup, that the view the
// tenant made over the move's log ("peek") went with the log, and that no
// grant on schema stratum to the tenant's roles is left in the source.
func checkLogCleanedUp(t *testing.T, ts *stacktest.Stack, src *pgx.Conn, m *catalog.Move, slug string) {
	t.Helper()
	fm, err := ts.Catalog.GetMove(context.Background(), m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if fm.CleanupError != "" {
		t.Errorf("the move's cleanup: %s", fm.CleanupError)
	}
	tn, err := ts.Catalog.GetTenant(context.Background(), slug)
	if err != nil {
		t.Fatal(err)
	}
	if n := stacktest.Count(t, src, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = 'peek'`, m.FromSchema); n != 0 {
		t.Error("the tenant's view over the log is still in the source")
	}
	// Granted directly (in the shared database the tenant's groups have
	// USAGE on stratum for reasons of their own).
	if n := stacktest.Count(t, src, `SELECT count(*) FROM pg_namespace n, aclexplode(n.nspacl) a
		JOIN pg_roles r ON r.oid = a.grantee WHERE n.nspname = 'stratum' AND r.rolname LIKE $1`, tn.RoleName+"%"); n != 0 {
		t.Errorf("%d grants on schema stratum to the tenant's roles are left in the source", n)
	}
}

// TestTriggerDDLWaitsOutTheSwitch: a session of a schema or database tenant
// that the switch's pause does not govern (its proxy slow to hear of the
// pause; here one logged in straight to the server as the tenant's role)
// tries, in the switch's pause after the capture check, to turn the capture
// off on the source, plainly and in dynamic SQL: the switch holds the
// source's tables against trigger DDL until it is done, so the DDL waits and
// (with a short lock_timeout) fails with 55P03, the move switches, and the
// trigger was never off.
func TestTriggerDDLWaitsOutTheSwitch(t *testing.T) {
	ts := stacktest.Start(t)
	stopMoves(t, ts)
	for _, c := range []struct{ slug, to string }{{"client_beta", "database"}, {"client_gamma", "schema"}} {
		t.Run(c.slug, func(t *testing.T) { testTriggerDDLWaitsOutTheSwitch(t, ts, c.slug, c.to) })
	}
}

func testTriggerDDLWaitsOutTheSwitch(t *testing.T, ts *stacktest.Stack, slug, to string) {
	ctx := context.Background()
	tn, err := ts.Catalog.GetTenant(ctx, slug)
	if err != nil {
		t.Fatal(err)
	}
	slipped := tenantRoleConn(t, ts, tn, tn.Database)
	table := pgx.Identifier{tn.Schema, "orders"}.Sanitize()
	triedc := make(chan []error, 1) // the hook runs on the move's goroutine
	ts.Provisioner.SetMoveHook(func(ctx context.Context, id, step string) {
		if step != "switching" {
			return
		}
		var tried []error
		defer func() { triedc <- tried }()
		for _, sql := range []string{
			"ALTER TABLE " + table + " DISABLE TRIGGER ALL",
			stacktest.Hidden("ALTER TABLE " + table + " DISABLE TRIGGER USER"),
		} {
			_, err := slipped.Exec(ctx, "SET lock_timeout = '300ms'")
			if err == nil {
				_, err = slipped.Exec(ctx, sql)
			}
			tried = append(tried, err)
		}
	})
	defer ts.Provisioner.SetMoveHook(nil)
	m, err := ts.Provisioner.StartMove(ctx, slug, provision.MoveTarget{Isolation: to}, "test")
	if err != nil {
		t.Fatal(err)
	}
	waitMove(t, ts.Catalog, m.ID, catalog.MoveSwitched)
	var tried []error
	select {
	case tried = <-triedc:
	default:
		t.Fatal("the move switched without reaching the hook's step")
	}
	if len(tried) != 2 {
		t.Fatalf("the hook ran %d statements, want 2", len(tried))
	}
	for i, err := range tried {
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "55P03" {
			t.Errorf("statement %d (turning the capture off in the switch's pause): %v, want 55P03 (it waits for the switch's lock)", i, err)
		}
	}
	if _, err := ts.Provisioner.FinalizeMove(ctx, m.ID, "test"); err != nil {
		t.Fatal(err)
	}
}

// TestMoveTargetWrittenBehindTheMove: a shared tenant moving to a schema
// of its own reaches the target from its live session (its role owns the
// new schema, in the same database), and nothing fences the target during
// the move. After the verification point it writes the target directly
// (a row inserted plainly, one deleted in dynamic SQL); the switch's keyed
// check looks only at the keys the capture brought, so the move switches
// to a target holding a row the tenant never had and missing one it has.
// The move must fail instead.
func TestMoveTargetWrittenBehindTheMove(t *testing.T) {
	t.Skip("open hole: a move's target in the tenant's own database (a shared tenant moving to a schema) has no fence during the move, and direct writes to it after the verification point are not seen; see docs/security.md, Open")
	ts := stacktest.Start(t)
	stopMoves(t, ts)
	hooks := &tenantHooks{cat: ts.Catalog, at: map[string]tenantHook{}}
	ts.Provisioner.SetMoveHook(func(ctx context.Context, id, step string) { hooks.run(ctx, id, step) })
	ctx := context.Background()
	c := stacktest.Connect(t, ts.URL("demo", "demo", "client_alpha", ""))
	if _, err := c.Exec(ctx, "INSERT INTO orders (id, item) VALUES (1, 'one'), (2, 'two')"); err != nil {
		t.Fatal(err)
	}
	tn, err := ts.Catalog.GetTenant(ctx, "client_alpha")
	if err != nil {
		t.Fatal(err)
	}
	errc := hooks.set("client_alpha", "narrowed:0", func(id string) error {
		m, err := ts.Catalog.GetMove(ctx, id)
		if err != nil {
			return err
		}
		target := pgx.Identifier{m.ToSchema, "orders"}.Sanitize()
		for _, q := range []string{"INSERT INTO " + target + " (id, tenant_id, item) VALUES (3, '" + tn.ID + "', 'behind the move')",
			stacktest.Hidden("DELETE FROM " + target + " WHERE id = 1")} {
			if _, err := c.Exec(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		return nil
	})
	m, err := ts.Provisioner.StartMove(ctx, "client_alpha", provision.MoveTarget{Isolation: "schema"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := hookResult(t, errc); err != nil {
		t.Fatal(err)
	}
	if m = waitMove(t, ts.Catalog, m.ID, catalog.MoveSwitched, catalog.MoveFailed); m.Phase == catalog.MoveSwitched {
		t.Fatalf("the move switched to a target written behind it: the tenant has %v, it wrote 1 and 2",
			orderKeys(t, c, "SELECT id, 1 FROM orders"))
	}
}
