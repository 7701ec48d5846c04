package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/stratum-hq/stratum-proxy/internal/wire"
	"github.com/stratum-hq/stratum-proxy/proxy/proxytest"
	"github.com/stratum-hq/stratum-proxy/router"
)

// harness is a proxy Server over a proxytest fake: tenants t1 and t2 under
// root, and the user "app" (password "secret") bound to root, who may switch.
type harness struct {
	t          *testing.T
	be         *proxytest.Backends
	srv        *Server
	addr       string
	root       *router.Placement
	t1, t2     *router.Placement
	configured func(*Config)
	log        *zap.Logger // the server's; zaptest's unless a test sets one before start
}

const testWait = 5 * time.Second

func newHarness(t *testing.T, poolMode string) *harness {
	t.Helper()
	be := proxytest.New()
	h := &harness{t: t, be: be}
	h.root = be.AddTenant("root", nil)
	h.t1 = be.AddTenant("t1", h.root)
	h.t2 = be.AddTenant("t2", h.root)
	be.AddUser("app", "secret", h.root, true)
	if poolMode == PoolTransaction {
		// Sessions start without a backend, as with a warm pool.
		be.SetKnownStatus(h.t1, proxytest.DefaultStatus)
		be.SetKnownStatus(h.t2, proxytest.DefaultStatus)
	}
	h.configured = func(c *Config) { c.PoolMode = poolMode }
	return h
}

// start runs the server; tests adjust the harness (tenants, config) before.
func (h *harness) start() {
	h.t.Helper()
	cfg := Config{}
	h.configured(&cfg)
	if h.log == nil {
		h.log = zaptest.NewLogger(h.t)
	}
	h.srv = New(cfg, h.be, h.log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	go h.srv.Serve(ln)
	h.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		h.srv.Shutdown(ctx)
		if err := h.be.Close(); err != nil {
			h.t.Errorf("backend scripts: %v", err)
		}
		for _, e := range h.be.Pending() {
			h.t.Errorf("unexpected backend event: %s", e)
		}
	})
}

// expectEvents reads the next backend events and compares them with want, in
// order.
func (h *harness) expectEvents(want ...string) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	for i, w := range want {
		e, err := h.be.Next(ctx)
		if err != nil {
			h.t.Fatalf("event %d: want %q: %v", i+1, w, err)
		}
		if e.String() != w {
			h.t.Fatalf("event %d: got %q, want %q", i+1, e, w)
		}
	}
}

// expectEventsAnyOrder is expectEvents for events that happen concurrently.
func (h *harness) expectEventsAnyOrder(want ...string) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	left := map[string]int{}
	for _, w := range want {
		left[w]++
	}
	for range want {
		e, err := h.be.Next(ctx)
		if err != nil {
			h.t.Fatalf("want %v: %v", want, err)
		}
		if left[e.String()] == 0 {
			h.t.Fatalf("got %q, want one of %v", e, want)
		}
		left[e.String()]--
	}
}

// client is a connection to the proxy, authenticated by pgconn and then
// driven message by message.
type client struct {
	t    *testing.T
	conn net.Conn
	fe   *pgproto3.Frontend
	pid  uint32
	key  []byte
}

// connect opens a session of tenant as user app.
func (h *harness) connect(tenant string) *client {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	pc, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://app.%s:secret@%s/app?sslmode=disable", tenant, h.addr))
	if err != nil {
		h.t.Fatalf("connecting: %v", err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		h.t.Fatal(err)
	}
	c := &client{t: h.t, conn: hc.Conn, fe: hc.Frontend, pid: hc.PID, key: hc.SecretKey}
	h.t.Cleanup(func() { c.conn.Close() })
	return c
}

func (c *client) send(msgs ...pgproto3.FrontendMessage) {
	c.t.Helper()
	for _, m := range msgs {
		c.fe.Send(m)
	}
	if err := c.fe.Flush(); err != nil {
		c.t.Fatalf("sending: %v", err)
	}
}

func (c *client) receive() pgproto3.BackendMessage {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(testWait))
	m, err := c.fe.Receive()
	if err != nil {
		c.t.Fatalf("receiving: %v", err)
	}
	return m
}

// expect reads messages and compares each with want (same type and encoding).
func (c *client) expect(want ...pgproto3.BackendMessage) {
	c.t.Helper()
	for i, w := range want {
		got := c.receive()
		gb, _ := got.Encode(nil)
		wb, _ := w.Encode(nil)
		if !bytes.Equal(gb, wb) {
			c.t.Fatalf("message %d: got %T %+v, want %T %+v", i+1, got, got, w, w)
		}
	}
}

// expectAfterStatus is expect after any ParameterStatus messages, which come
// in no fixed order.
func (c *client) expectAfterStatus(want ...pgproto3.BackendMessage) {
	c.t.Helper()
	for {
		got := c.receive()
		if _, ok := got.(*pgproto3.ParameterStatus); ok {
			continue
		}
		gb, _ := got.Encode(nil)
		wb, _ := want[0].Encode(nil)
		if !bytes.Equal(gb, wb) {
			c.t.Fatalf("got %T %+v, want %T %+v", got, got, want[0], want[0])
		}
		c.expect(want[1:]...)
		return
	}
}

// expectError reads an ErrorResponse with the SQLSTATE code and severity.
func (c *client) expectError(severity, code string) {
	c.t.Helper()
	got := c.receive()
	e, ok := got.(*pgproto3.ErrorResponse)
	if !ok {
		c.t.Fatalf("got %T %+v, want ErrorResponse %s", got, got, code)
	}
	if e.Code != code || e.Severity != severity {
		c.t.Fatalf("got %s %s (%s), want %s %s", e.Severity, e.Code, e.Message, severity, code)
	}
}

// expectClosed waits for the proxy to close the connection.
func (c *client) expectClosed() {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(testWait))
	if m, err := c.fe.Receive(); err == nil {
		c.t.Fatalf("got %T %+v, want the connection closed", m, m)
	}
}

// rawTypes reads the client connection's raw bytes for up to d, or until a
// ReadyForQuery arrives, and returns the types of the whole messages read.
// Use it last: the bytes it reads are gone for expect.
func (c *client) rawTypes(d time.Duration, buf *[]byte) []byte {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		var types []byte
		for rest := *buf; len(rest) >= 5; {
			n := 1 + int(binary.BigEndian.Uint32(rest[1:5]))
			if len(rest) < n {
				break
			}
			types = append(types, rest[0])
			rest = rest[n:]
		}
		if bytes.IndexByte(types, wire.ReadyForQuery) >= 0 || !time.Now().Before(deadline) {
			return types
		}
		c.conn.SetReadDeadline(deadline)
		chunk := make([]byte, 512)
		n, err := c.conn.Read(chunk)
		*buf = append(*buf, chunk[:n]...)
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			c.t.Fatalf("reading: %v", err)
		}
	}
}

// Reply builders.

func complete(tag string) *pgproto3.CommandComplete {
	return &pgproto3.CommandComplete{CommandTag: []byte(tag)}
}

func ready(status byte) *pgproto3.ReadyForQuery { return &pgproto3.ReadyForQuery{TxStatus: status} }

func query(sql string) *pgproto3.Query { return &pgproto3.Query{String: sql} }
