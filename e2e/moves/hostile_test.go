package moves

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
	"github.com/stratum-hq/stratum-proxy/provision"
)

// tenantHooks runs, inside a move's goroutine, a function the test gave for
// the moving tenant at one step of its move: a tenant's statements then run
// at a known point of the engine (after the copy, or after the
// verification), before the move goes on.
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
	m, err := h.cat.GetMove(ctx, id)
	if err != nil {
		return
	}
	h.mu.Lock()
	th, ok := h.at[m.TenantSlug]
	if ok && th.step == step {
		delete(h.at, m.TenantSlug)
	}
	h.mu.Unlock()
	if ok && th.step == step {
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
// the shared database).
func captureTrigger(moveID string) string {
	return "stratum_move_" + strings.ReplaceAll(moveID, "-", "")[:16]
}

func captureLog(moveID string) string {
	return `stratum."move_log_` + strings.ReplaceAll(moveID, "-", "")[:16] + `"`
}

// tamper is one way a tenant can try to make its changes go uncaptured
// during a move: stmts (given the capture trigger's name) are run as the
// tenant at step, and between stmts[:split] and stmts[split:] the tenant
// writes rows.
type tamper struct {
	name  string
	step  string
	stmts func(trig string) []string
	split int
}

var tampers = []tamper{
	{"drop", catalog.MoveCatchingUp, func(trig string) []string {
		return []string{`DROP TRIGGER "` + trig + `" ON orders`}
	}, 1},
	{"disable", catalog.MoveCatchingUp, func(trig string) []string {
		return []string{`ALTER TABLE orders DISABLE TRIGGER "` + trig + `"`}
	}, 1},
	{"disable_all", catalog.MoveCatchingUp, func(string) []string {
		return []string{`ALTER TABLE orders DISABLE TRIGGER ALL`}
	}, 1},
	{"disable_user", catalog.MoveCatchingUp, func(string) []string {
		return []string{`ALTER TABLE orders DISABLE TRIGGER USER`}
	}, 1},
	// The tenant cannot EXECUTE the move's capture function (so cannot make
	// a trigger that calls it): the replacement calls one of its own.
	{"replace", catalog.MoveCatchingUp, func(trig string) []string {
		return []string{`CREATE OR REPLACE TRIGGER "` + trig + `" AFTER INSERT OR UPDATE OR DELETE ON orders
			FOR EACH ROW EXECUTE FUNCTION hush()`}
	}, 1},
	// After the verification point the full comparison is over and the
	// switch's check compares only the keys the log brought: a write made
	// while the trigger was off would be lost by the switch, and the
	// trigger is back as it was, but for its pg_trigger row.
	{"off_and_on_after_verification", "verified", func(trig string) []string {
		return []string{`ALTER TABLE orders DISABLE TRIGGER "` + trig + `"`, `ALTER TABLE orders ENABLE TRIGGER "` + trig + `"`}
	}, 1},
}

// TestTamperedCaptureFailsTheMove: a schema tenant and a database tenant
// (their roles own their tables) drop, disable (by name, ALL, USER) or
// replace their move's capture trigger after the copy and then write rows,
// or disable it, write and enable it again after the verification point;
// each plain and hidden in dynamic SQL. Each such move fails with a reason
// naming the trigger, the tenant serves from its source with every row it
// wrote (by key), and the target and the capture are gone. A shared tenant
// (its tables are the admin's) is refused each of those statements, and its
// move then switches. A view a tenant makes over its move's log does not
// keep the cleanup from dropping the log.
func TestTamperedCaptureFailsTheMove(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	stopMoves(t, ts)
	hooks := &tenantHooks{cat: ts.Catalog, at: map[string]tenantHook{}}
	ts.Provisioner.SetMoveHook(hooks.hook)
	variants := []struct {
		name string
		wrap func(string) string
	}{{"plain", func(s string) string { return s }}, {"hidden", stacktest.Hidden}}

	t.Run("shared_refused", func(t *testing.T) {
		c := stacktest.Connect(t, ts.URL("demo", "demo", "client_alpha", ""))
		if _, err := c.Exec(ctx, "INSERT INTO orders (id, item) VALUES (1, 'before')"); err != nil {
			t.Fatal(err)
		}
		errc := hooks.set("client_alpha", catalog.MoveCatchingUp, func(id string) error {
			trig := captureTrigger(id)
			var bad []string
			for _, tp := range tampers {
				stmts := tp.stmts(trig)
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
		eventually(t, "the switched move's capture is dropped", func() bool { return captureLeft(t, ts, m) == 0 })
		if _, err := ts.Provisioner.FinalizeMove(ctx, m.ID, "test"); err != nil {
			t.Fatal(err)
		}
	})

	lane := func(t *testing.T, slug string, to provision.MoveTarget, viewVariant int) {
		c := stacktest.Connect(t, ts.URL("demo", "demo", slug, ""))
		if _, err := c.Exec(ctx, `CREATE FUNCTION hush() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$`); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, `INSERT INTO orders (id, item) VALUES (1, 'before every move')`); err != nil {
			t.Fatal(err)
		}
		want := map[int64]int{1: 1}
		base := int64(100)
		for _, tp := range tampers {
			for _, v := range variants {
				base += 100
				base := base
				t.Run(tp.name+"/"+v.name, func(t *testing.T) {
					keys := []int64{base + 1, base + 2}
					for _, k := range keys {
						want[k] = 1
					}
					errc := hooks.set(slug, tp.step, func(id string) error {
						stmts := tp.stmts(captureTrigger(id))
						for i, s := range stmts {
							if i == tp.split {
								break
							}
							if _, err := c.Exec(ctx, v.wrap(s)); err != nil {
								return fmt.Errorf("%s: %w", s, err)
							}
						}
						for _, k := range keys {
							if _, err := c.Exec(ctx, "INSERT INTO orders (id, item) VALUES ($1, 'uncaptured?')", k); err != nil {
								return err
							}
						}
						for _, s := range stmts[tp.split:] {
							if _, err := c.Exec(ctx, v.wrap(s)); err != nil {
								return fmt.Errorf("%s: %w", s, err)
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
					if !strings.Contains(fm.Error, "tampered") || !strings.Contains(fm.Error, captureTrigger(m.ID)) || !strings.Contains(fm.Error, "orders") {
						t.Errorf("the move failed with %q, want the capture check naming trigger %s on orders", fm.Error, captureTrigger(m.ID))
					}
					onSource(t, ts, m, c, want, 0)
					eventually(t, "the failed move's target is dropped", func() bool { return !targetExists(t, ts, m) })
					eventually(t, "the failed move's capture is dropped", func() bool { return captureLeft(t, ts, m) == 0 })
					// DISABLE TRIGGER ALL or USER disabled no other trigger:
					// the tenant's tables have none.
				})
			}
		}
		// The tenant makes a view over its move's log (no privilege on the
		// log is needed for that); the move switches, and its cleanup
		// drops the log (with the view) and revokes the writers' grants.
		t.Run("view_over_log", func(t *testing.T) {
			v := variants[viewVariant]
			errc := hooks.set(slug, catalog.MoveCatchingUp, func(id string) error {
				_, err := c.Exec(ctx, v.wrap("CREATE VIEW peek AS SELECT * FROM "+captureLog(id)))
				return err
			})
			m, err := ts.Provisioner.StartMove(ctx, slug, to, "test")
			if err != nil {
				t.Fatal(err)
			}
			if err := hookResult(t, errc); err != nil {
				t.Fatalf("the tenant's view over its move's log (%s): %v", v.name, err)
			}
			m = waitMove(t, ts.Catalog, m.ID, catalog.MoveSwitched)
			eventually(t, "the switched move's capture is dropped", func() bool { return captureLeft(t, ts, m) == 0 })
			fm, err := ts.Catalog.GetMove(ctx, m.ID)
			if err != nil {
				t.Fatal(err)
			}
			if fm.CleanupError != "" {
				t.Errorf("the switch's cleanup: %s", fm.CleanupError)
			}
			tn, err := ts.Catalog.GetTenant(ctx, slug)
			if err != nil {
				t.Fatal(err)
			}
			src := ts.SrvConn(t, m.FromDatabase)
			if n := stacktest.Count(t, src, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = 'peek'", m.FromSchema); n != 0 {
				t.Error("the view over the log is still in the source")
			}
			// (Granted directly: in the shared database the tenant's groups
			// have USAGE on stratum for its own reasons.)
			if n := stacktest.Count(t, src, `SELECT count(*) FROM pg_namespace n, aclexplode(n.nspacl) a
				JOIN pg_roles r ON r.oid = a.grantee WHERE n.nspname = 'stratum' AND r.rolname LIKE $1`, tn.RoleName+"%"); n != 0 {
				t.Errorf("%d grants on schema stratum to the tenant's roles are left in the source", n)
			}
			sameKeys(t, "after the switch", want, orderKeys(t, c, "SELECT id, quantity FROM orders"))
			if _, err := ts.Provisioner.FinalizeMove(ctx, m.ID, "test"); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("schema", func(t *testing.T) {
		t.Parallel()
		lane(t, "client_beta", provision.MoveTarget{Isolation: "shared"}, 0)
	})
	t.Run("database", func(t *testing.T) {
		t.Parallel()
		lane(t, "client_gamma", provision.MoveTarget{Isolation: "schema"}, 1)
	})
}
