package policy

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/internal/backends"
	"github.com/stratum-hq/stratum-proxy/internal/pgtest"
	"github.com/stratum-hq/stratum-proxy/internal/secrets"
	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
	"github.com/stratum-hq/stratum-proxy/server"
)

// waitSQL runs sql on c (simple protocol, so each attempt is checked anew)
// until its outcome is wantCode ("" for success), and reports how long that
// took. The catalog announces changes with NOTIFY, so this is normally a few
// milliseconds; the generous deadline keeps a loaded machine from failing
// the test, and the latency is logged, not asserted (speed belongs in benchmarks).
func waitSQL(t *testing.T, c *pgx.Conn, sql, wantCode string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		_, err := c.Exec(context.Background(), sql, pgx.QueryExecModeSimpleProtocol)
		if err != nil && stacktest.SQLState(err) == "" {
			t.Fatalf("%s: %v", sql, err)
		}
		if stacktest.SQLState(err) == wantCode {
			return time.Since(start)
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("%s: still %v after 15s, want SQLSTATE %q", sql, err, wantCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func scalar(t *testing.T, c *pgx.Conn, sql string) string {
	t.Helper()
	var s *string
	if err := c.QueryRow(context.Background(), sql, pgx.QueryExecModeSimpleProtocol).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	if s == nil {
		return "<null>"
	}
	return *s
}

// testConfigReachesSessions: proxy.* keys and plain config keys set through
// the admin API shape open sessions at their next transaction, resolved
// through the tenant tree, in both pool modes, without reconnecting.
func testConfigReachesSessions(t *testing.T, ts *stacktest.Stack) {
	ctx := context.Background()
	own := standIns(t, ts, "config", "acmesec", "alpha", "beta", "gamma")
	alpha := stacktest.Connect(t, ts.URL("demo", "demo", own.alpha, ""))
	beta := stacktest.Connect(t, ts.URL("demo", "demo", own.beta, ""))
	gamma := stacktest.Connect(t, ts.URL("demo", "demo", own.gamma, ""))
	const insert = "INSERT INTO orders (item) VALUES ('x')"
	for _, c := range []*pgx.Conn{alpha, beta, gamma} {
		waitSQL(t, c, insert, "")
	}
	// pgx caches this statement on the backend: later runs send only
	// Bind/Execute, which the proxy's text check never sees; PostgreSQL's
	// own read-only default must refuse them.
	if _, err := alpha.Exec(ctx, "INSERT INTO orders (item) VALUES ($1)", "cached"); err != nil {
		t.Fatal(err)
	}

	ts.AdminWant(t, http.MethodPut, "/v1/tenants/"+own.northstar+"/config/proxy.read_only",
		map[string]any{"value": true}, http.StatusOK)
	took := waitSQL(t, alpha, insert, "25006")
	t.Logf("read-only reached an open session after %s", took)
	waitSQL(t, beta, insert, "25006") // schema tenant under the same parent
	waitSQL(t, gamma, insert, "")     // another branch of the tree: unaffected
	waitSQL(t, alpha, "SELECT count(*) FROM orders", "")
	_, err := alpha.Exec(ctx, "INSERT INTO orders (item) VALUES ($1)", "cached")
	if stacktest.SQLState(err) != "25006" {
		t.Fatalf("cached prepared INSERT on a read-only tenant: %v, want 25006 from PostgreSQL", err)
	}
	for _, q := range []string{"BEGIN READ WRITE", "SET default_transaction_read_only = off",
		"SELECT set_config('default_transaction_read_only', 'off', false)", "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
		"CREATE TABLE escape_ro (x int)"} {
		if _, err := alpha.Exec(ctx, q, pgx.QueryExecModeSimpleProtocol); stacktest.SQLState(err) != "25006" {
			t.Errorf("%s on a read-only tenant: %v, want 25006", q, err)
		}
	}
	// RESET ALL alone passes, and the read-only default comes back
	// before the next statement.
	waitSQL(t, alpha, "RESET ALL", "")
	if got := scalar(t, alpha, "SHOW default_transaction_read_only"); got != "on" {
		t.Errorf("after RESET ALL, default_transaction_read_only = %s, want on", got)
	}

	ts.AdminWant(t, http.MethodDelete, "/v1/tenants/"+own.northstar+"/config/proxy.read_only", nil, http.StatusOK)
	waitSQL(t, alpha, insert, "")
	waitSQL(t, beta, insert, "")
	if _, err := alpha.Exec(ctx, "INSERT INTO orders (item) VALUES ($1)", "cached"); err != nil {
		t.Fatalf("cached INSERT after read-only was lifted: %v", err)
	}

	// statement_timeout from the root, through inheritance.
	ts.AdminWant(t, http.MethodPut, "/v1/tenants/"+own.acmesec+"/config/proxy.statement_timeout",
		map[string]any{"value": "150ms"}, http.StatusOK)
	waitSQL(t, alpha, "SELECT pg_sleep(1)", "57014")
	if got := scalar(t, gamma, "SHOW statement_timeout"); got != "150ms" {
		t.Errorf("%s statement_timeout = %s, want 150ms", own.gamma, got)
	}
	waitSQL(t, alpha, "RESET ALL", "")
	if got := scalar(t, alpha, "SHOW statement_timeout"); got != "150ms" {
		t.Errorf("after RESET ALL, statement_timeout = %s, want 150ms", got)
	}

	// Other keys are settings: inherited, overridden, strings unquoted.
	ts.AdminWant(t, http.MethodPut, "/v1/tenants/"+own.acmesec+"/config/max_users", map[string]any{"value": 1000}, http.StatusOK)
	ts.AdminWant(t, http.MethodPut, "/v1/tenants/"+own.alpha+"/config/max_users", map[string]any{"value": 500}, http.StatusOK)
	ts.AdminWant(t, http.MethodPut, "/v1/tenants/"+own.acmesec+"/config/region", map[string]any{"value": "eu", "locked": true}, http.StatusOK)
	ts.AdminWant(t, http.MethodPut, "/v1/tenants/"+own.acmesec+"/config/api_token",
		map[string]any{"value": "s3cr3t-token", "sensitive": true}, http.StatusOK)
	waitSetting(t, alpha, "stratum.config.max_users", "500")
	waitSetting(t, beta, "stratum.config.max_users", "1000")
	waitSetting(t, gamma, "stratum.config.region", "eu")
	if got := scalar(t, alpha, "SELECT current_setting('stratum.config.api_token', true)"); got != "<null>" && got != "" {
		t.Errorf("a sensitive value reached SQL: %q", got)
	}
	// A tenant cannot change its config from SQL.
	if _, err := alpha.Exec(ctx, "SET stratum.config.max_users = '9'", pgx.QueryExecModeSimpleProtocol); stacktest.SQLState(err) != "42501" {
		t.Errorf("SET stratum.config.max_users: %v, want 42501", err)
	}
}

func waitSetting(t *testing.T, c *pgx.Conn, name, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := scalar(t, c, "SELECT current_setting('"+name+"', true)")
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %q, want %q", name, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testPermissionsReachSessions: sql.write and sql.ddl policies are enforced
// for the tenant's sessions (25006 and 42501), inherited down the tree.
func testPermissionsReachSessions(t *testing.T, ts *stacktest.Stack) {
	own := standIns(t, ts, "perms", "alpha", "beta")
	alpha := stacktest.Connect(t, ts.URL("demo", "demo", own.alpha, ""))
	beta := stacktest.Connect(t, ts.URL("demo", "demo", own.beta, ""))
	waitSQL(t, beta, "CREATE TABLE ddl_ok (x int)", "")
	ts.AdminWant(t, http.MethodPut, "/v1/tenants/"+own.northstar+"/permissions/sql.ddl",
		map[string]any{"value": false, "mode": "LOCKED", "revocation": "CASCADE"}, http.StatusOK)
	waitSQL(t, beta, "CREATE TABLE ddl_refused (x int)", "42501")
	waitSQL(t, beta, "INSERT INTO orders (item) VALUES ('still writes')", "")
	ts.AdminWant(t, http.MethodPut, "/v1/tenants/"+own.alpha+"/permissions/sql.write",
		map[string]any{"value": false, "mode": "INHERITED", "revocation": "SOFT"}, http.StatusOK)
	waitSQL(t, alpha, "INSERT INTO orders (item) VALUES ('x')", "25006")
	waitSQL(t, alpha, "SELECT 1", "")
	ts.AdminWant(t, http.MethodDelete, "/v1/tenants/"+own.alpha+"/permissions/sql.write", nil, http.StatusOK)
	waitSQL(t, alpha, "INSERT INTO orders (item) VALUES ('x')", "")
	ts.AdminWant(t, http.MethodDelete, "/v1/tenants/"+own.northstar+"/permissions/sql.ddl", nil, http.StatusOK)
	waitSQL(t, beta, "CREATE TABLE ddl_again (x int)", "")
}

// TestMaxConnectionsFromConfig: proxy.max_connections limits the tenant's
// backend connections; a session beyond it waits and times out with 53300.
func TestMaxConnectionsFromConfig(t *testing.T) {
	ts := stacktest.Start(t, func(sc *server.Config) { sc.Router.QueueTimeout = 500 * time.Millisecond })
	ts.AdminWant(t, http.MethodPut, "/v1/tenants/client_beta/config/proxy.max_connections", map[string]any{"value": 1}, http.StatusOK)
	ctx := context.Background()
	deadline := time.Now().Add(15 * time.Second)
	for {
		a := stacktest.Connect(t, ts.URL("demo", "demo", "client_beta", ""))
		_, err := pgx.Connect(ctx, ts.URL("demo", "demo", "client_beta", ""))
		a.Close(ctx)
		if stacktest.SQLState(err) == "53300" {
			break
		}
		if err != nil {
			t.Fatalf("second session: %v, want 53300", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("a second session still got a backend connection 15s after proxy.max_connections = 1")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testSuspendEndsSessions: suspending a tenant refuses new sessions of its
// subtree and ends open ones at their next transaction boundary: an idle
// session at once, one inside a transaction when it ends.
func testSuspendEndsSessions(t *testing.T, ts *stacktest.Stack) {
	ctx := context.Background()
	own := standIns(t, ts, "suspend", "alpha", "beta", "gamma")
	idle := stacktest.Connect(t, ts.URL("demo", "demo", own.alpha, ""))
	busy := stacktest.Connect(t, ts.URL("demo", "demo", own.beta, ""))
	other := stacktest.Connect(t, ts.URL("demo", "demo", own.gamma, ""))
	if _, err := busy.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := busy.Exec(ctx, "INSERT INTO orders (item) VALUES ('in flight')"); err != nil {
		t.Fatal(err)
	}
	ts.AdminWant(t, http.MethodPost, "/v1/tenants/"+own.northstar+"/suspend", nil, http.StatusOK)

	// New sessions of the subtree are refused, naming the suspended ancestor.
	// A session still starting when the change arrived is admitted and
	// then ended by the sweep (57P01, naming it too); the next is refused.
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := pgx.Connect(ctx, ts.URL("demo", "demo", own.alpha, ""))
		if err != nil {
			code := stacktest.SQLState(err)
			if (code != "55000" && code != "57P01") || !strings.Contains(err.Error(), own.northstar) {
				t.Fatalf("connecting to a suspended subtree: %v, want 55000 naming %s", err, own.northstar)
			}
			if code == "55000" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("still connecting 15s after the suspension")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The open transaction finishes; the session ends after it.
	if _, err := busy.Exec(ctx, "INSERT INTO orders (item) VALUES ('still in flight')"); err != nil {
		t.Fatalf("statement inside the open transaction: %v", err)
	}
	if _, err := busy.Exec(ctx, "COMMIT"); err != nil {
		t.Fatalf("commit of the open transaction: %v", err)
	}
	for name, c := range map[string]*pgx.Conn{"idle": idle, "busy": busy} {
		deadline := time.Now().Add(15 * time.Second)
		for {
			_, err := c.Exec(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol)
			if err != nil {
				t.Logf("%s session ended: %v", name, err)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s session still works 15s after its tenant's parent was suspended", name)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if _, err := other.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("a session of another branch: %v", err)
	}
	// After resuming (announced by NOTIFY, so retried briefly), the
	// subtree works again and the committed transaction's rows are there.
	ts.AdminWant(t, http.MethodPost, "/v1/tenants/"+own.northstar+"/resume", nil, http.StatusOK)
	deadline = time.Now().Add(15 * time.Second)
	for {
		c, err := pgx.Connect(ctx, ts.URL("demo", "demo", own.beta, ""))
		if err == nil {
			defer c.Close(ctx)
			if n := stacktest.Count(t, c, "SELECT count(*) FROM orders WHERE item LIKE '%in flight'"); n != 2 {
				t.Errorf("%s has %d in-flight rows after resuming, want 2 (the transaction committed)", own.beta, n)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still refused 15s after resuming: %v", own.beta, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConfigReachesEveryProxy: two proxies share one catalog (replicas behind
// a load balancer); a change made through one's admin API reaches sessions
// of the other through the catalog's NOTIFY.
func TestConfigReachesEveryProxy(t *testing.T) {
	srv := pgtest.Get(t)
	catdb := srv.NewDatabase(t, "cat")
	backend := backends.Backend{Host: srv.Host(), Port: srv.Port(), AdminUser: srv.SuperUser(),
		AdminPassword: srv.Password(), SSLMode: "disable"}
	keys, err := secrets.NewKeyText("k1")
	if err != nil {
		t.Fatal(err)
	}
	a := stacktest.StartOn(t, srv.URL(catdb), backend, func(sc *server.Config) { sc.SecretKeys = keys })
	b := stacktest.StartOn(t, srv.URL(catdb), backend, func(sc *server.Config) {
		sc.SecretKeys = keys
		sc.Router.SharedDatabase = a.Router.Config().SharedDatabase
	})
	onB := stacktest.Connect(t, b.URL("demo", "demo", "client_alpha", ""))
	waitSQL(t, onB, "INSERT INTO orders (item) VALUES ('x')", "")
	a.AdminWant(t, http.MethodPut, "/v1/tenants/acmesec/config/proxy.read_only", map[string]any{"value": true}, http.StatusOK)
	took := waitSQL(t, onB, "INSERT INTO orders (item) VALUES ('x')", "25006")
	t.Logf("a change through proxy A reached a session on proxy B after %s", took)
	a.AdminWant(t, http.MethodPost, "/v1/tenants/northstar_msp/suspend", nil, http.StatusOK)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := onB.Exec(context.Background(), "SELECT 1"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a session on proxy B still works 15s after its tenant's parent was suspended through proxy A")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
