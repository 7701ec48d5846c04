package proxy

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/stratum-hq/stratum-proxy/internal/wire"
)

// clientConn is a client connection during startup: the (possibly TLS) conn and
// its framing reader.
type clientConn struct {
	conn net.Conn
	rd   *wire.Reader
	tls  *tls.ConnectionState
}

// serveConn runs one client connection from its first byte to its end.
func (s *Server) serveConn(raw net.Conn) {
	defer raw.Close()
	if tc, ok := raw.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
		tc.SetKeepAlive(true)
	}
	if !s.trackStarting(raw, true) {
		return
	}
	s.metrics.clientAccepted.Inc()
	if !s.limits.admitClient(s.cfg.MaxClientConnections) {
		s.metrics.countError("too_many_clients")
		raw.SetWriteDeadline(time.Now().Add(time.Second))
		raw.Write(fatalf(codeTooManyConnections, "sorry, too many clients already (stratum-proxy allows %d)", s.cfg.MaxClientConnections).encode(nil))
		s.trackStarting(raw, false)
		return
	}
	defer s.limits.releaseClient()
	started := false
	defer func() {
		if !started {
			s.trackStarting(raw, false)
		}
	}()
	log := s.log.With(zap.String("client", raw.RemoteAddr().String()))
	raw.SetDeadline(time.Now().Add(s.cfg.StartupTimeout))
	cc := &clientConn{conn: raw, rd: wire.NewReaderSize(raw, clientReadBuffer, s.cfg.MaxMessageSize)}
	startup, err := s.negotiate(cc)
	if err != nil {
		if e := (*Error)(nil); errors.As(err, &e) {
			cc.conn.Write(e.encode(nil))
		}
		switch {
		case startupPacketUnanswered(err):
			s.metrics.countError("bad_startup_packet")
			log.Debug("invalid startup packet; closing without an answer", zap.Error(err))
		case !errors.Is(err, errCancelHandled) && !errors.Is(err, io.EOF):
			log.Debug("startup failed", zap.Error(err))
		}
		return
	}
	ss := newSession(s, cc, startup, log)
	if !s.register(ss) {
		ss.cancel()
		cc.conn.Write(fatalf(codeAdminShutdown, "stratum-proxy is shutting down").encode(nil))
		return
	}
	defer s.unregister(ss)
	s.metrics.clientConns.Inc()
	defer s.metrics.clientConns.Dec()
	// A registered session is ended by Shutdown's own rules, not closed.
	s.trackStarting(raw, false)
	started = true
	ss.run()
}

var errCancelHandled = errors.New("cancel request handled")

// cancelRequestSize is the length of a CancelRequest in protocol 3.0: length,
// code, process id and a 4-byte secret.
const cancelRequestSize = 16

// startupPacketUnanswered is the rule for a startup-phase packet whose framing
// is wrong: its length word is below 8 or above the maximum, the connection
// ends before the length says it does, or a cancel request is not 16 bytes.
// PostgreSQL (ProcessStartupPacket) logs "invalid length of startup packet"
// or "incomplete startup packet" and closes the connection without sending
// anything, and clients rely on that (a quick disconnect must not read as a
// refusal), so the proxy closes silently too. A packet framed right but
// malformed inside is answered with a FATAL, as PostgreSQL does.
func startupPacketUnanswered(err error) bool {
	return errors.Is(err, wire.ErrBadLength) || errors.Is(err, wire.ErrMessageTooLarge) ||
		errors.Is(err, io.ErrUnexpectedEOF)
}

// negotiate reads startup-phase packets until a StartupMessage: it answers
// SSLRequest (TLS when configured) and GSSENCRequest (always no), and handles a
// CancelRequest. It returns the startup parameters.
func (s *Server) negotiate(cc *clientConn) (map[string]string, error) {
	for {
		pkt, err := cc.rd.ReadStartup()
		if err != nil {
			// A bad length or a truncated packet closes the connection
			// without a word (startupPacketUnanswered).
			return nil, err
		}
		code := binary.BigEndian.Uint32(pkt[4:8])
		switch {
		case code == wire.SSLRequestCode:
			if cc.tls != nil {
				return nil, fatalf(codeProtocolViolation, "SSLRequest on a connection that already uses TLS")
			}
			if cc.rd.Buffered() > 0 {
				// Bytes sent after SSLRequest but before the handshake could be
				// injected by a man in the middle (CVE-2021-23214): refuse.
				return nil, fatalf(codeProtocolViolation, "unencrypted data after SSLRequest")
			}
			if s.cfg.TLS == nil {
				if _, err := cc.conn.Write([]byte{wire.RefuseEncryption}); err != nil {
					return nil, err
				}
				continue
			}
			if _, err := cc.conn.Write([]byte{wire.AcceptEncryption}); err != nil {
				return nil, err
			}
			tc := tls.Server(cc.conn, s.cfg.TLS)
			if err := tc.Handshake(); err != nil {
				return nil, fmt.Errorf("tls handshake: %w", err)
			}
			st := tc.ConnectionState()
			cc.conn, cc.tls = tc, &st
			cc.rd = wire.NewReaderSize(tc, clientReadBuffer, s.cfg.MaxMessageSize)
		case code == wire.GSSENCRequestCode:
			// GSSAPI encryption is not offered; the client may go on with
			// SSLRequest or in the clear, as with a server built without GSSAPI.
			if _, err := cc.conn.Write([]byte{wire.RefuseEncryption}); err != nil {
				return nil, err
			}
		case code == wire.CancelRequestCode:
			if len(pkt) != cancelRequestSize {
				// PostgreSQL logs "invalid length of startup packet" and
				// closes: no answer, as for every cancel request.
				return nil, fmt.Errorf("%w: cancel request of %d bytes", wire.ErrBadLength, len(pkt))
			}
			s.cancel(cancelKey{pid: binary.BigEndian.Uint32(pkt[8:12]), secret: [4]byte(pkt[12:16])})
			return nil, errCancelHandled
		case code>>16 == 3:
			params, err := parseStartupParams(pkt[8:])
			if err != nil {
				// PostgreSQL's words for every malformed parameter list.
				e := fatalf(codeProtocolViolation, "invalid startup packet layout: expected terminator as last byte")
				e.Detail = err.Error()
				return nil, e
			}
			if s.cfg.RequireTLS && cc.tls == nil {
				return nil, fatalf(codeInvalidAuthSpec, "stratum-proxy requires TLS: connect with sslmode=require")
			}
			if err := s.negotiateVersion(cc, code, params); err != nil {
				return nil, err
			}
			return params, nil
		default:
			return nil, fatalf(codeProtocolViolation, "unsupported frontend protocol %d.%d: stratum-proxy speaks 3.0",
				code>>16, code&0xffff)
		}
	}
}

// parseStartupParams reads a StartupMessage's parameters: name and value
// strings, NUL-terminated, ended by an empty name. Any 3.x minor version has
// this layout, so newer clients are read and then negotiated down.
func parseStartupParams(b []byte) (map[string]string, error) {
	params := map[string]string{}
	for {
		name, ok := cstring(b)
		if !ok {
			return nil, errors.New("parameters are not terminated")
		}
		b = b[len(name)+1:]
		if name == "" {
			if len(b) != 0 {
				return nil, errors.New("data after the parameters")
			}
			return params, nil
		}
		value, ok := cstring(b)
		if !ok {
			return nil, fmt.Errorf("parameter %q has no value", name)
		}
		b = b[len(value)+1:]
		params[name] = value
	}
}

// negotiateVersion answers a client asking for a newer 3.x minor version or
// protocol options (_pq_.*) with NegotiateProtocolVersion, as PostgreSQL does:
// the session then runs on 3.0 without those options.
func (s *Server) negotiateVersion(cc *clientConn, code uint32, params map[string]string) error {
	var unknown []string
	for k := range params {
		if strings.HasPrefix(k, "_pq_.") {
			unknown = append(unknown, k)
			delete(params, k)
		}
	}
	if code == wire.ProtocolVersion3 && len(unknown) == 0 {
		return nil
	}
	msg := appendMsg(nil, &pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: unknown})
	_, err := cc.conn.Write(msg)
	return err
}

// isOptionSpace is isspace() in the C locale, which PostgreSQL's
// pg_split_opts uses to separate the words of the options parameter.
func isOptionSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// startupOptions splits the startup "options" parameter the way PostgreSQL's
// pg_split_opts does: white space separates words, a backslash makes the next
// character part of the word, and a trailing lone backslash is dropped.
func startupOptions(options string) (args []string) {
	var cur strings.Builder
	i := 0
	for {
		for i < len(options) && isOptionSpace(options[i]) {
			i++
		}
		if i >= len(options) {
			return args
		}
		for i < len(options) && !isOptionSpace(options[i]) {
			if options[i] == '\\' {
				i++
				if i >= len(options) {
					break
				}
			}
			cur.WriteByte(options[i])
			i++
		}
		args = append(args, cur.String())
		cur.Reset()
	}
}

// escapeOption escapes a word so that startupOptions reads it back whole.
func escapeOption(w string) string {
	var b strings.Builder
	for i := 0; i < len(w); i++ {
		if w[i] == '\\' || isOptionSpace(w[i]) {
			b.WriteByte('\\')
		}
		b.WriteByte(w[i])
	}
	return b.String()
}

// takeOption removes the setting name from an options string and returns its
// value and the options that remain, re-escaped for the backend.
func takeOption(options, name string) (value string, found bool, rest string) {
	args := startupOptions(options)
	var keep []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		var setting string
		switch {
		case a == "-c" && i+1 < len(args):
			setting = args[i+1]
			if n, v, ok := strings.Cut(setting, "="); ok && strings.EqualFold(strings.ReplaceAll(n, "-", "_"), name) {
				i++
				value, found, i = takeStrayWords(args, i, v)
				continue
			}
			keep = append(keep, a, setting)
			i++
			continue
		case strings.HasPrefix(a, "-c"):
			setting = a[2:]
		case strings.HasPrefix(a, "--"):
			setting = a[2:]
		}
		if n, v, ok := strings.Cut(setting, "="); ok && strings.EqualFold(strings.ReplaceAll(n, "-", "_"), name) {
			value, found, i = takeStrayWords(args, i, v)
			continue
		}
		keep = append(keep, a)
	}
	esc := make([]string, len(keep))
	for i, k := range keep {
		esc[i] = escapeOption(k)
	}
	return value, found, strings.Join(esc, " ")
}

// takeStrayWords returns the value v of the option at args[i] with the words
// after it that are not options ("-c stratum.tenant=Bad Name!" names "Bad
// Name!", not "Bad"): PostgreSQL would refuse such stray words, and the
// tenant's name is then reported whole. It also returns found = true and the
// index of the last word taken.
func takeStrayWords(args []string, i int, v string) (string, bool, int) {
	for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
		v += " " + args[i+1]
		i++
	}
	return v, true, i
}

// clientReadBuffer is the initial read buffer of a client connection: small,
// since most clients are idle most of the time; it grows for big messages.
const clientReadBuffer = 2 << 10

// writers recycles the client write buffers: a session holds one only while
// a backend's replies are being relayed to it, so idle clients cost none.
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 16<<10) }}
