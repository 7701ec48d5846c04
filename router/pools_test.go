package router

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stratum-hq/stratum-proxy/policy"
)

// TestPoolFairnessAtBackendCap: at the backend's cap, a connection a tenant
// releases goes straight to a session of the same tenant waiting for backend
// capacity (cheap: no close, no dial), unless a session of another tenant has
// waited longer than fairnessBound; then it is closed and the other tenant's
// session gets the slot, ahead of the tenant that holds many.
func TestPoolFairnessAtBackendCap(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		wait      time.Duration // how long the other tenant has waited
		otherWins bool
	}{
		{"within the bound the own tenant's waiter takes it", fairnessBound / 2, false},
		{"beyond the bound the other tenant gets the slot", 2 * fairnessBound, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tr := newTestRouter(t, 2, Config{})
			big, small := placement("big", 0), placement("small", 0)
			held := tr.acquire(t, big)
			tr.acquire(t, big) // big holds the whole backend
			smallWaits := tr.acquireAsync(t, small)
			bigWaits := tr.acquireAsync(t, big)
			tr.clock.Advance(tc.wait)

			tr.Release(held, Keep)
			if tc.otherWins {
				a := received(t, smallWaits)
				if a.err != nil || a.sc == held || tr.d.dialed("small") != 1 {
					t.Fatalf("small got (%p, %v), dialed %d; want a new connection", a.sc, a.err, tr.d.dialed("small"))
				}
				tr.waitClosed(t, held) // big's connection made room
				pending(t, bigWaits, "big")
				if s := tr.stats("big"); s.Open != 1 {
					t.Errorf("big has %d open, want 1", s.Open)
				}
				return
			}
			if a := received(t, bigWaits); a.err != nil || a.sc != held {
				t.Fatalf("big's waiter got (%p, %v), want the released connection %p", a.sc, a.err, held)
			}
			pending(t, smallWaits, "small")
			if n := tr.d.dialed("big"); n != 2 {
				t.Errorf("big dialed %d times, want 2", n)
			}
		})
	}
}

// TestPoolQueueTimeout: a session queued at a limit gives up with
// ErrQueueTimeout after Config.QueueTimeout, or when its context ends, and
// leaves the queue.
func TestPoolQueueTimeout(t *testing.T) {
	t.Parallel()
	tr := newTestRouter(t, 10, Config{MaxConnsPerTenant: 1, QueueTimeout: 30 * time.Millisecond})
	p := placement("acme", 0)
	held := tr.acquire(t, p)
	bounded, stop := context.WithTimeout(context.Background(), 2*time.Second)
	defer stop()
	start := time.Now()
	_, err := tr.Acquire(bounded, p, nil)
	if !errors.Is(err, ErrQueueTimeout) || time.Since(start) < 30*time.Millisecond {
		t.Fatalf("Acquire at the limit = %v after %v; want ErrQueueTimeout after 30ms", err, time.Since(start))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := tr.Acquire(ctx, p, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire with an ended context = %v, want context.Canceled", err)
	}
	if s := tr.stats("acme"); s.Waiting != 0 || s.Open != 1 {
		t.Errorf("after giving up: %+v, want 1 open and none waiting", s)
	}
	tr.Release(held, Keep)
	if sc := tr.acquire(t, p); sc != held {
		t.Errorf("after the timeouts the idle connection is not handed out")
	}
}

// TestPoolTenantLimit: a tenant has at most MaxConnsPerTenant connections, or
// its placement's own MaxConns; the next session waits for one of them.
func TestPoolTenantLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		maxConns int // the placement's own limit
		limit    int
	}{
		{"config default", 0, 2},
		{"placement's own", 3, 3},
		{"placement's own below the default", 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tr := newTestRouter(t, 10, Config{MaxConnsPerTenant: 2})
			p := placement("acme", tc.maxConns)
			var held []*ServerConn
			for range tc.limit {
				held = append(held, tr.acquire(t, p))
			}
			next := tr.acquireAsync(t, p)
			if s := tr.stats("acme"); s.Open != tc.limit {
				t.Fatalf("%d open, want %d", s.Open, tc.limit)
			}
			tr.Release(held[0], Keep)
			if a := received(t, next); a.err != nil || a.sc != held[0] {
				t.Fatalf("the waiter got (%p, %v), want the released connection", a.sc, a.err)
			}
			if n := tr.d.dialed("acme"); n != tc.limit {
				t.Errorf("dialed %d, want %d", n, tc.limit)
			}
		})
	}
}

// TestPoolBackendCap: a backend never has more than its MaxConnections open
// across tenants; an idle connection of another tenant is closed to make
// room, and a session queued for capacity gets a slot freed by another tenant.
func TestPoolBackendCap(t *testing.T) {
	t.Parallel()
	tr := newTestRouter(t, 2, Config{})
	a, b, c := placement("a", 0), placement("b", 0), placement("c", 0)
	scA, scB := tr.acquire(t, a), tr.acquire(t, b)
	waitC := tr.acquireAsync(t, c)
	tr.Release(scB, Keep) // c waits for capacity: b's connection is closed for it
	if got := received(t, waitC); got.err != nil || got.sc == scB {
		t.Fatalf("c got (%p, %v), want a new connection", got.sc, got.err)
	}
	tr.waitClosed(t, scB)
	if s := tr.stats("b"); s.Open != 0 {
		t.Errorf("b has %d open, want 0", s.Open)
	}

	tr.Release(scA, Keep) // nobody waits: a's connection stays idle
	if s := tr.stats("a"); s.Idle != 1 {
		t.Fatalf("a: %+v, want one idle", s)
	}
	tr.acquire(t, b) // at the cap: a's idle connection is evicted
	tr.waitClosed(t, scA)
	open := 0
	for _, s := range tr.Stats() {
		open += s.Open
	}
	if open != 2 || tr.stats("a").Open != 0 {
		t.Errorf("%d open on the backend (a %d), want 2 (a 0)", open, tr.stats("a").Open)
	}
}

// TestPoolReaping: idle connections are closed after IdleTimeout, and a
// connection older than ServerLifetime is closed when released and never
// handed out again.
func TestPoolReaping(t *testing.T) {
	t.Parallel()
	tr := newTestRouter(t, 10, Config{IdleTimeout: time.Minute, ServerLifetime: time.Hour})
	p := placement("acme", 0)
	old := tr.acquire(t, p)
	tr.Release(old, Keep)
	tr.clock.Advance(30 * time.Second)
	tr.pools.reap(tr.cfg.IdleTimeout, tr.cfg.ServerLifetime)
	if s := tr.stats("acme"); s.Idle != 1 {
		t.Fatalf("reaped too early: %+v", s)
	}
	tr.clock.Advance(time.Minute)
	tr.pools.reap(tr.cfg.IdleTimeout, tr.cfg.ServerLifetime)
	tr.waitClosed(t, old)
	if s := tr.stats("acme"); s.Idle != 0 || s.Open != 0 {
		t.Fatalf("after the idle timeout: %+v, want nothing open", s)
	}

	sc := tr.acquire(t, p)
	tr.clock.Advance(2 * time.Hour)
	tr.Release(sc, Keep) // past its lifetime: closed, not kept
	tr.waitClosed(t, sc)
	if s := tr.stats("acme"); s.Open != 0 {
		t.Fatalf("after release past the lifetime: %+v", s)
	}

	sc = tr.acquire(t, p)
	tr.Release(sc, Keep)
	tr.clock.Advance(2 * time.Hour) // aged while idle
	if got := tr.acquire(t, p); got == sc {
		t.Fatal("a connection past its lifetime was handed out")
	}
	tr.waitClosed(t, sc)
}

// TestPoolReleaseModes: Close drops the connection, Keep keeps it idle as it
// is, Reset runs DISCARD ALL first and drops it when that fails; a kept
// connection serves only the same startup parameters.
func TestPoolReleaseModes(t *testing.T) {
	t.Parallel()
	tr := newTestRouter(t, 10, Config{})
	p := placement("acme", 0)

	sc := tr.acquire(t, p)
	tr.Release(sc, Close)
	tr.waitClosed(t, sc)
	if s := tr.stats("acme"); s.Open != 0 {
		t.Fatalf("after Close: %+v", s)
	}

	sc = tr.acquire(t, p)
	sc.Statements["s1"] = struct{}{}
	tr.Release(sc, Keep)
	if got := tr.acquire(t, p); got != sc || len(got.Statements) != 1 {
		t.Fatalf("Keep: got %p with %d statements, want %p as it was", got, len(got.Statements), sc)
	}
	tr.Release(sc, Reset)
	select {
	case q := <-tr.d.backend(sc).queries:
		if q != "DISCARD ALL" {
			t.Fatalf("Reset sent %q", q)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Reset sent nothing")
	}
	if got := tr.acquire(t, p); got != sc || len(got.Statements) != 0 {
		t.Fatalf("Reset: got %p with %d statements, want %p clean", got, len(got.Statements), sc)
	}
	other, err := tr.Acquire(context.Background(), p, map[string]string{"application_name": "x"})
	if err != nil || other == sc {
		t.Fatalf("other parameters got (%p, %v), want a new connection", other, err)
	}
	tr.Release(other, Keep)

	tr.d.backend(sc).fail = true // DISCARD ALL fails: the connection is not reused
	tr.Release(sc, Reset)
	tr.waitClosed(t, sc)
	if s := tr.stats("acme"); s.Open != 1 || s.Idle != 1 {
		t.Fatalf("after a failed Reset: %+v, want only the other connection", s)
	}

	defer func() {
		if recover() == nil {
			t.Error("a second Release did not panic")
		}
	}()
	tr.Release(sc, Close)
}

// TestPoolAccessLevels: a session is handed only a connection logged in at
// its placement's access level. When the tenant's level changes, idle
// connections of the old level are closed and never handed out; one still
// held at the old level is not given to a session of the new level when
// handed back, nor to one of the old level after the change.
func TestPoolAccessLevels(t *testing.T) {
	t.Parallel()
	tr := newTestRouter(t, 10, Config{})
	full := placement("acme", 0)
	read := placement("acme", 0)
	read.Policy.Access = policy.AccessRead

	idleFull := tr.acquire(t, full)
	heldFull := tr.acquire(t, full)
	if idleFull.Access != policy.AccessFull {
		t.Fatalf("a full placement's connection has access %s", idleFull.Access)
	}
	tr.Release(idleFull, Keep)

	sc := tr.acquire(t, read)
	if sc == idleFull || sc == heldFull || sc.Access != policy.AccessRead || tr.d.dialed("acme") != 3 {
		t.Fatalf("read-only placement got %p (access %s, %d dials), want a new read connection", sc, sc.Access, tr.d.dialed("acme"))
	}
	tr.waitClosed(t, idleFull) // stale: closed when the level changed
	tr.Release(sc, Keep)

	// The session that held a full connection hands it back: it is closed,
	// and the next read-only session gets the read connection.
	tr.Release(heldFull, Keep)
	tr.waitClosed(t, heldFull)
	again := tr.acquire(t, read)
	if again != sc {
		t.Fatalf("read-only placement got %p (access %s), want its idle read connection %p", again, again.Access, sc)
	}
	tr.Release(again, Keep)
	// Back to full: the read connection is stale.
	if got := tr.acquire(t, full); got.Access != policy.AccessFull || got == sc {
		t.Fatalf("full placement got a connection of access %s", got.Access)
	} else {
		tr.Release(got, Keep)
	}
	tr.waitClosed(t, sc)
}

// TestPoolFairShareOfBackend: a tenant whose own limit is above the
// backend's cap may take the whole backend while nobody else needs it, but
// another tenant that comes then gets a backend within a bounded time: one
// of the big tenant's idle connections is evicted for it at once, and when
// all are in use, the first connection the big tenant gives up after the
// other has waited fairnessBound goes to the other tenant, ahead of the big
// tenant's own acquires, even those queued earlier.
func TestPoolFairShareOfBackend(t *testing.T) {
	t.Parallel()
	tr := newTestRouter(t, 4, Config{})
	big, small := placement("big", 10000), placement("small", 0)
	var held []*ServerConn
	for range 4 {
		held = append(held, tr.acquire(t, big))
	}
	// Idle connections of the big tenant make room at once.
	tr.Release(held[3], Keep)
	tr.Release(held[2], Keep)
	first := tr.acquire(t, small)
	tr.waitClosed(t, held[3]) // the one idle longest
	if s := tr.stats("big"); s.Open != 3 {
		t.Fatalf("big has %d open after the eviction, want 3", s.Open)
	}
	held[2] = tr.acquire(t, big) // big takes its last idle one back: all 4 in use

	// Every connection in use, the big tenant queued for more before the
	// small one comes.
	bigWaits := []<-chan acquired{tr.acquireAsync(t, big), tr.acquireAsync(t, big)}
	smallWaits := tr.acquireAsync(t, small)
	tr.clock.Advance(2 * fairnessBound)
	tr.Release(held[0], Keep)
	a := received(t, smallWaits)
	if a.err != nil {
		t.Fatalf("small's second acquire: %v", a.err)
	}
	tr.waitClosed(t, held[0]) // big's connection made room
	for _, w := range bigWaits {
		pending(t, w, "big, queued before small")
	}
	if s := tr.stats("small"); s.Open != 2 {
		t.Errorf("small has %d open, want 2", s.Open)
	}
	// With nobody else waiting, big's own queue is served again.
	tr.Release(held[1], Keep)
	if b := received(t, bigWaits[0]); b.err != nil || b.sc != held[1] {
		t.Errorf("big's first waiter got (%p, %v), want the released connection", b.sc, b.err)
	}
	tr.Release(first, Keep)
	tr.Release(a.sc, Keep)
	if b := received(t, bigWaits[1]); b.err != nil {
		t.Errorf("big's second waiter: %v", b.err)
	}
}

// TestPoolPlacementMove: a session is handed only a connection dialed for
// its tenant's placement. When the tenant moves (its Where changes in a
// newer generation), idle connections of the old placement are closed and
// never handed out, one still held there is closed when handed back, and a
// session that read the placement before the move does not turn the pool
// back.
func TestPoolPlacementMove(t *testing.T) {
	t.Parallel()
	tr := newTestRouter(t, 10, Config{})
	before := placement("acme", 0)
	before.Tenant.Isolation, before.Tenant.Database = "shared", "app"
	moved := placement("acme", 0)
	moved.Tenant.Isolation, moved.Tenant.Database, moved.Tenant.Schema = "schema", "app", "t_acme"
	moved.gen = 1

	idleOld := tr.acquire(t, before)
	heldOld := tr.acquire(t, before)
	if idleOld.Placement != before.Where() {
		t.Fatalf("connection dialed for %q, want %q", idleOld.Placement, before.Where())
	}
	tr.Release(idleOld, Keep)
	if again := tr.acquire(t, before); again != idleOld {
		t.Fatalf("before the move got %p, want the idle connection %p", again, idleOld)
	}
	tr.Release(idleOld, Keep)

	sc := tr.acquire(t, moved)
	if sc == idleOld || sc == heldOld || sc.Placement != moved.Where() || tr.d.dialed("acme") != 3 {
		t.Fatalf("moved placement got %p (placement %q, %d dials), want a new connection there", sc, sc.Placement, tr.d.dialed("acme"))
	}
	tr.waitClosed(t, idleOld) // stale: closed when the placement changed
	tr.Release(sc, Keep)

	// The session that held an old connection hands it back: closed.
	tr.Release(heldOld, Keep)
	tr.waitClosed(t, heldOld)
	if s := tr.stats("acme"); s.Open != 1 || s.Idle != 1 {
		t.Fatalf("after the move: %+v, want 1 open, 1 idle", s)
	}

	// A session still on the placement it read before the move gets a
	// connection of its own placement, never the moved one, and does not
	// make the moved one stale.
	stale := tr.acquire(t, before)
	if stale == sc || stale.Placement != before.Where() {
		t.Fatalf("a stale placement got %p (placement %q)", stale, stale.Placement)
	}
	tr.Release(stale, Keep)
	tr.waitClosed(t, stale)
	if again := tr.acquire(t, moved); again != sc {
		t.Fatalf("moved placement got %p, want its idle connection %p", again, sc)
	}
}

// TestWaitGen: WaitGen returns at once for a generation that has moved on,
// waits while it has not, returns when Invalidate moves it, and gives up
// with the context.
func TestWaitGen(t *testing.T) {
	t.Parallel()
	tr := newTestRouter(t, 10, Config{})
	g := tr.Gen()
	tr.Invalidate()
	if err := tr.WaitGen(context.Background(), g); err != nil {
		t.Fatalf("an old generation: %v", err)
	}
	g = tr.Gen()
	done := make(chan error, 1)
	go func() { done <- tr.WaitGen(context.Background(), g) }()
	select {
	case err := <-done:
		t.Fatalf("WaitGen returned (%v) before the generation moved", err)
	case <-time.After(10 * time.Millisecond):
	}
	tr.Invalidate()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("WaitGen: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("WaitGen did not return after Invalidate")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tr.WaitGen(ctx, tr.Gen()); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitGen with an ended context: %v", err)
	}
}

// TestPoolMoveToAnotherServer: a connection still held on the server a
// tenant moved away from frees that server's slot when handed back, and a
// session of another tenant waiting for that server's capacity gets it.
func TestPoolMoveToAnotherServer(t *testing.T) {
	t.Parallel()
	tr := newTestRouter(t, 1, Config{})
	tr.cfg.Backends["other"] = tr.cfg.Backends["main"]
	before := placement("acme", 0)
	moved := placement("acme", 0)
	moved.Tenant.Backend, moved.Tenant.Database = "other", "t_acme"
	moved.gen = 1

	held := tr.acquire(t, before) // main is full
	waits := tr.acquireAsync(t, placement("other_tenant", 0))
	sc := tr.acquire(t, moved)
	if sc.Placement != moved.Where() {
		t.Fatalf("moved placement got a connection for %q", sc.Placement)
	}
	pending(t, waits, "other_tenant, main still full")
	tr.Release(held, Keep)
	tr.waitClosed(t, held)
	if a := received(t, waits); a.err != nil {
		t.Fatalf("other_tenant after main's slot was freed: %v", a.err)
	}
	if s := tr.stats("acme"); s.Open != 1 {
		t.Errorf("acme has %d open, want 1", s.Open)
	}
}

// TestPoolSpare: with SpareConns 1 a tenant's pool dials one connection ahead
// of demand, so a second concurrent checkout is handed a ready connection
// instead of waiting for a dial; it stops at the tenant's limit and leaves
// the backend's last free slot alone.
func TestPoolSpare(t *testing.T) {
	t.Parallel()
	tr := newTestRouter(t, 10, Config{SpareConns: 1})
	p := placement("acme", 3)
	a := tr.acquire(t, p)
	eventually(t, func() bool { s := tr.stats("acme"); return s.Open == 2 && s.Idle == 1 }, "a spare after the first checkout")
	b := tr.acquire(t, p)
	if tr.d.backend(b) == nil || b == a {
		t.Fatal("the second checkout did not get the spare")
	}
	eventually(t, func() bool { s := tr.stats("acme"); return s.Open == 3 && s.Idle == 1 }, "a spare after the second checkout")
	c := tr.acquire(t, p)
	if n := tr.d.dialed("acme"); n != 3 {
		t.Fatalf("%d dials for three checkouts, want 3 (two spares taken)", n)
	}
	time.Sleep(20 * time.Millisecond)
	if s := tr.stats("acme"); s.Open != 3 || s.Idle != 0 || tr.d.dialed("acme") != 3 {
		t.Fatalf("at the tenant's limit: %+v, %d dials; want no spare beyond the limit", s, tr.d.dialed("acme"))
	}
	for _, sc := range []*ServerConn{a, b, c} {
		tr.Release(sc, Keep)
	}
	tr.acquire(t, p) // idle ones remain: no new spare is needed
	time.Sleep(20 * time.Millisecond)
	if n := tr.d.dialed("acme"); n != 3 {
		t.Fatalf("%d dials with idle connections left, want 3", n)
	}

	// A pool that is not busy keeps reusing its warm connection: the spare
	// waits at the far end of the idle list.
	calm := placement("calm", 0)
	gate := make(chan struct{})
	tr.d.mu.Lock()
	tr.d.gates["calm"] = gate
	tr.d.mu.Unlock()
	x := tr.acquire(t, calm)
	tr.Release(x, Keep) // before the spare's dial ends
	close(gate)
	eventually(t, func() bool { return tr.stats("calm").Idle == 2 }, "calm's spare")
	if got := tr.acquire(t, calm); got != x {
		t.Fatal("a sequential checkout was handed the spare, not the connection just released")
	}

	// A backend with two slots: a spare would take the last one.
	small := newTestRouter(t, 2, Config{SpareConns: 1})
	small.acquire(t, p)
	time.Sleep(20 * time.Millisecond)
	if s := small.stats("acme"); s.Open != 1 {
		t.Fatalf("backend with one free slot: %+v, want no spare", s)
	}
}

// TestPoolRename: a backend connection is told its tenant's slug at startup
// (stratum.tenant), so after a rename (a newer generation with another slug)
// idle connections told the old slug are closed and never handed out, one
// still held is closed when handed back, and new sessions get connections
// told the new slug.
func TestPoolRename(t *testing.T) {
	t.Parallel()
	tr := newTestRouter(t, 10, Config{})
	before := placement("acme", 0)
	renamed := placement("acme", 0)
	renamed.Tenant.Slug = "acme_renamed"
	renamed.gen = 1

	idleOld := tr.acquire(t, before)
	heldOld := tr.acquire(t, before)
	tr.Release(idleOld, Keep)

	sc := tr.acquire(t, renamed)
	if sc == idleOld || sc == heldOld || sc.slug != "acme_renamed" {
		t.Fatalf("after the rename got %p told %q, want a new connection told acme_renamed", sc, sc.slug)
	}
	tr.waitClosed(t, idleOld)
	tr.Release(heldOld, Keep)
	tr.waitClosed(t, heldOld)
	tr.Release(sc, Keep)
	if again := tr.acquire(t, renamed); again != sc {
		t.Fatalf("after the rename got %p, want its idle connection %p", again, sc)
	}
}
