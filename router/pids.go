package router

import "sync"

// pidKey names a backend process: PIDs are unique per server only.
type pidKey struct {
	backend string
	pid     uint32
}

// backendPIDs maps the process id of every open backend connection the
// router dialed to that connection, so that the proxy can tell whose backend
// sent a notification (SameTenant).
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

// SameTenant reports whether the backend process senderPID, on sc's server,
// is a connection this router opened for sc's tenant. The proxy drops a
// notification whose sender is not: tenants sharing a database share its
// NOTIFY channels. A PID the router does not know (a backend of another proxy
// replica, a client connected directly, a connection already closed) counts
// as another tenant's: fail closed.
func (r *Router) SameTenant(sc *ServerConn, senderPID uint32) bool {
	r.pids.mu.Lock()
	defer r.pids.mu.Unlock()
	other := r.pids.m[pidKey{sc.backend, senderPID}]
	return other != nil && other.tenantID == sc.tenantID
}
