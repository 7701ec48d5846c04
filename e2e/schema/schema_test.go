package schema

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
	"github.com/stratum-hq/stratum-proxy/server"
	"go.uber.org/zap/zaptest"
)

// TestSchemaApply applies a second app schema to a running deployment: a
// shared table keyed by a text tenant_id gets row-level security and a default,
// a table without tenant_id is read-only reference data, every placement
// reports, a re-run is a no-op and broken DDL touches nothing.
func TestSchemaApply(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	ddl := `CREATE TABLE notes (id serial PRIMARY KEY, tenant_id text NOT NULL, body text);
CREATE TABLE countries (code text PRIMARY KEY, name text);
INSERT INTO countries VALUES ('fr', 'France');`
	rep, err := ts.Provisioner.ApplySchema(ctx, ddl)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.New || rep.Failed() != 0 {
		t.Fatalf("report %+v", rep)
	}
	seen := map[string]bool{}
	for _, p := range rep.Placements {
		seen[p.Placement] = len(p.Applied) == 1
	}
	for _, want := range []string{"shared", "client_beta", "client_gamma"} {
		if !seen[want] {
			t.Errorf("placement %s not applied: %+v", want, rep.Placements)
		}
	}
	for _, slug := range []string{"client_alpha", "acmesec", "client_beta", "client_gamma"} {
		c := stacktest.Connect(t, ts.URL("demo", "demo", slug, ""))
		if _, err := c.Exec(ctx, `INSERT INTO notes (body) VALUES ($1)`, slug); err != nil {
			t.Fatalf("%s: %v", slug, err)
		}
	}
	for _, slug := range []string{"client_alpha", "acmesec", "client_beta", "client_gamma"} {
		c := stacktest.Connect(t, ts.URL("demo", "demo", slug, ""))
		var bodies []string
		rows, _ := c.Query(ctx, `SELECT body FROM notes`)
		for rows.Next() {
			var b string
			rows.Scan(&b)
			bodies = append(bodies, b)
		}
		if rows.Err() != nil || len(bodies) != 1 || bodies[0] != slug {
			t.Errorf("%s sees notes %v (%v)", slug, bodies, rows.Err())
		}
	}
	alpha := stacktest.Connect(t, ts.URL("demo", "demo", "client_alpha", ""))
	if n := stacktest.Count(t, alpha, `SELECT count(*) FROM countries`); n != 1 {
		t.Errorf("reference table: %d rows", n)
	}
	if _, err := alpha.Exec(ctx, `INSERT INTO countries VALUES ('de', 'Germany')`); stacktest.SQLState(err) != "42501" {
		t.Errorf("writing reference data: %v, want 42501", err)
	}
	again, err := ts.Provisioner.ApplySchema(ctx, ddl)
	if err != nil || again.New || again.Failed() != 0 {
		t.Fatalf("re-run: %+v %v", again, err)
	}
	for _, p := range again.Placements {
		if len(p.Applied) != 0 {
			t.Errorf("re-run applied %v to %s", p.Applied, p.Placement)
		}
	}
	if _, err := ts.Provisioner.ApplySchema(ctx, `CREATE TABLE broken (id int REFERENCES nowhere(id));`); err == nil ||
		!strings.Contains(err.Error(), "template") {
		t.Fatalf("broken DDL: %v", err)
	}
	if n := stacktest.Count(t, alpha, `SELECT count(*) FROM pg_tables WHERE tablename = 'broken'`); n != 0 {
		t.Error("broken DDL left a table behind")
	}
	// A tenant created now replays every version.
	tn, err := ts.Provisioner.CreateTenant(ctx, server.DemoTree[3]) // schema isolation, another slug below
	if err == nil {
		t.Fatalf("duplicate slug accepted: %v", tn)
	}
	spec := server.DemoTree[3]
	spec.Slug = "client_late"
	if _, err := ts.Provisioner.CreateTenant(ctx, spec); err != nil {
		t.Fatal(err)
	}
	late := stacktest.Connect(t, ts.URL("demo", "demo", "client_late", ""))
	if n := stacktest.Count(t, late, `SELECT count(*) FROM notes`) + stacktest.Count(t, late, `SELECT count(*) FROM orders`); n != 0 {
		t.Errorf("new tenant sees %d rows", n)
	}
	// On the same stack: a version recorded while a tenant is being made.
	t.Run("VersionRecordedWhileTenantProvisions", func(t *testing.T) { testVersionRecordedWhileTenantProvisions(t, ts) })
}

// TestDevSeedIsIdempotent runs the demo seeding a second time, as a second
// `stratum-proxy dev` on the same data directory does.
func TestDevSeedIsIdempotent(t *testing.T) {
	ts := stacktest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before, _ := ts.Catalog.ListTenants(ctx)
	if err := server.SeedDemo(ctx, ts.Provisioner, zaptest.NewLogger(t)); err != nil {
		t.Fatalf("second seed: %v", err)
	}
	after, _ := ts.Catalog.ListTenants(ctx)
	if len(before) != len(after) || len(after) != len(server.DemoTree) {
		t.Fatalf("tenants before %d, after %d, want %d", len(before), len(after), len(server.DemoTree))
	}
}
