package router

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stratum-hq/stratum-proxy/internal/wire"
	"github.com/stratum-hq/stratum-proxy/policy"
)

// ServerConn is one authenticated connection to a backend, taken over from pgconn
// so that the proxy can relay raw protocol messages on it.
//
// A ServerConn belongs to whoever acquired it until it is handed back with
// Release; it is never shared between two sessions at once.
type ServerConn struct {
	// Conn is the raw (possibly TLS) connection. Reads go through Reader.
	Conn net.Conn
	// Reader frames backend messages.
	Reader *wire.Reader
	// Writer buffers messages to the backend; the user flushes it.
	Writer *bufio.Writer
	// PID and SecretKey are the backend's cancel key.
	PID       uint32
	SecretKey []byte
	// Params are the ParameterStatus values the backend reported at startup.
	Params map[string]string
	// Addr is the backend's host:port, where cancel requests go.
	Addr string
	// Statements are the named prepared statements the proxy made on this
	// connection (transaction pooling shares them between sessions of the
	// tenant). Only the connection's current holder touches it.
	Statements map[string]struct{}
	// Unnamed says whose unnamed prepared statement the connection holds:
	// a token the proxy gave the last Parse of the unnamed statement it
	// sent here, 0 when a simple Query or a reset dropped it. Transaction
	// pooling compares it with a client's own token to know whether that
	// client's unnamed statement must be prepared again before a Bind.
	Unnamed uint64
	// Settings is the signature of the session settings (client SETs) last
	// applied on this connection; empty when it has none.
	Settings string
	// Policy is the signature of the tenant policy (Policy.Sig) last applied
	// on this connection; empty when none was, or when a reset undid it.
	Policy string
	// Access is the access level of the role the connection is logged in
	// as (policy.Access.Role); fixed for its lifetime. Acquire hands a
	// session only a connection of its placement's level.
	Access policy.Access
	// Placement is where the connection was dialed for (Placement.Where);
	// fixed for its lifetime. Acquire hands a session only a connection of
	// its placement's Where, and a connection of a Where the tenant has left
	// is closed when handed back.
	Placement string

	// inUse is true from Acquire to Release: a double release would hand one
	// connection to two sessions, so Release refuses it.
	inUse   atomic.Bool
	created time.Time
	idleAt  time.Time
	// spare marks a connection dialed ahead of demand (addSpare) until it is
	// first pooled: it goes to the far end of the idle list, so that a busy
	// pool keeps reusing its warm connections and the spare waits for a
	// burst (and is the first reaped after it).
	spare    bool
	key      string // startup parameters, as a pool key
	slug     string // the tenant's slug it was told at startup (stratum.tenant)
	tenantID string
	backend  string
	pids     *backendPIDs // where it is registered by PID, or nil
	// clientPID is the process id the proxy gave the client of the session
	// that holds or last held the connection (SetClientPID), 0 before any:
	// a notification this backend sends is named by it (Router.Sender).
	// Other sessions' pumps read it, hence atomic.
	clientPID atomic.Uint32
}

// SetClientPID records the process id the client of the session taking the
// connection was given in BackendKeyData. It stays after Release: a
// notification is sent at the commit that ends the holder's transaction and
// may reach a listener after the connection went back to its pool.
func (s *ServerConn) SetClientPID(pid uint32) { s.clientPID.Store(pid) }

// ClientPID is what SetClientPID recorded last, 0 before any.
func (s *ServerConn) ClientPID() uint32 { return s.clientPID.Load() }

// DialFunc opens a network connection, like (*net.Dialer).DialContext.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Cancel asks the backend to cancel whatever this connection is running, the way
// a PostgreSQL client does: a CancelRequest on a new connection.
func (s *ServerConn) Cancel(ctx context.Context) error {
	return s.CancelVia(ctx, nil)
}

// CancelVia is Cancel over a connection that dial opens (nil: a net.Dialer's).
func (s *ServerConn) CancelVia(ctx context.Context, dial DialFunc) error {
	return sendCancel(ctx, dial, s.Addr, s.PID, s.SecretKey)
}

// SendCancel sends a CancelRequest for (pid, key) to the server at addr.
func SendCancel(ctx context.Context, addr string, pid uint32, key []byte) error {
	return sendCancel(ctx, nil, addr, pid, key)
}

func sendCancel(ctx context.Context, dial DialFunc, addr string, pid uint32, key []byte) error {
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("dialing for cancel: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	msg := make([]byte, 12, 12+len(key))
	binary.BigEndian.PutUint32(msg[0:], uint32(12+len(key)))
	binary.BigEndian.PutUint32(msg[4:], wire.CancelRequestCode)
	binary.BigEndian.PutUint32(msg[8:], pid)
	msg = append(msg, key...)
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("sending cancel: %w", err)
	}
	// The server closes the connection when done; wait for that briefly so the
	// cancel has been processed when we return.
	var b [1]byte
	c.Read(b[:])
	return nil
}

// alive reports whether an idle connection is fit to hand out: its socket is
// open and holds no unread bytes (checked when it has been idle longer than after). Unread bytes would be a reply meant for the
// connection's previous user (or a server's FATAL goodbye), so the
// connection is not reused. One non-blocking peek, no waiting.
func (s *ServerConn) alive(after time.Duration) bool {
	if s.Reader.Buffered() > 0 {
		return false
	}
	if time.Since(s.idleAt) < after {
		// Handed back moments ago after a complete exchange: a peek per
		// transaction would cost a system call on the hot path for nothing.
		return true
	}
	sc, ok := s.Conn.(syscall.Conn)
	if !ok {
		return true // TLS: the record layer hides the socket; trust the read path
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var rerr error
	var b [1]byte
	err = raw.Read(func(fd uintptr) bool {
		_, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	})
	if err != nil {
		return false
	}
	if rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK {
		return true // nothing to read: open and quiet
	}
	return false // data waiting, EOF (n == 0) or an error
}

// reset returns the connection to a clean session state (DISCARD ALL) and
// reports whether that worked and the connection is idle, i.e. reusable.
func (s *ServerConn) reset(timeout time.Duration) bool {
	s.Conn.SetDeadline(time.Now().Add(timeout))
	defer s.Conn.SetDeadline(time.Time{})
	const q = "DISCARD ALL\x00"
	msg := []byte{wire.Query, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(msg[1:], uint32(4+len(q)))
	msg = append(msg, q...)
	if _, err := s.Writer.Write(msg); err != nil {
		return false
	}
	if err := s.Writer.Flush(); err != nil {
		return false
	}
	s.Statements = map[string]struct{}{}
	s.Unnamed = 0
	s.Settings = ""
	s.Policy = ""
	ok := true
	for {
		typ, m, err := s.Reader.Next()
		if err != nil {
			return false
		}
		switch typ {
		case wire.ErrorResponse:
			ok = false
		case wire.ReadyForQuery:
			return ok && len(m) == 6 && m[5] == wire.TxIdle
		}
	}
}

// Close closes the connection, politely (Terminate) when it can.
func (s *ServerConn) Close() {
	if s.pids != nil {
		s.pids.remove(s)
	}
	s.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	s.Writer.Write([]byte{wire.Terminate, 0, 0, 0, 4})
	s.Writer.Flush()
	s.Conn.Close()
}
