package proxy

import (
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	. "github.com/stratum-hq/stratum-proxy/internal/pgfake"
)

// terminated is the FATAL a backend sends before it closes when
// pg_terminate_backend ends it.
var terminated = &pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "57P01",
	Message: "terminating connection due to administrator command"}

// A backend that ends the session with a FATAL of its own gets exactly that
// one to the client, then the close, as from PostgreSQL: no second FATAL of
// the proxy's. In transaction pooling this is a session inside a
// transaction (an idle one holds no backend).
func TestBackendFatalIsTheOnlyFatal(t *testing.T) {
	for _, mode := range []string{PoolSession, PoolTransaction} {
		t.Run(mode, func(t *testing.T) {
			h := newHarness(t, mode)
			h.be.Script(h.t1, NewScript(
				Query("BEGIN", "BEGIN", txInTx),
				Expect(query("SELECT 1")),
				Send(terminated),
				HangUp(),
			))
			h.start()
			c := h.connect("t1")
			c.send(query("BEGIN"))
			c.expect(complete("BEGIN"), ready(txInTx))
			c.send(query("SELECT 1"))
			c.expect(terminated)
			c.expectClosed()
			h.expectEvents("acquire t1 #1", "release t1 #1 close")
		})
	}
}

// A backend that goes away without a word (a crash, a network failure) is
// reported by the proxy's own FATAL (08006), once.
func TestBackendLostIsReportedByTheProxy(t *testing.T) {
	h := newHarness(t, PoolSession)
	h.be.Script(h.t1, NewScript(Expect(query("SELECT 1")), HangUp()))
	h.start()
	c := h.connect("t1")
	c.send(query("SELECT 1"))
	c.expectError("FATAL", codeConnectionFailure)
	c.expectClosed()
	h.expectEvents("acquire t1 #1", "release t1 #1 close")
}

// In session pooling the client is given its backend's process id (with a
// secret of the proxy's), so pg_backend_pid() and pg_terminate_backend agree
// with it; in transaction pooling the process id is the proxy's own.
func TestBackendKeyDataProcessID(t *testing.T) {
	for _, mode := range []string{PoolSession, PoolTransaction} {
		t.Run(mode, func(t *testing.T) {
			h := newHarness(t, mode)
			h.be.Script(h.t1, NewScript())
			h.start()
			c := h.connect("t1")
			if mode == PoolSession && c.pid != 1001 {
				t.Errorf("BackendKeyData process id %d, want the backend's, 1001", c.pid)
			}
			if mode == PoolTransaction && (c.pid < 1<<22 || c.pid >= 1<<31) {
				t.Errorf("BackendKeyData process id %d, want the proxy's own, above any real process id", c.pid)
			}
			if string(c.key) == string([]byte{0, 0, 0, 1}) {
				t.Errorf("BackendKeyData carries the backend's own secret")
			}
			c.send(&pgproto3.Terminate{})
			if mode == PoolSession {
				h.expectEvents("acquire t1 #1", "release t1 #1 reset")
			}
		})
	}
}

// Sessions on backends of different servers that share a process id get the
// same process id with different secrets, and each cancel key reaches only
// its own session's backend; a key with a wrong secret reaches none.
func TestCancelKeysWithASharedProcessID(t *testing.T) {
	h := newHarness(t, PoolSession)
	h.configured = func(c *Config) { c.knobs.dialCancel = h.be.DialCancel }
	h.be.SharePID(4242)
	h.be.Script(h.t1, NewScript(Query("SELECT 1", "SELECT 1", txIdle)))
	h.be.Script(h.t1, NewScript(Query("SELECT 1", "SELECT 1", txIdle)))
	h.start()
	c1 := h.connect("t1")
	h.expectEvents("acquire t1 #1")
	c2 := h.connect("t1")
	h.expectEvents("acquire t1 #2")
	// A round trip each: the session has attached its backend (a cancel
	// that comes between the client's first ReadyForQuery and that has no
	// query to cancel, and is not forwarded).
	for _, c := range []*client{c1, c2} {
		c.send(query("SELECT 1"))
		c.expect(complete("SELECT 1"), ready(txIdle))
	}
	if c1.pid != 4242 || c2.pid != 4242 {
		t.Fatalf("process ids %d and %d, want the backends' 4242", c1.pid, c2.pid)
	}
	if string(c1.key) == string(c2.key) {
		t.Fatalf("two sessions with process id %d got the same secret %x", c1.pid, c1.key)
	}
	sendCancel := func(pid uint32, key []byte) {
		t.Helper()
		cc, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		req, _ := (&pgproto3.CancelRequest{ProcessID: pid, SecretKey: key}).Encode(nil)
		if _, err := cc.Write(req); err != nil {
			t.Fatal(err)
		}
		// The proxy closes the connection once it handled the request.
		var b [1]byte
		cc.Read(b[:])
	}
	wrong := append([]byte(nil), c1.key...)
	wrong[0] ^= 0xff
	sendCancel(c1.pid, wrong)
	sendCancel(c2.pid, c2.key)
	h.expectEvents("cancel t1 #2")
	sendCancel(c1.pid, c1.key)
	h.expectEvents("cancel t1 #1")
	c1.send(&pgproto3.Terminate{})
	c2.send(&pgproto3.Terminate{})
	h.expectEventsAnyOrder("release t1 #1 reset", "release t1 #2 reset")
}

// A notification names its sender as the receiving client knows it: the
// session's own backend by the session's process id, another session's
// backend by the process id that session's client was given, and an unknown
// sender (here one the router knows nothing of) by its own.
func TestNotificationSenderAsTheClientKnowsIt(t *testing.T) {
	note := func(pid uint32, payload string) *pgproto3.NotificationResponse {
		return &pgproto3.NotificationResponse{PID: pid, Channel: "c", Payload: payload}
	}

	t.Run(PoolTransaction, func(t *testing.T) {
		h := newHarness(t, PoolTransaction)
		// #1 serves c2's open transaction; #2 serves c1's query, which
		// brings notifications from #2 itself, from #1 and from process 7.
		h.be.Script(h.t1, NewScript(Query("BEGIN", "BEGIN", txInTx)))
		h.be.Script(h.t1, NewScript(Expect(query("SELECT 1")), Send(
			note(1002, "own"), note(1001, "other session"), note(7, "unknown"),
			complete("SELECT 1"), ready(txIdle))))
		h.start()
		c1 := h.connect("t1")
		c2 := h.connect("t1")
		c2.send(query("BEGIN"))
		c2.expect(complete("BEGIN"), ready(txInTx))
		h.expectEvents("acquire t1 #1")
		c1.send(query("SELECT 1"))
		c1.expect(note(c1.pid, "own"), note(c2.pid, "other session"), note(7, "unknown"),
			complete("SELECT 1"), ready(txIdle))
		h.expectEvents("acquire t1 #2", "release t1 #2 keep")
		c1.send(&pgproto3.Terminate{})
		c2.send(&pgproto3.Terminate{})
		h.expectEvents("release t1 #1 close")
	})

	// In session pooling, after a tenant switch the session's backend is
	// another than the one whose process id the client was given.
	t.Run(PoolSession+" after a switch", func(t *testing.T) {
		h := newHarness(t, PoolSession)
		h.be.Script(h.t1, NewScript())
		h.be.Script(h.t2, NewScript(Expect(query("SELECT 1")), Send(
			note(1002, "own"), complete("SELECT 1"), ready(txIdle))))
		h.start()
		c := h.connect("t1")
		c.send(query("SET stratum.tenant = 't2'"))
		c.expect(complete("SET"), ready(txIdle))
		c.send(query("SELECT 1"))
		c.expect(note(1001, "own"), complete("SELECT 1"), ready(txIdle))
		c.send(&pgproto3.Terminate{})
		h.expectEventsAnyOrder("acquire t1 #1", "release t1 #1 close", "acquire t2 #2")
		h.expectEvents("release t2 #2 reset")
	})
}

// The proxy's own process ids lie above every process id Linux gives out
// (2^22), so pg_terminate_backend of one never reaches a real backend, and
// below 2^31, as clients read them as signed.
func TestProxyPIDNeverARealProcessID(t *testing.T) {
	for range 10000 {
		if pid := proxyPID(); pid < 1<<22 || pid >= 1<<31 {
			t.Fatalf("proxyPID() = %d, want within [2^22, 2^31)", pid)
		}
	}
}
