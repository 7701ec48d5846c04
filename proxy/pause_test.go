package proxy

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/prometheus/client_golang/prometheus"

	. "github.com/stratum-hq/stratum-proxy/internal/pgfake"
	"github.com/stratum-hq/stratum-proxy/router"
)

// Pauses (a placement move's cut-over, an operator's pause): a paused
// tenant's sessions start no transaction until the pause ends; transactions
// under way finish; a session on a backend of a placement the tenant left
// moves to the new one at its next transaction boundary.

const pausedReason = `tenant "t1" is paused (test)`

func pause(p *router.Placement)   { p.Policy.Paused = pausedReason }
func unpause(p *router.Placement) { p.Policy.Paused = "" }

// pauseHarness is a harness whose proxy's metrics can be read
// (pausedSessions).
func pauseHarness(t *testing.T, mode string) (*harness, *prometheus.Registry) {
	h := newHarness(t, mode)
	reg := prometheus.NewRegistry()
	h.configured = func(c *Config) { c.PoolMode = mode; c.Metrics = NewMetrics(reg) }
	return h, reg
}

// waitPausedSessions polls stratum_sessions_paused until it is n.
func waitPausedSessions(t *testing.T, reg *prometheus.Registry, n float64) {
	t.Helper()
	got := -1.0
	for deadline := time.Now().Add(testWait); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() == "stratum_sessions_paused" {
				got = f.GetMetric()[0].GetGauge().GetValue()
			}
		}
		if got == n {
			return
		}
	}
	t.Fatalf("stratum_sessions_paused is %v, want %v", got, n)
}

// notForwarded fails when forwarded is closed within a short while: the
// backend received what the pause must hold. (A bounded look, not a
// timing assertion: a broken gate forwards at once.)
func notForwarded(t *testing.T, forwarded <-chan struct{}) {
	t.Helper()
	select {
	case <-forwarded:
		t.Fatal("the backend got the query while the tenant was paused")
	case <-time.After(50 * time.Millisecond):
	}
}

// signal is a script step that closes ch.
func signal(ch chan struct{}) Step {
	return Func(func(*pgproto3.Backend) error { close(ch); return nil })
}

// A Query of a paused tenant's session waits (not forwarded, not refused,
// no backend acquired in transaction pooling) until the pause ends, then
// runs; this holds for a session that connected during the pause, whose
// policy says paused from the start without any catalog change since.
func TestPauseHoldsNewTransaction(t *testing.T) {
	pauseHoldsOneQuery(t, pauseSteps{
		beforeStart: func(h *harness) { pause(h.t1) }, // no change follows
		whileHeld: func(h *harness) {
			if ev := h.be.Pending(); len(ev) > 0 {
				h.t.Fatalf("backend events while paused: %v", ev)
			}
		},
	})
}

// pauseSteps are a pauseHoldsOneQuery's own steps: before the proxy
// starts, once the session is connected, and while its query is held.
type pauseSteps struct {
	beforeStart, connected, whileHeld func(h *harness)
}

// pauseHoldsOneQuery checks, in both pool modes, that a session's Query
// paused by steps waits (counted in stratum_sessions_paused, not
// forwarded) until the pause ends, then runs.
func pauseHoldsOneQuery(t *testing.T, steps pauseSteps) {
	for _, mode := range []string{PoolSession, PoolTransaction} {
		t.Run(mode, func(t *testing.T) {
			h, reg := pauseHarness(t, mode)
			forwarded := make(chan struct{})
			replies := []pgproto3.BackendMessage{intColumn, &pgproto3.DataRow{Values: [][]byte{[]byte("1")}}, complete("SELECT 1"), ready(txIdle)}
			h.be.Script(h.t1, NewScript(Expect(query("SELECT 1 AS n")), signal(forwarded), Send(replies...)))
			if steps.beforeStart != nil {
				steps.beforeStart(h)
			}
			h.start()
			c := h.connect("t1")
			if mode == PoolSession {
				h.expectEvents("acquire t1 #1")
			}
			if steps.connected != nil {
				steps.connected(h)
			}
			c.send(query("SELECT 1 AS n"))
			waitPausedSessions(t, reg, 1)
			notForwarded(t, forwarded)
			if steps.whileHeld != nil {
				steps.whileHeld(h)
			}
			h.be.Update(h.t1, unpause)
			c.expect(replies...)
			waitPausedSessions(t, reg, 0)
			if mode == PoolTransaction {
				h.expectEvents("acquire t1 #1", "release t1 #1 keep")
			}
			c.send(&pgproto3.Terminate{})
			if mode == PoolSession {
				h.expectEvents("release t1 #1 reset")
			}
		})
	}
}

// A transaction begun before the pause runs on: its statements and its
// COMMIT go through; the next transaction waits, even when the client sends
// it right behind the COMMIT (pipelined, the COMMIT still in flight).
func TestPauseLetsRunningTransactionFinish(t *testing.T) {
	for _, mode := range []string{PoolSession, PoolTransaction} {
		t.Run(mode, func(t *testing.T) {
			h, reg := pauseHarness(t, mode)
			forwarded := make(chan struct{})
			h.be.Script(h.t1, NewScript(
				Query("BEGIN", "BEGIN", txInTx),
				Query("INSERT INTO t VALUES (1)", "INSERT 0 1", txInTx),
				// The COMMIT's answer comes late: a broken gate sends the
				// next query meanwhile (a bounded look, not a timing
				// assertion; a correct gate waits for the answer).
				Expect(query("COMMIT")), Func(func(*pgproto3.Backend) error { time.Sleep(50 * time.Millisecond); return nil }),
				Send(complete("COMMIT"), ready(txIdle)),
				Expect(query("SELECT 2")), signal(forwarded), Send(complete("SELECT 1"), ready(txIdle)),
			))
			h.start()
			c := h.connect("t1")
			if mode == PoolSession {
				h.expectEvents("acquire t1 #1")
			}
			c.send(query("BEGIN"))
			c.expect(complete("BEGIN"), ready(txInTx))
			h.be.Update(h.t1, pause)
			c.send(query("INSERT INTO t VALUES (1)"))
			c.expect(complete("INSERT 0 1"), ready(txInTx))
			c.send(query("COMMIT"), query("SELECT 2"))
			c.expect(complete("COMMIT"), ready(txIdle))
			waitPausedSessions(t, reg, 1)
			notForwarded(t, forwarded)
			h.be.Update(h.t1, unpause)
			c.expect(complete("SELECT 1"), ready(txIdle))
			waitPausedSessions(t, reg, 0)
			if mode == PoolTransaction {
				h.expectEvents("acquire t1 #1", "release t1 #1 keep", "acquire t1 #1", "release t1 #1 keep")
			}
			c.send(&pgproto3.Terminate{})
			if mode == PoolSession {
				h.expectEvents("release t1 #1 reset")
			}
		})
	}
}

// A session that holds a backend (session pooling) when its tenant moves
// to another placement moves to a backend of the new placement at its next
// transaction boundary, paused or not: the old backend is closed, and the new
// one gets the session's named prepared statements and its settings before
// the client's next message, which runs there.
func TestPlacementMoveCarriesSession(t *testing.T) {
	h := newHarness(t, PoolSession)
	parse := &pgproto3.Parse{Name: "s1", Query: "SELECT $1::int AS n", ParameterOIDs: []uint32{23}}
	run := []pgproto3.FrontendMessage{
		&pgproto3.Bind{PreparedStatement: "s1", Parameters: [][]byte{[]byte("7")}},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	}
	rows := []pgproto3.BackendMessage{&pgproto3.BindComplete{}, &pgproto3.DataRow{Values: [][]byte{[]byte("7")}}, complete("SELECT 1"), ready(txIdle)}
	h.be.Script(h.t1, NewScript(
		Query("SET work_mem = '8MB'", "SET", txIdle),
		Expect(parse), Expect(&pgproto3.Sync{}), Send(&pgproto3.ParseComplete{}, ready(txIdle)),
	))
	moved := NewScript(
		// The statement replayed, then the settings, then the client's batch.
		Expect(parse), Expect(&pgproto3.Sync{}), Send(&pgproto3.ParseComplete{}, ready(txIdle)),
		Expect(query("RESET ALL")), Expect(query(`SET work_mem TO "8MB"`)),
	)
	for _, m := range run {
		moved.Add(Expect(m))
	}
	moved.Add(Send(complete("RESET"), ready(txIdle), complete("SET"), ready(txIdle)), Send(rows...))
	h.be.Script(h.t1, moved)
	h.start()
	c := h.connect("t1")
	h.expectEvents("acquire t1 #1")
	c.send(query("SET work_mem = '8MB'"))
	c.expect(complete("SET"), ready(txIdle))
	c.send(parse, &pgproto3.Sync{})
	c.expect(&pgproto3.ParseComplete{}, ready(txIdle))

	h.be.Update(h.t1, func(p *router.Placement) {
		p.Tenant.Isolation, p.Tenant.Database, p.Tenant.Schema = "database", "t_t1", ""
	})
	c.send(run...)
	c.expect(rows...)
	h.expectEvents("release t1 #1 close", "acquire t1 #2")
	c.send(&pgproto3.Terminate{})
	h.expectEvents("release t1 #2 reset")
}

// A session waiting for a pause to end notices its client leave: the wait
// ends and so does the session, which hands its backend back.
func TestPauseWaitEndsWhenClientLeaves(t *testing.T) {
	for _, mode := range []string{PoolSession, PoolTransaction} {
		t.Run(mode, func(t *testing.T) {
			h, reg := pauseHarness(t, mode)
			pause(h.t1)
			h.be.Script(h.t1, NewScript())
			h.start()
			c := h.connect("t1")
			if mode == PoolSession {
				h.expectEvents("acquire t1 #1")
			}
			c.send(query("SELECT 1"))
			waitPausedSessions(t, reg, 1)
			c.conn.Close()
			waitPausedSessions(t, reg, 0)
			if mode == PoolSession {
				h.expectEvents("release t1 #1 reset")
			}
		})
	}
}

// The cut-over of a placement move: the tenant is paused, moves, and is
// unpaused. A query held by the pause runs on a backend of the new
// placement: in session pooling the session leaves its old backend while it
// waits; in transaction pooling the old placement's idle connection is not
// handed out again.
func TestPauseThenMoveRunsOnNewPlacement(t *testing.T) {
	for _, mode := range []string{PoolSession, PoolTransaction} {
		t.Run(mode, func(t *testing.T) {
			h, reg := pauseHarness(t, mode)
			if mode == PoolSession {
				h.be.Script(h.t1, NewScript())
			} else {
				h.be.Script(h.t1, Query("SELECT 0", "SELECT 1", txIdle))
			}
			forwarded := make(chan struct{})
			h.be.Script(h.t1, NewScript(Expect(query("SELECT 2")), signal(forwarded), Send(complete("SELECT 1"), ready(txIdle))))
			h.start()
			c := h.connect("t1")
			if mode == PoolSession {
				h.expectEvents("acquire t1 #1")
			} else {
				c.send(query("SELECT 0"))
				c.expect(complete("SELECT 1"), ready(txIdle))
				h.expectEvents("acquire t1 #1", "release t1 #1 keep")
			}
			h.be.Update(h.t1, pause)
			c.send(query("SELECT 2"))
			waitPausedSessions(t, reg, 1)
			h.be.Update(h.t1, func(p *router.Placement) {
				p.Tenant.Isolation, p.Tenant.Database, p.Tenant.Schema = "database", "t_t1", ""
			})
			if mode == PoolSession {
				h.expectEvents("release t1 #1 close") // moved off while waiting
			}
			notForwarded(t, forwarded)
			h.be.Update(h.t1, unpause)
			c.expect(complete("SELECT 1"), ready(txIdle))
			waitPausedSessions(t, reg, 0)
			if mode == PoolSession {
				h.expectEvents("acquire t1 #2")
				c.send(&pgproto3.Terminate{})
				h.expectEvents("release t1 #2 reset")
			} else {
				h.expectEvents("acquire t1 #2", "release t1 #2 keep")
			}
		})
	}
}

// A placement move's cut-over calls PauseBarrier after pausing the tenant
// in the catalog: the pause then holds the session's next transaction even
// though the catalog's announcement of it has not arrived (a NOTIFY late on
// a loaded machine let a transaction start on the source after the fence,
// and fail with 40001). A second barrier does not wait for the session
// held by the pause.
func TestPauseBarrierHoldsBeforeTheNotify(t *testing.T) {
	barrier := func(h *harness, what string) {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		if err := h.srv.PauseBarrier(ctx, h.t1.Tenant.ID); err != nil {
			h.t.Fatalf("%s: %v", what, err)
		}
	}
	pauseHoldsOneQuery(t, pauseSteps{
		connected: func(h *harness) {
			h.be.UpdateUnannounced(h.t1, pause)
			barrier(h, "the barrier")
		},
		whileHeld: func(h *harness) { barrier(h, "a barrier with the session held by the pause") },
	})
}

// A transaction the proxy let through before the pause but has not sent to
// a backend yet (its session waits for a pooled connection) holds
// PauseBarrier until it is on the backend, where the cut-over's drain sees
// it; the session's next transaction then waits for the pause to end.
func TestPauseBarrierWaitsForAdmittedTransaction(t *testing.T) {
	h, reg := pauseHarness(t, PoolTransaction)
	forwarded := make(chan struct{})
	h.be.Script(h.t1, NewScript(Expect(query("INSERT INTO t VALUES (1)")), signal(forwarded),
		Send(complete("INSERT 0 1"), ready(txIdle)), Query("SELECT 2", "SELECT 1", txIdle)))
	h.start()
	c := h.connect("t1")
	waiting, resume := h.be.HoldAcquires()
	defer resume()
	c.send(query("INSERT INTO t VALUES (1)"))
	<-waiting
	h.be.UpdateUnannounced(h.t1, pause)
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.srv.PauseBarrier(ctx, h.t1.Tenant.ID) }()
	// A bounded look, not a timing assertion: a barrier that does not know
	// of the admitted transaction returns at once.
	select {
	case err := <-done:
		t.Fatalf("the barrier returned (%v) while a transaction admitted before it waited for a backend", err)
	case <-time.After(50 * time.Millisecond):
	}
	resume()
	<-forwarded
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c.expect(complete("INSERT 0 1"), ready(txIdle))
	c.send(query("SELECT 2"))
	waitPausedSessions(t, reg, 1)
	h.be.Update(h.t1, unpause)
	c.expect(complete("SELECT 1"), ready(txIdle))
	h.expectEvents("acquire t1 #1", "release t1 #1 keep", "acquire t1 #1", "release t1 #1 keep")
	c.send(&pgproto3.Terminate{})
}
