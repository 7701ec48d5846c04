package moves

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
	"github.com/stratum-hq/stratum-proxy/provision"
)

// narrowRows is how many rows each move of TestSwitchCheckNarrowedBeforeThePause
// changes after the verification (above the engine's 200 below which it
// does not narrow).
const narrowRows = 500

// narrowHook runs at "verified" and at "narrowed:<keys left>" (with the
// count), holding the move while they run, and remembers the count.
type narrowHook struct {
	verified func(ctx context.Context, moveID string)
	narrowed func(ctx context.Context, moveID string)
	mu       sync.Mutex
	left     []int
}

func (h *narrowHook) hook(ctx context.Context, id, step string) {
	switch {
	case step == "verified" && h.verified != nil:
		h.verified(ctx, id)
	case strings.HasPrefix(step, "narrowed:"):
		n, _ := strconv.Atoi(strings.TrimPrefix(step, "narrowed:"))
		h.mu.Lock()
		h.left = append(h.left, n)
		h.mu.Unlock()
		if h.narrowed != nil {
			h.narrowed(ctx, id)
		}
	}
}

func (h *narrowHook) keysLeft(t *testing.T) int {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.left) != 1 {
		t.Fatalf("the move narrowed its switch's check %d times, want once", len(h.left))
	}
	return h.left[0]
}

// TestSwitchCheckNarrowedBeforeThePause: the keys changed since the
// verification are compared row by row before the switch's pause, and
// only the ones that differ are left for the keyed check in the pause;
// that never lets a difference through.
//
//   - shared → schema: 500 rows updated after the verification; the
//     narrowing leaves (almost) none for the pause and the move switches
//     with every update in the target.
//   - schema → database: the same updates and a forged delete of one of
//     those keys in the move's log (the target loses the row): the key is
//     left for the pause and the move fails, the row kept on the source.
//   - database → shared: the same updates; after the narrowing forgot them,
//     a forged delete of one: applyLog remembers the key again and the
//     switch's check fails the move.
//
// The forgeries come from a user of the tenant without switch rights,
// plainly and in dynamic SQL; in both pool modes.
func TestSwitchCheckNarrowedBeforeThePause(t *testing.T) {
	stacktest.PoolModes(t, testSwitchCheckNarrowedBeforeThePause)
}

func testSwitchCheckNarrowedBeforeThePause(t *testing.T, ts *stacktest.Stack) {
	ctx := context.Background()
	stopMoves(t, ts)
	update := func(t *testing.T, c *pgx.Conn) {
		if _, err := c.Exec(ctx, "UPDATE orders SET quantity = quantity + 1 WHERE id <= $1", narrowRows); err != nil {
			t.Errorf("updating after the verification: %v", err)
		}
	}
	// The forger is a user of the tenant without switch rights; the forged
	// row goes in plainly (the guard may refuse it) and in dynamic SQL
	// (which PostgreSQL lets through: the capture's writers may INSERT).
	forgers := map[string]*pgx.Conn{}
	forgeDelete := func(t *testing.T, slug, moveID string, id int) {
		fc := forgers[slug]
		logTable := `stratum."move_log_` + strings.ReplaceAll(moveID, "-", "")[:16] + `"`
		forged := `INSERT INTO ` + logTable + ` (tbl, op, row) VALUES ('orders', 'D', '{"id": ` + strconv.Itoa(id) + `}')`
		_, err := fc.Exec(ctx, forged)
		t.Logf("the forged log row, plain: %v", err)
		if _, err := fc.Exec(ctx, stacktest.Hidden(forged)); err != nil {
			t.Errorf("the tenant's INSERT into its move's log: %v", err)
		}
	}
	forger := func(t *testing.T, slug string) {
		user := "forger_" + slug
		if _, err := ts.Catalog.CreateUser(ctx, user, "pw-forger", slug, false); err != nil {
			t.Fatal(err)
		}
		forgers[slug] = stacktest.Connect(t, ts.URL(user, "pw-forger", slug, ""))
	}
	seed := func(t *testing.T, c *pgx.Conn) map[int64]int {
		if _, err := c.Exec(ctx, "INSERT INTO orders (id, item) SELECT g, 'row ' || g FROM generate_series(1, $1) g", narrowRows); err != nil {
			t.Fatal(err)
		}
		want := map[int64]int{}
		for i := int64(1); i <= narrowRows; i++ {
			want[i] = 2 // after update
		}
		return want
	}
	move := func(t *testing.T, h *narrowHook, slug string, to string) *catalog.Move {
		ts.Provisioner.SetMoveHook(h.hook)
		t.Cleanup(func() { ts.Provisioner.SetMoveHook(nil) })
		m, err := ts.Provisioner.StartMove(ctx, slug, provision.MoveTarget{Isolation: to}, "test")
		if err != nil {
			t.Fatal(err)
		}
		return m
	}

	t.Run("shared to schema: narrowed and switched", func(t *testing.T) {
		c := stacktest.Connect(t, ts.URL("demo", "demo", "client_alpha", ""))
		want := seed(t, c)
		h := &narrowHook{verified: func(context.Context, string) { update(t, c) }}
		m := move(t, h, "client_alpha", "schema")
		m = waitMove(t, ts.Catalog, m.ID, catalog.MoveSwitched)
		if left := h.keysLeft(t); left > narrowRows/10 {
			t.Errorf("%d of the %d keys changed since the verification were left for the switch's pause", left, narrowRows)
		}
		sameKeys(t, "in the target", want, orderKeys(t, c, "SELECT id, quantity FROM orders"))
		if db, schema := placementOf(t, c); db != m.ToDatabase || schema != m.ToSchema {
			t.Errorf("the tenant runs in %s.%s, want %s.%s", db, schema, m.ToDatabase, m.ToSchema)
		}
		if _, err := ts.Provisioner.FinalizeMove(ctx, m.ID, "test"); err != nil {
			t.Fatal(err)
		}
	})

	c := stacktest.Connect(t, ts.URL("demo", "demo", "client_beta", ""))
	want := seed(t, c)
	forger(t, "client_beta")
	t.Run("a difference before the narrowing stays", func(t *testing.T) {
		h := &narrowHook{verified: func(_ context.Context, id string) { update(t, c); forgeDelete(t, "client_beta", id, 7) }}
		m := move(t, h, "client_beta", "database")
		fm := waitMove(t, ts.Catalog, m.ID, catalog.MoveFailed)
		if !strings.Contains(fm.Error, "does not match") {
			t.Errorf("the move failed with %q, want the switch's check's mismatch", fm.Error)
		}
		if left := h.keysLeft(t); left < 1 {
			t.Errorf("the narrowing forgot the key whose row the forged delete took from the target")
		}
		onSource(t, ts, m, c, want, 0)
		eventually(t, "the failed move's capture is dropped", func() bool { return captureLeft(t, ts, m) == 0 })
	})

	g := stacktest.Connect(t, ts.URL("demo", "demo", "client_gamma", ""))
	wantG := seed(t, g)
	forger(t, "client_gamma")
	t.Run("a change after the narrowing is checked", func(t *testing.T) {
		h := &narrowHook{verified: func(context.Context, string) { update(t, g) },
			narrowed: func(_ context.Context, id string) { forgeDelete(t, "client_gamma", id, 9) }}
		m := move(t, h, "client_gamma", "shared")
		fm := waitMove(t, ts.Catalog, m.ID, catalog.MoveFailed)
		if !strings.Contains(fm.Error, "does not match") {
			t.Errorf("the move failed with %q, want the switch's check's mismatch", fm.Error)
		}
		if left := h.keysLeft(t); left > narrowRows/10 {
			t.Errorf("%d keys left for the switch's pause, want the narrowing to forget the equal ones", left)
		}
		onSource(t, ts, m, g, wantG, 0)
	})
}
