package protocol

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
	"github.com/stratum-hq/stratum-proxy/provision"
)

// TestProtocolBackendPID checks the process id a client is given
// (BackendKeyData) against what PostgreSQL does on a direct connection, in
// both pool modes, on database tenants (the ones that may LISTEN):
//
//   - session pooling: it is the backend's, so it equals pg_backend_pid(),
//     and pg_terminate_backend of it from another session ends this one;
//     transaction pooling: it is the proxy's own (no backend is the session's);
//   - a notification names its sender as the clients know it: the client's
//     own by its process id, another client's by that client's;
//   - a CancelRequest with the client's key cancels its query.
func TestProtocolBackendPID(t *testing.T) {
	ts := stacktest.Start(t) // session pooling; gamma_tx pools by transaction
	ctx := context.Background()
	if _, err := ts.Provisioner.CreateTenant(ctx, provision.TenantSpec{Slug: "gamma_tx", Parent: "apex_partners",
		Isolation: "database", PoolMode: "transaction"}); err != nil {
		t.Fatal(err)
	}
	exec := func(t *testing.T, c *pgx.Conn, sql string) {
		t.Helper()
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := c.Exec(qctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	backendPID := func(t *testing.T, c *pgx.Conn) uint32 {
		t.Helper()
		return uint32(stacktest.Count(t, c, `SELECT pg_backend_pid()`))
	}

	for _, tc := range []struct{ mode, tenant string }{
		{"session", "client_gamma"},
		{"transaction", "gamma_tx"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			url := ts.URL("demo", "demo", tc.tenant, "")

			t.Run("process id", func(t *testing.T) {
				c := stacktest.Connect(t, url)
				pid, backend := c.PgConn().PID(), backendPID(t, c)
				if tc.mode == "session" && pid != backend {
					t.Errorf("client's process id %d, pg_backend_pid() %d: want the same, as on a direct connection", pid, backend)
				}
				if tc.mode == "transaction" && pid == backend {
					t.Errorf("client's process id %d is its backend's in transaction pooling", pid)
				}
			})

			t.Run("notifications name their senders as the clients know them", func(t *testing.T) {
				listener := stacktest.Connect(t, url)
				other := stacktest.Connect(t, url)
				exec(t, listener, "LISTEN pid_test")
				exec(t, listener, "NOTIFY pid_test, 'self'")
				exec(t, other, "NOTIFY pid_test, 'other'")
				want := map[string]uint32{"self": listener.PgConn().PID(), "other": other.PgConn().PID()}
				for range 2 {
					wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					n, err := listener.WaitForNotification(wctx)
					cancel()
					if err != nil {
						t.Fatalf("waiting for a notification: %v", err)
					}
					if n.PID != want[n.Payload] {
						t.Errorf("notification %q names sender %d, want %d, the process id its sender's client was given",
							n.Payload, n.PID, want[n.Payload])
					}
				}
			})

			t.Run("cancel request", func(t *testing.T) {
				c := stacktest.Connect(t, url)
				done := make(chan error, 1)
				go func() {
					_, err := c.Exec(ctx, `SELECT pg_sleep(30)`)
					done <- err
				}()
				sc := ts.SrvConn(t, "postgres")
				deadline := time.Now().Add(protoReplyTimeout)
				for stacktest.Count(t, sc, `SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = 'SELECT pg_sleep(30)'`) == 0 {
					if time.Now().After(deadline) {
						t.Fatal("the pg_sleep query never showed up as active")
					}
					time.Sleep(20 * time.Millisecond)
				}
				cctx, cancel := context.WithTimeout(ctx, protoReplyTimeout)
				defer cancel()
				if err := c.PgConn().CancelRequest(cctx); err != nil {
					t.Fatal(err)
				}
				select {
				case err := <-done:
					if stacktest.SQLState(err) != "57014" {
						t.Errorf("cancelled query: %v, want SQLSTATE 57014", err)
					}
				case <-time.After(3 * time.Second):
					t.Fatal("query not cancelled 3s after the cancel request")
				}
			})

			if tc.mode != "session" {
				return
			}
			t.Run("pg_terminate_backend of the client's process id", func(t *testing.T) {
				victim := stacktest.Connect(t, url)
				killer := stacktest.Connect(t, url)
				var ok bool
				if err := killer.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, victim.PgConn().PID()).Scan(&ok); err != nil || !ok {
					t.Fatalf("pg_terminate_backend(%d) from the tenant's other session: %v %v", victim.PgConn().PID(), ok, err)
				}
				qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				_, err := victim.Exec(qctx, "SELECT 1")
				if code := stacktest.SQLState(err); code != "57P01" {
					t.Errorf("the terminated session's next query: %v, want FATAL 57P01", err)
				}
			})
		})
	}
}
