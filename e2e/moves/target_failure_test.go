package moves

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/pgtest"
	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
	"github.com/stratum-hq/stratum-proxy/provision"
	"github.com/stratum-hq/stratum-proxy/server"
)

// TestTargetServerFailsDuringMove: a database tenant moves to its own
// database on another server (a private cluster), and that server goes
// down, once during the copy and once in the switch's pause (after the
// switch's check). Each time the move fails naming the failure, the pause
// is lifted and the tenant serves from its source with every row it wrote
// (it writes through the proxy while the target is down), and once the
// server is back, the sweep (RecoverMoves) drops the half-built target
// database there.
func TestTargetServerFailsDuringMove(t *testing.T) {
	far := pgtest.StartPrivate(t)
	ts := stacktest.Start(t, func(c *server.Config) { c.Router.Set.Backends["far"] = far.Backend() })
	ctx := context.Background()
	stopMoves(t, ts)
	c := stacktest.Connect(t, ts.URL("demo", "demo", "client_gamma", ""))
	want := map[int64]int{}
	write := func(id int64) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		if _, err := c.Exec(wctx, "INSERT INTO orders (id, item, quantity) VALUES ($1, 'row', 1)", id); err != nil {
			t.Fatalf("writing order %d: %v", id, err)
		}
		want[id] = 1
	}
	for id := int64(1); id <= 3; id++ {
		write(id)
	}
	next := int64(100)
	for _, at := range []string{"copy:orders", "checked"} {
		t.Run(strings.ReplaceAll(at, ":", "_"), func(t *testing.T) {
			hook, reached, release := holdAt(at)
			ts.Provisioner.SetMoveHook(hook)
			defer ts.Provisioner.SetMoveHook(nil)
			m, err := ts.Provisioner.StartMove(ctx, "client_gamma", provision.MoveTarget{Isolation: "database", Backend: "far"}, "test")
			if err != nil {
				close(release)
				t.Fatal(err)
			}
			waitReached(t, reached, at)
			far.Stop(t)
			close(release)
			fm := waitMove(t, ts.Catalog, m.ID, catalog.MoveFailed)
			t.Logf("the move failed: %s", fm.Error)
			if fm.Error == "" {
				t.Error("the failed move gives no reason")
			}
			// Not paused, on the source, nothing lost; the target's server
			// is still down.
			for i := 0; i < 3; i++ {
				write(next)
				next++
			}
			onSource(t, ts, fm, c, want, 0)

			far.Start(t)
			if err := ts.Provisioner.RecoverMoves(ctx); err != nil {
				t.Logf("RecoverMoves: %v", err) // the sweep goes on trying
			}
			srv := stacktest.Connect(t, far.URL("postgres"))
			eventually(t, "the failed move's target database on the restarted server is dropped", func() bool {
				return stacktest.Count(t, srv, "SELECT count(*) FROM pg_database WHERE datname = $1", fm.ToDatabase) == 0
			})
			eventually(t, "the failed move's cleanup is recorded as done", func() bool {
				cm, err := ts.Catalog.GetMove(ctx, m.ID)
				return err == nil && cm.CleanupError == ""
			})
			eventually(t, "the failed move's capture is dropped", func() bool { return captureLeft(t, ts, fm) == 0 })
		})
	}
}
