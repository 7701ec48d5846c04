package policy

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
)

// Read-only, no-writes and no-DDL enforced by PostgreSQL: a session logs in
// to its backend as the tenant's role of the policy's access level (_r, _w
// or the full role), so SQL the proxy's guard cannot read is refused by
// PostgreSQL's privileges all the same.

// runSQLSchema is an app-schema version with a function that EXECUTEs its
// argument: an ordinary app function (SECURITY INVOKER) through which any
// statement reaches PostgreSQL as a plain SELECT to the guard.
const runSQLSchema = `CREATE FUNCTION run_sql(q text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE q; END $$;`

// hidden is stmt sent so that no text check can read it: decoded from base64
// and EXECUTEd by run_sql, in what the guard sees as a SELECT. (DO blocks
// carry the same trick, but the guard refuses every DO of a restricted
// tenant, so they would never reach PostgreSQL; wrappedDO is that form.)
func hidden(stmt string) string {
	b := base64.StdEncoding.EncodeToString([]byte(stmt))
	return "SELECT run_sql(pg_catalog.convert_from(pg_catalog.decode('" + b + "', 'base64'), 'UTF8'))"
}

// wrappedDO is stmt in a DO block that EXECUTEs it from base64.
func wrappedDO(stmt string) string {
	b := base64.StdEncoding.EncodeToString([]byte(stmt))
	return "DO $w$ BEGIN EXECUTE pg_catalog.convert_from(pg_catalog.decode('" + b + "', 'base64'), 'UTF8'); END $w$"
}

// placementTenants are the demo tenants of each placement.
var placementTenants = []string{"client_alpha", "client_beta", "client_gamma"}

// placementStandIns makes a subtest's own stand-ins for placementTenants
// (standIns, named after tag) and returns their slugs.
func placementStandIns(t *testing.T, ts *stacktest.Stack, tag string) []string {
	t.Helper()
	s := standIns(t, ts, tag, "alpha", "beta", "gamma")
	return []string{s.alpha, s.beta, s.gamma}
}

// boundTenant is a tenant with a proxy user bound to it (no switch
// rights) and what it takes to look at its data directly.
type boundTenant struct {
	tn   *catalog.Tenant
	user string
	// su is a superuser connection to the tenant's database: an
	// unrestricted path that bypasses the proxy and row-level security.
	su *pgx.Conn
}

// table is the tenant's orders table, qualified, for su.
func (b *boundTenant) table() string { return pgx.Identifier{b.tn.Schema, "orders"}.Sanitize() }

// connect opens a session of the bound user through the proxy.
func (b *boundTenant) connect(t *testing.T, ts *stacktest.Stack) *pgx.Conn {
	t.Helper()
	return stacktest.Connect(t, ts.URL(b.user, "bound-pw", b.tn.Slug, ""))
}

// applyRunSQL applies runSQLSchema to every placement of the stack; tenants
// made after it get it when they are created. bindTenants needs it.
func applyRunSQL(t *testing.T, ts *stacktest.Stack) {
	t.Helper()
	if rep, err := ts.Provisioner.ApplySchema(context.Background(), runSQLSchema); err != nil || rep.Failed() != 0 {
		t.Fatalf("applying run_sql: %+v %v", rep, err)
	}
}

// bindTenants makes a bound user for each slug (whose placement has
// runSQLSchema: applyRunSQL).
func bindTenants(t *testing.T, ts *stacktest.Stack, slugs ...string) []*boundTenant {
	t.Helper()
	ctx := context.Background()
	var out []*boundTenant
	for _, slug := range slugs {
		tn, err := ts.Catalog.GetTenant(ctx, slug)
		if err != nil {
			t.Fatal(err)
		}
		user := "bound_" + slug
		if _, err := ts.Catalog.CreateUser(ctx, user, "bound-pw", slug, false); err != nil {
			t.Fatal(err)
		}
		out = append(out, &boundTenant{tn: tn, user: user, su: ts.SrvConn(t, tn.Database)})
	}
	return out
}

// snapshot is what a refused write must leave unchanged: the tenant's rows
// and the sequence, large objects and tables of its database.
func (b *boundTenant) snapshot(t *testing.T) string {
	t.Helper()
	var s string
	err := b.su.QueryRow(context.Background(), `SELECT concat_ws(' ',
		(SELECT count(*) FROM `+b.table()+` WHERE tenant_id = $1::uuid),
		(SELECT coalesce(string_agg(item, ',' ORDER BY id), '') FROM `+b.table()+` WHERE tenant_id = $1::uuid),
		(SELECT last_value FROM `+pgx.Identifier{b.tn.Schema, "orders_id_seq"}.Sanitize()+`),
		(SELECT count(*) FROM pg_catalog.pg_largeobject_metadata),
		(SELECT coalesce(string_agg(md5(data), ','), '') FROM pg_catalog.pg_largeobject),
		(SELECT count(*) FROM pg_catalog.pg_class WHERE relnamespace = $2::regnamespace))`,
		b.tn.ID, b.tn.Schema).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// wantCode runs sql (simple protocol) and fails unless it ends with one of
// codes, or succeeds when no code is given.
func wantCode(t *testing.T, c *pgx.Conn, sql string, codes ...string) error {
	t.Helper()
	_, err := c.Exec(context.Background(), sql, pgx.QueryExecModeSimpleProtocol)
	if len(codes) == 0 {
		if err != nil {
			t.Errorf("%s: %v, want success", sql, err)
		}
		return err
	}
	got := stacktest.SQLState(err)
	for _, code := range codes {
		if got == code {
			return err
		}
	}
	t.Errorf("%s: %v, want SQLSTATE %v", sql, err, codes)
	return err
}

// waitRole waits until a session of the tenant runs as role (the policy
// change has reached it).
func waitRole(t *testing.T, c *pgx.Conn, role string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var cur, sess string
		err := c.QueryRow(context.Background(), "SELECT current_user, session_user", pgx.QueryExecModeSimpleProtocol).Scan(&cur, &sess)
		if err != nil {
			t.Fatal(err)
		}
		if cur == role && sess == role {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("current_user %s, session_user %s after 15s, want %s", cur, sess, role)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readOnlyWrites are writes a read-only role must not get through, each
// with a statement that must fail as its own statement (no transaction
// around it); %LO% is a large object the full role made.
var readOnlyWrites = []string{
	"INSERT INTO orders (item) VALUES ('escaped')",
	"UPDATE orders SET item = 'escaped'",
	"DELETE FROM orders",
	"TRUNCATE orders",
	"SELECT pg_catalog.nextval('orders_id_seq')",
	"SELECT pg_catalog.setval('orders_id_seq', 100000)",
	"SELECT * FROM orders FOR UPDATE",
	"SELECT pg_catalog.lo_from_bytea(0, '\\x6576696c'::bytea)",
	"SELECT pg_catalog.lo_create(0)",
	"SELECT pg_catalog.lo_put(%LO%, 0, '\\x6576696c'::bytea)",
	"SELECT pg_catalog.lo_unlink(%LO%)",
	"CREATE TABLE escaped (x int)",
	"ALTER TABLE orders ADD COLUMN escaped int",
	"DROP TABLE orders",
}

// testReadOnlyEnforcedByPostgres: for each placement and pool mode, with
// proxy.read_only and with sql.write denied, every write sent where the guard
// cannot read it is refused by PostgreSQL (42501, or 25006 from the
// read-only default) and the data is unchanged; the plain forms still get
// the guard's friendly error; the session runs as the tenant's _r role.
func testReadOnlyEnforcedByPostgres(t *testing.T, ts *stacktest.Stack) {
	ctx := context.Background()
	for _, b := range bindTenants(t, ts, placementStandIns(t, ts, "rolesro")...) {
		for _, how := range []string{"proxy.read_only", "sql.write"} {
			t.Run(b.tn.Isolation+"/"+how, func(t *testing.T) {
				c := b.connect(t, ts)
				waitRole(t, c, b.tn.RoleName) // the previous case lifted its policy
				var lo string
				if err := c.QueryRow(ctx, "SELECT pg_catalog.lo_from_bytea(0, '\\x676f6f64'::bytea)::text", pgx.QueryExecModeSimpleProtocol).Scan(&lo); err != nil {
					t.Fatal(err)
				}
				waitSQL(t, c, "INSERT INTO orders (item) VALUES ('before')", "")
				path := "/v1/tenants/" + b.tn.Slug + "/config/proxy.read_only"
				body := map[string]any{"value": true}
				if how == "sql.write" {
					path = "/v1/tenants/" + b.tn.Slug + "/permissions/sql.write"
					body = map[string]any{"value": false, "mode": "LOCKED", "revocation": "CASCADE"}
				}
				ts.AdminWant(t, http.MethodPut, path, body, http.StatusOK)
				defer ts.AdminWant(t, http.MethodDelete, path, nil, http.StatusOK)
				waitRole(t, c, b.tn.RoleName+"_r")
				before := b.snapshot(t)

				for _, w := range readOnlyWrites {
					w = strings.ReplaceAll(w, "%LO%", lo)
					wantCode(t, c, hidden(w), "42501", "25006")
					// The classic escape: leave the read-only default, then write.
					wantCode(t, c, hidden("SET default_transaction_read_only = off"))
					wantCode(t, c, hidden(w), "42501")
					wantCode(t, c, wrappedDO(w), "42501", "25006")
				}
				// COPY FROM cannot run inside EXECUTE; PostgreSQL checks
				// INSERT for it, which the role lacks.
				if got := scalar(t, c, "SELECT pg_catalog.has_table_privilege('orders', 'INSERT')::text"); got != "false" {
					t.Errorf("the read-only role may INSERT (COPY FROM): %s", got)
				}
				if err := wantCode(t, c, "INSERT INTO orders (item) VALUES ('plain')", "25006"); err != nil &&
					!strings.Contains(err.Error(), "tenant") {
					t.Errorf("a plain INSERT got %v, want the guard's error naming the tenant", err)
				}
				if after := b.snapshot(t); after != before {
					t.Errorf("data changed under read-only:\n before %s\n after  %s", before, after)
				}
				if n := stacktest.Count(t, c, "SELECT count(*) FROM orders"); n == 0 {
					t.Error("the read-only session reads nothing")
				}
			})
		}
	}
}

// testNoDDLEnforcedByPostgres: with sql.ddl denied, DDL the guard cannot read
// is refused by PostgreSQL (42501) while writes work; the session runs as
// the tenant's _w role.
func testNoDDLEnforcedByPostgres(t *testing.T, ts *stacktest.Stack) {
	for _, b := range bindTenants(t, ts, placementStandIns(t, ts, "rolesddl")...) {
		t.Run(b.tn.Isolation, func(t *testing.T) {
			c := b.connect(t, ts)
			path := "/v1/tenants/" + b.tn.Slug + "/permissions/sql.ddl"
			ts.AdminWant(t, http.MethodPut, path, map[string]any{"value": false, "mode": "LOCKED", "revocation": "CASCADE"}, http.StatusOK)
			defer ts.AdminWant(t, http.MethodDelete, path, nil, http.StatusOK)
			waitRole(t, c, b.tn.RoleName+"_w")
			for _, ddl := range []string{
				"CREATE TABLE escaped (x int)",
				"ALTER TABLE orders ADD COLUMN escaped int",
				"DROP TABLE orders",
				"CREATE INDEX ON orders (item)",
				"CREATE FUNCTION escaped() RETURNS int LANGUAGE sql AS 'SELECT 1'",
			} {
				wantCode(t, c, hidden(ddl), "42501")
				wantCode(t, c, wrappedDO(ddl), "42501")
			}
			wantCode(t, c, "CREATE TABLE plain (x int)", "42501")
			for _, w := range []string{
				"INSERT INTO orders (item) VALUES ('dml works')",
				"UPDATE orders SET quantity = 2 WHERE item = 'dml works'",
				"SELECT pg_catalog.nextval('orders_id_seq')",
				"DELETE FROM orders WHERE item = 'nothing'",
			} {
				if _, err := c.Exec(context.Background(), hidden(w), pgx.QueryExecModeSimpleProtocol); err != nil {
					t.Errorf("%s under no-DDL: %v", w, err)
				}
			}
			if n := stacktest.Count(t, b.su, "SELECT count(*) FROM "+b.table()+" WHERE item = 'dml works' AND quantity = 2"); n != 1 {
				t.Errorf("the write under no-DDL left %d rows, want 1", n)
			}
		})
	}
}

// testPreStagedEscapesRefused: the full role, while it has full rights, can
// neither grant its tables to others (PUBLIC, its own _r role) nor change
// default privileges nor leave a SECURITY DEFINER routine behind, nor hand a
// table to a group its _r role is in; plain and wrapped. Afterwards, under
// read-only, nothing it tried opens a write.
func testPreStagedEscapesRefused(t *testing.T, ts *stacktest.Stack) {
	ctx := context.Background()
	dep, err := ts.Catalog.DeploymentID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bindTenants(t, ts, placementStandIns(t, ts, "prestaged")...) {
		t.Run(b.tn.Isolation, func(t *testing.T) {
			c := b.connect(t, ts)
			waitRole(t, c, b.tn.RoleName)
			r := pgx.Identifier{b.tn.RoleName + "_r"}.Sanitize()
			escapes := []string{
				"GRANT INSERT, UPDATE, DELETE ON orders TO PUBLIC",
				"GRANT INSERT ON orders TO " + r,
				"GRANT USAGE ON SEQUENCE orders_id_seq TO " + r,
				"REVOKE SELECT ON orders FROM " + r,
				"ALTER DEFAULT PRIVILEGES GRANT INSERT ON TABLES TO PUBLIC",
				"ALTER DEFAULT PRIVILEGES GRANT INSERT ON TABLES TO " + r,
				"CREATE FUNCTION escape_definer() RETURNS void LANGUAGE sql SECURITY DEFINER AS $$ INSERT INTO orders (item) VALUES ('definer') $$",
				"CREATE PROCEDURE escape_proc() LANGUAGE sql SECURITY DEFINER AS $$ INSERT INTO orders (item) VALUES ('definer') $$",
				"ALTER FUNCTION run_sql(text) SECURITY DEFINER",
				"CREATE OR REPLACE FUNCTION run_sql(q text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN EXECUTE q; END $$",
				// The new owner must be a role the full role is in, with
				// CREATE on the schema: the groups are refused that.
				"ALTER TABLE orders OWNER TO " + pgx.Identifier{"stratum_" + dep + "_schema"}.Sanitize(),
				"ALTER TABLE orders OWNER TO " + pgx.Identifier{"stratum_" + dep + "_lo_write"}.Sanitize(),
				"ALTER TABLE orders OWNER TO " + r,
			}
			for _, e := range escapes {
				wantCode(t, c, e, "42501")
				wantCode(t, c, wrappedDO(e), "42501")
				wantCode(t, c, hidden(e), "42501")
			}
			var definers int
			if err := b.su.QueryRow(ctx, `SELECT count(*) FROM pg_catalog.pg_proc WHERE prosecdef
				AND pronamespace = $1::regnamespace`, b.tn.Schema).Scan(&definers); err != nil || definers != 0 {
				t.Errorf("SECURITY DEFINER routines in the tenant's schema: %d %v", definers, err)
			}
			var lo string
			if err := c.QueryRow(ctx, "SELECT pg_catalog.lo_from_bytea(0, '\\x00'::bytea)::text", pgx.QueryExecModeSimpleProtocol).Scan(&lo); err != nil {
				t.Fatal(err)
			}
			wantCode(t, c, "GRANT UPDATE ON LARGE OBJECT "+lo+" TO PUBLIC", "42501")

			path := "/v1/tenants/" + b.tn.Slug + "/config/proxy.read_only"
			ts.AdminWant(t, http.MethodPut, path, map[string]any{"value": true}, http.StatusOK)
			defer ts.AdminWant(t, http.MethodDelete, path, nil, http.StatusOK)
			waitRole(t, c, b.tn.RoleName+"_r")
			before := b.snapshot(t)
			for _, w := range []string{
				"INSERT INTO orders (item) VALUES ('escaped')",
				"SELECT pg_catalog.nextval('orders_id_seq')",
				"SELECT pg_catalog.lo_put(" + lo + ", 0, '\\x01'::bytea)",
			} {
				wantCode(t, c, hidden("SET default_transaction_read_only = off"))
				wantCode(t, c, hidden(w), "42501")
			}
			if after := b.snapshot(t); after != before {
				t.Errorf("data changed under read-only:\n before %s\n after  %s", before, after)
			}
		})
	}
}

// testLiveSessionFollowsAccessLevel: a session-pooling session whose tenant
// becomes read-only runs its next transaction as the _r role (a hidden write
// fails) and keeps its prepared statements; when read-only is lifted it
// writes again, as the full role.
func testLiveSessionFollowsAccessLevel(t *testing.T, ts *stacktest.Stack) {
	ctx := context.Background()
	for _, b := range bindTenants(t, ts, placementStandIns(t, ts, "live")...) {
		t.Run(b.tn.Isolation, func(t *testing.T) {
			c := b.connect(t, ts)
			waitRole(t, c, b.tn.RoleName)
			if _, err := c.Prepare(ctx, "count_orders", "SELECT count(*) FROM orders WHERE item = $1"); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Exec(ctx, "SET application_name = 'live-session'", pgx.QueryExecModeSimpleProtocol); err != nil {
				t.Fatal(err)
			}
			wantCode(t, c, hidden("INSERT INTO orders (item) VALUES ('live')"))

			path := "/v1/tenants/" + b.tn.Slug + "/config/proxy.read_only"
			ts.AdminWant(t, http.MethodPut, path, map[string]any{"value": true}, http.StatusOK)
			waitRole(t, c, b.tn.RoleName+"_r")
			wantCode(t, c, hidden("SET default_transaction_read_only = off"))
			wantCode(t, c, hidden("INSERT INTO orders (item) VALUES ('escaped')"), "42501")
			var n int
			if err := c.QueryRow(ctx, "count_orders", "live").Scan(&n); err != nil || n != 1 {
				t.Errorf("the prepared statement after the move: %d %v, want 1", n, err)
			}
			if got := scalar(t, c, "SHOW application_name"); got != "live-session" {
				t.Errorf("application_name after the move: %s", got)
			}

			ts.AdminWant(t, http.MethodDelete, path, nil, http.StatusOK)
			waitRole(t, c, b.tn.RoleName)
			wantCode(t, c, hidden("INSERT INTO orders (item) VALUES ('live')"))
			if err := c.QueryRow(ctx, "count_orders", "live").Scan(&n); err != nil || n != 2 {
				t.Errorf("the prepared statement after the move back: %d %v, want 2", n, err)
			}
		})
	}
}

// testConfigOverrideStaysInItsSession: a tenant's session can change its own
// stratum.config.* settings (PostgreSQL cannot stop that; the README says
// so), but the change reaches neither another tenant nor a new session of
// the same tenant.
func testConfigOverrideStaysInItsSession(t *testing.T, ts *stacktest.Stack) {
	ctx := context.Background()
	own := standIns(t, ts, "override", "alpha", "beta")
	bs := bindTenants(t, ts, own.alpha, own.beta)
	for _, slug := range []string{own.northstar} {
		ts.AdminWant(t, http.MethodPut, "/v1/tenants/"+slug+"/config/region",
			map[string]any{"value": "eu", "locked": true}, http.StatusOK)
	}
	const show = "SELECT pg_catalog.current_setting('stratum.config.region', true)"
	a := bs[0].connect(t, ts)
	waitSQLValue(t, a, show, "eu")
	wantCode(t, a, hidden("SELECT pg_catalog.set_config('stratum.config.region', 'overridden', false)"))
	if got := scalar(t, a, show); got != "overridden" {
		t.Fatalf("the override in its own session: %s", got)
	}
	// Its backend goes back to the pool, to be handed to the next session.
	a.Close(ctx)
	for i := 0; i < 3; i++ {
		a2 := bs[0].connect(t, ts)
		if got := scalar(t, a2, show); got != "eu" {
			t.Errorf("a new session of the same tenant sees %s, want eu", got)
		}
		a2.Close(ctx)
	}
	if got := scalar(t, bs[1].connect(t, ts), show); got != "eu" {
		t.Errorf("another tenant sees %s, want eu", got)
	}
}

// waitSQLValue waits until sql returns want on c.
func waitSQLValue(t *testing.T, c *pgx.Conn, sql, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for got := scalar(t, c, sql); got != want; got = scalar(t, c, sql) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s after 15s, want %s", sql, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOlderTenantsGetAccessRoles: a deployment from before the access
// roles (no _w or _r roles, the isolation policy for the full group only,
// tenant_roles unique per tenant, no event trigger) is brought up to date by
// the start-up preparation: each tenant then reads as its _r role, which sees
// its rows and cannot write, and its full role cannot grant.
func TestOlderTenantsGetAccessRoles(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	dep, err := ts.Catalog.DeploymentID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	applyRunSQL(t, ts)
	bs := bindTenants(t, ts, placementTenants...)
	shared := bs[0].su // client_alpha: the shared database
	ident := func(s string) string { return pgx.Identifier{s}.Sanitize() }
	exec := func(c *pgx.Conn, sql string) {
		t.Helper()
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// Back to how an older version left things.
	exec(shared, "ALTER POLICY stratum_tenant_isolation ON public.orders TO "+ident("stratum_"+dep+"_shared"))
	exec(shared, `DELETE FROM stratum.tenant_roles WHERE role_name LIKE '%\_r' OR role_name LIKE '%\_w'`)
	exec(shared, "ALTER TABLE stratum.tenant_roles ADD CONSTRAINT tenant_roles_tenant_id_key UNIQUE (tenant_id)")
	for _, b := range bs {
		if b.tn.Isolation == catalog.IsolationDatabase {
			exec(b.su, "DROP EVENT TRIGGER stratum_refuse_privilege_changes")
		}
		for _, suffix := range []string{"_w", "_r"} {
			exec(b.su, "DROP OWNED BY "+ident(b.tn.RoleName+suffix))
			exec(shared, "DROP ROLE "+ident(b.tn.RoleName+suffix))
		}
	}
	if err := ts.Provisioner.PrepareShared(ctx); err != nil {
		t.Fatalf("start-up preparation: %v", err)
	}
	for _, b := range bs {
		t.Run(b.tn.Slug, func(t *testing.T) {
			c := b.connect(t, ts)
			waitRole(t, c, b.tn.RoleName)
			wantCode(t, c, hidden("INSERT INTO orders (item) VALUES ('upgraded')"))
			wantCode(t, c, hidden("GRANT INSERT ON orders TO PUBLIC"), "42501")
			path := "/v1/tenants/" + b.tn.Slug + "/config/proxy.read_only"
			ts.AdminWant(t, http.MethodPut, path, map[string]any{"value": true}, http.StatusOK)
			defer ts.AdminWant(t, http.MethodDelete, path, nil, http.StatusOK)
			waitRole(t, c, b.tn.RoleName+"_r")
			if n := stacktest.Count(t, c, "SELECT count(*) FROM orders WHERE item = 'upgraded'"); n != 1 {
				t.Errorf("the read-only role sees %d of the tenant's new rows, want 1", n)
			}
			wantCode(t, c, hidden("SET default_transaction_read_only = off"))
			wantCode(t, c, hidden("INSERT INTO orders (item) VALUES ('escaped')"), "42501")
			wantCode(t, c, hidden("SELECT pg_catalog.lo_create(0)"), "42501")
		})
	}
}
