package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/stratum-hq/stratum-proxy/internal/fakeclock"
	. "github.com/stratum-hq/stratum-proxy/internal/pgfake"
)

// A client's CancelRequest reaches the backend running its query, through
// the dialer in the knobs.
func TestCancelForwarded(t *testing.T) {
	h := newHarness(t, PoolSession)
	h.configured = func(c *Config) { c.knobs.dialCancel = h.be.DialCancel }
	running, cancelled := make(chan struct{}), make(chan struct{})
	canceledReply := &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "57014",
		Message: "canceling statement due to user request"}
	h.be.Script(h.t1, NewScript(
		Expect(query("SELECT pg_sleep(10)")),
		Func(func(*pgproto3.Backend) error { close(running); <-cancelled; return nil }),
		Send(canceledReply, ready(txIdle)),
	))
	h.start()
	var once sync.Once
	release := func() { once.Do(func() { close(cancelled) }) }
	t.Cleanup(release) // before the harness's: a failed test must not leave the script waiting
	c := h.connect("t1")
	h.expectEvents("acquire t1 #1")
	c.send(query("SELECT pg_sleep(10)"))
	// A cancel that comes before the query reaches the backend has nothing
	// to cancel, as with PostgreSQL; send it once the query runs.
	select {
	case <-running:
	case <-time.After(testWait):
		t.Fatal("the query did not reach the backend")
	}

	cc, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := (&pgproto3.CancelRequest{ProcessID: c.pid, SecretKey: c.key}).Encode(nil)
	if _, err := cc.Write(req); err != nil {
		t.Fatal(err)
	}
	cc.Close()
	h.expectEvents("cancel t1 #1")
	release()
	c.expect(canceledReply, ready(txIdle))
	c.send(&pgproto3.Terminate{})
	h.expectEvents("release t1 #1 reset")
}

// Failed authentications lock a source out for AuthLockout, measured on the
// clock in the knobs.
func TestAuthLockoutWindow(t *testing.T) {
	h := newHarness(t, PoolTransaction)
	clock := fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	h.configured = func(c *Config) {
		c.PoolMode = PoolTransaction
		c.AuthFailureThreshold, c.AuthFailureWindow, c.AuthLockout = 2, time.Minute, 5*time.Second
		c.knobs.now = clock.Now
	}
	h.start()
	login := func(password string) error {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		pc, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://app.t1:%s@%s/app?sslmode=disable", password, h.addr))
		if err == nil {
			pc.Close(ctx)
		}
		return err
	}
	code := func(err error) string {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return pe.Code
		}
		return fmt.Sprint(err)
	}
	for range 2 {
		if got := code(login("wrong")); got != codeInvalidPassword {
			t.Fatalf("wrong password: got %s, want %s", got, codeInvalidPassword)
		}
	}
	if got := code(login("secret")); got != codeInvalidAuthSpec {
		t.Fatalf("while locked out: got %s, want %s", got, codeInvalidAuthSpec)
	}
	clock.Advance(4 * time.Second)
	if got := code(login("secret")); got != codeInvalidAuthSpec {
		t.Fatalf("4s into a 5s lockout: got %s, want %s", got, codeInvalidAuthSpec)
	}
	clock.Advance(2 * time.Second)
	if err := login("secret"); err != nil {
		t.Fatalf("after the lockout: %v", err)
	}
}
