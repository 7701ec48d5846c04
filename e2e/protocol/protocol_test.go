package protocol

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
)

// Startup-phase request codes, as a client sends them.
const (
	protoSSLRequest    = 80877103
	protoGSSENCRequest = 80877104
	protoCancelRequest = 80877102
)

// protoReplyTimeout bounds every read of a proxy reply, so a proxy that does
// not answer fails the test instead of hanging it.
const protoReplyTimeout = 5 * time.Second

// protoDial opens a raw TCP connection to the proxy, closed when the test ends
// (before the stack's teardown, which waits for startup-phase connections).
func protoDial(t *testing.T, ts *stacktest.Stack) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", ts.ProxyAddr, protoReplyTimeout)
	if err != nil {
		t.Fatalf("dialing the proxy: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func protoWrite(t *testing.T, c net.Conn, b []byte) {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(protoReplyTimeout))
	if _, err := c.Write(b); err != nil {
		t.Fatalf("writing %d bytes: %v", len(b), err)
	}
}

// protoRequest is a startup-phase packet with no parameters: a length, a code
// and an optional body.
func protoRequest(code uint32, body ...byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(8+len(body)))
	b = binary.BigEndian.AppendUint32(b, code)
	return append(b, body...)
}

// protoStartup is a StartupMessage for the demo user on client_alpha.
func protoStartup(t *testing.T, version uint32, extra map[string]string) []byte {
	t.Helper()
	params := map[string]string{"user": "demo", "database": "app", "options": "-c stratum.tenant=client_alpha"}
	for k, v := range extra {
		params[k] = v
	}
	// Encoded by hand: pgproto3 refuses versions other than 3.0 and 3.2.
	b := binary.BigEndian.AppendUint32(nil, 0)
	b = binary.BigEndian.AppendUint32(b, version)
	for k, v := range params {
		b = append(append(append(append(b, k...), 0), v...), 0)
	}
	b = append(b, 0)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	return b
}

// protoReadByte reads the single-byte answer to SSLRequest or GSSENCRequest.
func protoReadByte(t *testing.T, c net.Conn) byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(protoReplyTimeout))
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatalf("reading a one-byte answer: %v", err)
	}
	return b[0]
}

// protoReadMsg reads one backend message and returns its type and body.
func protoReadMsg(c net.Conn, timeout time.Duration) (byte, []byte, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	var hdr [5]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return 0, nil, err
	}
	l := binary.BigEndian.Uint32(hdr[1:])
	if l < 4 || l > 1<<20 {
		return hdr[0], nil, fmt.Errorf("message %q with implausible length %d", hdr[0], l)
	}
	body := make([]byte, l-4)
	if _, err := io.ReadFull(c, body); err != nil {
		return hdr[0], nil, err
	}
	return hdr[0], body, nil
}

// protoExpectError reads the next message, which must be an ErrorResponse
// (nothing may come before it: no authentication request, no data, no
// ReadyForQuery), and checks its severity and SQLSTATE (and, when not empty,
// that its message contains text).
func protoExpectError(t *testing.T, c net.Conn, severity, code, text string) *pgproto3.ErrorResponse {
	t.Helper()
	typ, body, err := protoReadMsg(c, protoReplyTimeout)
	if err != nil {
		t.Fatalf("waiting for an ErrorResponse %s: %v", code, err)
	}
	if typ != 'E' {
		t.Fatalf("got message %q (%q) where the ErrorResponse %s should come first", typ, body, code)
	}
	var er pgproto3.ErrorResponse
	if err := er.Decode(body); err != nil {
		t.Fatalf("decoding the ErrorResponse: %v", err)
	}
	if er.Severity != severity || er.Code != code || !strings.Contains(er.Message, text) {
		t.Errorf("got %s %s %q; want %s %s containing %q", er.Severity, er.Code, er.Message, severity, code, text)
	}
	return &er
}

func protoExpectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(protoReplyTimeout))
	b, err := io.ReadAll(c)
	if len(b) > 0 {
		t.Errorf("got %d more bytes before the close: %q", len(b), b)
	}
	if err != nil && !protoIsClose(err) {
		t.Errorf("connection not closed by the proxy: %v", err)
	}
}

func protoIsClose(err error) bool {
	return err == nil || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed)
}

// protoExpectAuthSASL reads the AuthenticationSASL that opens authentication
// and returns its mechanisms.
func protoExpectAuthSASL(t *testing.T, c net.Conn) []string {
	t.Helper()
	for {
		typ, body, err := protoReadMsg(c, protoReplyTimeout)
		if err != nil {
			t.Fatalf("waiting for AuthenticationSASL: %v", err)
		}
		switch typ {
		case 'v': // NegotiateProtocolVersion may come first
			continue
		case 'E':
			var er pgproto3.ErrorResponse
			er.Decode(body)
			t.Fatalf("got an error instead of AuthenticationSASL: %s %s %s", er.Severity, er.Code, er.Message)
		case 'R':
			var sasl pgproto3.AuthenticationSASL
			if err := sasl.Decode(body); err != nil {
				t.Fatalf("not an AuthenticationSASL (auth type %x): %v", body[:min(4, len(body))], err)
			}
			return sasl.AuthMechanisms
		default:
			t.Fatalf("unexpected message %q instead of AuthenticationSASL", typ)
		}
	}
}

// protoSendAndDrain sends pkt on a new connection to addr, half-closes it
// (a client that gave up) and describes what came back before the close:
// "nothing, then the close", or the bytes, or that the server did not close.
func protoSendAndDrain(t *testing.T, addr string, pkt []byte) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, protoReplyTimeout)
	if err != nil {
		t.Fatalf("dialing %s: %v", addr, err)
	}
	defer c.Close()
	protoWrite(t, c, pkt)
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(protoReplyTimeout))
	b, err := io.ReadAll(c)
	switch {
	case err != nil && !protoIsClose(err):
		return fmt.Sprintf("%q and no close (%v)", b, err)
	case len(b) > 0:
		return fmt.Sprintf("%q, then the close", b)
	}
	return "nothing, then the close"
}

// protoStillWorks checks a normal client still gets through the proxy.
func protoStillWorks(t *testing.T, ts *stacktest.Stack) {
	t.Helper()
	c := stacktest.Connect(t, ts.URL("demo", "demo", "client_alpha", ""))
	if n := stacktest.Count(t, c, `SELECT 1`); n != 1 {
		t.Errorf("SELECT 1 = %d", n)
	}
	c.Close(context.Background())
}

// protoURL is ts.url with another sslmode.
func protoURL(ts *stacktest.Stack, tenant, password, sslmode string) string {
	return strings.Replace(ts.URL("demo", password, tenant, ""), "sslmode=disable", "sslmode="+sslmode, 1)
}

// TestProtocolHostileStartup sends malformed, oversized and unusual
// startup-phase packets on raw connections: each must get a clear refusal (or
// a close) quickly, and the proxy must keep serving normal clients.
func TestProtocolHostileStartup(t *testing.T) {
	ts := stacktest.Start(t)

	t.Run("random bytes", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		for i := 0; i < 8; i++ {
			garbage := make([]byte, 64)
			for j := range garbage {
				garbage[j] = byte(rng.Uint32())
			}
			binary.BigEndian.PutUint32(garbage, 64) // a plausible length
			c := protoDial(t, ts)
			protoWrite(t, c, garbage)
			typ, body, err := protoReadMsg(c, protoReplyTimeout)
			switch {
			case err != nil && protoIsClose(err):
				// closed without a word: acceptable
			case err != nil:
				t.Fatalf("garbage %x: no answer: %v", garbage, err)
			case typ != 'E':
				t.Fatalf("garbage %x: answered %q, want an ErrorResponse", garbage, typ)
			default:
				var er pgproto3.ErrorResponse
				if err := er.Decode(body); err != nil || er.Code != "08P01" || er.Severity != "FATAL" {
					t.Errorf("garbage %x: got %s %s %q (%v), want FATAL 08P01", garbage, er.Severity, er.Code, er.Message, err)
				}
				protoExpectClosed(t, c)
			}
			c.Close()
		}
		protoStillWorks(t, ts)
	})

	// A startup packet whose framing is wrong (a length word below 8 or
	// above PostgreSQL's maximum, a packet cut short, a cancel request not
	// 16 bytes long) is closed without a word by PostgreSQL, which only logs
	// it; clients rely on that. Each is sent to the proxy and to the test
	// server directly, and both must answer the same: nothing, then the close.
	t.Run("bad framing closes silently, as PostgreSQL", func(t *testing.T) {
		pgAddr := net.JoinHostPort(ts.Srv.Host(), strconv.Itoa(ts.Srv.Port()))
		truncated := protoStartup(t, 3<<16, nil)
		binary.BigEndian.PutUint32(truncated, 100)
		for _, tc := range []struct {
			name string
			pkt  []byte
		}{
			{"length below minimum", []byte{0, 0, 0, 4, 0, 3, 0, 0}},
			{"zero length", []byte{0, 0, 0, 0}},
			{"length 7", []byte{0, 0, 0, 7, 0, 3, 0}},
			{"http request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
			{"2 GB length", []byte{0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0, 'u', 's'}},
			{"length one over the maximum", binary.BigEndian.AppendUint32([]byte{0, 0, 0x27, 0x15}, 3<<16)}, // 10005
			{"maximum length, cut short", binary.BigEndian.AppendUint32([]byte{0, 0, 0x27, 0x14}, 3<<16)},   // 10004
			{"truncated startup packet", truncated[:10]},
			{"three bytes", []byte{0, 0, 0}},
			{"short cancel request", protoRequest(protoCancelRequest, 1, 2, 3)},
			{"long cancel request", protoRequest(protoCancelRequest, 0, 0, 0, 1, 1, 2, 3, 4, 5)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				start := time.Now()
				got := protoSendAndDrain(t, ts.ProxyAddr, tc.pkt)
				if d := time.Since(start); d > 2*time.Second {
					t.Errorf("the proxy took %v to close", d)
				}
				want := protoSendAndDrain(t, pgAddr, tc.pkt)
				if got != want {
					t.Errorf("the proxy answered %s; PostgreSQL answers %s", got, want)
				}
				if got != "nothing, then the close" {
					t.Errorf("the proxy answered %s; want nothing, then the close", got)
				}
			})
		}
		protoStillWorks(t, ts)
	})

	// A packet framed right whose parameter list is malformed is a FATAL
	// protocol violation, with PostgreSQL's words.
	t.Run("unterminated parameters", func(t *testing.T) {
		pkt := append(protoRequest(3<<16), "user\x00demo"...)
		binary.BigEndian.PutUint32(pkt, uint32(len(pkt)))
		c := protoDial(t, ts)
		protoWrite(t, c, pkt)
		protoExpectError(t, c, "FATAL", "08P01", "invalid startup packet layout: expected terminator as last byte")
		protoExpectClosed(t, c)
	})

	t.Run("protocol 2.0", func(t *testing.T) {
		c := protoDial(t, ts)
		protoWrite(t, c, protoStartup(t, 2<<16, nil))
		protoExpectError(t, c, "FATAL", "08P01", "unsupported frontend protocol 2.0")
		protoExpectClosed(t, c)
		protoStillWorks(t, ts)
	})

	t.Run("protocol 3.2 with _pq_ options", func(t *testing.T) {
		c := protoDial(t, ts)
		protoWrite(t, c, protoStartup(t, 3<<16|2, map[string]string{"_pq_.test_option": "x"}))
		typ, body, err := protoReadMsg(c, protoReplyTimeout)
		if err != nil || typ != 'v' {
			t.Fatalf("got %q %v, want NegotiateProtocolVersion", typ, err)
		}
		var npv pgproto3.NegotiateProtocolVersion
		if err := npv.Decode(body); err != nil {
			t.Fatal(err)
		}
		if npv.NewestMinorProtocol != 0 || len(npv.UnrecognizedOptions) != 1 || npv.UnrecognizedOptions[0] != "_pq_.test_option" {
			t.Errorf("NegotiateProtocolVersion %+v", npv)
		}
		protoExpectAuthSASL(t, c)
	})

	// PostgreSQL accepts any 3.x minor version and answers a newer one with
	// NegotiateProtocolVersion (a client of a future release must still
	// connect); the proxy's comment on negotiateVersion promises the same.
	t.Run("newer 3.x minor version is negotiated down", func(t *testing.T) {
		c := protoDial(t, ts)
		protoWrite(t, c, protoStartup(t, 3<<16|9999, nil))
		typ, body, err := protoReadMsg(c, protoReplyTimeout)
		if err != nil {
			t.Fatal(err)
		}
		if typ == 'E' {
			var er pgproto3.ErrorResponse
			er.Decode(body)
			t.Fatalf("protocol 3.9999 refused: %s %s %q; want NegotiateProtocolVersion (newest 3.0), then authentication",
				er.Severity, er.Code, er.Message)
		}
		var npv pgproto3.NegotiateProtocolVersion
		if typ != 'v' || npv.Decode(body) != nil || npv.NewestMinorProtocol != 0 {
			t.Fatalf("got %q %+v, want NegotiateProtocolVersion with newest minor 0", typ, npv)
		}
		protoExpectAuthSASL(t, c)
	})

	t.Run("SSLRequest then TLS", func(t *testing.T) {
		c := protoDial(t, ts)
		protoWrite(t, c, protoRequest(protoSSLRequest))
		if b := protoReadByte(t, c); b != 'S' {
			t.Fatalf("SSLRequest answered %q, want 'S'", b)
		}
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		tc.SetDeadline(time.Now().Add(protoReplyTimeout))
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		defer tc.Close()
		if _, err := tc.Write(protoStartup(t, 3<<16, nil)); err != nil {
			t.Fatal(err)
		}
		mechs := protoExpectAuthSASL(t, tc)
		if strings.Join(mechs, ",") != "SCRAM-SHA-256-PLUS,SCRAM-SHA-256" {
			t.Errorf("mechanisms over TLS: %q, want SCRAM-SHA-256-PLUS and SCRAM-SHA-256", mechs)
		}
	})

	t.Run("SSLRequest twice", func(t *testing.T) {
		c := protoDial(t, ts)
		protoWrite(t, c, protoRequest(protoSSLRequest))
		if b := protoReadByte(t, c); b != 'S' {
			t.Fatalf("SSLRequest answered %q, want 'S'", b)
		}
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		tc.SetDeadline(time.Now().Add(protoReplyTimeout))
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		defer tc.Close()
		if _, err := tc.Write(protoRequest(protoSSLRequest)); err != nil {
			t.Fatal(err)
		}
		protoExpectError(t, tc, "FATAL", "08P01", "already uses TLS")
	})

	t.Run("data after SSLRequest", func(t *testing.T) {
		c := protoDial(t, ts)
		// One write: the StartupMessage arrives with the SSLRequest, before
		// any handshake, as a man in the middle would inject it.
		protoWrite(t, c, append(protoRequest(protoSSLRequest), protoStartup(t, 3<<16, nil)...))
		typ, body, err := protoReadMsg(c, protoReplyTimeout)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		if typ == 'S' {
			t.Fatal("proxy accepted the SSLRequest despite the bytes after it (CVE-2021-23214)")
		}
		var er pgproto3.ErrorResponse
		if typ != 'E' || er.Decode(body) != nil || er.Severity != "FATAL" || er.Code != "08P01" ||
			!strings.Contains(er.Message, "unencrypted data after SSLRequest") {
			t.Fatalf("got %q %s %s %q, want FATAL 08P01 unencrypted data after SSLRequest", typ, er.Severity, er.Code, er.Message)
		}
		protoExpectClosed(t, c)
		protoStillWorks(t, ts)
	})

	t.Run("GSSENCRequest then plain startup", func(t *testing.T) {
		c := protoDial(t, ts)
		protoWrite(t, c, protoRequest(protoGSSENCRequest))
		if b := protoReadByte(t, c); b != 'N' {
			t.Fatalf("GSSENCRequest answered %q, want 'N'", b)
		}
		protoWrite(t, c, protoStartup(t, 3<<16, nil))
		mechs := protoExpectAuthSASL(t, c)
		// Channel binding needs TLS: in the clear only plain SCRAM is offered.
		if strings.Join(mechs, ",") != "SCRAM-SHA-256" {
			t.Errorf("mechanisms in the clear: %q, want only SCRAM-SHA-256", mechs)
		}
	})

	t.Run("GSSENCRequest then SSLRequest", func(t *testing.T) {
		c := protoDial(t, ts)
		protoWrite(t, c, protoRequest(protoGSSENCRequest))
		if b := protoReadByte(t, c); b != 'N' {
			t.Fatalf("GSSENCRequest answered %q, want 'N'", b)
		}
		protoWrite(t, c, protoRequest(protoSSLRequest))
		if b := protoReadByte(t, c); b != 'S' {
			t.Fatalf("SSLRequest after GSSENCRequest answered %q, want 'S'", b)
		}
	})

	t.Run("200 silent connections", func(t *testing.T) {
		var conns []net.Conn
		for i := 0; i < 200; i++ {
			conns = append(conns, protoDial(t, ts))
		}
		protoStillWorks(t, ts)
		for _, c := range conns {
			c.Close()
		}
		protoStillWorks(t, ts)
	})
}

// TestProtocolHostileSession sends bad messages after a successful startup
// and authentication.
func TestProtocolHostileSession(t *testing.T) {
	ts := stacktest.Start(t)
	hijack := func(t *testing.T) net.Conn {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		pc, err := pgconn.Connect(ctx, ts.URL("demo", "demo", "client_alpha", ""))
		if err != nil {
			t.Fatal(err)
		}
		hc, err := pc.Hijack()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { hc.Conn.Close() })
		return hc.Conn
	}

	t.Run("2 GB message", func(t *testing.T) {
		c := hijack(t)
		protoWrite(t, c, []byte{'Q', 0x7f, 0xff, 0xff, 0xff})
		protoExpectError(t, c, "FATAL", "54000", "message too large")
		protoExpectClosed(t, c)
		protoStillWorks(t, ts)
	})

	t.Run("length below minimum", func(t *testing.T) {
		c := hijack(t)
		protoWrite(t, c, []byte{'Q', 0, 0, 0, 3})
		protoExpectError(t, c, "FATAL", "08P01", "invalid message")
		protoExpectClosed(t, c)
	})

	t.Run("unknown message type", func(t *testing.T) {
		c := hijack(t)
		protoWrite(t, c, []byte{'z', 0, 0, 0, 4})
		protoExpectError(t, c, "FATAL", "08P01", "invalid frontend message type")
		protoExpectClosed(t, c)
		protoStillWorks(t, ts)
	})

	t.Run("truncated query then close", func(t *testing.T) {
		c := hijack(t)
		protoWrite(t, c, []byte{'Q', 0, 0, 0, 100, 'S', 'E', 'L'})
		c.(*net.TCPConn).CloseWrite()
		protoExpectClosed(t, c)
		protoStillWorks(t, ts)
	})
}

// TestProtocolTLS connects through TLS with pgx and with psql (libpq), and
// checks SCRAM channel binding (SCRAM-SHA-256-PLUS) is offered over TLS.
func TestProtocolTLS(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()

	t.Run("pgx sslmode=require", func(t *testing.T) {
		c := stacktest.Connect(t, protoURL(ts, "client_alpha", "demo", "require"))
		if n := stacktest.Count(t, c, `SELECT 1`); n != 1 {
			t.Errorf("SELECT 1 = %d", n)
		}
		if _, ok := c.PgConn().Conn().(*tls.Conn); !ok {
			t.Errorf("connection is a %T, not TLS", c.PgConn().Conn())
		}
	})

	t.Run("pgx channel_binding=require", func(t *testing.T) {
		c := stacktest.Connect(t, protoURL(ts, "client_alpha", "demo", "require")+"&channel_binding=require")
		if n := stacktest.Count(t, c, `SELECT 1`); n != 1 {
			t.Errorf("SELECT 1 = %d", n)
		}
	})

	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Fatal("psql is not installed: run make deps")
	}
	home := t.TempDir()
	run := func(url, sql string) (stdout, stderr string, err error) {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(cctx, psql, url, "-X", "-w", "-A", "-t", "-c", sql)
		// No PG* variables from the environment, and a HOME with no
		// ~/.postgresql whose root.crt would turn require into verify-ca.
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "PG") && !strings.HasPrefix(kv, "HOME=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, "HOME="+home, "PGCONNECT_TIMEOUT=10")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err = cmd.Run()
		return out.String(), errb.String(), err
	}

	t.Run("psql", func(t *testing.T) {
		url := protoURL(ts, "client_beta", "demo", "require")
		out, stderr, err := run(url, `INSERT INTO orders (item) VALUES ('from_psql') RETURNING item`)
		if err != nil || strings.Split(strings.TrimSpace(out), "\n")[0] != "from_psql" {
			t.Fatalf("psql INSERT … RETURNING: %v\nstdout: %s\nstderr: %s", err, out, stderr)
		}
		out, stderr, err = run(url, `SELECT count(*) FROM orders WHERE item='from_psql'`)
		if err != nil || strings.TrimSpace(out) != "1" {
			t.Errorf("psql count: %v\nstdout: %s\nstderr: %s", err, out, stderr)
		}
		out, stderr, err = run(url, `SHOW stratum.tenant`)
		if err != nil || strings.TrimSpace(out) != "client_beta" {
			t.Errorf("psql SHOW stratum.tenant: %v\nstdout: %s\nstderr: %s", err, out, stderr)
		}
		// The row went to client_beta only.
		a := stacktest.Connect(t, ts.URL("demo", "demo", "client_alpha", ""))
		if n := stacktest.Count(t, a, `SELECT count(*) FROM orders WHERE item='from_psql'`); n != 0 {
			t.Errorf("client_alpha sees %d of client_beta's psql rows", n)
		}
		out, stderr, err = run(protoURL(ts, "client_beta", "wrong", "require"), `SELECT 1`)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == 0 || !strings.Contains(stderr, "password authentication failed") {
			t.Errorf("psql with a wrong password: %v\nstdout: %s\nstderr: %s", err, out, stderr)
		}
	})

	// libpq's channel_binding=require refuses a server that does not offer
	// SCRAM-SHA-256-PLUS over TLS.
	t.Run("psql channel_binding=require", func(t *testing.T) {
		out, stderr, err := run(protoURL(ts, "client_beta", "demo", "require")+"&channel_binding=require", `SHOW stratum.tenant`)
		if err != nil || strings.TrimSpace(out) != "client_beta" {
			t.Errorf("psql with channel_binding=require: %v\nstdout: %s\nstderr: %s", err, out, stderr)
		}
	})
}

// TestProtocolCancel checks CancelRequest handling: pgx's cancel on context
// end (in the clear and over TLS) stops the backend query, and a request with
// the wrong secret key stops nothing.
func TestProtocolCancel(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	connectCancelling := func(t *testing.T, url string) *pgx.Conn {
		t.Helper()
		cfg, err := pgx.ParseConfig(url)
		if err != nil {
			t.Fatal(err)
		}
		// pgx's default only sets a deadline; this sends a CancelRequest.
		cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
			return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 2500 * time.Millisecond}
		}
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		c, err := pgx.ConnectConfig(cctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}

	for _, mode := range []string{"disable", "require"} {
		t.Run("context cancel sslmode="+mode, func(t *testing.T) {
			c := connectCancelling(t, protoURL(ts, "client_alpha", "demo", mode))
			qctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := c.Exec(qctx, `SELECT pg_sleep(30)`)
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("cancelled query returned after %v", d)
			}
			if stacktest.SQLState(err) != "57014" {
				t.Errorf("cancelled query: %v, want SQLSTATE 57014", err)
			}
			protoStillWorks(t, ts)
		})
	}

	// sendCancel sends a raw CancelRequest and waits for the proxy to close
	// the connection, which it does once it has handled the request.
	sendCancel := func(t *testing.T, pid uint32, key []byte) {
		t.Helper()
		c := protoDial(t, ts)
		body := binary.BigEndian.AppendUint32(nil, pid)
		protoWrite(t, c, protoRequest(protoCancelRequest, append(body, key...)...))
		protoExpectClosed(t, c)
		c.Close()
	}
	runSleep := func(c *pgx.Conn, seconds int) (chan error, time.Time) {
		done := make(chan error, 1)
		start := time.Now()
		go func() {
			_, err := c.Exec(ctx, fmt.Sprintf(`SELECT pg_sleep(%d)`, seconds))
			done <- err
		}()
		return done, start
	}
	waitRunning := func(t *testing.T, pid uint32) {
		t.Helper()
		// The query is running once the backend shows it active; watch it
		// through the test server directly.
		sc := ts.SrvConn(t, "postgres")
		deadline := time.Now().Add(protoReplyTimeout)
		for time.Now().Before(deadline) {
			if n := stacktest.Count(t, sc, `SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(%'`); n > 0 {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("the pg_sleep query (proxy pid %d) never showed up as active", pid)
	}

	t.Run("raw cancel with the right key", func(t *testing.T) {
		c := stacktest.Connect(t, ts.URL("demo", "demo", "client_alpha", ""))
		pid, key := c.PgConn().PID(), c.PgConn().SecretKey()
		done, start := runSleep(c, 30)
		waitRunning(t, pid)
		sendCancel(t, pid, key)
		select {
		case err := <-done:
			if stacktest.SQLState(err) != "57014" {
				t.Errorf("cancelled query: %v, want SQLSTATE 57014", err)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("query not cancelled %v after it started", time.Since(start))
		}
		if n := stacktest.Count(t, c, `SELECT 1`); n != 1 {
			t.Error("session unusable after a cancel")
		}
	})

	t.Run("raw cancel with a wrong key", func(t *testing.T) {
		c := stacktest.Connect(t, ts.URL("demo", "demo", "client_alpha", ""))
		pid, key := c.PgConn().PID(), c.PgConn().SecretKey()
		wrong := append([]byte(nil), key...)
		for i := range wrong {
			wrong[i] ^= 0xff
		}
		done, start := runSleep(c, 2)
		waitRunning(t, pid)
		sendCancel(t, pid, wrong)
		sendCancel(t, pid, append(append([]byte(nil), key...), 0)) // the key and one more byte
		sendCancel(t, pid^1, key)                                  // the key with another pid
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("query with a wrong-key cancel: %v, want it to finish normally", err)
			}
			if d := time.Since(start); d < 2*time.Second {
				t.Errorf("pg_sleep(2) finished after %v", d)
			}
		case <-time.After(protoReplyTimeout):
			t.Fatal("pg_sleep(2) did not finish")
		}
	})
}
