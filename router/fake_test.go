package router

import (
	"bufio"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/backends"
	"github.com/stratum-hq/stratum-proxy/internal/fakeclock"
	"github.com/stratum-hq/stratum-proxy/internal/wire"
)

// fakeBackend is the server end of one fake connection: it answers every
// simple Query with ReadyForQuery (idle), or with an error first when fail
// is set, and ends at Terminate or when the connection closes.
type fakeBackend struct {
	fail    bool
	queries chan string   // every query text, buffered
	closed  chan struct{} // closed when the connection ended
}

func (fb *fakeBackend) serve(conn net.Conn) {
	defer close(fb.closed)
	defer conn.Close()
	rd := wire.NewReader(conn, 0)
	for {
		typ, msg, err := rd.Next()
		if err != nil || typ == 'X' {
			return
		}
		if typ != 'Q' {
			continue
		}
		fb.queries <- string(msg[5 : len(msg)-1])
		var out []byte
		if fb.fail {
			out = append(out, 'E', 0, 0, 0, 4)
		}
		out = append(out, 'Z', 0, 0, 0, 5, 'I')
		if _, err := conn.Write(out); err != nil {
			return
		}
	}
}

// fakeDialer opens connections over net.Pipe, each with a fakeBackend.
type fakeDialer struct {
	clock *fakeclock.Clock
	mu    sync.Mutex
	conns map[*ServerConn]*fakeBackend
	dials map[string]int // by tenant id
	// gates holds back a tenant's dials after its first until the channel
	// is closed (a slow spare).
	gates map[string]chan struct{}
}

func (d *fakeDialer) dial(_ context.Context, p *Placement, _ map[string]string) (*ServerConn, error) {
	d.mu.Lock()
	gate := d.gates[p.Tenant.ID]
	first := d.dials[p.Tenant.ID] == 0
	d.mu.Unlock()
	if gate != nil && !first {
		<-gate
	}
	client, server := net.Pipe()
	fb := &fakeBackend{queries: make(chan string, 16), closed: make(chan struct{})}
	go fb.serve(server)
	sc := &ServerConn{Conn: client, Reader: wire.NewReader(client, 0), Writer: bufio.NewWriter(client),
		Params: map[string]string{}, Statements: map[string]struct{}{}, created: d.clock.Now()}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.conns[sc] = fb
	d.dials[p.Tenant.ID]++
	return sc, nil
}

func (d *fakeDialer) backend(sc *ServerConn) *fakeBackend {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conns[sc]
}

// waitClosed fails unless sc's fake backend sees it closed within two seconds.
func (tr *testRouter) waitClosed(t *testing.T, sc *ServerConn) {
	t.Helper()
	select {
	case <-tr.d.backend(sc).closed:
	case <-time.After(2 * time.Second):
		t.Fatal("the connection was not closed")
	}
}

func (d *fakeDialer) dialed(tenant string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dials[tenant]
}

// testRouter is a Router with no catalog and fake backend connections, on a
// backend "main" that takes at most backendCap connections.
type testRouter struct {
	*Router
	clock *fakeclock.Clock
	d     *fakeDialer
}

func newTestRouter(t *testing.T, backendCap int, cfg Config) *testRouter {
	t.Helper()
	cfg.Set = backends.Set{Backends: map[string]backends.Backend{
		"main": {Host: "fake", Port: 1, AdminUser: "fake", MaxConnections: backendCap}}}
	if cfg.QueueTimeout == 0 {
		cfg.QueueTimeout = 2 * time.Second // a broken rule fails fast
	}
	if cfg.SpareConns == 0 {
		cfg.SpareConns = -1 // exact counts; TestPoolSpare covers spares
	}
	if err := cfg.fillDefaults(); err != nil {
		t.Fatal(err)
	}
	clock := fakeclock.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	d := &fakeDialer{clock: clock, conns: map[*ServerConn]*fakeBackend{}, dials: map[string]int{}, gates: map[string]chan struct{}{}}
	r := newRouter(cfg, nil, knobs{dial: d.dial, now: clock.Now})
	t.Cleanup(func() { r.pools.close() })
	return &testRouter{Router: r, clock: clock, d: d}
}

// placement is a tenant with id and slug name on backend "main".
func placement(name string, maxConns int) *Placement {
	return &Placement{Tenant: &catalog.Tenant{ID: name, Slug: name, Backend: "main"}, MaxConns: maxConns}
}

// acquired is what an Acquire running in the background returned.
type acquired struct {
	sc  *ServerConn
	err error
}

// acquireAsync runs Acquire in the background and waits until it is queued.
func (tr *testRouter) acquireAsync(t *testing.T, p *Placement) <-chan acquired {
	t.Helper()
	before := tr.stats(p.Tenant.ID).Waiting
	ch := make(chan acquired, 1)
	go func() {
		sc, err := tr.Acquire(context.Background(), p, nil)
		ch <- acquired{sc, err}
	}()
	eventually(t, func() bool { return tr.stats(p.Tenant.ID).Waiting == before+1 }, "%s queued", p.Tenant.ID)
	return ch
}

func (tr *testRouter) acquire(t *testing.T, p *Placement) *ServerConn {
	t.Helper()
	sc, err := tr.Acquire(context.Background(), p, nil)
	if err != nil {
		t.Fatalf("acquiring for %s: %v", p.Tenant.ID, err)
	}
	return sc
}

func (tr *testRouter) stats(tenant string) PoolStats {
	for _, s := range tr.Stats() {
		if s.TenantID == tenant {
			return s
		}
	}
	return PoolStats{TenantID: tenant}
}

// eventually polls cond for up to two seconds.
func eventually(t *testing.T, cond func() bool, format string, args ...any) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: "+format, args...)
		}
	}
}

// received returns what ch delivers within two seconds.
func received(t *testing.T, ch <-chan acquired) acquired {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(2 * time.Second):
		t.Fatal("acquire did not return")
		return acquired{}
	}
}

// pending fails when ch has delivered.
func pending(t *testing.T, ch <-chan acquired, what string) {
	t.Helper()
	select {
	case a := <-ch:
		t.Fatalf("%s: acquire returned (%v, %v), want it still waiting", what, a.sc, a.err)
	case <-time.After(10 * time.Millisecond):
	}
}
