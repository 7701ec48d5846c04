package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/stratum-hq/stratum-proxy/internal/fakeclock"
	"github.com/stratum-hq/stratum-proxy/internal/scramverifier"
)

// scramFirst starts a SCRAM exchange as user and returns the salt and the
// iteration count the proxy's server-first message shows.
func scramFirst(t *testing.T, addr, user string) (salt, iters string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, testWait)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(testWait))
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": user, "database": "app"}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	msg, err := fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := msg.(*pgproto3.AuthenticationSASL); !ok {
		t.Fatalf("user %q: got %T, want AuthenticationSASL", user, msg)
	}
	fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: mechSCRAM, Data: []byte("n,,n=,r=clientnonce0123456789")})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	msg, err = fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	cont, ok := msg.(*pgproto3.AuthenticationSASLContinue)
	if !ok {
		t.Fatalf("user %q: got %T, want AuthenticationSASLContinue", user, msg)
	}
	for _, f := range strings.Split(string(cont.Data), ",") {
		switch {
		case strings.HasPrefix(f, "s="):
			salt = f[2:]
		case strings.HasPrefix(f, "i="):
			iters = f[2:]
		}
	}
	if salt == "" || iters == "" {
		t.Fatalf("user %q: server-first message %q lacks salt or iterations", user, cont.Data)
	}
	return salt, iters
}

// TestUnknownUserSaltIsStable: the SCRAM salt shown for an unknown user
// name is the same at every attempt (derived from the server's key and the
// name, as PostgreSQL's mock authentication does), differs between names,
// and comes with the iteration count a known user's verifier shows, so the
// server-first message does not tell unknown users from known ones.
func TestUnknownUserSaltIsStable(t *testing.T) {
	h := newHarness(t, PoolTransaction)
	// A user as the catalog makes them (proxytest's use fewer iterations).
	v, err := scramverifier.Make("known-secret")
	if err != nil {
		t.Fatal(err)
	}
	h.be.AddUser("known", "unused", h.root, false).Verifier = v
	h.start()
	s1, i1 := scramFirst(t, h.addr, "ghost")
	s2, i2 := scramFirst(t, h.addr, "ghost")
	if s1 != s2 {
		t.Errorf("two attempts as an unknown user saw salts %q and %q; want the same", s1, s2)
	}
	known1, knownIters := scramFirst(t, h.addr, "known")
	known2, _ := scramFirst(t, h.addr, "known")
	if known1 != known2 {
		t.Fatalf("a known user's salt changed between attempts: %q, %q", known1, known2)
	}
	if i1 != knownIters || i2 != knownIters || knownIters != fmt.Sprint(scramverifier.Iterations) {
		t.Errorf("iterations: unknown user %s and %s, known user %s; want all %d", i1, i2, knownIters, scramverifier.Iterations)
	}
	if other, _ := scramFirst(t, h.addr, "phantom"); other == s1 {
		t.Errorf("two unknown names share the salt %q; it should depend on the name", other)
	}
}

// TestAuthLockoutPerUser: failed logins lock out the (source, user) pair, not
// the source: another user behind the same address still logs in. A much
// higher per-source cap still stops one address spraying many names.
func TestAuthLockoutPerUser(t *testing.T) {
	h := newHarness(t, PoolTransaction)
	clock := fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	h.be.AddUser("other", "other-secret", h.root, false)
	h.configured = func(c *Config) {
		c.PoolMode = PoolTransaction
		c.AuthFailureThreshold, c.AuthSourceFailureThreshold = 2, 6
		c.AuthFailureWindow, c.AuthLockout = time.Minute, 5*time.Second
		c.knobs.now = clock.Now
	}
	h.start()
	login := func(user, password string) (string, string) {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		pc, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://%s:%s@%s/app?sslmode=disable", user, password, h.addr))
		if err == nil {
			pc.Close(ctx)
			return "", ""
		}
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return pe.Code, pe.Message
		}
		return fmt.Sprint(err), ""
	}
	for range 2 {
		if code, _ := login("app.t1", "wrong"); code != codeInvalidPassword {
			t.Fatalf("wrong password: got %s, want %s", code, codeInvalidPassword)
		}
	}
	if code, msg := login("app.t1", "secret"); code != codeInvalidAuthSpec || !strings.Contains(msg, `for user "app.t1"`) {
		t.Fatalf("app after 2 failures: got %s %q, want %s naming the user", code, msg, codeInvalidAuthSpec)
	}
	if code, _ := login("app.t2", "secret"); code != codeInvalidAuthSpec {
		t.Fatalf("app with another tenant suffix: got %s, want %s (one count per user)", code, codeInvalidAuthSpec)
	}
	if code, msg := login("other.t1", "other-secret"); code != "" {
		t.Fatalf("another user from the same address: %s %s; want a login", code, msg)
	}
	// An unknown name is counted like a known one, suffixes together.
	login("ghost.t1", "x")
	login("ghost.t2", "x")
	if code, _ := login("ghost.t1", "x"); code != codeInvalidAuthSpec {
		t.Fatalf("unknown name after 2 failures: got %s, want %s like a known user", code, codeInvalidAuthSpec)
	}
	// 4 failures from the address so far; 2 more names reach the cap of 6.
	login("spray1", "x")
	login("spray2", "x")
	if code, msg := login("other.t1", "other-secret"); code != codeInvalidAuthSpec || strings.Contains(msg, "for user") {
		t.Fatalf("after 6 failures from the address: got %s %q, want %s for the whole source", code, msg, codeInvalidAuthSpec)
	}
	clock.Advance(6 * time.Second)
	if code, msg := login("app.t1", "secret"); code != "" {
		t.Fatalf("after the lockout: %s %s", code, msg)
	}
}
