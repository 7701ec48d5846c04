package faults

// Fault injection: "nothing leaks, nothing crashes, nothing hangs". Every wait
// in this file has a deadline, so a proxy that stops answering fails a test
// instead of hanging it.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/stratum-hq/stratum-proxy/internal/backends"
	"github.com/stratum-hq/stratum-proxy/internal/pgtest"
	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
	"github.com/stratum-hq/stratum-proxy/server"
)

// fltConnect connects to url within 5s, without failing the test.
func fltConnect(url string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return pgx.Connect(ctx, url)
}

// fltClose closes c politely, bounded in time.
func fltClose(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c.Close(ctx)
}

// fltClearError reports whether err says plainly that the server or the
// connection went away: a PostgreSQL error of class 57 (operator
// intervention) or 08 (connection exception), or a connection-level error,
// and not a timeout (which means something hung).
func fltClearError(err error) bool {
	if err == nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	if code := stacktest.SQLState(err); code != "" {
		return strings.HasPrefix(code, "57") || strings.HasPrefix(code, "08")
	}
	return true
}

// fltReadFatal reads what the proxy sends on a client connection nobody else
// reads until a FATAL ErrorResponse, the connection's end or the deadline. It
// returns the FATAL (nil if none came) and when it arrived.
func fltReadFatal(c net.Conn, deadline time.Time) (*pgproto3.ErrorResponse, time.Time, error) {
	c.SetReadDeadline(deadline)
	defer c.SetReadDeadline(time.Time{})
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return nil, time.Now(), err
		}
		l := binary.BigEndian.Uint32(hdr[1:])
		if l < 4 || l > 1<<24 {
			return nil, time.Now(), fmt.Errorf("message %q with implausible length %d", hdr[0], l)
		}
		body := make([]byte, l-4)
		if _, err := io.ReadFull(c, body); err != nil {
			return nil, time.Now(), err
		}
		if hdr[0] != 'E' {
			continue
		}
		var er pgproto3.ErrorResponse
		if err := er.Decode(body); err != nil {
			return nil, time.Now(), err
		}
		if er.Severity == "FATAL" {
			return &er, time.Now(), nil
		}
	}
}

// fltExpectFatal checks the proxy ends the idle client session c with a FATAL
// ErrorResponse of SQLSTATE code by deadline, and returns when it came. The
// FATAL may already sit in pgconn's buffer (it came right behind a reply pgx
// read); then the next query returns it.
func fltExpectFatal(t *testing.T, who string, c *pgx.Conn, code string, deadline time.Time) time.Time {
	t.Helper()
	er, at, err := fltReadFatal(c.PgConn().Conn(), deadline)
	if er != nil {
		if er.Code != code {
			t.Errorf("%s: got FATAL %s %q, want SQLSTATE %s", who, er.Code, er.Message, code)
		}
		return at
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("%s: no FATAL %s and no close by the deadline", who, code)
		return at
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, qerr := c.Exec(ctx, "SELECT 1")
	if stacktest.SQLState(qerr) != code {
		t.Errorf("%s: connection closed (%v) without a FATAL %s; the next query says %v", who, err, code, qerr)
	}
	return at
}

// fltIdleInTx counts backends of role stuck idle in a transaction on the
// shared test server.
func fltIdleInTx(ts *stacktest.Stack, role string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, ts.Srv.URL("postgres"))
	if err != nil {
		return 0, err
	}
	defer c.Close(ctx)
	var n int
	err = c.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND state LIKE 'idle in transaction%'`, role).Scan(&n)
	return n, err
}

// fltNoIdleInTx waits up to 2s for role to have no backend idle in a
// transaction: a transaction whose client is gone must be rolled back.
func fltNoIdleInTx(t *testing.T, ts *stacktest.Stack, slug, when string) {
	t.Helper()
	tn, err := ts.Catalog.GetTenant(context.Background(), slug)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		n, err := fltIdleInTx(ts, tn.RoleName)
		if err == nil && n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: %d backend(s) of tenant %s still idle in a transaction after 2s (err %v)", when, n, slug, err)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFaultBackendRestart stops the backend cluster under load and starts it
// again: in-flight queries fail clearly and quickly, an idle session does not
// hang, and new sessions work right after the restart, the pool handing out
// no dead connections.
func TestFaultBackendRestart(t *testing.T) {
	srv := pgtest.Get(t)
	fc := pgtest.StartPrivate(t)
	tenants := []string{"client_alpha", "client_beta", "client_gamma"}
	for _, mode := range []string{"session", "transaction"} {
		t.Run(mode, func(t *testing.T) {
			ts := stacktest.StartOn(t, srv.URL(srv.NewDatabase(t, "cat")), fc.Backend(), func(sc *server.Config) {
				sc.Proxy.PoolMode = mode
				sc.Router.QueueTimeout = 5 * time.Second
				sc.Router.DialTimeout = 3 * time.Second
			})
			t.Cleanup(func() { fc.Start(t) }) // teardown needs the backend up
			idle := stacktest.Connect(t, ts.URL("demo", "demo", "client_alpha", ""))
			if n := stacktest.Count(t, idle, "SELECT 1"); n != 1 {
				t.Fatal("SELECT 1 on the idle session")
			}

			type worker struct {
				tenant string
				ok     atomic.Int64
				err    error
				errAt  time.Time
				done   chan struct{}
			}
			quit := make(chan struct{})
			workers := make([]*worker, 8)
			for i := range workers {
				w := &worker{tenant: tenants[i%len(tenants)], done: make(chan struct{})}
				workers[i] = w
				c, err := fltConnect(ts.URL("demo", "demo", w.tenant, ""))
				if err != nil {
					t.Fatalf("worker %d (%s): connecting: %v", i, w.tenant, err)
				}
				go func() {
					defer close(w.done)
					defer fltClose(c)
					for j := 0; ; j++ {
						select {
						case <-quit:
							return
						default:
						}
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						var err error
						switch j % 3 {
						case 0:
							_, err = c.Exec(ctx, `SELECT pg_sleep(0.01)`)
						case 1:
							_, err = c.Exec(ctx, `INSERT INTO orders (item) VALUES ($1)`, "load")
						default:
							_, err = c.Exec(ctx, `INSERT INTO orders (item) VALUES ('load'); SELECT pg_sleep(0.01)`)
						}
						cancel()
						if err != nil {
							w.err, w.errAt = err, time.Now()
							return
						}
						w.ok.Add(1)
					}
				}()
			}
			defer func() { // on an early failure too
				select {
				case <-quit:
				default:
					close(quit)
				}
				for _, w := range workers {
					select {
					case <-w.done:
					case <-time.After(15 * time.Second):
						t.Errorf("a %s worker still runs 15s after being told to stop", w.tenant)
					}
				}
			}()
			warm := time.Now().Add(15 * time.Second)
			for i, w := range workers {
				for w.ok.Load() < 3 {
					select {
					case <-w.done:
						t.Fatalf("worker %d (%s) failed before the restart: %v", i, w.tenant, w.err)
					case <-time.After(10 * time.Millisecond):
					}
					if time.Now().After(warm) {
						t.Fatalf("worker %d (%s) made %d queries in 15s", i, w.tenant, w.ok.Load())
					}
				}
			}

			stopAt := time.Now()
			fc.Stop(t)
			t.Logf("backend stopped in %v", time.Since(stopAt).Round(time.Millisecond))
			for i, w := range workers {
				select {
				case <-w.done:
				case <-time.After(time.Until(stopAt.Add(8 * time.Second))):
					t.Errorf("worker %d (%s): query still running 8s after the backend stopped (hang)", i, w.tenant)
					continue
				}
				took := w.errAt.Sub(stopAt)
				t.Logf("worker %d (%s): %d queries, then after %v: SQLSTATE %q %v", i, w.tenant, w.ok.Load(),
					took.Round(time.Millisecond), stacktest.SQLState(w.err), w.err)
				switch {
				case w.err == nil:
					t.Errorf("worker %d (%s): stopped without an error", i, w.tenant)
				case took < 0:
					t.Errorf("worker %d (%s): failed before the backend stopped: %v", i, w.tenant, w.err)
				case took > 5*time.Second:
					t.Errorf("worker %d (%s): in-flight query failed only after %v (want ≤ 5s): %v", i, w.tenant, took, w.err)
				case !fltClearError(w.err):
					t.Errorf("worker %d (%s): unclear error for a stopped backend: %v", i, w.tenant, w.err)
				}
			}

			fc.Start(t)
			back := time.Now()
			var attempts []string
			for {
				c, err := fltConnect(ts.URL("demo", "demo", "client_alpha", ""))
				if err == nil {
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					_, err = c.Exec(ctx, "SELECT 1")
					cancel()
					fltClose(c)
				}
				if err == nil {
					break
				}
				attempts = append(attempts, fmt.Sprintf("%v: %v", time.Since(back).Round(time.Millisecond), err))
				if time.Since(back) > 10*time.Second {
					t.Fatalf("no session works 10s after the backend came back; attempts:\n%s", strings.Join(attempts, "\n"))
				}
				time.Sleep(100 * time.Millisecond)
			}
			if took := time.Since(back); took > 2*time.Second {
				t.Errorf("first working session %v after the backend came back, want ≤ 2s; attempts:\n%s", took, strings.Join(attempts, "\n"))
			} else {
				t.Logf("first working session %v after the backend came back (%d failed attempts)", took.Round(time.Millisecond), len(attempts))
			}

			// The session that sat idle through the restart: works or fails clearly.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := idle.Exec(ctx, "SELECT 1")
			cancel()
			if err != nil && !fltClearError(err) {
				t.Errorf("session idle during the restart: unclear error or hang: %v", err)
			} else {
				t.Logf("session idle during the restart: next query: %v (SQLSTATE %q)", err, stacktest.SQLState(err))
			}

			// No dead connection handed out: 20 new sessions in a row work.
			for i := range 20 {
				tenant := tenants[i%len(tenants)]
				c, err := fltConnect(ts.URL("demo", "demo", tenant, ""))
				if err == nil {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					var n int
					err = c.QueryRow(ctx, `SELECT count(*) FROM orders WHERE item <> 'load'`).Scan(&n)
					if err == nil && n != 0 {
						err = fmt.Errorf("%d unexpected rows", n)
					}
					cancel()
					fltClose(c)
				}
				if err != nil {
					t.Errorf("session %d/20 after the restart (%s): %v", i+1, tenant, err)
				}
			}
		})
	}
}

// fltWaitStatus polls GET path until it answers want or the deadline passes.
func fltWaitStatus(t *testing.T, ts *stacktest.Stack, path string, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, body, err := ts.Admin(http.MethodGet, path, nil)
		if err == nil && st == want {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("GET %s: %d %s %v; want %d within %v", path, st, body, err, want, within)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fltSession connects as demo to tenant and runs a query, within 5s.
func fltSession(ts *stacktest.Stack, tenant string) error {
	c, err := fltConnect(ts.URL("demo", "demo", tenant, ""))
	if err != nil {
		return err
	}
	defer fltClose(c)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n int
	return c.QueryRow(ctx, `SELECT count(*) FROM orders`).Scan(&n)
}

// TestFaultCatalogDown puts the catalog on a cluster of its own and stops it:
// known tenants keep working from the router's cache, /readyz says 503, and
// once the catalog is back everything works without restarting the proxy.
func TestFaultCatalogDown(t *testing.T) {
	fc := pgtest.StartPrivate(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, fc.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE stratum_catalog"); err != nil {
		t.Fatal(err)
	}
	admin.Close(ctx)
	srv := pgtest.Get(t)
	ts := stacktest.StartOn(t, fc.URL("stratum_catalog"), backends.Backend{
		Host: srv.Host(), Port: srv.Port(), AdminUser: srv.SuperUser(), AdminPassword: srv.Password(), SSLMode: "disable"})
	t.Cleanup(func() { fc.Start(t) }) // teardown needs the catalog up

	known := []string{"client_alpha", "client_beta", "client_gamma"}
	for _, tenant := range known {
		if err := fltSession(ts, tenant); err != nil {
			t.Fatalf("%s before the outage: %v", tenant, err)
		}
	}
	held := stacktest.Connect(t, ts.URL("demo", "demo", "client_alpha", ""))
	if _, err := held.Exec(ctx, `INSERT INTO orders (item) VALUES ('before')`); err != nil {
		t.Fatal(err)
	}
	fltWaitStatus(t, ts, "/readyz", http.StatusOK, 5*time.Second)

	fc.Stop(t)
	down := time.Now()
	fltWaitStatus(t, ts, "/readyz", http.StatusServiceUnavailable, 5*time.Second)
	t.Logf("/readyz answered 503 %v after the catalog stopped", time.Since(down).Round(time.Millisecond))
	if n := stacktest.Count(t, held, `SELECT count(*) FROM orders`); n != 1 {
		t.Errorf("open session during the outage sees %d rows, want 1", n)
	}

	// Let the catalog listener notice the outage, as it would in production,
	// then open new sessions of tenants the proxy has already resolved.
	time.Sleep(1500 * time.Millisecond)
	for round := range 2 {
		for _, tenant := range known {
			start := time.Now()
			if err := fltSession(ts, tenant); err != nil {
				t.Errorf("catalog down %v: new session of known tenant %s (round %d) failed after %v: %v (SQLSTATE %q); "+
					"sessions of known tenants must keep working from the cache",
					time.Since(down).Round(time.Millisecond), tenant, round+1, time.Since(start).Round(time.Millisecond), err, stacktest.SQLState(err))
			}
		}
	}
	// A tenant never resolved cannot be served; it must fail quickly, not hang.
	start := time.Now()
	err = fltSession(ts, "apex_partners")
	t.Logf("catalog down: tenant never resolved: after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if err != nil && (errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second) {
		t.Errorf("catalog down: a session of an unresolved tenant hung: %v", err)
	}

	fc.Start(t)
	back := time.Now()
	var created string
	for i := 0; ; i++ {
		slug := fmt.Sprintf("client_delta%d", i)
		st, body, err := ts.Admin(http.MethodPost, "/v1/tenants",
			map[string]string{"slug": slug, "name": "Client Delta", "parent": "northstar_msp", "isolation": "schema"})
		if err == nil && st == http.StatusCreated {
			created = slug
			break
		}
		if time.Since(back) > 15*time.Second {
			t.Fatalf("no tenant created 15s after the catalog came back: last %d %s %v", st, body, err)
		}
		t.Logf("creating a tenant %v after recovery: %d %s %v", time.Since(back).Round(time.Millisecond), st, strings.TrimSpace(body), err)
		time.Sleep(200 * time.Millisecond)
	}
	if took := time.Since(back); took > 5*time.Second {
		t.Errorf("tenant creation worked only %v after the catalog came back, want within a few seconds", took)
	} else {
		t.Logf("tenant %s created %v after the catalog came back", created, took.Round(time.Millisecond))
	}
	fltWaitStatus(t, ts, "/readyz", http.StatusOK, 5*time.Second)
	for _, tenant := range append(known, "apex_partners", created) {
		if err := fltSession(ts, tenant); err != nil {
			t.Errorf("%s after the catalog came back: %v", tenant, err)
		}
	}
	c := stacktest.Connect(t, ts.URL("demo", "demo", created, ""))
	if _, err := c.Exec(ctx, `INSERT INTO orders (item) VALUES ('delta')`); err != nil {
		t.Errorf("new tenant: insert: %v", err)
	} else if n := stacktest.Count(t, c, `SELECT count(*) FROM orders`); n != 1 {
		t.Errorf("new tenant sees %d rows, want 1", n)
	}
}

// TestFaultClientVanishes closes a client's socket in the middle of a
// transaction: its work is rolled back, and the next session (with one backend
// per tenant, so it would reuse that one) starts clean.
func TestFaultClientVanishes(t *testing.T) {
	for _, mode := range []string{"session", "transaction"} {
		t.Run(mode, func(t *testing.T) {
			ts := stacktest.Start(t, func(sc *server.Config) {
				sc.Proxy.PoolMode = mode
				sc.Router.MaxConnsPerTenant = 1
				sc.Router.QueueTimeout = 5 * time.Second
			})
			for _, tenant := range []string{"client_alpha", "client_beta", "client_gamma"} {
				t.Run(tenant, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer cancel()
					c1 := stacktest.Connect(t, ts.URL("demo", "demo", tenant, ""))
					if _, err := c1.Exec(ctx, "BEGIN"); err != nil {
						t.Fatal(err)
					}
					if _, err := c1.Exec(ctx, `INSERT INTO orders (item) VALUES ('vanished')`); err != nil {
						t.Fatal(err)
					}
					gone := time.Now()
					c1.PgConn().Conn().Close() // no Terminate

					qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
					defer qcancel()
					c2, err := pgx.Connect(qctx, ts.URL("demo", "demo", tenant, ""))
					if err != nil {
						t.Fatalf("new session after the client vanished: %v", err)
					}
					defer fltClose(c2)
					var first *int64
					if err := c2.QueryRow(qctx, `SELECT txid_current_if_assigned()`).Scan(&first); err != nil {
						t.Fatalf("first query of the new session: %v", err)
					}
					if first != nil {
						t.Errorf("new session's first query runs in transaction %d: a dirty backend", *first)
					}
					tx, err := c2.Begin(qctx)
					if err != nil {
						t.Fatal(err)
					}
					var txid *int64
					var n int
					if err := tx.QueryRow(qctx, `SELECT txid_current_if_assigned()`).Scan(&txid); err != nil {
						t.Fatal(err)
					}
					if err := tx.QueryRow(qctx, `SELECT count(*) FROM orders WHERE item = 'vanished'`).Scan(&n); err != nil {
						t.Fatal(err)
					}
					if err := tx.Commit(qctx); err != nil {
						t.Fatal(err)
					}
					took := time.Since(gone)
					if txid != nil {
						t.Errorf("new session's transaction starts with transaction id %d assigned: a dirty backend", *txid)
					}
					if n != 0 {
						t.Errorf("the vanished client's uncommitted row is visible to a new session (%d rows)", n)
					}
					if took > 2*time.Second {
						t.Errorf("new session answered %v after the client vanished, want ≤ 2s", took)
					}
					t.Logf("clean new session %v after the client vanished", took.Round(time.Millisecond))
					fltNoIdleInTx(t, ts, tenant, "after the client vanished")

					// Vanishing while idle: the backend is reset and reused.
					c2.PgConn().Conn().Close()
					c3 := stacktest.Connect(t, ts.URL("demo", "demo", tenant, ""))
					if err := c3.QueryRow(qctx, `SELECT txid_current_if_assigned()`).Scan(&txid); err != nil || txid != nil {
						t.Errorf("after an idle client vanished: txid %v, %v", txid, err)
					}
					if n := stacktest.Count(t, c3, `SELECT count(*) FROM orders`); n != 0 {
						t.Errorf("tenant sees %d rows, want 0", n)
					}
				})
			}
		})
	}
}

// TestFaultSIGTERMGrace shuts the proxy down (what SIGTERM does) while one
// client is in a short transaction, one is idle and one holds a transaction
// open past the grace period.
func TestFaultSIGTERMGrace(t *testing.T) {
	const grace = 2 * time.Second
	for _, mode := range []string{"session", "transaction"} {
		t.Run(mode, func(t *testing.T) {
			ts := stacktest.Start(t, func(sc *server.Config) {
				sc.Proxy.PoolMode = mode
				sc.Proxy.ShutdownGrace = grace
			})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			a := stacktest.Connect(t, ts.URL("demo", "demo", "client_alpha", ""))
			b := stacktest.Connect(t, ts.URL("demo", "demo", "client_beta", ""))
			long := stacktest.Connect(t, ts.URL("demo", "demo", "client_alpha", ""))
			for _, step := range []struct {
				c   *pgx.Conn
				sql string
			}{
				{a, "BEGIN"}, {a, `INSERT INTO orders (item) VALUES ('graceA')`},
				{long, "BEGIN"}, {long, `INSERT INTO orders (item) VALUES ('graceC')`},
				{b, "SELECT 1"},
			} {
				if _, err := step.c.Exec(ctx, step.sql); err != nil {
					t.Fatalf("%s: %v", step.sql, err)
				}
			}

			shutAt := time.Now()
			shutDone := make(chan struct{})
			go func() {
				sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer scancel()
				ts.Proxy.Shutdown(sctx)
				close(shutDone)
			}()

			// B, idle: FATAL 57P01 right away.
			at := fltExpectFatal(t, "idle client", b, "57P01", shutAt.Add(2*time.Second))
			if d := at.Sub(shutAt); d > 500*time.Millisecond {
				t.Errorf("idle client closed %v after shutdown began, want promptly (≤ 500ms)", d)
			}

			// New connections are refused.
			cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
			nc, err := pgx.Connect(cctx, ts.URL("demo", "demo", "client_alpha", ""))
			ccancel()
			if err == nil {
				fltClose(nc)
				t.Error("a new connection was accepted during shutdown")
			} else if !errors.Is(err, syscall.ECONNREFUSED) && stacktest.SQLState(err) != "57P01" {
				t.Errorf("new connection during shutdown: %v; want connection refused or 57P01", err)
			}

			// A commits 300ms in, then is ended.
			time.Sleep(time.Until(shutAt.Add(300 * time.Millisecond)))
			if _, err := a.Exec(ctx, "COMMIT"); err != nil {
				t.Errorf("COMMIT of a transaction in progress at shutdown: %v", err)
			}
			at = fltExpectFatal(t, "client after COMMIT", a, "57P01", time.Now().Add(time.Second))
			t.Logf("client after COMMIT ended %v after shutdown began", at.Sub(shutAt).Round(time.Millisecond))

			// The long transaction is ended at the deadline.
			at = fltExpectFatal(t, "transaction past the grace", long, "57P01", shutAt.Add(grace+2*time.Second))
			if d := at.Sub(shutAt); d < grace-200*time.Millisecond || d > grace+time.Second {
				t.Errorf("transaction past the grace ended %v after shutdown began, want at the %v deadline", d, grace)
			} else {
				t.Logf("transaction past the grace ended %v after shutdown began", d.Round(time.Millisecond))
			}
			select {
			case <-shutDone:
				t.Logf("Shutdown returned after %v", time.Since(shutAt).Round(time.Millisecond))
			case <-time.After(time.Until(shutAt.Add(grace + 2*time.Second))):
				t.Errorf("Shutdown did not return within grace + 2s")
				select {
				case <-shutDone:
				case <-time.After(20 * time.Second):
					t.Fatalf("Shutdown hangs")
				}
			}
			if d := time.Since(shutAt); d > grace+2*time.Second {
				t.Errorf("Shutdown took %v, want ≤ %v", d, grace+2*time.Second)
			}

			direct := ts.SrvConn(t, ts.Router.Config().SharedDatabase)
			if n := stacktest.Count(t, direct, `SELECT count(*) FROM orders WHERE item = 'graceA'`); n != 1 {
				t.Errorf("committed row graceA: %d rows, want 1", n)
			}
			fltNoIdleInTx(t, ts, "client_alpha", "after shutdown")
			if n := stacktest.Count(t, direct, `SELECT count(*) FROM orders WHERE item = 'graceC'`); n != 0 {
				t.Errorf("row of the transaction ended at the deadline: %d rows, want 0 (rolled back)", n)
			}
		})
	}
}

// TestFaultSlowClient: a client that asks for a large result and never reads it
// blocks only itself; when it goes, its backend is not pooled dirty.
func TestFaultSlowClient(t *testing.T) {
	for _, mode := range []string{"session", "transaction"} {
		t.Run(mode, func(t *testing.T) {
			ts := stacktest.Start(t, func(sc *server.Config) {
				sc.Proxy.PoolMode = mode
				sc.Router.MaxConnsPerTenant = 3
				sc.Router.QueueTimeout = 5 * time.Second
			})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			pc, err := pgconn.Connect(ctx, ts.URL("demo", "demo", "client_alpha", ""))
			if err != nil {
				t.Fatal(err)
			}
			hj, err := pc.Hijack()
			if err != nil {
				t.Fatal(err)
			}
			slow := hj.Conn
			defer slow.Close()
			q, _ := (&pgproto3.Query{String: `SELECT repeat('x', 1000) FROM generate_series(1, 200000)`}).Encode(nil)
			slow.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := slow.Write(q); err != nil {
				t.Fatal(err)
			}

			direct := ts.SrvConn(t, "postgres")
			alpha, err := ts.Catalog.GetTenant(ctx, "client_alpha")
			if err != nil {
				t.Fatal(err)
			}
			const slowQuery = `SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND query LIKE 'SELECT repeat(%' AND pid <> pg_backend_pid()`
			// Precondition: the slow client's backend is stuck writing to the
			// proxy, which holds it because the client does not read. Without
			// it the rest of the test proves nothing.
			blocked := false
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				var n int
				if err := direct.QueryRow(ctx, slowQuery+` AND state = 'active' AND wait_event = 'ClientWrite'`, alpha.RoleName).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n > 0 {
					blocked = true
					break
				}
			}
			if !blocked {
				t.Fatal("precondition: the slow query's backend was not seen blocked on ClientWrite within 10s")
			}

			start := time.Now()
			tenants := []string{"client_alpha", "client_alpha", "client_beta", "client_gamma", "northstar_msp"}
			var wg sync.WaitGroup
			errs := make([]error, len(tenants))
			ends := make([]time.Duration, len(tenants))
			for i, tenant := range tenants {
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { ends[i] = time.Since(start) }()
					wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer wcancel()
					c, err := pgx.Connect(wctx, ts.URL("demo", "demo", tenant, ""))
					if err != nil {
						errs[i] = err
						return
					}
					defer fltClose(c)
					for j := range 50 {
						var err error
						switch j % 3 {
						case 0:
							var n int
							err = c.QueryRow(wctx, `SELECT count(*) FROM orders WHERE item = 'slow'`).Scan(&n)
						case 1:
							_, err = c.Exec(wctx, `SELECT 1`)
						default:
							_, err = c.Exec(wctx, `INSERT INTO orders (item) VALUES ($1)`, fmt.Sprintf("w%d", i))
						}
						if err != nil {
							errs[i] = fmt.Errorf("query %d: %w", j, err)
							return
						}
					}
				}()
			}
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				t.Fatal("other clients still running 15s in: blocked by the slow client")
			}
			for i, tenant := range tenants {
				if errs[i] != nil {
					t.Errorf("client %d (%s): %v", i, tenant, errs[i])
				}
				if ends[i] > 5*time.Second {
					t.Errorf("client %d (%s) needed %v for 50 queries, want ≤ 5s", i, tenant, ends[i])
				}
			}
			t.Logf("5 clients × 50 queries beside the slow client: %v", time.Since(start).Round(time.Millisecond))
			// The precondition held throughout: the slow client is still
			// blocking its own backend (a proxy that drained the result
			// instead would have finished the query by now).
			var stillBlocked int
			if err := direct.QueryRow(ctx, slowQuery+` AND state = 'active' AND wait_event = 'ClientWrite'`, alpha.RoleName).Scan(&stillBlocked); err != nil {
				t.Fatal(err)
			}
			if stillBlocked == 0 {
				t.Fatal("precondition: the slow query's backend is no longer blocked on ClientWrite after the other clients ran")
			}

			slow.Close()
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				var n int
				if err := direct.QueryRow(ctx, slowQuery, alpha.RoleName).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("the slow client's backend still exists 5s after the client closed")
					break
				}
			}
			for i := range 6 { // more than the tenant's 3 connections
				c, err := fltConnect(ts.URL("demo", "demo", "client_alpha", ""))
				if err != nil {
					t.Fatalf("session %d after the slow client left: %v", i, err)
				}
				var s string
				var txid *int64
				qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
				err = c.QueryRow(qctx, `SELECT 'clean', txid_current_if_assigned()`).Scan(&s, &txid)
				if err == nil && (s != "clean" || txid != nil) {
					err = fmt.Errorf("got %q, txid %v", s, txid)
				}
				var n int
				if err == nil {
					err = c.QueryRow(qctx, `SELECT count(*) FROM orders WHERE item = 'w0'`).Scan(&n)
					if err == nil && n != 16 {
						err = fmt.Errorf("%d rows of w0, want 16", n)
					}
				}
				qcancel()
				fltClose(c)
				if err != nil {
					t.Errorf("session %d of client_alpha after the slow client left: %v", i, err)
				}
			}
		})
	}
}
