package policy

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
)

// The timeouts the proxy enforces at the protocol level, which a tenant's
// SQL cannot switch off: neither plainly nor hidden in dynamic SQL.

// setLimitAndWait sets a proxy.* key on root (the root of the test's
// tenants) with the platform key, then a marker setting after it, and waits
// until c's tenant sees the marker: catalog changes reach a proxy in order,
// so the key has reached it too.
func setLimitAndWait(t *testing.T, ts *stacktest.Stack, root string, c *pgx.Conn, key string, value any, marker string) {
	t.Helper()
	ts.AdminWant(t, http.MethodPut, "/v1/tenants/"+root+"/config/"+key, map[string]any{"value": value}, http.StatusOK)
	ts.AdminWant(t, http.MethodPut, "/v1/tenants/"+root+"/config/limits_marker", map[string]any{"value": marker}, http.StatusOK)
	waitSetting(t, c, "stratum.config.limits_marker", marker)
}

// testIdleInTransactionTimeoutFreesSharedTable: a shared tenant that takes an
// ACCESS EXCLUSIVE lock on the shared orders table and then sits idle in its
// transaction is ended by the proxy (FATAL 25P03) after
// proxy.idle_in_transaction_timeout, so another shared tenant's SELECT on the
// table completes; turning PostgreSQL's own idle timeout off first, plainly
// or in dynamic SQL, does not help.
func testIdleInTransactionTimeoutFreesSharedTable(t *testing.T, ts *stacktest.Stack) {
	const timeout = 300 * time.Millisecond
	own := standIns(t, ts, "idle", "acmesec", "alpha", "apex")
	probe := stacktest.Connect(t, ts.URL("demo", "demo", own.alpha, ""))
	setLimitAndWait(t, ts, own.acmesec, probe, "proxy.idle_in_transaction_timeout", "300ms", "idle")
	for _, off := range []struct{ name, sql string }{
		{"plain", "SET idle_in_transaction_session_timeout = 0"},
		{"dynamic", stacktest.Hidden("SET idle_in_transaction_session_timeout = 0")},
	} {
		t.Run(off.name, func(t *testing.T) {
			ctx := context.Background()
			a := stacktest.Connect(t, ts.URL("demo", "demo", own.alpha, ""))
			b := stacktest.Connect(t, ts.URL("demo", "demo", own.apex, ""))
			if _, err := a.Exec(ctx, off.sql, pgx.QueryExecModeSimpleProtocol); err != nil {
				t.Fatalf("%s: %v", off.sql, err)
			}
			if got := scalar(t, a, "SHOW idle_in_transaction_session_timeout"); got != "0" {
				t.Fatalf("idle_in_transaction_session_timeout = %s, want 0 (the escape took)", got)
			}
			if _, err := a.Exec(ctx, "BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE", pgx.QueryExecModeSimpleProtocol); err != nil {
				t.Fatalf("locking the shared table: %v", err)
			}
			start := time.Now()
			bctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			var n int
			if err := b.QueryRow(bctx, "SELECT count(*) FROM orders").Scan(&n); err != nil {
				t.Fatalf("%s' SELECT while %s held the lock: %v", own.apex, own.alpha, err)
			}
			took := time.Since(start)
			t.Logf("%s waited %s for the lock", own.apex, took)
			if took > timeout+3*time.Second {
				t.Errorf("%s waited %s, want about %s", own.apex, took, timeout)
			}
			_, err := a.Exec(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "25P03" || pe.Severity != "FATAL" {
				t.Fatalf("%s after idling in its transaction: %v, want FATAL 25P03", own.alpha, err)
			}
			t.Logf("%s got: %s", own.alpha, pe.Message)
		})
	}
	// A session that is idle outside a transaction is left alone, and
	// one that works in its transaction is not idle.
	c := stacktest.Connect(t, ts.URL("demo", "demo", own.alpha, ""))
	time.Sleep(2 * timeout)
	if _, err := c.Exec(context.Background(), "BEGIN", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("an idle session was ended: %v", err)
	}
	for range 4 {
		if _, err := c.Exec(context.Background(), "SELECT pg_sleep(0.1)", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("a transaction that keeps working was ended: %v", err)
		}
	}
	if _, err := c.Exec(context.Background(), "SELECT pg_sleep(0.5); COMMIT", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("a statement running longer than the idle timeout was ended: %v", err)
	}
}

// testStatementTimeoutEnforcedByProxy: under proxy.statement_timeout = 500ms
// a tenant that sets statement_timeout = 0 on its backend (plainly or in
// dynamic SQL) still has a long statement cancelled (57014), by the proxy's
// CancelRequest, within a few seconds.
func testStatementTimeoutEnforcedByProxy(t *testing.T, ts *stacktest.Stack) {
	own := standIns(t, ts, "stmt", "acmesec", "alpha")
	c := stacktest.Connect(t, ts.URL("demo", "demo", own.alpha, ""))
	setLimitAndWait(t, ts, own.acmesec, c, "proxy.statement_timeout", 500, "stmt")
	for _, off := range []struct{ name, sql string }{
		{"plain", "SET statement_timeout = 0"},
		{"dynamic", stacktest.Hidden("SET statement_timeout = 0")},
	} {
		t.Run(off.name, func(t *testing.T) {
			ctx := context.Background()
			c := stacktest.Connect(t, ts.URL("demo", "demo", own.alpha, ""))
			if _, err := c.Exec(ctx, off.sql, pgx.QueryExecModeSimpleProtocol); err != nil {
				t.Fatalf("%s: %v", off.sql, err)
			}
			if got := scalar(t, c, "SHOW statement_timeout"); got != "0" {
				t.Fatalf("statement_timeout = %s, want 0 (the escape took)", got)
			}
			qctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			start := time.Now()
			_, err := c.Exec(qctx, "SELECT pg_sleep(30)", pgx.QueryExecModeSimpleProtocol)
			took := time.Since(start)
			if stacktest.SQLState(err) != "57014" {
				t.Fatalf("pg_sleep(30) under proxy.statement_timeout 500ms: %v after %s, want 57014", err, took)
			}
			t.Logf("cancelled after %s", took)
			if took > 5*time.Second {
				t.Errorf("cancelled after %s, want within a few seconds", took)
			}
			// The session goes on.
			if got := scalar(t, c, "SELECT 'alive'"); got != "alive" {
				t.Errorf("after the cancel: %s", got)
			}
		})
	}
}
