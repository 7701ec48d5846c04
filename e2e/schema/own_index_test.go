package schema

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
)

// TestOwnPlacementQueriesUseTenantIndexes: a table keyed by (tenant_id, id),
// as multi-tenant apps key theirs, queried by id alone (the app leaves the
// tenant to the proxy): in the shared tables the isolation policy's
// tenant_id qual lets the primary key serve it, and in a schema or
// database placement the companion index on (id) does (before it, such a
// query read the whole table there, after a move too). COPY FROM still
// works there.
func TestOwnPlacementQueriesUseTenantIndexes(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	if rep, err := ts.Provisioner.ApplySchema(ctx, "CREATE TABLE lines (tenant_id uuid NOT NULL, id int NOT NULL, qty int, PRIMARY KEY (tenant_id, id));"); err != nil || rep.Failed() > 0 {
		t.Fatalf("applying the schema: %+v %v", rep, err)
	}
	for _, slug := range []string{"client_alpha", "client_beta", "client_gamma"} {
		c := stacktest.Connect(t, ts.URL("demo", "demo", slug, ""))
		if _, err := c.Exec(ctx, "INSERT INTO lines (id, qty) SELECT g, 1 FROM generate_series(1, 20000) g"); err != nil {
			t.Fatalf("%s: %v", slug, err)
		}
		if _, err := c.Exec(ctx, "ANALYZE lines"); err != nil && stacktest.SQLState(err) != "42501" {
			t.Fatalf("%s: ANALYZE: %v", slug, err)
		}
		var plan []string
		rows, err := c.Query(ctx, "EXPLAIN SELECT qty FROM lines WHERE id = 7", pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			t.Fatalf("%s: EXPLAIN: %v", slug, err)
		}
		for rows.Next() {
			var line string
			rows.Scan(&line)
			plan = append(plan, line)
		}
		text := strings.Join(plan, "\n")
		if !strings.Contains(text, "Index Cond: (") || strings.Contains(text, "Seq Scan") {
			t.Errorf("%s: SELECT by id is no index lookup:\n%s", slug, text)
		}
		if n := stacktest.Count(t, c, "SELECT count(*) FROM lines WHERE id = 7"); n != 1 {
			t.Errorf("%s: %d rows with id 7, want 1", slug, n)
		}
		if slug != "client_alpha" { // COPY FROM and row-level security do not mix (PostgreSQL)
			if _, err := c.PgConn().CopyFrom(ctx, strings.NewReader("30001\t1\n"), "COPY lines (id, qty) FROM STDIN"); err != nil {
				t.Errorf("%s: COPY FROM: %v", slug, err)
			}
		}
	}
}
