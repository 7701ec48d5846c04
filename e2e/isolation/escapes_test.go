package isolation

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
)

// TestEscapesDoNotCrossTenants tries, from each tenant's session, the ways a
// client could reach another tenant's data. Each attempt has the outcome
// PostgreSQL must give it per isolation (refused with a given SQLSTATE, or
// run); what a run attempt returns must hold nothing of another tenant. Every
// tenant first writes one row tagged with its slug; after each attempt the
// session sees exactly its own rows, and at the end every placement holds
// exactly what its own tenant wrote.
func TestEscapesDoNotCrossTenants(t *testing.T) {
	stacktest.PoolModes(t, func(t *testing.T, ts *stacktest.Stack) {
		ctx := context.Background()
		tenants := map[string]string{} // slug -> id
		for _, slug := range stacktest.DemoSlugs {
			tenants[slug] = getTenant(t, ts, slug).ID
			c := stacktest.Connect(t, ts.URL("demo", "demo", slug, ""))
			if _, err := c.Exec(ctx, `INSERT INTO orders (item) VALUES ($1)`, slug); err != nil {
				t.Fatalf("%s: %v", slug, err)
			}
		}
		beta := getTenant(t, ts, "client_beta")
		gamma := getTenant(t, ts, "client_gamma")
		superuser := ts.Srv.SuperUser()
		// What each schema or database tenant's own table holds at the end:
		// its row and the row it planted in its own space.
		ownAtEnd := map[string][]string{}

		for _, me := range []string{"client_alpha", "client_beta", "client_gamma"} {
			t.Run(me, func(t *testing.T) {
				other := "client_alpha"
				if me == "client_alpha" {
					other = "client_beta"
				}
				otherT := getTenant(t, ts, other)
				planted := "planted-by-" + me
				// Each attempt runs on a fresh session. want is the SQLSTATE
				// PostgreSQL (or the proxy) answers for client_alpha (shared,
				// under row-level security), client_beta (schema) and
				// client_gamma (database); "" means the statement runs, and
				// then what it returns must not contain another tenant's slug
				// or id. Attempts that run inside the tenant's own space (its
				// schema or database) are no escape.
				attempts := []struct {
					q                  string
					alpha, beta, gamma string
				}{
					{"SET ROLE " + otherT.RoleName, "42501", "42501", "42501"},
					{"SET ROLE " + superuser, "42501", "42501", "42501"},
					{"SET SESSION AUTHORIZATION " + superuser, "42501", "42501", "42501"},
					{"SET SESSION AUTHORIZATION " + otherT.RoleName, "42501", "42501", "42501"},
					{"RESET ROLE", "42501", "42501", "42501"},
					{"RESET SESSION AUTHORIZATION", "42501", "42501", "42501"},
					{"SELECT set_config('role', '" + superuser + "', false)", "42501", "42501", "42501"},
					{"SELECT set_config('session_authorization', '" + otherT.RoleName + "', false)", "42501", "42501", "42501"},
					{"SELECT set_config('stratum.tenant', '" + other + "', false)", "42501", "42501", "42501"},
					{"SET stratum.tenant_id = '" + otherT.ID + "'", "42501", "42501", "42501"},
					{"RESET ALL", "", "", ""},
					{"DISCARD ALL", "", "", ""},
					{"SET search_path = " + beta.Schema + ", public", "", "", ""},
					// client_beta's own schema; not in client_gamma's database.
					{"SELECT item FROM " + beta.Schema + ".orders", "42501", "", "42P01"},
					// The shared table (row-level security) for client_alpha,
					// client_gamma's own table in its database.
					{"SELECT item FROM public.orders", "", "42501", ""},
					{"SELECT item FROM " + gamma.Database + ".public.orders", "0A000", "0A000", ""},
					{"SELECT item FROM orders WHERE tenant_id = '" + otherT.ID + "'", "", "", ""},
					// Deleting first, while the tenant's own rows carry its id:
					// it must delete nothing it sees.
					{"DELETE FROM orders WHERE tenant_id <> '" + tenants[me] + "'", "", "", ""},
					// Row-level security checks new rows of client_alpha; the
					// others write only their own table.
					{"UPDATE orders SET tenant_id = '" + otherT.ID + "'", "42501", "", ""},
					{"INSERT INTO orders (tenant_id, item) VALUES ('" + otherT.ID + "', '" + planted + "')", "42501", "", ""},
					// client_beta and client_gamma own the app's tables in
					// their own placement (schema apply runs as them), where
					// no row-level security is involved.
					{"ALTER TABLE orders DISABLE ROW LEVEL SECURITY", "42501", "", ""},
					{"DROP POLICY stratum_tenant_isolation ON orders", "42501", "42704", "42704"},
					// client_gamma's database has a stratum schema too (the
					// event trigger's function), closed to it.
					{"SELECT * FROM stratum.tenant_roles", "42501", "42501", "42501"},
					{"SELECT stratum.current_tenant_id()", "", "42501", "42501"},
					{"DO $$ BEGIN PERFORM set_config('role', '" + superuser + "', false); END $$", "42501", "42501", "42501"},
					{"DO $$ BEGIN EXECUTE 'SET ROLE " + otherT.RoleName + "'; END $$", "42501", "42501", "42501"},
					// public of client_gamma's own database is its own, but
					// SECURITY DEFINER routines are refused to tenant roles
					// (the event trigger: one would write as its owner when
					// the tenant's read-only role called it).
					{"CREATE OR REPLACE FUNCTION public.peek() RETURNS SETOF text LANGUAGE sql SECURITY DEFINER AS $f$ SELECT item FROM public.orders $f$", "42501", "42501", "42501"},
					{"COPY (SELECT item FROM orders) TO STDOUT", "", "", ""},
					{"SELECT lo_import('/etc/passwd')", "42501", "42501", "42501"},
					{"SELECT pg_read_file('pg_hba.conf')", "42501", "42501", "42501"},
					{"SELECT datname FROM pg_database WHERE datname = '" + gamma.Database + "'", "", "", ""},
					{"SELECT count(*) FROM pg_stat_activity WHERE usename <> current_user AND query <> ''", "42501", "42501", "42501"},
					{"SELECT query FROM pg_stat_activity", "42501", "42501", "42501"},
					{"PREPARE p AS SELECT item FROM orders", "", "", ""},
					{"SELECT dblink_connect('dbname=" + gamma.Database + "')", "42883", "42883", "42883"},
				}
				own := []string{me}
				// An app's user: bound to this tenant, no switch rights.
				user := "escapes_" + me
				if _, err := ts.Catalog.CreateUser(ctx, user, "pw-"+me, me, false); err != nil {
					t.Fatal(err)
				}
				try := func(i int, q, orig, want string) {
					c := stacktest.Connect(t, ts.URL(user, "pw-"+me, me, ""))
					defer c.Close(ctx)
					out, err := runCollect(ctx, c, q)
					if got := stacktest.SQLState(err); got != want || err != nil && got == "" {
						t.Errorf("attempt %d %q: %v (SQLSTATE %q), want SQLSTATE %q (\"\": runs)", i, q, err, got, want)
					}
					if err == nil && strings.Contains(orig, planted) {
						own = append(own, planted)
					}
					// pg_stat_activity shows this tenant's own sessions, whose
					// queries are these attempts: an echo of its own text is no leak.
					for _, a := range attempts {
						out = strings.ReplaceAll(out, a.q, "")
						out = strings.ReplaceAll(out, stacktest.Hidden(a.q), "")
					}
					for slug, id := range tenants {
						if strings.Contains(q, slug) || strings.Contains(q, id) {
							continue // the attempt itself names it; an echo reveals nothing
						}
						if slug != me && (containsWord(out, slug) || strings.Contains(out, id)) {
							t.Errorf("attempt %d %q revealed tenant %s: %q", i, q, slug, out)
						}
					}
					checkOwnRows(t, ctx, c, me, own, fmt.Sprintf("after %q (err %v)", q, err))
				}
				for i, a := range attempts {
					pick := func(alpha, beta, gamma string) string {
						return map[string]string{"client_alpha": alpha, "client_beta": beta, "client_gamma": gamma}[me]
					}
					want := pick(a.alpha, a.beta, a.gamma)
					try(i, a.q, a.q, want)
					// The same attempt hidden from the guard in dynamic SQL:
					// PostgreSQL must stop it alone. Its answer is the plain
					// one's unless dynamicOutcome says otherwise.
					if d, ok := dynamicWant(a.q); ok {
						want = pick(d[0], d[1], d[2])
					}
					try(i, stacktest.Hidden(a.q), a.q, want)
				}
				ownAtEnd[me] = own
			})
		}
		// Nothing was planted, changed or deleted in another tenant. Read every
		// placement directly as the superuser: the shared table holds exactly the
		// shared tenants' rows with their own tenant ids, and the schema and
		// database tenants' tables hold exactly what those tenants wrote
		// themselves (their own row and what they planted in their own space).
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
			rows, err := c.Query(ctx, "SELECT item FROM "+pl.table+" ORDER BY item")
			if err != nil {
				t.Fatal(err)
			}
			items, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatalf("reading %s's table: %v", pl.me, err)
			}
			if want := sorted(ownAtEnd[pl.me]); fmt.Sprint(items) != fmt.Sprint(want) {
				t.Errorf("%s's table holds %q, want %q", pl.me, items, want)
			}
		}
	})
}

// dynamicOutcome is what PostgreSQL answers, per tenant as in the attempts,
// for the attempts whose dynamic form differs from the plain one, by the
// start of their text.
// None of these is an escape: resetting to the session's own role or setting
// stratum.* on the backend changes nothing PostgreSQL decides by (row-level
// security keys on the session user), and the rows checked after each attempt
// prove it.
var dynamicOutcome = map[string][3]string{
	"RESET ROLE":                               {"", "", ""},
	"RESET SESSION AUTHORIZATION":              {"", "", ""},
	"SELECT set_config('stratum.tenant'":       {"", "", ""},
	"SET stratum.tenant_id":                    {"", "", ""},
	"DISCARD ALL":                              {"25001", "25001", "25001"}, // not from a function
	"COPY (SELECT item FROM orders) TO STDOUT": {"0A000", "0A000", "0A000"}, // not to the client from PL/pgSQL
}

func dynamicWant(q string) ([3]string, bool) {
	for prefix, d := range dynamicOutcome {
		if strings.HasPrefix(q, prefix) {
			return d, true
		}
	}
	return [3]string{}, false
}

// checkOwnRows asserts the session sees exactly the rows want (in any
// order), which are the tenant's own.
func checkOwnRows(t *testing.T, ctx context.Context, c *pgx.Conn, me string, want []string, when string) {
	t.Helper()
	rows, err := c.Query(ctx, "SELECT item FROM orders ORDER BY item")
	if err != nil {
		t.Errorf("%s: tenant %s cannot read its rows: %v", when, me, err)
		return
	}
	items, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Errorf("%s: tenant %s cannot read its rows: %v", when, me, err)
		return
	}
	if fmt.Sprint(items) != fmt.Sprint(sorted(want)) {
		t.Errorf("%s: tenant %s sees %q, want exactly %q", when, me, items, sorted(want))
	}
}

// sorted returns a sorted copy of s.
func sorted(s []string) []string {
	return slices.Sorted(slices.Values(s))
}

// getTenant returns the catalog's tenant slug, failing the test when it
// cannot.
func getTenant(t *testing.T, ts *stacktest.Stack, slug string) *catalog.Tenant {
	t.Helper()
	tn, err := ts.Catalog.GetTenant(context.Background(), slug)
	if err != nil {
		t.Fatalf("getting tenant %s: %v", slug, err)
	}
	return tn
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
	gamma := getTenant(t, ts, "client_gamma")
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
	gamma := getTenant(t, ts, "client_gamma")
	if _, err := ts.SrvConn(t, gamma.Database).Exec(ctx, "GRANT SELECT ON pg_catalog.pg_stats TO PUBLIC"); err != nil {
		t.Fatal(err)
	}
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

// TestStartupHandsAppTablesToTenants checks that a start (PrepareShared) hands
// the app's tables in schema and database tenants' placements, left owned by
// the admin user by older versions, to the tenant's role, so that schema apply
// (which runs as the tenant) can alter them, and that apply then works.
func TestStartupHandsAppTablesToTenants(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	owner := func(tn *catalog.Tenant) string {
		var o string
		err := ts.SrvConn(t, tn.Database).QueryRow(ctx, `SELECT c.relowner::regrole::text || ',' || s.relowner::regrole::text
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, pg_class s
			WHERE n.nspname = $1 AND c.relname = 'orders' AND s.relnamespace = n.oid AND s.relname = 'orders_id_seq'`, tn.Schema).Scan(&o)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	var old []*catalog.Tenant
	for _, slug := range []string{"client_beta", "client_gamma"} {
		tn := getTenant(t, ts, slug)
		old = append(old, tn)
		c := ts.SrvConn(t, tn.Database)
		// As an older version left it.
		if _, err := c.Exec(ctx, "ALTER TABLE "+tn.Schema+".orders OWNER TO CURRENT_USER"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, "GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA "+tn.Schema+" TO "+tn.RoleName); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA "+tn.Schema+" TO "+tn.RoleName); err != nil {
			t.Fatal(err)
		}
		if o := owner(tn); o == tn.RoleName+","+tn.RoleName {
			t.Fatalf("precondition: %s's orders still owned by %s", slug, o)
		}
		for _, st := range []string{
			"CREATE VIEW " + tn.Schema + ".app_view AS SELECT 1 AS x",
			"CREATE FUNCTION " + tn.Schema + ".app_fn(int) RETURNS int LANGUAGE sql AS 'SELECT $1'",
			"CREATE AGGREGATE " + tn.Schema + ".app_agg(int) (SFUNC = int4pl, STYPE = int)",
			"CREATE DOMAIN " + tn.Schema + ".app_dom AS int",
			"CREATE TYPE " + tn.Schema + ".app_enum AS ENUM ('a')",
		} {
			if _, err := c.Exec(ctx, st); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := ts.Provisioner.PrepareShared(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tn := range old {
		if o := owner(tn); o != tn.RoleName+","+tn.RoleName {
			t.Errorf("%s: orders and its sequence owned by %s, want %s", tn.Slug, o, tn.RoleName)
		}
		var others []string
		rows, err := ts.SrvConn(t, tn.Database).Query(ctx, `
			SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
				WHERE n.nspname = $1 AND c.relowner <> $2::regrole
			UNION ALL SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
				WHERE n.nspname = $1 AND p.proowner <> $2::regrole
			UNION ALL SELECT y.typname::text FROM pg_type y JOIN pg_namespace n ON n.oid = y.typnamespace
				WHERE n.nspname = $1 AND y.typowner <> $2::regrole`, tn.Schema, tn.RoleName)
		if err != nil {
			t.Fatal(err)
		}
		others, err = pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil || len(others) != 0 {
			t.Errorf("%s: still owned by someone else: %v %v", tn.Slug, others, err)
		}
	}
	rep, err := ts.Provisioner.ApplySchema(ctx, "ALTER TABLE orders ADD COLUMN note text;")
	if err != nil || rep.Failed() != 0 {
		t.Fatalf("apply after the hand-over: %+v %v", rep, err)
	}
	for _, slug := range []string{"client_beta", "client_gamma"} {
		c := stacktest.Connect(t, ts.URL("demo", "demo", slug, ""))
		if _, err := c.Exec(ctx, `INSERT INTO orders (item, note) VALUES ('x', 'y')`); err != nil {
			t.Errorf("%s: %v", slug, err)
		}
	}
}
