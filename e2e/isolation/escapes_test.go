package isolation

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
)

// TestEscapesDoNotCrossTenants tries, from each tenant's session, the ways a
// client could reach another tenant's data, and checks that PostgreSQL refuses
// each or that what it returns holds nothing of another tenant. Every tenant
// first writes one row tagged with its slug; afterwards each still sees only
// its own row, and other tenants' rows are unchanged.
func TestEscapesDoNotCrossTenants(t *testing.T) {
	stacktest.PoolModes(t, func(t *testing.T, ts *stacktest.Stack) {
		ctx := context.Background()
		tenants := map[string]string{} // slug -> id
		for _, slug := range stacktest.DemoSlugs {
			tn, err := ts.Catalog.GetTenant(ctx, slug)
			if err != nil {
				t.Fatal(err)
			}
			tenants[slug] = tn.ID
			c := stacktest.Connect(t, ts.URL("demo", "demo", slug, ""))
			if _, err := c.Exec(ctx, `INSERT INTO orders (item) VALUES ($1)`, slug); err != nil {
				t.Fatalf("%s: %v", slug, err)
			}
		}
		beta, _ := ts.Catalog.GetTenant(ctx, "client_beta")
		gamma, _ := ts.Catalog.GetTenant(ctx, "client_gamma")
		superuser := ts.Srv.SuperUser()

		for _, me := range []string{"client_alpha", "client_beta", "client_gamma"} {
			t.Run(me, func(t *testing.T) {
				other := "client_alpha"
				if me == "client_alpha" {
					other = "client_beta"
				}
				otherT, _ := ts.Catalog.GetTenant(ctx, other)
				// Each attempt runs on a fresh session; it may fail, but if it
				// succeeds, what it returns must not contain another tenant's slug
				// or id, and afterwards the session must still see only its own rows.
				attempts := []string{
					"SET ROLE " + otherT.RoleName,
					"SET ROLE " + superuser,
					"SET SESSION AUTHORIZATION " + superuser,
					"SET SESSION AUTHORIZATION " + otherT.RoleName,
					"RESET ROLE",
					"RESET SESSION AUTHORIZATION",
					"SELECT set_config('role', '" + superuser + "', false)",
					"SELECT set_config('session_authorization', '" + otherT.RoleName + "', false)",
					"SELECT set_config('stratum.tenant', '" + other + "', false)",
					"SET stratum.tenant_id = '" + otherT.ID + "'",
					"RESET ALL",
					"DISCARD ALL",
					"SET search_path = " + beta.Schema + ", public",
					"SELECT item FROM " + beta.Schema + ".orders",
					"SELECT item FROM public.orders",
					"SELECT item FROM " + gamma.Database + ".public.orders",
					"SELECT item FROM orders WHERE tenant_id = '" + otherT.ID + "'",
					"UPDATE orders SET tenant_id = '" + otherT.ID + "'",
					"INSERT INTO orders (tenant_id, item) VALUES ('" + otherT.ID + "', 'planted')",
					"DELETE FROM orders WHERE tenant_id <> '" + tenants[me] + "'",
					"ALTER TABLE orders DISABLE ROW LEVEL SECURITY",
					"DROP POLICY stratum_tenant_isolation ON orders",
					"SELECT * FROM stratum.tenant_roles",
					"SELECT stratum.current_tenant_id()",
					"DO $$ BEGIN PERFORM set_config('role', '" + superuser + "', false); END $$",
					"DO $$ BEGIN EXECUTE 'SET ROLE " + otherT.RoleName + "'; END $$",
					"CREATE FUNCTION public.peek() RETURNS SETOF text LANGUAGE sql SECURITY DEFINER AS $f$ SELECT item FROM public.orders $f$",
					"COPY (SELECT item FROM orders) TO STDOUT",
					"SELECT lo_import('/etc/passwd')",
					"SELECT pg_read_file('pg_hba.conf')",
					"SELECT datname FROM pg_database WHERE datname = '" + gamma.Database + "'",
					"SELECT count(*) FROM pg_stat_activity WHERE usename <> current_user AND query <> ''",
					"SELECT query FROM pg_stat_activity",
					"PREPARE p AS SELECT item FROM orders",
					"SELECT dblink_connect('dbname=" + gamma.Database + "')",
				}
				for i, q := range attempts {
					c := stacktest.Connect(t, ts.URL("demo", "demo", me, ""))
					out, err := runCollect(ctx, c, q)
					// pg_stat_activity shows this tenant's own sessions, whose
					// queries are these attempts: an echo of its own text is no leak.
					for _, own := range attempts {
						out = strings.ReplaceAll(out, own, "")
					}
					for slug, id := range tenants {
						if strings.Contains(q, slug) || strings.Contains(q, id) {
							continue // the attempt itself names it; an echo reveals nothing
						}
						if slug != me && (containsWord(out, slug) || strings.Contains(out, id)) {
							t.Errorf("attempt %d %q revealed tenant %s: %q", i, q, slug, out)
						}
					}
					checkOwnRows(t, ctx, c, me, fmt.Sprintf("after %q (err %v)", q, err))
					c.Close(ctx)
				}
			})
		}
		// Nothing was planted, changed or deleted in another tenant. Read every
		// placement directly as the superuser: the shared table holds exactly the
		// shared tenants' rows with their own tenant ids, and the schema and
		// database tenants' tables hold only what those tenants wrote themselves
		// (their own row, or what they planted or changed in their own space).
		conn := ts.SrvConn(t, ts.Router.Config().SharedDatabase)
		rows, err := conn.Query(ctx, "SELECT item, tenant_id::text FROM public.orders ORDER BY item")
		if err != nil {
			t.Fatal(err)
		}
		type row struct{ Item, TenantID string }
		shared, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
		if err != nil {
			t.Fatal(err)
		}
		want := []row{{"acmesec", tenants["acmesec"]}, {"apex_partners", tenants["apex_partners"]},
			{"client_alpha", tenants["client_alpha"]}, {"northstar_msp", tenants["northstar_msp"]}}
		if fmt.Sprint(shared) != fmt.Sprint(want) {
			t.Errorf("shared table holds %v, want %v", shared, want)
		}
		for _, pl := range []struct{ db, table, me string }{
			{ts.Router.Config().SharedDatabase, beta.Schema + ".orders", "client_beta"},
			{gamma.Database, "public.orders", "client_gamma"},
		} {
			c := ts.SrvConn(t, pl.db)
			rows, err := c.Query(ctx, "SELECT item FROM "+pl.table)
			if err != nil {
				t.Fatal(err)
			}
			items, _ := pgx.CollectRows(rows, pgx.RowTo[string])
			for _, it := range items {
				if it != pl.me && it != "planted" {
					t.Errorf("%s's table holds %q", pl.me, it)
				}
			}
		}
	})
}

// checkOwnRows asserts the session sees no row of another tenant. A shared
// tenant, whose rows row-level security guards, must also still see exactly
// its one row; schema and database tenants may have changed their own space.
func checkOwnRows(t *testing.T, ctx context.Context, c *pgx.Conn, me, when string) {
	t.Helper()
	rows, err := c.Query(ctx, "SELECT item FROM orders")
	var items []string
	if err == nil {
		items, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		t.Errorf("%s: tenant %s cannot read its rows: %v", when, me, err)
	}
	for _, it := range items {
		if it != me && it != "planted" {
			t.Errorf("%s: tenant %s sees another tenant's row %q", when, me, it)
		}
	}
	if me == "client_alpha" && (len(items) != 1 || items[0] != me) {
		t.Errorf("%s: shared tenant %s sees %v, want only its own row", when, me, items)
	}
}

func containsWord(s, w string) bool {
	for _, f := range strings.FieldsFunc(s, func(r rune) bool {
		return !(r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
	}) {
		if f == w {
			return true
		}
	}
	return false
}

// runCollect runs q with the simple protocol and returns every value it
// produced, as text, or the error text.
func runCollect(ctx context.Context, c *pgx.Conn, q string) (string, error) {
	rr := c.PgConn().Exec(ctx, q)
	var b strings.Builder
	results, err := rr.ReadAll()
	for _, r := range results {
		for _, row := range r.Rows {
			for _, v := range row {
				b.Write(v)
				b.WriteByte(' ')
			}
		}
	}
	if err != nil {
		return b.String() + fmt.Sprint(err), err
	}
	return b.String(), nil
}

// TestCatalogDoesNotCount checks that the catalog views and functions through
// which a tenant could count or sample other tenants' rows are closed: planner
// statistics, pg_class row counts, the statistics collector and relation
// sizes. Statistics are gathered first (ANALYZE as the superuser), so a leak
// would show.
func TestCatalogDoesNotCount(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	for _, slug := range stacktest.DemoSlugs {
		c := stacktest.Connect(t, ts.URL("demo", "demo", slug, ""))
		for i := 0; i < 20; i++ {
			if _, err := c.Exec(ctx, "INSERT INTO orders (item) VALUES ($1)", slug+"-secret"); err != nil {
				t.Fatal(err)
			}
		}
	}
	gamma, _ := ts.Catalog.GetTenant(ctx, "client_gamma")
	for _, db := range []string{ts.Router.Config().SharedDatabase, gamma.Database} {
		sc := ts.SrvConn(t, db)
		if _, err := sc.Exec(ctx, "ANALYZE"); err != nil {
			t.Fatal(err)
		}
	}
	for _, slug := range []string{"client_alpha", "client_beta", "client_gamma"} {
		c := stacktest.Connect(t, ts.URL("demo", "demo", slug, ""))
		for _, q := range []string{
			"SELECT most_common_vals::text FROM pg_stats WHERE tablename = 'orders'",
			"SELECT reltuples FROM pg_class WHERE relname = 'orders'",
			"SELECT relpages FROM pg_class WHERE relname = 'orders'",
			"SELECT * FROM pg_class WHERE relname = 'orders'",
			"SELECT n_live_tup FROM pg_stat_user_tables",
			"SELECT pg_stat_get_live_tuples('orders'::regclass)",
			"SELECT pg_relation_size('orders')",
			"SELECT pg_total_relation_size(c.oid) FROM pg_class c WHERE relname = 'orders'",
			"SELECT tup_inserted FROM pg_stat_database",
			"SELECT count(*) FROM pg_stat_activity WHERE usename <> current_user",
		} {
			_, err := runCollect(ctx, c, q)
			if stacktest.SQLState(err) != "42501" {
				t.Errorf("%s: %q: %v, want permission denied (42501)", slug, q, err)
			}
		}
		// Ordinary introspection still works.
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_class c WHERE c.relname = 'orders' AND c.relkind = 'r'").Scan(&n); err != nil || n < 1 {
			t.Errorf("%s: introspecting pg_class: %d %v", slug, n, err)
		}
	}
}

// TestStartupHardensOldTenantDatabases checks that preparing the router (as
// every start does) closes the catalog statistics again in database tenants'
// databases, such as ones provisioned by an older version.
func TestStartupHardensOldTenantDatabases(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	gamma, _ := ts.Catalog.GetTenant(ctx, "client_gamma")
	ts.SrvConn(t, gamma.Database).Exec(ctx, "GRANT SELECT ON pg_catalog.pg_stats TO PUBLIC")
	c := stacktest.Connect(t, ts.URL("demo", "demo", "client_gamma", ""))
	if _, err := runCollect(ctx, c, "SELECT count(*) FROM pg_stats"); err != nil {
		t.Fatalf("precondition: pg_stats should be open again: %v", err)
	}
	if err := ts.Provisioner.PrepareShared(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := runCollect(ctx, c, "SELECT count(*) FROM pg_stats"); stacktest.SQLState(err) != "42501" {
		t.Errorf("after PrepareShared: %v, want 42501", err)
	}
}
