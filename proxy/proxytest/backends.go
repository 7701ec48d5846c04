package proxytest

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"sync"
	"time"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/pgfake"
	"github.com/stratum-hq/stratum-proxy/internal/scramverifier"
	"github.com/stratum-hq/stratum-proxy/internal/wire"
	"github.com/stratum-hq/stratum-proxy/router"
)

// EventKind says what the proxy did with a backend connection.
type EventKind int

const (
	// Acquire: the proxy took a backend connection.
	Acquire EventKind = iota + 1
	// Release: the proxy handed one back (Event.Mode says how).
	Release
	// Cancel: a CancelRequest for the connection arrived (through DialCancel).
	Cancel
)

// Event is one thing the proxy did with a backend connection.
type Event struct {
	Kind   EventKind
	Tenant string             // the tenant's slug
	Conn   int                // the connection's number, from 1 in the order they were opened
	Mode   router.ReleaseMode // for Release
}

func (e Event) String() string {
	switch e.Kind {
	case Acquire:
		return fmt.Sprintf("acquire %s #%d", e.Tenant, e.Conn)
	case Release:
		mode := map[router.ReleaseMode]string{router.Close: "close", router.Reset: "reset", router.Keep: "keep"}[e.Mode]
		return fmt.Sprintf("release %s #%d %s", e.Tenant, e.Conn, mode)
	case Cancel:
		return fmt.Sprintf("cancel %s #%d", e.Tenant, e.Conn)
	}
	return fmt.Sprintf("event(%d)", int(e.Kind))
}

// DefaultStatus is the ParameterStatus set a scripted backend reports.
var DefaultStatus = map[string]string{
	"server_version":              "17.0 (pgfake)",
	"server_encoding":             "UTF8",
	"client_encoding":             "UTF8",
	"standard_conforming_strings": "on",
	"DateStyle":                   "ISO, MDY",
	"integer_datetimes":           "on",
	"TimeZone":                    "UTC",
}

// Backends is a fake router for the proxy. Make it with New; Close it at the
// end of the test, which also reports the first failed script.
type Backends struct {
	cfg    router.Config
	events chan Event
	wg     sync.WaitGroup // scripts running

	mu struct {
		sync.Mutex
		placements map[string]*router.Placement    // by slug and by id
		users      map[string]*catalog.User        // by name
		scripts    map[string][]*pgfake.Script     // by tenant id: the connections it will open, in order
		idle       map[string][]*router.ServerConn // by tenant id
		conns      map[*router.ServerConn]*conn
		status     map[string]map[string]string // KnownStatus by tenant id
		subs       []func(catalog.Change)
		gen        uint64
		genCh      chan struct{} // closed when gen moves on (WaitGen), or nil
		opened     int
		tenants    int
		errs       []error
		// foreign are the PIDs Sender calls another tenant's (ForeignPID).
		foreign map[uint32]bool
		// sharedPID, when not 0, is the PID of every new connection (SharePID).
		sharedPID uint32
		// hold, when not nil, is waited for by every Release (HoldReleases).
		hold chan struct{}
		// holdAcquire, when not nil, is waited for by every Acquire
		// (HoldAcquires); acquiring is closed when one waits.
		holdAcquire, acquiring chan struct{}
	}
}

// conn is a scripted backend connection.
type conn struct {
	n       int
	tenant  string
	sc      *router.ServerConn
	backend net.Conn // the script's end
}

// New returns an empty fake.
func New() *Backends {
	b := &Backends{
		cfg:    router.Config{QueueTimeout: 2 * time.Second, DialTimeout: 2 * time.Second},
		events: make(chan Event, 1024),
	}
	b.mu.placements = map[string]*router.Placement{}
	b.mu.users = map[string]*catalog.User{}
	b.mu.scripts = map[string][]*pgfake.Script{}
	b.mu.idle = map[string][]*router.ServerConn{}
	b.mu.conns = map[*router.ServerConn]*conn{}
	b.mu.status = map[string]map[string]string{}
	return b
}

// AddTenant adds an active, schema-isolated tenant under parent (nil: a root)
// and returns its placement. The test may change the placement (PoolMode,
// Policy, Tenant.Isolation) before the proxy first resolves it.
func (b *Backends) AddTenant(slug string, parent *router.Placement) *router.Placement {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mu.tenants++
	id := fmt.Sprintf("00000000-0000-4000-8000-%012d", b.mu.tenants)
	t := &catalog.Tenant{ID: id, ShortID: id[len(id)-8:], Slug: slug, Name: slug, Path: slug,
		Isolation: "schema", Backend: "main", Database: "app", Schema: "t_" + slug, RoleName: "t_" + slug,
		Status: catalog.StatusActive}
	if parent != nil {
		t.ParentID = &parent.Tenant.ID
		t.Path = parent.Tenant.Path + "." + slug
		t.Depth = parent.Tenant.Depth + 1
	}
	p := &router.Placement{Tenant: t}
	b.mu.placements[slug] = p
	b.mu.placements[id] = p
	return p
}

// AddUser adds a proxy user bound to the subtree of tenant, with a SCRAM
// verifier of password.
func (b *Backends) AddUser(name, password string, tenant *router.Placement, canSwitch bool) *catalog.User {
	v, err := scramverifier.MakeIterations(password, 256)
	if err != nil {
		panic(fmt.Sprintf("proxytest: making a verifier: %v", err))
	}
	u := &catalog.User{Name: name, TenantID: tenant.Tenant.ID, CanSwitch: canSwitch, Verifier: v}
	b.mu.Lock()
	b.mu.users[name] = u
	b.mu.Unlock()
	return u
}

// Script queues a backend connection for p: the next connection the proxy
// opens for p's tenant (when none is idle) runs script. A Release with Reset
// or Keep makes a connection idle, and the next Acquire gets it back with its
// script where it stopped; the fake sends no DISCARD ALL for Reset.
func (b *Backends) Script(p *router.Placement, script *pgfake.Script) {
	b.mu.Lock()
	b.mu.scripts[p.Tenant.ID] = append(b.mu.scripts[p.Tenant.ID], script)
	b.mu.Unlock()
}

// SetKnownStatus makes KnownStatus answer status for p's tenant, so that a
// transaction-pooling session starts without a backend connection.
func (b *Backends) SetKnownStatus(p *router.Placement, status map[string]string) {
	b.mu.Lock()
	b.mu.status[p.Tenant.ID] = status
	b.mu.Unlock()
}

// Change tells the OnChange subscribers of a catalog change, after moving
// the generation on, as the router does.
func (b *Backends) Change(c catalog.Change) {
	b.mu.Lock()
	b.mu.gen++
	if b.mu.genCh != nil {
		close(b.mu.genCh)
		b.mu.genCh = nil
	}
	subs := b.mu.subs
	b.mu.Unlock()
	for _, fn := range subs {
		fn(c)
	}
}

// Invalidate implements proxy.Backends: it moves the generation on, as a
// catalog change does, telling no subscriber (the placements stay).
func (b *Backends) Invalidate() {
	b.mu.Lock()
	b.mu.gen++
	if b.mu.genCh != nil {
		close(b.mu.genCh)
		b.mu.genCh = nil
	}
	b.mu.Unlock()
}

// Update replaces the placement of p's tenant with a copy that fn changed
// (its policy, its isolation, database or schema) and announces the change of
// its tenants row (Change), as the router does after a catalog change. It
// returns the new placement. A connection dialed for the old placement
// (router.Placement.Where) is no longer handed out once idle.
func (b *Backends) Update(p *router.Placement, fn func(*router.Placement)) *router.Placement {
	np := b.UpdateUnannounced(p, fn)
	b.Change(catalog.Change{Table: "tenants", Key: np.Tenant.ID})
	return np
}

// UpdateUnannounced is Update without the announcement: a catalog change
// whose NOTIFY has not reached the proxy yet. A session reads it when it
// resolves its tenant again for another reason.
func (b *Backends) UpdateUnannounced(p *router.Placement, fn func(*router.Placement)) *router.Placement {
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.mu.placements[p.Tenant.ID]
	np := *cur
	t := *cur.Tenant
	np.Tenant = &t
	fn(&np)
	b.mu.placements[t.Slug] = &np
	b.mu.placements[t.ID] = &np
	return &np
}

// Next returns the next event, waiting for it until ctx ends.
func (b *Backends) Next(ctx context.Context) (Event, error) {
	select {
	case e := <-b.events:
		return e, nil
	case <-ctx.Done():
		return Event{}, fmt.Errorf("waiting for a backend event: %w", ctx.Err())
	}
}

// Pending returns the events that happened and were not read by Next yet,
// without waiting.
func (b *Backends) Pending() []Event {
	var out []Event
	for {
		select {
		case e := <-b.events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func (b *Backends) emit(e Event) {
	select {
	case b.events <- e:
	default:
		panic("proxytest: more than 1024 unread events")
	}
}

// Close closes every backend connection, waits for the scripts to end and
// returns their errors: a script that received what it did not expect, or
// whose connection closed before its last step.
func (b *Backends) Close() error {
	b.mu.Lock()
	for sc, c := range b.mu.conns {
		sc.Conn.Close()
		c.backend.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
	b.mu.Lock()
	defer b.mu.Unlock()
	return errors.Join(b.mu.errs...)
}

// Resolve implements proxy.Backends.
func (b *Backends) Resolve(ctx context.Context, ref string) (*router.Placement, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p := b.mu.placements[ref]; p != nil {
		return p, nil
	}
	return nil, catalog.ErrNotFound
}

// ResolveDatabase implements proxy.Backends: a database named like a
// tenant's slug maps to it.
func (b *Backends) ResolveDatabase(ctx context.Context, database string) (*router.Placement, error) {
	return b.Resolve(ctx, database)
}

// User implements proxy.Backends.
func (b *Backends) User(ctx context.Context, name string) (*catalog.User, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if u := b.mu.users[name]; u != nil {
		return u, nil
	}
	return nil, catalog.ErrNotFound
}

// Acquire implements proxy.Backends: an idle connection of the tenant, else
// the next one scripted for it, else an error.
func (b *Backends) Acquire(ctx context.Context, p *router.Placement, params map[string]string) (*router.ServerConn, error) {
	b.mu.Lock()
	if hold := b.mu.holdAcquire; hold != nil {
		if b.mu.acquiring != nil {
			close(b.mu.acquiring)
			b.mu.acquiring = nil
		}
		b.mu.Unlock()
		select {
		case <-hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		b.mu.Lock()
	}
	defer b.mu.Unlock()
	id := p.Tenant.ID
	for idle := b.mu.idle[id]; len(idle) > 0; idle = b.mu.idle[id] {
		sc := idle[len(idle)-1]
		b.mu.idle[id] = idle[:len(idle)-1]
		if sc.Placement != p.Where() {
			sc.Conn.Close() // dialed for a placement the tenant has left
			continue
		}
		b.emit(Event{Kind: Acquire, Tenant: p.Tenant.Slug, Conn: b.mu.conns[sc].n})
		return sc, nil
	}
	scripts := b.mu.scripts[id]
	if len(scripts) == 0 {
		return nil, fmt.Errorf("proxytest: no backend connection scripted for tenant %q", p.Tenant.Slug)
	}
	script := scripts[0]
	b.mu.scripts[id] = scripts[1:]
	b.mu.opened++
	n := b.mu.opened
	front, back := net.Pipe()
	status := b.mu.status[id]
	if status == nil {
		status = DefaultStatus
	}
	pid := uint32(1000 + n)
	if b.mu.sharedPID != 0 {
		pid = b.mu.sharedPID
	}
	sc := &router.ServerConn{
		Conn:       front,
		Reader:     wire.NewReader(front, 0),
		Writer:     bufio.NewWriterSize(front, 16<<10),
		PID:        pid,
		SecretKey:  []byte{0, 0, byte(n >> 8), byte(n)},
		Params:     maps.Clone(status),
		Addr:       fmt.Sprintf("pgfake-%d:5432", n),
		Statements: map[string]struct{}{},
		Access:     p.Policy.Access,
		Placement:  p.Where(),
	}
	c := &conn{n: n, tenant: p.Tenant.Slug, sc: sc, backend: back}
	b.mu.conns[sc] = c
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		if err := pgfake.Serve(back, script); err != nil {
			b.mu.Lock()
			b.mu.errs = append(b.mu.errs, fmt.Errorf("backend #%d of tenant %q: %w", n, c.tenant, err))
			b.mu.Unlock()
		}
	}()
	b.emit(Event{Kind: Acquire, Tenant: p.Tenant.Slug, Conn: n})
	return sc, nil
}

// Release implements proxy.Backends: Close closes the connection, Reset and
// Keep make it idle as it is.
func (b *Backends) Release(sc *router.ServerConn, mode router.ReleaseMode) {
	b.mu.Lock()
	hold := b.mu.hold
	b.mu.Unlock()
	if hold != nil {
		<-hold
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.mu.conns[sc]
	if c == nil {
		panic("proxytest: release of a connection the fake did not hand out")
	}
	for _, idle := range b.mu.idle {
		for _, i := range idle {
			if i == sc {
				panic("proxytest: connection released twice")
			}
		}
	}
	b.emit(Event{Kind: Release, Tenant: c.tenant, Conn: c.n, Mode: mode})
	if mode == router.Close {
		sc.Conn.Close()
		return
	}
	id := b.mu.placements[c.tenant].Tenant.ID
	b.mu.idle[id] = append(b.mu.idle[id], sc)
}

// HoldReleases makes every Release wait until the returned function is
// called, so that a test can see what the client gets while the proxy hands
// a connection back.
func (b *Backends) HoldReleases() (resume func()) {
	hold := make(chan struct{})
	b.mu.Lock()
	b.mu.hold = hold
	b.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			b.mu.hold = nil
			b.mu.Unlock()
			close(hold)
		})
	}
}

// HoldAcquires makes every Acquire wait until resume is called, as a
// full pool makes it wait for a connection; waiting is closed when the
// first one waits.
func (b *Backends) HoldAcquires() (waiting <-chan struct{}, resume func()) {
	hold, acquiring := make(chan struct{}), make(chan struct{})
	b.mu.Lock()
	b.mu.holdAcquire, b.mu.acquiring = hold, acquiring
	b.mu.Unlock()
	var once sync.Once
	return acquiring, func() {
		once.Do(func() {
			b.mu.Lock()
			b.mu.holdAcquire, b.mu.acquiring = nil, nil
			b.mu.Unlock()
			close(hold)
		})
	}
}

// KnownStatus implements proxy.Backends: what SetKnownStatus set, else nil.
func (b *Backends) KnownStatus(p *router.Placement, params map[string]string) map[string]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mu.status[p.Tenant.ID]
}

// Gen implements proxy.Backends: it moves on with Change.
func (b *Backends) Gen() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mu.gen
}

// WaitGen implements proxy.Backends: it returns when Change moves the
// generation past gen, or with ctx's error.
func (b *Backends) WaitGen(ctx context.Context, gen uint64) error {
	b.mu.Lock()
	if b.mu.gen != gen {
		b.mu.Unlock()
		return nil
	}
	if b.mu.genCh == nil {
		b.mu.genCh = make(chan struct{})
	}
	ch := b.mu.genCh
	b.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// OnChange implements proxy.Backends.
func (b *Backends) OnChange(fn func(catalog.Change)) {
	b.mu.Lock()
	b.mu.subs = append(b.mu.subs, fn)
	b.mu.Unlock()
}

// Config implements proxy.Backends: short queue and dial timeouts.
func (b *Backends) Config() router.Config { return b.cfg }

// DialCancel stands in for dialing a backend to send it a CancelRequest: it
// reads the request on a pipe and records a Cancel event for the connection
// whose cancel key it carries. A request with an unknown key is dropped, as a
// server does.
func (b *Backends) DialCancel(ctx context.Context, network, addr string) (net.Conn, error) {
	front, back := net.Pipe()
	go func() {
		defer back.Close()
		back.SetDeadline(time.Now().Add(5 * time.Second))
		var req [16]byte
		if _, err := io.ReadFull(back, req[:]); err != nil {
			return
		}
		pid := binary.BigEndian.Uint32(req[8:12])
		b.mu.Lock()
		defer b.mu.Unlock()
		for sc, c := range b.mu.conns {
			if sc.Addr == addr && sc.PID == pid && string(sc.SecretKey) == string(req[12:16]) {
				b.emit(Event{Kind: Cancel, Tenant: c.tenant, Conn: c.n})
			}
		}
	}()
	return front, nil
}

// ForeignPID makes Sender call backend process pid another tenant's;
// every other PID is the session's own tenant's.
func (b *Backends) ForeignPID(pid uint32) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mu.foreign == nil {
		b.mu.foreign = map[uint32]bool{}
	}
	b.mu.foreign[pid] = true
}

// SharePID makes every connection opened from now on report process id pid,
// as backends on different servers may (each has its own Addr).
func (b *Backends) SharePID(pid uint32) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mu.sharedPID = pid
}

// Sender implements proxy.Backends: the tenant's own unless ForeignPID named
// pid; the client process id recorded on the connection with that PID (the
// first found), 0 when none is.
func (b *Backends) Sender(sc *router.ServerConn, pid uint32) (uint32, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mu.foreign[pid] {
		return 0, false
	}
	for other := range b.mu.conns {
		if other.PID == pid {
			return other.ClientPID(), true
		}
	}
	return 0, true
}
