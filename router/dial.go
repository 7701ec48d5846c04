package router

import (
	"bufio"
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"

	"github.com/stratum-hq/stratum-proxy/internal/backends"
	"github.com/stratum-hq/stratum-proxy/internal/wire"
)

// dialTenant connects to the tenant's placement as the tenant's role of the
// placement's access level (policy.Access.Role), with the
// client's startup parameters, and runs the startup handshake itself, so that
// the connection is wholly the proxy's from the first byte: nothing else ever
// reads from it (a driver's background reader could otherwise be left behind
// holding the socket and take the first reply meant for a client).
func (r *Router) dialTenant(ctx context.Context, p *Placement, params map[string]string) (*ServerConn, error) {
	b := r.cfg.Backends[p.Tenant.Backend]
	ctx, cancel := context.WithTimeout(ctx, r.cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", b.Addr())
	if err != nil {
		return nil, fmt.Errorf("connecting to backend %q for tenant %q: %w", p.Tenant.Backend, p.Tenant.Slug, err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
		tc.SetKeepAlive(true)
	}
	dl, _ := ctx.Deadline()
	conn.SetDeadline(dl)
	sc, err := r.startup(conn, b, p, params)
	if err != nil {
		conn.Close()
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return nil, err // the server's own words, with its SQLSTATE
		}
		return nil, fmt.Errorf("connecting to backend %q for tenant %q: %w", p.Tenant.Backend, p.Tenant.Slug, err)
	}
	sc.Conn.SetDeadline(time.Time{})
	return sc, nil
}

// startup negotiates TLS per the backend's sslmode, authenticates the
// tenant's role and reads until the first ReadyForQuery.
func (r *Router) startup(conn net.Conn, b backends.Backend, p *Placement, params map[string]string) (*ServerConn, error) {
	if b.SSLMode != "disable" {
		req := binary.BigEndian.AppendUint32([]byte{0, 0, 0, 8}, wire.SSLRequestCode) // SSLRequest
		if _, err := conn.Write(req); err != nil {
			return nil, err
		}
		var answer [1]byte
		if _, err := conn.Read(answer[:]); err != nil {
			return nil, err
		}
		switch answer[0] {
		case wire.AcceptEncryption:
			// As libpq's sslmode=prefer and require: encrypted, not verified.
			tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, ServerName: b.Host})
			if err := tc.Handshake(); err != nil {
				return nil, fmt.Errorf("tls handshake with backend: %w", err)
			}
			conn = tc
		case wire.RefuseEncryption:
			if b.SSLMode == "require" {
				return nil, errors.New("backend refused TLS and sslmode is require")
			}
		default:
			return nil, fmt.Errorf("unexpected answer %q to SSLRequest", answer[0])
		}
	}
	sm := &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{}}
	for k, v := range params {
		sm.Parameters[k] = v
	}
	// The tenant's role of its policy's access level: PostgreSQL refuses
	// what the level does not allow, whatever SQL the session sends.
	role := p.Policy.Access.Role(p.Tenant.RoleName)
	sm.Parameters["user"] = role
	sm.Parameters["database"] = p.Tenant.Database
	// The tenant's slug as a session default on the backend, so that SHOW
	// stratum.tenant and current_setting('stratum.tenant') answer in every
	// protocol. It is informational: isolation rests on the role.
	sm.Parameters["stratum.tenant"] = p.Tenant.Slug
	if p.Tenant.Isolation == "schema" {
		// The role's own default says the same; sending it makes the
		// placement explicit even for a role whose defaults were changed.
		sm.Parameters["search_path"] = backends.SharedSearchPath(p.Tenant.Schema)
	}
	buf, err := sm.Encode(nil)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(buf); err != nil {
		return nil, err
	}
	rd := wire.NewReader(conn, r.cfg.MaxMessageSize)
	sc := &ServerConn{Conn: conn, Reader: rd, Writer: bufio.NewWriterSize(conn, 16<<10),
		Params: map[string]string{}, Addr: b.Addr(), created: time.Now(), Statements: map[string]struct{}{}}
	var conv *scram.ClientConversation
	for {
		typ, msg, err := rd.Next()
		if err != nil {
			return nil, err
		}
		body := msg[5:]
		switch typ {
		case wire.Authentication:
			if len(body) < 4 {
				return nil, errors.New("malformed authentication request")
			}
			var reply pgproto3.FrontendMessage
			switch code := binary.BigEndian.Uint32(body); code {
			case wire.AuthOK:
			case wire.AuthCleartextPassword:
				reply = &pgproto3.PasswordMessage{Password: p.password}
			case wire.AuthMD5Password:
				if len(body) < 8 {
					return nil, errors.New("malformed MD5 request")
				}
				reply = &pgproto3.PasswordMessage{Password: md5Password(role, p.password, body[4:8])}
			case wire.AuthSASL: // our roles have SCRAM-SHA-256 verifiers
				client, err := scram.SHA256.NewClient("", p.password, "")
				if err != nil {
					return nil, err
				}
				conv = client.WithMinIterations(1).NewConversation()
				first, err := conv.Step("")
				if err != nil {
					return nil, err
				}
				reply = &pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte(first)}
			case wire.AuthSASLContinue:
				if conv == nil {
					return nil, errors.New("SASL continue before SASL start")
				}
				next, err := conv.Step(string(body[4:]))
				if err != nil {
					return nil, fmt.Errorf("scram: %w", err)
				}
				reply = &pgproto3.SASLResponse{Data: []byte(next)}
			case wire.AuthSASLFinal: // verify the server
				if conv == nil {
					return nil, errors.New("SASL final before SASL start")
				}
				if _, err := conv.Step(string(body[4:])); err != nil || !conv.Valid() {
					return nil, errors.New("scram: the backend's signature does not verify")
				}
			default:
				return nil, fmt.Errorf("backend asks for unsupported authentication method %d", code)
			}
			if reply != nil {
				out, err := reply.Encode(nil)
				if err != nil {
					return nil, err
				}
				if _, err := conn.Write(out); err != nil {
					return nil, err
				}
			}
		case wire.ParameterStatus:
			var ps pgproto3.ParameterStatus
			if err := ps.Decode(body); err == nil {
				sc.Params[ps.Name] = ps.Value
			}
		case wire.BackendKeyData:
			var kd pgproto3.BackendKeyData
			if err := kd.Decode(body); err != nil {
				return nil, err
			}
			sc.PID, sc.SecretKey = kd.ProcessID, kd.SecretKey
		case wire.ErrorResponse:
			var er pgproto3.ErrorResponse
			if err := er.Decode(body); err != nil {
				return nil, err
			}
			return nil, pgconn.ErrorResponseToPgError(&er)
		case wire.NoticeResponse, wire.NegotiateProtocolVersion: // nothing to do
		case wire.ReadyForQuery:
			return sc, nil
		default:
			return nil, fmt.Errorf("unexpected message %q during backend startup", typ)
		}
	}
}

func md5Password(user, password string, salt []byte) string {
	h := md5.Sum([]byte(password + user))
	inner := hex.EncodeToString(h[:])
	h2 := md5.Sum(append([]byte(inner), salt...))
	return "md5" + hex.EncodeToString(h2[:])
}
