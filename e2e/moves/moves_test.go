package moves

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sort"
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

// writer inserts and updates orders with known keys through the proxy, as
// one tenant, until stopped, and remembers what it committed.
type writer struct {
	mu        sync.Mutex
	committed map[int64]int // key -> quantity last committed
	err       error
	stop      context.CancelFunc
	done      chan struct{}
}

// startWriter starts a writer on url whose keys start at base: it inserts
// key base+i with quantity 1 and, every third insert, sets an earlier key's
// quantity to i, each in a transaction of its own.
func startWriter(t *testing.T, url string, base int64) *writer {
	t.Helper()
	c := stacktest.Connect(t, url)
	stopped, cancel := context.WithCancel(context.Background())
	w := &writer{committed: map[int64]int{}, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		// Statements are not cancelled by stop (one that committed must be
		// recorded); the loop ends between them.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for i := 0; stopped.Err() == nil; i++ {
			key := base + int64(i)
			_, err := c.Exec(ctx, "INSERT INTO orders (id, item) VALUES ($1, $2)", key, fmt.Sprintf("item %d", i))
			if err == nil && i%3 == 2 {
				w.record(key, 1)
				old := base + int64(i/2)
				_, err = c.Exec(ctx, "UPDATE orders SET quantity = $2 WHERE id = $1", old, i)
				if err == nil {
					w.record(old, i)
				}
			} else if err == nil {
				w.record(key, 1)
			}
			if err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { w.stop(); <-w.done })
	return w
}

func (w *writer) record(key int64, q int) {
	w.mu.Lock()
	w.committed[key] = q
	w.mu.Unlock()
}

func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.committed)
}

// waitCommitted waits until the writer committed n keys (or failed).
func (w *writer) waitCommitted(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); w.count() < n; time.Sleep(5 * time.Millisecond) {
		w.mu.Lock()
		err := w.err
		w.mu.Unlock()
		if err != nil {
			t.Fatalf("writer: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the writer committed %d keys in 30s, want %d", w.count(), n)
		}
	}
}

// finish stops the writer and fails on any error it had.
func (w *writer) finish(t *testing.T) map[int64]int {
	t.Helper()
	w.stop()
	<-w.done
	if w.err != nil {
		t.Fatalf("writer error: %v", w.err)
	}
	return w.committed
}

// waitMove polls the move until it is in one of the phases want (or in a
// terminal phase, which fails the test unless wanted) and, when it ended,
// its cleanup finished or failed.
func waitMove(t *testing.T, cat *catalog.Catalog, id string, want ...string) *catalog.Move {
	t.Helper()
	return waitMoveUntil(t, cat, id, true, want...)
}

// waitMovePhase is waitMove without the wait for the cleanup of a move
// that ended (for a test whose open transaction holds the cleanup up).
func waitMovePhase(t *testing.T, cat *catalog.Catalog, id string, want ...string) *catalog.Move {
	t.Helper()
	return waitMoveUntil(t, cat, id, false, want...)
}

func waitMoveUntil(t *testing.T, cat *catalog.Catalog, id string, cleaned bool, want ...string) *catalog.Move {
	t.Helper()
	ctx := context.Background()
	for deadline := time.Now().Add(45 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		m, err := cat.GetMove(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("move %s is %s (cleanup pending %v) after 45s, want %v", id, m.Phase, m.CleanupPending, want)
		}
		if slices.Contains(want, m.Phase) {
			// A move that ended waits for its cleanup too (no new move of
			// the tenant starts before), unless that failed.
			if !cleaned || !m.CleanupPending || m.CleanupError != "" {
				return m
			}
			continue
		}
		switch m.Phase {
		case catalog.MoveFailed, catalog.MoveCancelled, catalog.MoveFinalized, catalog.MoveSwitched:
			t.Fatalf("move %s ended %s (%s), want %v", id, m.Phase, m.Error, want)
		}
	}
}

// stopMoves registers the provisioner's Close before the stack's teardown.
func stopMoves(t *testing.T, ts *stacktest.Stack) {
	t.Cleanup(ts.Provisioner.Close)
}

// orderKeys reads the tenant's orders (id -> quantity) over c.
func orderKeys(t *testing.T, c *pgx.Conn, sql string, args ...any) map[int64]int {
	t.Helper()
	rows, err := c.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]int{}
	var id int64
	var q int
	if _, err := pgx.ForEachRow(rows, []any{&id, &q}, func() error {
		if _, dup := out[id]; dup {
			return fmt.Errorf("key %d twice", id)
		}
		out[id] = q
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameKeys fails unless got holds every key of want with its quantity.
func sameKeys(t *testing.T, what string, want, got map[int64]int) {
	t.Helper()
	var missing, wrong []int64
	for k, q := range want {
		g, ok := got[k]
		switch {
		case !ok:
			missing = append(missing, k)
		case g != q:
			wrong = append(wrong, k)
			t.Logf("%s: key %d has quantity %d, the writer committed %d", what, k, g, q)
		}
	}
	sort.Slice(missing, func(i, j int) bool { return missing[i] < missing[j] })
	if len(missing) > 0 || len(wrong) > 0 {
		t.Fatalf("%s: %d committed keys missing %v, %d with a lost update %v (of %d)", what, len(missing), missing, len(wrong), wrong, len(want))
	}
}

// placementOf reads, through the proxy, where the tenant's session runs.
func placementOf(t *testing.T, c *pgx.Conn) (db, schema string) {
	t.Helper()
	if err := c.QueryRow(context.Background(), "SELECT current_database(), current_schema()").Scan(&db, &schema); err != nil {
		t.Fatal(err)
	}
	return db, schema
}

// sourceGone checks, on the server, that a finalized move left nothing of
// the tenant in its old placement.
func sourceGone(t *testing.T, ts *stacktest.Stack, m *catalog.Move) {
	t.Helper()
	ctx := context.Background()
	switch m.FromIsolation {
	case catalog.IsolationShared:
		c := ts.SrvConn(t, m.FromDatabase)
		if n := stacktest.Count(t, c, "SELECT count(*) FROM public.orders WHERE tenant_id = $1", m.TenantID); n != 0 {
			t.Errorf("after finalize the shared orders hold %d rows of the tenant", n)
		}
	case catalog.IsolationSchema:
		c := ts.SrvConn(t, m.FromDatabase)
		if n := stacktest.Count(t, c, "SELECT count(*) FROM pg_namespace WHERE nspname = $1", m.FromSchema); n != 0 {
			t.Errorf("after finalize schema %s is still there", m.FromSchema)
		}
	case catalog.IsolationDatabase:
		c := ts.SrvConn(t, "postgres")
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", m.FromDatabase).Scan(&n); err != nil || n != 0 {
			t.Errorf("after finalize database %s is still there (%d, %v)", m.FromDatabase, n, err)
		}
	}
}

// moveCase is one direction of a move.
type moveCase struct {
	name   string
	tenant string
	to     provision.MoveTarget
}

var moveCases = []moveCase{
	{"shared_to_schema", "client_alpha", provision.MoveTarget{Isolation: "schema"}},
	{"shared_to_database", "client_alpha", provision.MoveTarget{Isolation: "database"}},
	{"schema_to_database", "client_beta", provision.MoveTarget{Isolation: "database"}},
	{"database_to_shared", "client_gamma", provision.MoveTarget{Isolation: "shared"}},
	{"database_to_schema", "client_gamma", provision.MoveTarget{Isolation: "schema"}},
	{"schema_to_shared", "client_beta", provision.MoveTarget{Isolation: "shared"}},
	{"database_to_database", "client_gamma", provision.MoveTarget{Isolation: "database", Backend: "other"}},
}

// otherBackend adds backend "other": the test server again, under another
// name (a database-to-database move needs a second backend).
func otherBackend(t *testing.T) stacktest.Option {
	return func(c *server.Config) { c.Router.Set.Backends["other"] = stacktest.TestBackend(t) }
}

// TestMoveWithWriter: for each direction and pool mode, a writer inserts
// and updates orders with known keys through the proxy while the tenant
// moves (the copy held for a moment, so that the writer's changes are
// captured and applied); the move ends switched, the writer saw no error,
// every key it committed is in the new placement exactly once with its
// last quantity (read through the proxy and on the server), the tenant's
// sessions run on the new placement, and FinalizeMove removes the source.
// Per pool mode one stack; each direction moves a tenant of its own (made
// with the direction's source placement), two directions at a time.
func TestMoveWithWriter(t *testing.T) {
	stacktest.PoolModes(t, func(t *testing.T, ts *stacktest.Stack) {
		stopMoves(t, ts)
		ts.Provisioner.SetMoveHook(func(ctx context.Context, id, step string) {
			if step == "copy:orders" || step == "catching_up" {
				select { // let the writer change rows while the copy runs
				case <-time.After(300 * time.Millisecond):
				case <-ctx.Done():
				}
			}
		})
		for i, mc := range moveCases {
			src, err := ts.Catalog.GetTenant(context.Background(), mc.tenant)
			if err != nil {
				t.Fatal(err)
			}
			tn, err := ts.Provisioner.CreateTenant(context.Background(), provision.TenantSpec{Slug: "mv_" + mc.name,
				Name: mc.name, Parent: "northstar_msp", Isolation: src.Isolation})
			if err != nil {
				t.Fatal(err)
			}
			mc.tenant = tn.Slug
			t.Run(mc.name, func(t *testing.T) {
				t.Parallel()
				testMoveWithWriter(t, ts, mc, int64(1_000_000*(i+1)))
			})
		}
	}, otherBackend(t))
}

func testMoveWithWriter(t *testing.T, ts *stacktest.Stack, mc moveCase, base int64) {
	ctx := context.Background()
	url := ts.URL("demo", "demo", mc.tenant, "")
	watcher := stacktest.Connect(t, url)
	if strings.HasPrefix(mc.name, "shared_") {
		// More rows than one batch of the finalize's delete from the shared
		// tables (sourceGone counts what is left).
		if _, err := watcher.Exec(ctx, "INSERT INTO orders (id, item) SELECT g, 'bulk' FROM generate_series($1::bigint, $1::bigint + 11999) g", base+500_000); err != nil {
			t.Fatal(err)
		}
	}
	w := startWriter(t, url, base)
	w.waitCommitted(t, 30)
	m, err := ts.Provisioner.StartMove(ctx, mc.tenant, mc.to, "test")
	if err != nil {
		t.Fatal(err)
	}
	m = waitMove(t, ts.Catalog, m.ID, catalog.MoveSwitched)
	n := w.count()
	w.waitCommitted(t, n+20) // writes after the switch land in the new placement
	want := w.finish(t)

	tn, err := ts.Catalog.GetTenant(ctx, mc.tenant)
	if err != nil {
		t.Fatal(err)
	}
	if tn.Isolation != m.ToIsolation || tn.Backend != m.ToBackend || tn.Database != m.ToDatabase || tn.Schema != m.ToSchema {
		t.Fatalf("tenant placement after the switch: %+v, move %+v", tn, m)
	}
	db, schema := placementOf(t, watcher)
	if db != m.ToDatabase || schema != m.ToSchema {
		t.Fatalf("the tenant's session runs in %s.%s, want %s.%s", db, schema, m.ToDatabase, m.ToSchema)
	}
	sameKeys(t, "through the proxy", want, orderKeys(t, watcher, "SELECT id, quantity FROM orders WHERE id >= $1", base))
	direct := ts.SrvConn(t, m.ToDatabase)
	sameKeys(t, "on the server", want, orderKeys(t, direct,
		"SELECT id, quantity FROM "+pgx.Identifier{m.ToSchema, "orders"}.Sanitize()+" WHERE id >= $1 AND tenant_id = $2", base, tn.ID))
	if len(m.Tables) == 0 {
		t.Errorf("the move recorded no table progress")
	}
	staleWriteRefused(t, ts, tn, m.FromDatabase, pgx.Identifier{m.FromSchema, "orders"}.Sanitize())

	if _, err := ts.Provisioner.FinalizeMove(ctx, m.ID, "test"); err != nil {
		t.Fatal(err)
	}
	sourceGone(t, ts, m)
	// The tenant still works where it is now.
	if _, err := watcher.Exec(ctx, "INSERT INTO orders (id, item) VALUES ($1, 'after finalize')", base-1); err != nil {
		t.Fatalf("writing after finalize: %v", err)
	}
	if fm, err := ts.Catalog.GetMove(ctx, m.ID); err != nil || fm.Phase != catalog.MoveFinalized || fm.FinalizedAt == nil {
		t.Fatalf("after finalize: %+v %v", fm, err)
	}
}

// holdAt returns a move hook that stops the move at step until release is
// closed (or the move's context ends), and a channel closed when a move
// reached it.
func holdAt(step string) (hook func(context.Context, string, string), reached, release chan struct{}) {
	reached, release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	return func(ctx context.Context, id, s string) {
		if s != step {
			return
		}
		once.Do(func() { close(reached) })
		select {
		case <-release:
		case <-ctx.Done():
		}
	}, reached, release
}

func waitReached(t *testing.T, reached <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-reached:
	case <-time.After(45 * time.Second):
		t.Fatalf("the move did not reach %s", what)
	}
}

// eventually polls cond (cleanup after a failed move runs after its phase
// is recorded) and fails the test when it does not hold within 45s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(45 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within 45s: %s", what)
		}
	}
}

// captureLeft counts the capture triggers and logs a move left on the
// tenant's source.
func captureLeft(t *testing.T, ts *stacktest.Stack, m *catalog.Move) int {
	t.Helper()
	c := ts.SrvConn(t, m.FromDatabase)
	return stacktest.Count(t, c, `SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'stratum_move_%')
		+ (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		   WHERE n.nspname = 'stratum' AND c.relname LIKE 'move_log_%')`)
}

// targetExists reports whether a move's target schema or database is on
// the server.
func targetExists(t *testing.T, ts *stacktest.Stack, m *catalog.Move) bool {
	t.Helper()
	switch m.ToIsolation {
	case catalog.IsolationSchema:
		return stacktest.Count(t, ts.SrvConn(t, m.ToDatabase), "SELECT count(*) FROM pg_namespace WHERE nspname = $1", m.ToSchema) > 0
	case catalog.IsolationDatabase:
		return stacktest.Count(t, ts.SrvConn(t, "postgres"), "SELECT count(*) FROM pg_database WHERE datname = $1", m.ToDatabase) > 0
	}
	return stacktest.Count(t, ts.SrvConn(t, m.ToDatabase), "SELECT count(*) FROM public.orders WHERE tenant_id = $1", m.TenantID) > 0
}

// onSource checks that the tenant is (still) where the move started, that
// its session runs there, and that every key the writer committed is there.
func onSource(t *testing.T, ts *stacktest.Stack, m *catalog.Move, c *pgx.Conn, want map[int64]int, base int64) {
	t.Helper()
	tn, err := ts.Catalog.GetTenant(context.Background(), m.TenantID)
	if err != nil {
		t.Fatal(err)
	}
	if tn.Isolation != m.FromIsolation || tn.Database != m.FromDatabase || tn.Schema != m.FromSchema {
		t.Fatalf("the tenant moved: %+v", tn)
	}
	if db, schema := placementOf(t, c); db != m.FromDatabase || schema != m.FromSchema {
		t.Fatalf("the tenant's session runs in %s.%s, want the source %s.%s", db, schema, m.FromDatabase, m.FromSchema)
	}
	sameKeys(t, "on the source", want, orderKeys(t, c, "SELECT id, quantity FROM orders WHERE id >= $1", base))
}

// TestCancelMidCopy: a move held in its copy refuses a second move of the
// tenant (catalog.ErrMoveRunning); CancelMove then stops it: the move ends
// cancelled, the tenant serves from its source with every key the writer
// committed, and the target and the capture are gone.
func TestCancelMidCopy(t *testing.T) {
	stacktest.PoolModes(t, func(t *testing.T, ts *stacktest.Stack) {
		ctx := context.Background()
		stopMoves(t, ts)
		hook, reached, release := holdAt("copy:orders")
		defer close(release)
		ts.Provisioner.SetMoveHook(hook)
		url := ts.URL("demo", "demo", "client_alpha", "")
		c := stacktest.Connect(t, url)
		const base = 7_000_000
		w := startWriter(t, url, base)
		w.waitCommitted(t, 20)
		m, err := ts.Provisioner.StartMove(ctx, "client_alpha", provision.MoveTarget{Isolation: "database"}, "test")
		if err != nil {
			t.Fatal(err)
		}
		waitReached(t, reached, "the copy")
		if _, err := ts.Provisioner.StartMove(ctx, "client_alpha", provision.MoveTarget{Isolation: "schema"}, "test"); !errors.Is(err, catalog.ErrMoveRunning) {
			t.Fatalf("a second move while one runs: %v, want ErrMoveRunning", err)
		}
		if !targetExists(t, ts, m) {
			t.Fatal("the target database is not there during the copy")
		}
		w.waitCommitted(t, w.count()+10)
		cm, err := ts.Provisioner.CancelMove(ctx, m.ID, "test")
		if err != nil {
			t.Fatal(err)
		}
		if cm.Phase != catalog.MoveCancelled {
			t.Fatalf("after CancelMove the move is %s (%s)", cm.Phase, cm.Error)
		}
		w.waitCommitted(t, w.count()+10)
		want := w.finish(t)
		onSource(t, ts, m, c, want, base)
		if targetExists(t, ts, m) {
			t.Error("the cancelled move's target database is still there")
		}
		if n := captureLeft(t, ts, m); n != 0 {
			t.Errorf("the cancelled move left %d capture objects on the source", n)
		}
		// A new move may start now.
		ts.Provisioner.SetMoveHook(nil)
		m2, err := ts.Provisioner.StartMove(ctx, "client_alpha", provision.MoveTarget{Isolation: "schema"}, "test")
		if err != nil {
			t.Fatalf("a move after the cancelled one: %v", err)
		}
		waitMove(t, ts.Catalog, m2.ID, catalog.MoveSwitched)
	})
}

// TestRecoverAfterProxyDeath: the goroutine of a move in its copy stops as
// if its proxy died (no cleanup). Another proxy's RecoverMoves leaves it
// alone while its heartbeat is fresh (it could be alive); RecoverMoves of
// the process that owned it (its goroutine is gone), or of another proxy
// once the heartbeat is stale, marks it failed with the reason and drops
// the half-built target and the capture; the tenant serves from its source
// with everything it wrote.
func TestRecoverAfterProxyDeath(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	stopMoves(t, ts)
	url := ts.URL("demo", "demo", "client_beta", "")
	c := stacktest.Connect(t, url)
	other := provisionerWith(t, ts, func(*provision.Config) {})
	quick := provisionerWith(t, ts, func(c *provision.Config) { c.MoveHeartbeat = 100 * time.Millisecond })

	for _, recoverer := range []struct {
		name string
		p    *provision.Provisioner
	}{{"the owner", ts.Provisioner}, {"another proxy after the heartbeat went stale", quick}} {
		base := int64(8_000_000 + 100_000*len(recoverer.name))
		w := startWriter(t, url, base)
		w.waitCommitted(t, 20)
		hook, reached, release := holdAt("copy:orders")
		ts.Provisioner.SetMoveHook(hook)
		m, err := ts.Provisioner.StartMove(ctx, "client_beta", provision.MoveTarget{Isolation: "database"}, "test")
		if err != nil {
			t.Fatal(err)
		}
		waitReached(t, reached, "the copy")
		ts.Provisioner.AbandonMove(m.ID)
		close(release)
		if dm, err := ts.Catalog.GetMove(ctx, m.ID); err != nil || dm.Phase != catalog.MoveCopying {
			t.Fatalf("after the simulated death: %+v %v", dm, err)
		}
		if captureLeft(t, ts, m) == 0 || !targetExists(t, ts, m) {
			t.Fatal("the simulated death cleaned up (it must leave everything as a crash does)")
		}
		w.waitCommitted(t, w.count()+10)
		if err := other.RecoverMoves(ctx); err != nil {
			t.Fatal(err)
		}
		if dm, err := ts.Catalog.GetMove(ctx, m.ID); err != nil || dm.Phase != catalog.MoveCopying {
			t.Fatalf("another proxy recovered a move with a fresh heartbeat: %+v %v", dm, err)
		}
		time.Sleep(400 * time.Millisecond) // three of quick's heartbeats
		if err := recoverer.p.RecoverMoves(ctx); err != nil {
			t.Fatal(err)
		}
		rm, err := ts.Catalog.GetMove(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if rm.Phase != catalog.MoveFailed || rm.Error == "" {
			t.Fatalf("after RecoverMoves by %s the move is %s (%q), want failed with a reason", recoverer.name, rm.Phase, rm.Error)
		}
		w.waitCommitted(t, w.count()+10)
		want := w.finish(t)
		onSource(t, ts, m, c, want, base)
		if targetExists(t, ts, m) {
			t.Errorf("after RecoverMoves by %s the dead move's target database is still there", recoverer.name)
		}
		if n := captureLeft(t, ts, m); n != 0 {
			t.Errorf("after RecoverMoves by %s the dead move left %d capture objects on the source", recoverer.name, n)
		}
	}
}

// TestSessionStateSurvivesMove: a session holding a protocol-prepared
// statement and a SET keeps both across its tenant's move, and runs on the
// new placement afterwards.
func TestSessionStateSurvivesMove(t *testing.T) {
	stacktest.PoolModes(t, func(t *testing.T, ts *stacktest.Stack) {
		ctx := context.Background()
		stopMoves(t, ts)
		c := stacktest.Connect(t, ts.URL("demo", "demo", "client_gamma", ""))
		if _, err := c.Exec(ctx, "SET TimeZone = 'Asia/Tokyo'"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Prepare(ctx, "count_orders", "SELECT count(*) FROM orders WHERE id >= $1"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, "INSERT INTO orders (id, item) VALUES (9000001, 'before'), (9000002, 'before')"); err != nil {
			t.Fatal(err)
		}
		m, err := ts.Provisioner.StartMove(ctx, "client_gamma", provision.MoveTarget{Isolation: "schema"}, "test")
		if err != nil {
			t.Fatal(err)
		}
		m = waitMove(t, ts.Catalog, m.ID, catalog.MoveSwitched)
		var n int
		if err := c.QueryRow(ctx, "count_orders", 9000000).Scan(&n); err != nil || n != 2 {
			t.Fatalf("the prepared statement after the move: %d %v, want 2", n, err)
		}
		var tz string
		if err := c.QueryRow(ctx, "SHOW TimeZone").Scan(&tz); err != nil || tz != "Asia/Tokyo" {
			t.Fatalf("TimeZone after the move: %q %v", tz, err)
		}
		if db, schema := placementOf(t, c); db != m.ToDatabase || schema != m.ToSchema {
			t.Fatalf("after the move the session runs in %s.%s, want %s.%s", db, schema, m.ToDatabase, m.ToSchema)
		}
		if _, err := ts.Provisioner.FinalizeMove(ctx, m.ID, "test"); err != nil {
			t.Fatal(err)
		}
	})
}

// TestMoveRefusals: a move to the tenant's own placement (ErrMoveSame), to
// an unknown backend, and of a tenant with a table it made itself
// (ErrInvalidMove naming the table) are refused, and nothing is recorded.
func TestMoveRefusals(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	stopMoves(t, ts)
	p := ts.Provisioner
	if _, err := p.StartMove(ctx, "client_beta", provision.MoveTarget{Isolation: "schema"}, "test"); !errors.Is(err, provision.ErrMoveSame) {
		t.Errorf("a move to the same placement: %v, want ErrMoveSame", err)
	}
	if _, err := p.StartMove(ctx, "client_beta", provision.MoveTarget{Isolation: "database", Backend: "nope"}, "test"); !errors.Is(err, provision.ErrInvalidMove) {
		t.Errorf("a move to an unknown backend: %v, want ErrInvalidMove", err)
	}
	if _, err := p.StartMove(ctx, "client_beta", provision.MoveTarget{Isolation: "sideways"}, "test"); !errors.Is(err, provision.ErrInvalidMove) {
		t.Errorf("a move to an unknown isolation: %v, want ErrInvalidMove", err)
	}
	c := stacktest.Connect(t, ts.URL("demo", "demo", "client_beta", ""))
	if _, err := c.Exec(ctx, "CREATE TABLE my_own (x int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	_, err := p.StartMove(ctx, "client_beta", provision.MoveTarget{Isolation: "database"}, "test")
	if !errors.Is(err, provision.ErrInvalidMove) || !strings.Contains(err.Error(), "my_own") {
		t.Errorf("a move of a tenant with its own table: %v, want ErrInvalidMove naming my_own", err)
	}
	tn, _ := ts.Catalog.GetTenant(ctx, "client_beta")
	if moves, err := ts.Catalog.ListMoves(ctx, tn.ID, 0); err != nil || len(moves) != 0 {
		t.Errorf("refused moves were recorded: %v %v", moves, err)
	}
}

// TestHostileCastRunsOnlyAsTheTenant: a schema tenant plants a cast from
// its copy of the app's enum type to json whose function tries to make the
// tenant's role a superuser and records who ran it; the move's capture
// trigger (to_jsonb of every changed row) reaches it while the tenant
// writes during the move. It runs only as the tenant: the role stays
// NOSUPERUSER and every record names the tenant's role as current and
// session user. (An earlier capture function was SECURITY DEFINER, which
// ran the cast as the admin.)
func TestHostileCastRunsOnlyAsTheTenant(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	stopMoves(t, ts)
	rep, err := ts.Provisioner.ApplySchema(ctx, "CREATE TYPE mood AS ENUM ('ok', 'meh');\n"+
		"CREATE TABLE notes (id int PRIMARY KEY, m mood NOT NULL, body text);")
	if err != nil || rep.Failed() > 0 {
		t.Fatalf("applying the schema: %+v %v", rep, err)
	}
	c := stacktest.Connect(t, ts.URL("demo", "demo", "client_beta", ""))
	for _, s := range []string{
		`CREATE FUNCTION spy(mood) RETURNS json LANGUAGE plpgsql SET search_path FROM CURRENT AS $f$
		BEGIN
			BEGIN
				EXECUTE 'ALTER ROLE ' || quote_ident(session_user) || ' SUPERUSER';
			EXCEPTION WHEN others THEN NULL;
			END;
			INSERT INTO orders (item) VALUES ('spy:' || current_user || ':' || session_user);
			RETURN to_json($1::text);
		END $f$`,
		`CREATE CAST (mood AS json) WITH FUNCTION spy(mood)`,
	} {
		if _, err := c.Exec(ctx, stacktest.Hidden(s)); err != nil {
			t.Fatalf("planting: %v", err)
		}
	}
	hook, reached, release := holdAt("copy:orders")
	ts.Provisioner.SetMoveHook(hook)
	m, err := ts.Provisioner.StartMove(ctx, "client_beta", provision.MoveTarget{Isolation: "database"}, "test")
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	waitReached(t, reached, "the copy")
	for i := 1; i <= 3; i++ {
		if _, err := c.Exec(ctx, "INSERT INTO notes (id, m, body) VALUES ($1, 'meh', 'during the move')", i); err != nil {
			close(release)
			t.Fatal(err)
		}
	}
	close(release)
	m = waitMove(t, ts.Catalog, m.ID, catalog.MoveSwitched)

	tn, err := ts.Catalog.GetTenant(ctx, "client_beta")
	if err != nil {
		t.Fatal(err)
	}
	srv := ts.SrvConn(t, "postgres")
	if n := stacktest.Count(t, srv, "SELECT count(*) FROM pg_roles WHERE rolname LIKE $1 AND rolsuper", tn.RoleName+"%"); n != 0 {
		t.Fatalf("%d of the tenant's roles became superusers during the move", n)
	}
	rows, err := c.Query(ctx, "SELECT item FROM orders WHERE item LIKE 'spy:%'")
	if err != nil {
		t.Fatal(err)
	}
	spies, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(spies) < 3 {
		t.Fatalf("the planted cast ran %d times, want at least 3 (the capture must reach it, or this test proves nothing)", len(spies))
	}
	for _, s := range spies {
		if s != "spy:"+tn.RoleName+":"+tn.RoleName {
			t.Errorf("the planted cast ran as %q, want only the tenant's role %s", s, tn.RoleName)
		}
	}
	if n := stacktest.Count(t, c, "SELECT count(*) FROM notes"); n != 3 {
		t.Errorf("%d notes after the move, want 3", n)
	}
	if _, err := ts.Provisioner.FinalizeMove(ctx, m.ID, "test"); err != nil {
		t.Fatal(err)
	}
}

// TestBogusLogRowsFailOnlyTheirMove: the tenant's roles may INSERT into its
// move's capture log (the capture trigger runs as the writer) but neither
// read nor delete it; a change it forges there reaches only its own target
// and the cut-over's verification (row counts and checksums) catches it:
// the move fails, the tenant serves from its source without the forged row,
// and the target is gone.
func TestBogusLogRowsFailOnlyTheirMove(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	stopMoves(t, ts)
	hook, reached, release := holdAt("copy:orders")
	ts.Provisioner.SetMoveHook(hook)
	c := stacktest.Connect(t, ts.URL("demo", "demo", "client_beta", ""))
	if _, err := c.Exec(ctx, "INSERT INTO orders (id, item) VALUES (1, 'real')"); err != nil {
		t.Fatal(err)
	}
	m, err := ts.Provisioner.StartMove(ctx, "client_beta", provision.MoveTarget{Isolation: "database"}, "test")
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	waitReached(t, reached, "the copy")
	logTable := `stratum."move_log_` + strings.ReplaceAll(m.ID, "-", "")[:16] + `"`
	for _, s := range []string{"SELECT count(*) FROM " + logTable, "DELETE FROM " + logTable, "UPDATE " + logTable + " SET op = 'D'"} {
		if _, err := c.Exec(ctx, stacktest.Hidden(s)); stacktest.SQLState(err) != "42501" {
			close(release)
			t.Fatalf("%s as the tenant: %v, want 42501", s, err)
		}
	}
	forged := `INSERT INTO ` + logTable + ` (tbl, op, row) VALUES ('orders', 'U',
		'{"id": 424242, "tenant_id": "` + m.TenantID + `", "item": "forged", "quantity": 1, "created_at": "2020-01-01T00:00:00Z"}')`
	if _, err := c.Exec(ctx, stacktest.Hidden(forged)); err != nil {
		close(release)
		t.Fatalf("the tenant's INSERT into its move's log: %v", err)
	}
	close(release)
	fm := waitMove(t, ts.Catalog, m.ID, catalog.MoveFailed)
	if !strings.Contains(fm.Error, "does not match") {
		t.Errorf("the move failed with %q, want the verification's mismatch", fm.Error)
	}
	onSource(t, ts, m, c, map[int64]int{1: 1}, 0)
	if n := stacktest.Count(t, c, "SELECT count(*) FROM orders WHERE id = 424242"); n != 0 {
		t.Error("the forged row is in the tenant's source")
	}
	eventually(t, "the failed move's target is dropped", func() bool { return !targetExists(t, ts, m) })
	eventually(t, "the failed move's capture is dropped", func() bool { return captureLeft(t, ts, m) == 0 })
}

// provisionerWith is a second provisioner over the stack's catalog and
// backends (another proxy process, as far as moves go) with its move
// settings changed by set; it is closed before the stack's teardown.
func provisionerWith(t *testing.T, ts *stacktest.Stack, set func(*provision.Config)) *provision.Provisioner {
	t.Helper()
	cfg := ts.Provisioner.Config()
	set(&cfg)
	p, err := provision.New(context.Background(), cfg, ts.Catalog)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// TestDrainTimeoutFailsTheMove: a transaction of the tenant stays open on
// the source through the cut-over; after MoveDrainTimeout the move unpauses
// and tries again, and after the third try fails with the reason. The open
// transaction then commits on the source (no fence is left), and the
// tenant serves from there.
func TestDrainTimeoutFailsTheMove(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	stopMoves(t, ts)
	hook, reached, release := holdAt("cutting_over")
	p := provisionerWith(t, ts, func(c *provision.Config) {
		c.MoveDrainTimeout = 200 * time.Millisecond
		c.MoveHook = hook
	})
	url := ts.URL("demo", "demo", "client_alpha", "")
	c := stacktest.Connect(t, url)
	other := stacktest.Connect(t, url)
	m, err := p.StartMove(ctx, "client_alpha", provision.MoveTarget{Isolation: "schema"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	waitReached(t, reached, "the cut-over")
	// Opened after the capture is on (a transaction holding the table
	// would keep the capture's CREATE TRIGGER waiting instead).
	tx, err := c.Begin(ctx)
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO orders (id, item) VALUES (5, 'open through the cut-over')"); err != nil {
		close(release)
		t.Fatal(err)
	}
	close(release)
	fm := waitMovePhase(t, ts.Catalog, m.ID, catalog.MoveFailed)
	if !strings.Contains(fm.Error, "did not end within") {
		t.Fatalf("the move failed with %q, want the drain timeout", fm.Error)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("committing the open transaction after the failed cut-over: %v", err)
	}
	onSource(t, ts, m, other, map[int64]int{5: 1}, 0)
	if n := stacktest.Count(t, stacktest.Connect(t, ts.CatalogURL), `SELECT count(*) FROM audit_log
		WHERE action = 'tenant.pause' AND tenant_id = $1`, m.TenantID); n != 3 {
		t.Errorf("the cut-over paused the tenant %d times, want 3 tries", n)
	}
	eventually(t, "the failed move's target is dropped", func() bool { return !targetExists(t, ts, m) })
	eventually(t, "the failed move's capture is dropped", func() bool { return captureLeft(t, ts, m) == 0 })
}

// TestRetentionFinalizesAtRecover: with MoveRetention set, RecoverMoves (a
// proxy's start) finalizes a switched move older than it: the source copy
// is dropped.
func TestRetentionFinalizesAtRecover(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	stopMoves(t, ts)
	m, err := ts.Provisioner.StartMove(ctx, "client_beta", provision.MoveTarget{Isolation: "database"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	m = waitMove(t, ts.Catalog, m.ID, catalog.MoveSwitched)
	p := provisionerWith(t, ts, func(c *provision.Config) { c.MoveRetention = time.Millisecond })
	if err := p.RecoverMoves(ctx); err != nil {
		t.Fatal(err)
	}
	if fm, err := ts.Catalog.GetMove(ctx, m.ID); err != nil || fm.Phase != catalog.MoveFinalized {
		t.Fatalf("after RecoverMoves with a retention: %+v %v", fm, err)
	}
	sourceGone(t, ts, m)
}

// TestAppSchemaChangeDuringMoveFails: a schema apply that reaches the
// source during the move (not the target, which is no tenant's placement
// yet) fails the move at its cut-over instead of switching the tenant to
// tables without the change; the tenant keeps the change on its source.
func TestAppSchemaChangeDuringMoveFails(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	stopMoves(t, ts)
	hook, reached, release := holdAt("cutting_over")
	ts.Provisioner.SetMoveHook(hook)
	m, err := ts.Provisioner.StartMove(ctx, "client_beta", provision.MoveTarget{Isolation: "database"}, "test")
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	waitReached(t, reached, "the cut-over")
	rep, err := ts.Provisioner.ApplySchema(ctx, "ALTER TABLE orders ADD COLUMN note text;")
	close(release)
	if err != nil || rep.Failed() > 0 {
		t.Fatalf("applying the schema during the move: %+v %v", rep, err)
	}
	fm := waitMove(t, ts.Catalog, m.ID, catalog.MoveFailed)
	if !strings.Contains(fm.Error, "app schema changed") {
		t.Fatalf("the move failed with %q, want the app schema change", fm.Error)
	}
	c := stacktest.Connect(t, ts.URL("demo", "demo", "client_beta", ""))
	if _, err := c.Exec(ctx, "INSERT INTO orders (item, note) VALUES ('x', 'the new column')"); err != nil {
		t.Fatalf("the tenant after the failed move: %v", err)
	}
	eventually(t, "the failed move's target is dropped", func() bool { return !targetExists(t, ts, m) })
}

// TestMoveIntoSharedKeyCollision: moving into shared, a row whose key
// another tenant's row holds in the shared table fails the move cleanly:
// the tenant stays on its source with its rows, the other tenant's row is
// untouched and none of the moving tenant's rows is left in the shared
// table. Without the collision the move succeeds, and the moved rows are
// the tenant's alone under row-level security.
func TestMoveIntoSharedKeyCollision(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	stopMoves(t, ts)
	alpha := stacktest.Connect(t, ts.URL("demo", "demo", "client_alpha", ""))
	gamma := stacktest.Connect(t, ts.URL("demo", "demo", "client_gamma", ""))
	for _, q := range []struct {
		c   *pgx.Conn
		sql string
	}{{alpha, "INSERT INTO orders (id, item) VALUES (5, 'alpha five')"},
		{gamma, "INSERT INTO orders (id, item) VALUES (5, 'gamma five'), (6, 'gamma six')"}} {
		if _, err := q.c.Exec(ctx, q.sql); err != nil {
			t.Fatal(err)
		}
	}
	m, err := ts.Provisioner.StartMove(ctx, "client_gamma", provision.MoveTarget{Isolation: "shared"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	fm := waitMove(t, ts.Catalog, m.ID, catalog.MoveFailed)
	if !strings.Contains(fm.Error, "primary key is taken") {
		t.Errorf("the move failed with %q, want the key collision", fm.Error)
	}
	onSource(t, ts, m, gamma, map[int64]int{5: 1, 6: 1}, 0)
	var item string
	if err := alpha.QueryRow(ctx, "SELECT item FROM orders WHERE id = 5").Scan(&item); err != nil || item != "alpha five" {
		t.Fatalf("client_alpha's row 5 after the failed move: %q %v", item, err)
	}
	eventually(t, "no row of client_gamma left in the shared table", func() bool { return !targetExists(t, ts, m) })

	if _, err := gamma.Exec(ctx, "UPDATE orders SET id = 7 WHERE id = 5"); err != nil {
		t.Fatal(err)
	}
	m2, err := ts.Provisioner.StartMove(ctx, "client_gamma", provision.MoveTarget{Isolation: "shared"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	waitMove(t, ts.Catalog, m2.ID, catalog.MoveSwitched)
	if got := orderKeys(t, gamma, "SELECT id, quantity FROM orders"); len(got) != 2 || got[6] != 1 || got[7] != 1 {
		t.Errorf("client_gamma in shared sees %v, want its rows 6 and 7", got)
	}
	if got := orderKeys(t, alpha, "SELECT id, quantity FROM orders"); len(got) != 1 || got[5] != 1 {
		t.Errorf("client_alpha sees %v, want only its row 5", got)
	}
	if _, err := ts.Provisioner.FinalizeMove(ctx, m2.ID, "test"); err != nil {
		t.Fatal(err)
	}
}

// TestCaptureTruncateAndKeyChange: captured changes that are not plain
// inserts and updates reach the target: a TRUNCATE (schema and database
// tenants may), a delete, and an update that changes a row's key (captured
// as a delete of the old key and an upsert of the new). They are made after
// the copy (a TRUNCATE waits for the copy's snapshot to end).
func TestCaptureTruncateAndKeyChange(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	stopMoves(t, ts)
	hook, reached, release := holdAt("catching_up")
	ts.Provisioner.SetMoveHook(hook)
	c := stacktest.Connect(t, ts.URL("demo", "demo", "client_beta", ""))
	if _, err := c.Exec(ctx, "INSERT INTO orders (id, item) VALUES (1, 'one'), (2, 'two')"); err != nil {
		t.Fatal(err)
	}
	m, err := ts.Provisioner.StartMove(ctx, "client_beta", provision.MoveTarget{Isolation: "database"}, "test")
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	waitReached(t, reached, "the catch-up")
	for _, s := range []string{
		"TRUNCATE orders",
		"INSERT INTO orders (id, item, quantity) VALUES (3, 'three', 3), (4, 'four', 4), (5, 'five', 5)",
		"DELETE FROM orders WHERE id = 3",
		"UPDATE orders SET id = 40 WHERE id = 4",
	} {
		if _, err := c.Exec(ctx, s); err != nil {
			close(release)
			t.Fatalf("%s: %v", s, err)
		}
	}
	close(release)
	waitMove(t, ts.Catalog, m.ID, catalog.MoveSwitched)
	got := orderKeys(t, c, "SELECT id, quantity FROM orders")
	if len(got) != 2 || got[40] != 4 || got[5] != 5 {
		t.Fatalf("after the move the tenant has %v, want 40:4 and 5:5", got)
	}
	if _, err := ts.Provisioner.FinalizeMove(ctx, m.ID, "test"); err != nil {
		t.Fatal(err)
	}
}

// rolePicture is what PostgreSQL holds about a tenant's rights: its roles'
// attributes, memberships and per-database settings, its shared-database
// registration, and in its placement the owner and ACL of its schema, of its
// database, of the app's tables and sequences, the default privileges and
// the event triggers. Names are normalized (the tenant's role "T", its
// schema or database "t_X", the deployment "DEP"), so two tenants compare.
func rolePicture(t *testing.T, ts *stacktest.Stack, slug string) []string {
	t.Helper()
	ctx := context.Background()
	tn, err := ts.Catalog.GetTenant(ctx, slug)
	if err != nil {
		t.Fatal(err)
	}
	dep, err := ts.Catalog.DeploymentID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	shared := ts.Provisioner.Config().SharedDatabase
	norm := strings.NewReplacer(tn.RoleName, "T", "t_"+tn.ShortID, "t_X", "stratum_"+dep+"_", "stratum_DEP_", shared, "SHARED")
	var out []string
	collect := func(c *pgx.Conn, what, sql string, args ...any) {
		rows, err := c.Query(ctx, sql, args...)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, norm.Replace(fmt.Sprintf("%s %v", what, vals)))
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	pg := ts.SrvConn(t, "postgres")
	like := tn.RoleName + "%"
	collect(pg, "role", `SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls
		FROM pg_roles WHERE rolname LIKE $1`, like)
	collect(pg, "member", `SELECT m.rolname, g.rolname FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member
		JOIN pg_roles g ON g.oid = a.roleid WHERE m.rolname LIKE $1`, like)
	collect(pg, "setting", `SELECT r.rolname, coalesce(d.datname, ''), s.setconfig::text FROM pg_db_role_setting s
		JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON d.oid = s.setdatabase WHERE r.rolname LIKE $1`, like)
	collect(pg, "database", `SELECT datname, datacl::text FROM pg_database WHERE datname = $1 AND $1 <> $2`, tn.Database, shared)
	collect(ts.SrvConn(t, shared), "registered", `SELECT role_name FROM stratum.tenant_roles WHERE tenant_id = $1`, tn.ID)
	if tn.Isolation != catalog.IsolationShared {
		db := ts.SrvConn(t, tn.Database)
		collect(db, "schema", `SELECT nspname, nspowner::regrole::text, nspacl::text FROM pg_namespace WHERE nspname = $1`, tn.Schema)
		collect(db, "relation", `SELECT c.relname, c.relkind::text, c.relowner::regrole::text, c.relacl::text FROM pg_class c
			JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'S')`, tn.Schema)
		collect(db, "default", `SELECT d.defaclrole::regrole::text, d.defaclobjtype::text, d.defaclacl::text FROM pg_default_acl d
			JOIN pg_namespace n ON n.oid = d.defaclnamespace WHERE n.nspname = $1`, tn.Schema)
		collect(db, "evttrigger", `SELECT evtname, evtenabled::text FROM pg_event_trigger`)
		collect(db, "hardening", `SELECT proname, proacl::text FROM pg_proc WHERE proname IN ('pg_stat_get_activity', 'lo_create')`)
	}
	applied, err := ts.Catalog.AppSchemaApplied(ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, fmt.Sprintf("app schema versions %d", len(applied)))
	sort.Strings(out)
	return out
}

// TestMovedTenantMatchesFreshOne: after a finalized move, the tenant's
// rights (rolePicture) are those of a tenant created in that placement:
// shared to schema, schema to database, database to shared.
func TestMovedTenantMatchesFreshOne(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	stopMoves(t, ts)
	for _, tc := range []struct{ slug, to string }{
		{"client_alpha", "schema"}, {"client_beta", "database"}, {"client_gamma", "shared"},
	} {
		fresh := "fresh_" + tc.to
		if _, err := ts.Provisioner.CreateTenant(ctx, provision.TenantSpec{Slug: fresh, Isolation: tc.to}); err != nil {
			t.Fatal(err)
		}
		m, err := ts.Provisioner.StartMove(ctx, tc.slug, provision.MoveTarget{Isolation: tc.to}, "test")
		if err != nil {
			t.Fatal(err)
		}
		waitMove(t, ts.Catalog, m.ID, catalog.MoveSwitched)
		if _, err := ts.Provisioner.FinalizeMove(ctx, m.ID, "test"); err != nil {
			t.Fatal(err)
		}
		got, want := rolePicture(t, ts, tc.slug), rolePicture(t, ts, fresh)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s moved to %s differs from a tenant created there:\nmoved:\n%s\nfresh:\n%s",
				tc.slug, tc.to, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// pauseWatch is a move hook that records, for every step it sees, whether
// the move's tenant was paused in the catalog at that moment.
type pauseWatch struct {
	mu     sync.Mutex
	cat    *pgx.Conn
	tenant string
	steps  map[string][]bool // step -> paused at each call
	on     map[string]func(ctx context.Context)
}

func (w *pauseWatch) hook(ctx context.Context, id, step string) {
	w.mu.Lock()
	var n int
	err := w.cat.QueryRow(ctx, `SELECT count(*) FROM tenant_pauses WHERE tenant_id = $1`, w.tenant).Scan(&n)
	if err != nil {
		n = -1
	}
	w.steps[step] = append(w.steps[step], n == 1)
	// f runs under the lock: the test reads what f did (and uses its
	// connection) after taking the lock, which orders the two for the race
	// detector (the move's progress through the catalog does not).
	defer w.mu.Unlock()
	if f := w.on[step]; f != nil {
		f(ctx)
	}
}

// TestVerificationRunsOutsideThePause: the cut-over's full verification
// (per table count and checksum on both sides) runs while the tenant is not
// paused, and the switch's pause holds only the check of the rows changed
// since (so it does not grow with the table): a tenant with 200k rows moves
// shared→schema, each full checksum step finds no pause of the tenant in
// the catalog, the switch's check ("checked") finds it paused, and rows the
// tenant writes after the verification (through the proxy, unpaused) are in
// the target after the switch.
func TestVerificationRunsOutsideThePause(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	stopMoves(t, ts)
	tn, err := ts.Catalog.GetTenant(ctx, "client_alpha")
	if err != nil {
		t.Fatal(err)
	}
	// A table keyed by (tenant_id, id), as many apps key theirs: the
	// switch's keyed check must find its rows by index on either side.
	if rep, err := ts.Provisioner.ApplySchema(ctx, "CREATE TABLE lines (tenant_id uuid NOT NULL, id int NOT NULL, qty int NOT NULL, PRIMARY KEY (tenant_id, id));"); err != nil || rep.Failed() > 0 {
		t.Fatalf("applying the schema: %+v %v", rep, err)
	}
	const rows = 200_000
	if _, err := ts.SrvConn(t, tn.Database).Exec(ctx, `INSERT INTO public.orders (id, tenant_id, item)
		SELECT g, $1, 'row ' || g FROM generate_series(1000000, 1000000 + $2 - 1) g`, tn.ID, rows); err != nil {
		t.Fatal(err)
	}
	c := stacktest.Connect(t, ts.URL("demo", "demo", "client_alpha", ""))
	before := stacktest.Count(t, c, "SELECT count(*) FROM orders")
	if _, err := c.Exec(ctx, "INSERT INTO lines (id, qty) VALUES (1, 1), (2, 1), (3, 1)"); err != nil {
		t.Fatal(err)
	}
	w := &pauseWatch{cat: stacktest.Connect(t, ts.CatalogURL), tenant: tn.ID, steps: map[string][]bool{},
		on: map[string]func(context.Context){"verified": func(ctx context.Context) {
			// The tenant runs: its writes are captured and checked by key.
			for _, s := range []string{"INSERT INTO orders (id, item) VALUES (3000001, 'after the verification'), (3000002, 'x')",
				"UPDATE orders SET quantity = 7 WHERE id = 1000001", "DELETE FROM orders WHERE id = 1000002",
				"INSERT INTO lines (id, qty) VALUES (4, 1)", "UPDATE lines SET qty = 7 WHERE id = 1", "DELETE FROM lines WHERE id = 2"} {
				if _, err := c.Exec(ctx, s); err != nil {
					t.Errorf("%s: %v", s, err)
				}
			}
		}}}
	ts.Provisioner.SetMoveHook(w.hook)
	m, err := ts.Provisioner.StartMove(ctx, "client_alpha", provision.MoveTarget{Isolation: "schema"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	m = waitMove(t, ts.Catalog, m.ID, catalog.MoveSwitched)
	ts.Provisioner.SetMoveHook(nil)
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, side := range []string{"source", "target"} {
		step := "checksum:" + side + ":orders"
		if len(w.steps[step]) == 0 {
			t.Errorf("no full checksum of orders in the %s (step %s)", side, step)
		}
	}
	for step, paused := range w.steps {
		if !strings.HasPrefix(step, "checksum:") {
			continue
		}
		for _, p := range paused {
			if p {
				t.Errorf("step %s ran while the tenant was paused: the full verification must run outside the pause", step)
			}
		}
	}
	if got := w.steps["checked"]; len(got) != 1 || !got[0] {
		t.Errorf("the switch's check ran %d times (paused: %v), want once, in the pause", len(got), got)
	}
	if got := w.steps["verified"]; len(got) != 1 || got[0] {
		t.Errorf("the verification passed %d times (paused: %v), want once, unpaused", len(got), got)
	}
	if m.PauseMS <= 0 {
		t.Errorf("the move recorded a pause of %d ms", m.PauseMS)
	}
	t.Logf("%d rows: the switch's pause took %d ms", rows, m.PauseMS)
	if n := stacktest.Count(t, c, "SELECT count(*) FROM orders"); n != before+1 { // two inserted, one deleted
		t.Errorf("%d orders after the move, want %d", n, before+1)
	}
	if n := stacktest.Count(t, c, "SELECT count(*) FROM orders WHERE id = 1000001 AND quantity = 7"); n != 1 {
		t.Errorf("the update after the verification is not in the target")
	}
	if n := stacktest.Count(t, c, "SELECT count(*) FROM lines WHERE (id = 1 AND qty = 7) OR id IN (3, 4)"); n != 3 ||
		stacktest.Count(t, c, "SELECT count(*) FROM lines") != 3 {
		t.Errorf("lines after the move: want 1 (qty 7), 3 and 4")
	}
	if db, schema := placementOf(t, c); db != m.ToDatabase || schema != m.ToSchema {
		t.Errorf("the tenant runs in %s.%s, want %s.%s", db, schema, m.ToDatabase, m.ToSchema)
	}
	if _, err := ts.Provisioner.FinalizeMove(ctx, m.ID, "test"); err != nil {
		t.Fatal(err)
	}
}

// tenantRoleConn connects straight to the test server as the tenant's own
// full role (what the proxy logs in as), to database: a session the proxy
// does not govern, such as one that slipped past a pause.
func tenantRoleConn(t *testing.T, ts *stacktest.Stack, tn *catalog.Tenant, database string) *pgx.Conn {
	t.Helper()
	pw, err := ts.Catalog.BackendPassword(context.Background(), tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	u := &url.URL{Scheme: "postgres", User: url.UserPassword(tn.RoleName, pw),
		Host: net.JoinHostPort(ts.Srv.Host(), strconv.Itoa(ts.Srv.Port())), Path: "/" + database, RawQuery: "sslmode=disable"}
	return stacktest.Connect(t, u.String())
}

// staleWriteRefused: after the switch (before FinalizeMove) the source copy
// refuses the tenant's writes, as a proxy that has not seen the switch yet
// would send them: logged in as the tenant's own role, directly on the
// server, table the source's (qualified). The write fails with 40001
// saying the tenant moved, and leaves nothing there.
func staleWriteRefused(t *testing.T, ts *stacktest.Stack, tn *catalog.Tenant, database, table string) {
	t.Helper()
	ctx := context.Background()
	c := tenantRoleConn(t, ts, tn, database)
	_, err := c.Exec(ctx, "INSERT INTO "+table+" (id, tenant_id, item) VALUES (7777777, $1, 'stale write')", tn.ID)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "40001" || !strings.Contains(pe.Message, "moved to another placement") {
		t.Errorf("a write to the switched move's source copy: %v, want 40001 saying the tenant moved", err)
	}
	if n := stacktest.Count(t, ts.SrvConn(t, database), "SELECT count(*) FROM "+table+" WHERE id = 7777777"); n != 0 {
		t.Errorf("the stale write is in the source copy")
	}
}

// TestBogusLogRowAfterVerificationFailsTheMove: a change the tenant forges
// in its move's log after the full verification (while it runs, before the
// switch's pause) is caught by the switch's check of the changed keys: the
// move fails and the tenant serves from its source without the forged row.
func TestBogusLogRowAfterVerificationFailsTheMove(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	stopMoves(t, ts)
	hook, reached, release := holdAt("verified")
	ts.Provisioner.SetMoveHook(hook)
	c := stacktest.Connect(t, ts.URL("demo", "demo", "client_beta", ""))
	if _, err := c.Exec(ctx, "INSERT INTO orders (id, item) VALUES (1, 'real'), (2, 'real too')"); err != nil {
		t.Fatal(err)
	}
	m, err := ts.Provisioner.StartMove(ctx, "client_beta", provision.MoveTarget{Isolation: "database"}, "test")
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	waitReached(t, reached, "the verification")
	logTable := `stratum."move_log_` + strings.ReplaceAll(m.ID, "-", "")[:16] + `"`
	for _, forged := range []string{`INSERT INTO ` + logTable + ` (tbl, op, row) VALUES ('orders', 'U',
		'{"id": 424242, "tenant_id": "` + m.TenantID + `", "item": "forged", "quantity": 1, "created_at": "2020-01-01T00:00:00Z"}')`,
		`INSERT INTO ` + logTable + ` (tbl, op, row) VALUES ('orders', 'D', '{"id": 2}')`} {
		if _, err := c.Exec(ctx, stacktest.Hidden(forged)); err != nil {
			close(release)
			t.Fatalf("the tenant's INSERT into its move's log: %v", err)
		}
	}
	close(release)
	fm := waitMove(t, ts.Catalog, m.ID, catalog.MoveFailed)
	if !strings.Contains(fm.Error, "does not match") {
		t.Errorf("the move failed with %q, want the switch's check's mismatch", fm.Error)
	}
	onSource(t, ts, m, c, map[int64]int{1: 1, 2: 1}, 0)
	if n := stacktest.Count(t, c, "SELECT count(*) FROM orders WHERE id = 424242"); n != 0 {
		t.Error("the forged row is in the tenant's source")
	}
	eventually(t, "the failed move's target is dropped", func() bool { return !targetExists(t, ts, m) })
	eventually(t, "the failed move's capture is dropped", func() bool { return captureLeft(t, ts, m) == 0 })
}
