package router

import "sync"

// pidKey names a backend process: PIDs are unique per server only.
type pidKey struct {
	backend string
	pid     uint32
}

// backendPIDs maps the process id of every open backend connection the
// router dialed to that connection, so that the proxy can tell whose backend
// sent a notification, and which client session it served (Sender).
type backendPIDs struct {
	mu sync.Mutex
	m  map[pidKey]*ServerConn
}

func (b *backendPIDs) add(sc *ServerConn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[pidKey]*ServerConn{}
	}
	b.m[pidKey{sc.backend, sc.PID}] = sc
	sc.pids = b
}

// remove forgets sc, unless its PID already names a newer connection.
func (b *backendPIDs) remove(sc *ServerConn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := pidKey{sc.backend, sc.PID}
	if b.m[k] == sc {
		delete(b.m, k)
	}
}

// Sender looks up the backend process senderPID of a notification that
// arrived on sc. sameTenant reports whether senderPID, on sc's server, is a
// connection this router opened for sc's tenant; the proxy drops a
// notification whose sender is not: tenants sharing a database share its
// NOTIFY channels. A PID the router does not know (a backend of another proxy
// replica, a client connected directly, a connection already closed) counts
// as another tenant's: fail closed. clientPID is the process id the proxy
// gave the client of the session that last held the sender (SetClientPID),
// or 0 when none is recorded; it is told only for the same tenant.
func (r *Router) Sender(sc *ServerConn, senderPID uint32) (clientPID uint32, sameTenant bool) {
	r.pids.mu.Lock()
	defer r.pids.mu.Unlock()
	other := r.pids.m[pidKey{sc.backend, senderPID}]
	if other == nil || other.tenantID != sc.tenantID {
		return 0, false
	}
	return other.ClientPID(), true
}
