package schema

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
	"github.com/stratum-hq/stratum-proxy/server"
)

// testVersionRecordedWhileTenantProvisions: an app schema version recorded
// while a tenant is being created reaches that tenant too. ApplySchema
// applies a new version to the tenants it lists that are past provisioning
// (a provisioning tenant's placement may not exist yet), and a tenant being
// created applies the versions it reads before it becomes active: a version
// recorded between the two reaches neither way unless the tenant looks
// again. The test holds the new tenant's catalog row (FOR NO KEY UPDATE),
// which its activation waits for, once the tenant has applied every version
// there was, and runs ApplySchema in that gap.
func testVersionRecordedWhileTenantProvisions(t *testing.T, ts *stacktest.Stack) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	holder, err := pgx.Connect(ctx, ts.CatalogURL)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(context.Background())
	watch, err := pgx.Connect(ctx, ts.CatalogURL)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close(context.Background())
	spec := server.DemoTree[3] // schema isolation: a placement of its own
	spec.Slug = "client_racing"
	created := make(chan error, 1)
	go func() {
		_, err := ts.Provisioner.CreateTenant(ctx, spec)
		created <- err
	}()
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	var id string
	for {
		err := tx.QueryRow(ctx, `SELECT id FROM tenants WHERE slug = $1 AND status = $2 FOR NO KEY UPDATE`,
			spec.Slug, catalog.StatusProvisioning).Scan(&id)
		if err == nil {
			break
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		select {
		case err := <-created:
			t.Fatalf("the tenant was made (%v) before the test could hold it at its activation", err)
		case <-time.After(time.Millisecond):
		}
	}
	// The tenant has applied every version recorded so far and waits to
	// become active.
	versions, err := ts.Catalog.AppSchemas(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for {
		applied, err := ts.Catalog.AppSchemaApplied(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var waiting int
		if err := watch.QueryRow(ctx, `SELECT count(*) FROM pg_catalog.pg_stat_activity
			WHERE $1 = ANY (pg_catalog.pg_blocking_pids(pid))`, holder.PgConn().PID()).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if len(applied) == len(versions) && waiting > 0 {
			break
		}
		select {
		case err := <-created:
			t.Fatalf("the tenant was made (%v) while the test held its row", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	rep, err := ts.Provisioner.ApplySchema(ctx, `CREATE TABLE raced (id int PRIMARY KEY);`)
	if err != nil || rep.Failed() != 0 {
		t.Fatalf("applying a version while a tenant provisions: %+v %v", rep, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-created; err != nil {
		t.Fatalf("creating the tenant: %v", err)
	}
	applied, err := ts.Catalog.AppSchemaApplied(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !applied[rep.Version] {
		t.Errorf("version %d, recorded while %s was provisioning, is not applied to it (applied: %v)", rep.Version, spec.Slug, applied)
	}
	c := stacktest.Connect(t, ts.URL("demo", "demo", spec.Slug, ""))
	if _, err := c.Exec(ctx, `SELECT * FROM raced`); err != nil {
		t.Errorf("%s: the table of the version recorded while it was provisioning: %v", spec.Slug, err)
	}
}
