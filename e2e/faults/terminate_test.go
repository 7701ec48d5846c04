package faults

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
	"github.com/stratum-hq/stratum-proxy/provision"
)

// TestFaultBackendTerminated ends a session's backend with
// pg_terminate_backend, as an operator or PostgreSQL itself (an idle session
// timeout) can. A client holding that backend gets what a client connected to
// PostgreSQL directly gets: one FATAL 57P01, then the close, and nothing of
// the proxy's. In transaction pooling an idle client holds no backend: the
// pooled backend is dropped, the client notices nothing, and its next query
// runs on another.
func TestFaultBackendTerminated(t *testing.T) {
	ts := stacktest.Start(t) // session pooling; alpha_tx pools by transaction
	ctx := context.Background()
	if _, err := ts.Provisioner.CreateTenant(ctx, provision.TenantSpec{Slug: "alpha_tx", Parent: "acmesec",
		Isolation: "shared", PoolMode: "transaction"}); err != nil {
		t.Fatal(err)
	}
	admin := ts.SrvConn(t, "postgres")
	terminate := func(t *testing.T, pid uint32) {
		t.Helper()
		var ok bool
		if err := admin.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&ok); err != nil || !ok {
			t.Fatalf("pg_terminate_backend(%d): %v %v", pid, ok, err)
		}
	}
	// endOf connects (pgconn) to url, runs the setup statements and reads
	// the backend's pid, terminates that backend and describes everything
	// the client receives until the connection closes.
	endOf := func(t *testing.T, url string, setup ...string) []string {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		pc, err := pgconn.Connect(cctx, url)
		if err != nil {
			t.Fatal(err)
		}
		for _, sql := range setup {
			if err := pc.Exec(cctx, sql).Close(); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
		rows, err := pc.Exec(cctx, `SELECT pg_backend_pid()`).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		var pid uint32
		fmt.Sscan(string(rows[0].Rows[0][0]), &pid)
		hc, err := pc.Hijack()
		if err != nil {
			t.Fatal(err)
		}
		defer hc.Conn.Close()
		terminate(t, pid)
		return fltReadUntilClose(t, hc.Conn, hc.Frontend)
	}

	want := endOf(t, ts.Srv.URL("postgres"))
	if len(want) != 1 || !strings.HasPrefix(want[0], "ErrorResponse FATAL 57P01") {
		t.Fatalf("PostgreSQL itself sends %q on pg_terminate_backend; the test expects one FATAL 57P01", want)
	}
	for _, tc := range []struct {
		name, tenant string
		setup        []string
	}{
		{"session pooling", "client_alpha", nil},
		{"transaction pooling, in a transaction", "alpha_tx", []string{"BEGIN"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := endOf(t, ts.URL("demo", "demo", tc.tenant, ""), tc.setup...)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("the client of a terminated backend got\n\t%s\nwhere PostgreSQL sends\n\t%s",
					strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
			}
		})
	}

	t.Run("transaction pooling, idle", func(t *testing.T) {
		c := stacktest.Connect(t, ts.URL("demo", "demo", "alpha_tx", ""))
		pid := uint32(stacktest.Count(t, c, `SELECT pg_backend_pid()`))
		terminate(t, pid)
		// Gone from the server: its FATAL waits, unread, in the pooled
		// connection's socket.
		deadline := time.Now().Add(5 * time.Second)
		for stacktest.Count(t, admin, `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, pid) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("backend %d still there 5s after pg_terminate_backend", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
		raw := c.PgConn().Conn()
		raw.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		var b [1]byte
		if n, err := raw.Read(b[:]); n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the idle client got %d bytes (%v) when a pooled backend was terminated; want nothing", n, err)
		}
		raw.SetReadDeadline(time.Time{})
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var next uint32
		if err := c.QueryRow(qctx, `SELECT pg_backend_pid()`).Scan(&next); err != nil {
			t.Fatalf("the idle client's next query after its pooled backend was terminated: %v", err)
		}
		if next == pid {
			t.Errorf("the next query ran on the terminated backend %d", pid)
		}
	})
}

// fltReadUntilClose reads backend messages from c until it closes (5s at
// most) and describes each: its type, and for an ErrorResponse its
// severity, SQLSTATE and message.
func fltReadUntilClose(t *testing.T, c net.Conn, fe *pgproto3.Frontend) []string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []string
	for {
		m, err := fe.Receive()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("no close 5s after the backend was terminated; got %q", got)
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !strings.Contains(err.Error(), "reset") {
				t.Logf("connection ended with %v", err)
			}
			return got
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			got = append(got, fmt.Sprintf("ErrorResponse %s %s %s", e.Severity, e.Code, e.Message))
			continue
		}
		got = append(got, fmt.Sprintf("%T", m))
	}
}
