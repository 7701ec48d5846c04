package isolation

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
	"github.com/stratum-hq/stratum-proxy/server"
)

// oidOf returns the OID of a function named as regprocedure text.
func oidOf(t *testing.T, c *pgx.Conn, fn string) uint32 {
	t.Helper()
	var oid uint32
	if err := c.QueryRow(context.Background(), "SELECT $1::regprocedure::oid", fn).Scan(&oid); err != nil {
		t.Fatalf("oid of %s: %v", fn, err)
	}
	return oid
}

// tryLock runs a pg_try_advisory_lock… call and returns its answer.
func tryLock(t *testing.T, c *pgx.Conn, call string) bool {
	t.Helper()
	var ok bool
	if err := c.QueryRow(context.Background(), "SELECT "+call).Scan(&ok); err != nil {
		t.Fatalf("%s: %v", call, err)
	}
	return ok
}

// TestAdvisoryLocksArePerTenant: a shared tenant takes advisory locks in every
// way a client can (plain, hidden in dynamic SQL, through the FunctionCall
// message, both key forms, shared and exclusive). Another session of the same
// tenant finds them held; another shared tenant and a schema tenant, in the
// same database, find the same keys free.
func TestAdvisoryLocksArePerTenant(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	conn := func(slug string) *pgx.Conn { return stacktest.Connect(t, ts.URL("demo", "demo", slug, "")) }
	alpha := conn("client_alpha")
	for _, q := range []string{
		"SELECT pg_advisory_lock(42)",
		stacktest.Hidden("SELECT pg_advisory_lock(1, 2)"),
		"SELECT pg_advisory_lock_shared(43)",
	} {
		if _, err := alpha.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if _, code := stacktest.CallFunction(t, alpha, oidOf(t, alpha, "stratum_advisory.pg_advisory_lock(bigint)"), "44"); code != "" {
		t.Fatalf("FunctionCall of the wrapper: %s", code)
	}
	held := []string{"pg_try_advisory_lock(42)", "pg_try_advisory_lock(1, 2)", "pg_try_advisory_lock(43)", "pg_try_advisory_lock(44)"}
	alpha2 := conn("client_alpha")
	for _, call := range held {
		if tryLock(t, alpha2, call) {
			t.Errorf("client_alpha's second session: %s succeeded; its own tenant holds the key", call)
		}
	}
	for _, slug := range []string{"acmesec", "client_beta"} {
		c := conn(slug)
		for _, call := range held {
			if !tryLock(t, c, call) {
				t.Errorf("%s: %s failed: client_alpha's lock is visible to it", slug, call)
			}
		}
	}
	if !tryLock(t, alpha, "pg_advisory_unlock(42)") {
		t.Fatal("client_alpha could not release its lock 42")
	}
	if !tryLock(t, alpha2, "pg_try_advisory_lock(42)") {
		t.Error("client_alpha's second session: lock 42 still taken after its holder released it")
	}
}

// TestPgCatalogAdvisoryLocksRefused: in the shared database, pg_catalog's
// advisory-lock functions, which would share one key space among all
// tenants, are refused with 42501 however they are reached: qualified, hidden
// in dynamic SQL, by OID through FunctionCall, and unqualified after the
// session drops the wrappers from its search_path (fail closed). No lock of
// those keys exists afterwards. A database tenant, alone in its database,
// keeps them.
func TestPgCatalogAdvisoryLocksRefused(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	for _, slug := range []string{"client_alpha", "client_beta"} {
		c := stacktest.Connect(t, ts.URL("demo", "demo", slug, ""))
		for _, q := range []string{
			"SELECT pg_catalog.pg_advisory_lock(42)",
			"SELECT pg_catalog.pg_advisory_lock(1, 2)",
			"SELECT pg_catalog.pg_try_advisory_lock_shared(42)",
			"SELECT pg_catalog.pg_advisory_xact_lock(42)",
			"SELECT pg_catalog.pg_try_advisory_xact_lock(1, 2)",
			"SELECT pg_catalog.pg_advisory_unlock(42)",
			"SELECT pg_catalog.pg_advisory_unlock_shared(1, 2)",
		} {
			for _, form := range []string{q, stacktest.Hidden(q)} {
				// A lock the refusal failed to stop would make the next
				// tenant wait: time out rather than hang.
				qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := c.Exec(qctx, form)
				cancel()
				if stacktest.SQLState(err) != "42501" {
					t.Errorf("%s: %s: %v, want 42501", slug, form, err)
				}
			}
		}
		if _, code := stacktest.CallFunction(t, c, oidOf(t, c, "pg_catalog.pg_advisory_lock(bigint)"), "42"); code != "42501" {
			t.Errorf("%s: FunctionCall of pg_catalog.pg_advisory_lock: %q, want 42501", slug, code)
		}
		if _, err := c.Exec(ctx, "SET search_path = public"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, "SELECT pg_advisory_lock(42)"); stacktest.SQLState(err) != "42501" {
			t.Errorf("%s: with search_path public: %v, want 42501", slug, err)
		}
	}
	su := ts.SrvConn(t, ts.Router.Config().SharedDatabase)
	if n := stacktest.Count(t, su, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`); n != 0 {
		t.Errorf("%d advisory locks in the shared database, want none", n)
	}
	gamma := stacktest.Connect(t, ts.URL("demo", "demo", "client_gamma", ""))
	if !tryLock(t, gamma, "pg_catalog.pg_try_advisory_lock(42)") {
		t.Error("client_gamma: pg_catalog.pg_try_advisory_lock(42) failed in its own database")
	}
}

// TestHiddenSessionLockStaysWithItsSession: in transaction pooling, a session
// advisory lock taken where the proxy cannot read it (through the FunctionCall
// message, or in dynamic SQL) must stay with the session that took it, never
// on an idle pooled backend that another client of the tenant then gets, and
// be gone once that session ends.
func TestHiddenSessionLockStaysWithItsSession(t *testing.T) {
	ts := stacktest.Start(t, func(c *server.Config) { c.Proxy.PoolMode = "transaction" })
	cases := []struct {
		name, slug, fn, sql string
	}{
		{"FunctionCall shared", "client_alpha", "stratum_advisory.pg_advisory_lock(bigint)", ""},
		{"FunctionCall database", "client_gamma", "pg_catalog.pg_advisory_lock(bigint)", ""},
		{"dynamic SQL shared", "client_alpha", "", stacktest.Hidden("SELECT pg_advisory_lock(77)")},
		{"dynamic SQL try shared", "client_alpha", "", stacktest.Hidden("SELECT pg_try_advisory_lock(77)")},
		{"dynamic SQL schema", "client_beta", "", stacktest.Hidden("SELECT pg_advisory_lock_shared(77)")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			holder := stacktest.Connect(t, ts.URL("demo", "demo", tc.slug, ""))
			if tc.fn != "" {
				if _, code := stacktest.CallFunction(t, holder, oidOf(t, holder, tc.fn), "77"); code != "" {
					t.Fatalf("FunctionCall: %s", code)
				}
			} else if _, err := holder.Exec(context.Background(), tc.sql); err != nil {
				t.Fatal(err)
			}
			other := stacktest.Connect(t, ts.URL("demo", "demo", tc.slug, ""))
			for i := 0; i < 10; i++ {
				if tryLock(t, other, "pg_try_advisory_xact_lock(77)") {
					t.Fatalf("another client got lock 77 (attempt %d): the holder's backend was pooled with its lock", i)
				}
			}
			holder.Close(context.Background())
			deadline := time.Now().Add(10 * time.Second)
			for !tryLock(t, other, "pg_try_advisory_xact_lock(77)") {
				if time.Now().After(deadline) {
					t.Fatal("lock 77 still held after its session ended")
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// TestLockViewsAreClosed: no tenant (shared, schema, database) can watch
// other sessions lock and wait: pg_locks and the functions behind it, and
// pg_stat_activity, are refused with 42501, plainly and in dynamic SQL.
func TestLockViewsAreClosed(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	for _, slug := range []string{"client_alpha", "client_beta", "client_gamma"} {
		c := stacktest.Connect(t, ts.URL("demo", "demo", slug, ""))
		for _, q := range []string{
			"SELECT count(*) FROM pg_locks",
			"SELECT count(*) FROM pg_lock_status()",
			"SELECT pg_blocking_pids(pg_backend_pid())",
			"SELECT pg_safe_snapshot_blocking_pids(pg_backend_pid())",
			"SELECT pg_isolation_test_session_is_blocked(pg_backend_pid(), '{}')",
			"SELECT count(*) FROM pg_stat_activity",
		} {
			for _, form := range []string{q, stacktest.Hidden(q)} {
				if _, err := runCollect(ctx, c, form); stacktest.SQLState(err) != "42501" {
					t.Errorf("%s: %s: %v, want 42501", slug, form, err)
				}
			}
		}
	}
}
