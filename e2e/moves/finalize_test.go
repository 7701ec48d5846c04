package moves

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
	"github.com/stratum-hq/stratum-proxy/provision"
)

// finalizeRefusesMovesBack finalizes the switched move m (of a schema or
// database source) while a transaction holds its source copy's orders
// table, so that the finalize waits in dropping the copy's capture. While
// it waits, a move back of m is refused (it would make the copy live while
// it is being dropped) and so is any other move of the tenant (it could
// build where the finalize drops). Once the table is free the finalize ends
// with the copy gone and nothing pending.
func finalizeRefusesMovesBack(t *testing.T, ts *stacktest.Stack, m *catalog.Move) {
	t.Helper()
	ctx := context.Background()
	hold, err := ts.SrvConn(t, m.FromDatabase).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Rollback(ctx)
	if _, err := hold.Exec(ctx, "LOCK TABLE "+pgx.Identifier{m.FromSchema, "orders"}.Sanitize()+" IN ACCESS SHARE MODE"); err != nil {
		t.Fatal(err)
	}
	finalized := make(chan error, 1)
	go func() { _, err := ts.Provisioner.FinalizeMove(ctx, m.ID, "test"); finalized <- err }()
	eventually(t, "the finalize began", func() bool {
		fm, err := ts.Catalog.GetMove(ctx, m.ID)
		return err == nil && fm.Phase == catalog.MoveFinalized
	})
	if fm, _ := ts.Catalog.GetMove(ctx, m.ID); !fm.CleanupPending {
		t.Errorf("a finalize dropping the source copy: cleanup pending %v", fm.CleanupPending)
	}
	if back, err := ts.Provisioner.RevertMove(ctx, m.ID, "test"); !errors.Is(err, catalog.ErrMovePhase) {
		t.Errorf("a move back while the finalize drops the copy: %+v %v, want ErrMovePhase", back, err)
	}
	if nm, err := ts.Provisioner.StartMove(ctx, m.TenantSlug, provision.MoveTarget{Isolation: m.FromIsolation}, "test"); !errors.Is(err, catalog.ErrMoveRunning) {
		t.Errorf("a move while the finalize drops the copy: %+v %v, want ErrMoveRunning", nm, err)
	}
	select {
	case err := <-finalized:
		t.Fatalf("the finalize ended (%v) while the copy's table was held", err)
	case <-time.After(200 * time.Millisecond):
	}
	hold.Rollback(ctx)
	if err := <-finalized; err != nil {
		t.Fatal(err)
	}
	fm, err := ts.Catalog.GetMove(ctx, m.ID)
	if err != nil || fm.CleanupPending || fm.CleanupError != "" {
		t.Fatalf("after the finalize: %+v %v", fm, err)
	}
	sourceGone(t, ts, fm)
}
