package proxy

import (
	"bytes"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stratum-hq/stratum-proxy/internal/backends"
	. "github.com/stratum-hq/stratum-proxy/internal/pgfake"
	"github.com/stratum-hq/stratum-proxy/internal/wire"
)

var intColumn = &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
	{Name: []byte("n"), DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1},
}}

// A simple Query goes to the backend as it is and every reply comes back, up
// to ReadyForQuery; at the end a session-pooling backend is reset and pooled.
func TestRelaySimpleQuery(t *testing.T) {
	h := newHarness(t, PoolSession)
	replies := []pgproto3.BackendMessage{intColumn, &pgproto3.DataRow{Values: [][]byte{[]byte("1")}}, complete("SELECT 1"), ready(txIdle)}
	h.be.Script(h.t1, NewScript(Expect(query("SELECT 1 AS n")), Send(replies...)))
	h.start()
	c := h.connect("t1")
	h.expectEvents("acquire t1 #1")
	c.send(query("SELECT 1 AS n"))
	c.expect(replies...)
	c.send(&pgproto3.Terminate{})
	h.expectEvents("release t1 #1 reset")
}

// An extended-protocol batch (Parse, Bind, Describe, Execute, Sync) goes to
// the backend message for message, and its replies come back in order.
func TestRelayExtendedBatch(t *testing.T) {
	h := newHarness(t, PoolSession)
	batch := []pgproto3.FrontendMessage{
		&pgproto3.Parse{Query: "SELECT $1::int AS n", ParameterOIDs: []uint32{23}},
		&pgproto3.Bind{Parameters: [][]byte{[]byte("42")}},
		&pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	}
	replies := []pgproto3.BackendMessage{&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, intColumn,
		&pgproto3.DataRow{Values: [][]byte{[]byte("42")}}, complete("SELECT 1"), ready(txIdle)}
	script := NewScript()
	for _, m := range batch {
		script.Add(Expect(m))
	}
	h.be.Script(h.t1, script.Add(Send(replies...)))
	h.start()
	c := h.connect("t1")
	h.expectEvents("acquire t1 #1")
	c.send(batch...)
	c.expect(replies...)
	c.send(&pgproto3.Terminate{})
	h.expectEvents("release t1 #1 reset")
}

// The pump forwards whatever the backend sends, asynchronous messages
// included, until and with ReadyForQuery.
func TestPumpForwardsUntilReadyForQuery(t *testing.T) {
	h := newHarness(t, PoolSession)
	replies := []pgproto3.BackendMessage{
		&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000", Message: "hello"},
		&pgproto3.ParameterStatus{Name: "TimeZone", Value: "Europe/Paris"},
		&pgproto3.NotificationResponse{PID: 7, Channel: "c", Payload: "p"},
		complete("DO"), ready(txIdle),
	}
	h.be.Script(h.t1, NewScript(Expect(query("DO $$ BEGIN END $$")), Send(replies...)))
	h.start()
	c := h.connect("t1")
	h.expectEvents("acquire t1 #1")
	c.send(query("DO $$ BEGIN END $$"))
	c.expect(replies...)
	c.send(&pgproto3.Terminate{})
	h.expectEvents("release t1 #1 reset")
}

// The pump drops a notification whose sender the router does not call a
// backend of the session's tenant, and forwards the tenant's own.
func TestPumpDropsForeignNotifications(t *testing.T) {
	h := newHarness(t, PoolSession)
	h.be.ForeignPID(8)
	own := &pgproto3.NotificationResponse{PID: 7, Channel: "c", Payload: "own"}
	h.be.Script(h.t1, NewScript(Expect(query("DO $$ BEGIN END $$")), Send(
		&pgproto3.NotificationResponse{PID: 8, Channel: "c", Payload: "foreign"},
		own, complete("DO"), ready(txIdle))))
	h.start()
	c := h.connect("t1")
	h.expectEvents("acquire t1 #1")
	c.send(query("DO $$ BEGIN END $$"))
	c.expect(own, complete("DO"), ready(txIdle))
	c.send(&pgproto3.Terminate{})
	h.expectEvents("release t1 #1 reset")
}

// The advisory-lock wrappers' notice is the proxy's (it pins the session in
// transaction pooling); the client never sees it, other notices it does.
func TestPumpDropsSessionLockNotice(t *testing.T) {
	h := newHarness(t, PoolSession)
	other := &pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000", Message: "hello"}
	h.be.Script(h.t1, NewScript(Expect(query("DO $$ BEGIN END $$")), Send(
		&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: backends.SessionLockNotice, Message: "session advisory lock taken"},
		other, complete("DO"), ready(txIdle))))
	h.start()
	c := h.connect("t1")
	h.expectEvents("acquire t1 #1")
	c.send(query("DO $$ BEGIN END $$"))
	c.expect(other, complete("DO"), ready(txIdle))
	c.send(&pgproto3.Terminate{})
	h.expectEvents("release t1 #1 reset")
}

// A ReadyForQuery nobody asked for means proxy and backend disagree about
// the protocol state: the session ends and the backend is closed, never pooled.
func TestPumpUnexpectedReadyForQueryEndsSession(t *testing.T) {
	h := newHarness(t, PoolSession)
	h.be.Script(h.t1, NewScript(Send(ready(txIdle))))
	h.start()
	c := h.connect("t1")
	h.expectEvents("acquire t1 #1")
	c.expectError("FATAL", codeProtocolViolation)
	c.expectClosed()
	h.expectEvents("release t1 #1 close")
}

// Transaction pooling hands the backend back at ReadyForQuery(idle) and keeps
// it while a transaction is open.
func TestTransactionPoolingReleasesAtIdle(t *testing.T) {
	h := newHarness(t, PoolTransaction)
	h.be.Script(h.t1, NewScript(
		Query("SELECT 1", "SELECT 1", txIdle),
		Query("BEGIN", "BEGIN", txInTx),
		Query("SELECT 2", "SELECT 1", txInTx),
		Query("COMMIT", "COMMIT", txIdle),
	))
	h.start()
	c := h.connect("t1")
	c.send(query("SELECT 1"))
	c.expect(complete("SELECT 1"), ready(txIdle))
	h.expectEvents("acquire t1 #1", "release t1 #1 keep")
	c.send(query("BEGIN"))
	c.expect(complete("BEGIN"), ready(txInTx))
	c.send(query("SELECT 2"))
	c.expect(complete("SELECT 1"), ready(txInTx))
	c.send(query("COMMIT"))
	c.expect(complete("COMMIT"), ready(txIdle))
	// One acquire for the whole transaction: a release inside it would show
	// as a release and a second acquire before this one.
	h.expectEvents("acquire t1 #1", "release t1 #1 keep")
	c.send(&pgproto3.Terminate{})
}

// An extended-protocol batch without its Sync yet keeps the backend, even
// when the ReadyForQuery of an earlier Query says idle.
func TestTransactionPoolingHoldsBackendUntilSync(t *testing.T) {
	h := newHarness(t, PoolTransaction)
	batch := []pgproto3.FrontendMessage{
		&pgproto3.Parse{Query: "SELECT 1"},
		&pgproto3.Bind{},
		&pgproto3.Execute{},
		&pgproto3.Flush{},
	}
	script := NewScript(Expect(query("SELECT 1")))
	for _, m := range batch {
		script.Add(Expect(m))
	}
	h.be.Script(h.t1, script.Add(
		Send(complete("SELECT 1"), ready(txIdle), &pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, complete("SELECT 1")),
		Expect(&pgproto3.Sync{}),
		Send(ready(txIdle)),
	))
	h.start()
	c := h.connect("t1")
	c.send(append([]pgproto3.FrontendMessage{query("SELECT 1")}, batch...)...)
	c.expect(complete("SELECT 1"), ready(txIdle), &pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, complete("SELECT 1"))
	c.send(&pgproto3.Sync{})
	c.expect(ready(txIdle))
	h.expectEvents("acquire t1 #1", "release t1 #1 keep")
	c.send(&pgproto3.Terminate{})
}

// In transaction pooling, a statement that leaves state in the backend's
// session pins the session to its backend until the session ends; then the
// backend is reset before it is pooled.
func TestTransactionPoolingPinsSessionState(t *testing.T) {
	for _, tc := range []struct {
		name, sql, tag, isolation string
	}{
		{"prepare", "PREPARE s AS SELECT 1", "PREPARE", ""},
		{"temporary table", "CREATE TEMP TABLE x (a int)", "CREATE TABLE", ""},
		{"advisory lock", "SELECT pg_advisory_lock(1)", "SELECT 1", ""},
		{"cursor with hold", "DECLARE c CURSOR WITH HOLD FOR SELECT 1", "DECLARE CURSOR", ""},
		{"listen", "LISTEN c", "LISTEN", "database"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, PoolTransaction)
			if tc.isolation != "" {
				h.t1.Tenant.Isolation = tc.isolation
			}
			h.be.Script(h.t1, NewScript(Query(tc.sql, tc.tag, txIdle), Query("SELECT 1", "SELECT 1", txIdle)))
			h.start()
			c := h.connect("t1")
			c.send(query(tc.sql))
			c.expect(complete(tc.tag), ready(txIdle))
			c.send(query("SELECT 1"))
			c.expect(complete("SELECT 1"), ready(txIdle))
			c.send(&pgproto3.Terminate{})
			h.expectEvents("acquire t1 #1", "release t1 #1 reset")
		})
	}
}

// SET stratum.tenant outside a transaction hands the backend back and
// attaches the session to the other tenant's; RESET goes back. In session
// pooling the client was given the first backend's process id, so that one
// is closed rather than pooled (takeBackendPID); later ones are pooled.
func TestTenantSwitch(t *testing.T) {
	h := newHarness(t, PoolSession)
	h.be.Script(h.t1, NewScript(Query("SELECT 1", "SELECT 1", txIdle)))
	h.be.Script(h.t2, NewScript(Query("SELECT 2", "SELECT 1", txIdle)))
	h.be.Script(h.t1, NewScript(Query("SELECT 3", "SELECT 1", txIdle)))
	h.start()
	c := h.connect("t1")
	h.expectEvents("acquire t1 #1")
	c.send(query("SELECT 1"))
	c.expect(complete("SELECT 1"), ready(txIdle))

	c.send(query("SET stratum.tenant = 't2'"))
	c.expect(complete("SET"), ready(txIdle))
	h.expectEventsAnyOrder("release t1 #1 close", "acquire t2 #2")
	c.send(query("SELECT 2"))
	c.expect(complete("SELECT 1"), ready(txIdle))

	c.send(query("RESET stratum.tenant"))
	c.expect(complete("SET"), ready(txIdle))
	h.expectEventsAnyOrder("release t2 #2 reset", "acquire t1 #3")
	c.send(query("SELECT 3"))
	c.expect(complete("SELECT 1"), ready(txIdle))
	c.send(&pgproto3.Terminate{})
	h.expectEvents("release t1 #3 reset")
}

// In transaction pooling the backend is back in its pool before the client
// can read the ReadyForQuery that ends its transaction, so that a query sent
// on reading it (by this client or another of the tenant) finds it idle.
func TestTransactionPoolingReleasesBeforeReadyForQuery(t *testing.T) {
	h := newHarness(t, PoolTransaction)
	h.be.Script(h.t1, NewScript(Query("SELECT 1", "SELECT 1", txIdle)))
	h.start()
	c := h.connect("t1")
	resume := h.be.HoldReleases()
	defer resume()
	c.send(query("SELECT 1"))
	var buf []byte
	if types := c.rawTypes(300*time.Millisecond, &buf); bytes.IndexByte(types, wire.ReadyForQuery) >= 0 {
		t.Fatalf("the client got ReadyForQuery (messages %q) while its backend was not yet handed back", types)
	}
	resume()
	if types := c.rawTypes(testWait, &buf); string(types) != string([]byte{wire.CommandComplete, wire.ReadyForQuery}) {
		t.Fatalf("messages %q, want CommandComplete, ReadyForQuery", types)
	}
	h.expectEvents("acquire t1 #1", "release t1 #1 keep")
}

// After switches the session's log lines carry one tenant field, the current
// tenant, besides the user and session fields.
func TestTenantSwitchLogsOneTenantField(t *testing.T) {
	h := newHarness(t, PoolTransaction)
	core, logs := observer.New(zap.InfoLevel)
	h.log = zap.New(core)
	h.be.Script(h.t2, NewScript())
	h.be.Script(h.t1, NewScript())
	h.start()
	c := h.connect("t1")
	for _, to := range []string{"t2", "t1", "t2"} {
		c.send(query("SET stratum.tenant = '" + to + "'"))
		c.expectAfterStatus(complete("SET"), ready(txIdle))
	}
	c.send(&pgproto3.Terminate{})
	switched := logs.FilterMessage("tenant switched").All()
	if len(switched) != 3 {
		t.Fatalf("%d 'tenant switched' lines, want 3", len(switched))
	}
	for i, e := range switched {
		var tenants []string
		for _, f := range e.Context {
			if f.Key == "tenant" {
				tenants = append(tenants, f.String)
			}
		}
		if want := []string{"t2", "t1", "t2"}[i]; len(tenants) != 1 || tenants[0] != want {
			t.Errorf("switch %d: tenant fields %v, want [%s]", i+1, tenants, want)
		}
	}
	h.expectEvents("acquire t2 #1", "release t2 #1 keep", "acquire t1 #2", "release t1 #2 keep", "acquire t2 #1", "release t2 #1 keep")
}

// In transaction pooling the switch takes the new tenant's backend only to
// bring it up to the session's state, and hands it back at once.
func TestTenantSwitchTransactionPooling(t *testing.T) {
	h := newHarness(t, PoolTransaction)
	h.be.Script(h.t2, NewScript(Query("SELECT 2", "SELECT 1", txIdle)))
	h.start()
	c := h.connect("t1")
	c.send(query("SET stratum.tenant = 't2'"))
	// The session held no backend before: it reports all of the new one's
	// parameters.
	c.expectAfterStatus(complete("SET"), ready(txIdle))
	h.expectEvents("acquire t2 #1", "release t2 #1 keep")
	c.send(query("SELECT 2"))
	c.expect(complete("SELECT 1"), ready(txIdle))
	h.expectEvents("acquire t2 #1", "release t2 #1 keep")
	c.send(&pgproto3.Terminate{})
}

// Inside a transaction SET stratum.tenant is refused (25001) and the session
// keeps its tenant and backend.
func TestTenantSwitchRefusedInTransaction(t *testing.T) {
	h := newHarness(t, PoolSession)
	h.be.Script(h.t1, NewScript(Query("BEGIN", "BEGIN", txInTx), Query("ROLLBACK", "ROLLBACK", txIdle)))
	h.start()
	c := h.connect("t1")
	h.expectEvents("acquire t1 #1")
	c.send(query("BEGIN"))
	c.expect(complete("BEGIN"), ready(txInTx))
	c.send(query("SET stratum.tenant = 't2'"))
	c.expectError("ERROR", codeActiveTransaction)
	c.expect(ready(txInTx))
	c.send(query("ROLLBACK"))
	c.expect(complete("ROLLBACK"), ready(txIdle))
	c.send(&pgproto3.Terminate{})
	h.expectEvents("release t1 #1 reset")
}
