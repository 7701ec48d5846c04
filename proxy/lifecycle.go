package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/stratum-hq/stratum-proxy/router"
)

// run authenticates, connects to the tenant and relays until the client leaves.
func (ss *session) run() {
	defer func() {
		if ss.tenantCounted != "" {
			ss.srv.limits.releaseTenant(ss.tenantCounted)
		}
	}()
	defer ss.cancel()
	defer ss.stopWatch()
	ctx, cancel := context.WithTimeout(ss.ctx, ss.srv.cfg.StartupTimeout)
	sc, err := ss.start(ctx)
	cancel()
	if err != nil {
		e := asError(err, true)
		ss.cc.conn.Write(e.encode(nil))
		ss.srv.metrics.countError("refused_" + e.Code)
		ss.log.Info("session refused", zap.String("code", e.Code), zap.String("reason", e.Message), zap.String("detail", e.Detail))
		return
	}
	ss.cc.conn.SetDeadline(time.Time{})
	switch {
	case sc == nil: // transaction pooling with known parameters: no backend yet
	case ss.transactionPooling():
		ss.srv.backends.Release(sc, router.Keep)
	default:
		ss.attachLocked(sc)
	}
	ss.log.Info("session started")
	err = ss.relay()
	ss.finish()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		ss.log.Info("session ended", zap.Error(err))
	} else {
		ss.log.Info("session ended")
	}
}

// start runs the startup phase: user lookup, SCRAM, tenant identification,
// a backend connection (for its parameters), and the messages that open the session.
func (ss *session) start(ctx context.Context) (*router.ServerConn, error) {
	name := ss.startup[paramUser]
	if name == "" {
		return nil, fatalf(codeInvalidAuthSpec, "no PostgreSQL user name specified in startup packet")
	}
	ip := sourceIP(ss.cc.conn.RemoteAddr())
	lim, cfg := ss.srv.limits, ss.srv.cfg
	if wait := lim.throttled(sourceKey(ip), cfg.knobs.now()); wait > 0 {
		ss.srv.metrics.countError("auth_throttled")
		return nil, fatalf(codeInvalidAuthSpec, "too many failed authentications from %s: try again in %s", ip, wait.Round(time.Second))
	}
	u, suffix, err := ss.findUser(ctx, name)
	if err != nil {
		return nil, catalogError(err, true)
	}
	key := userKey(ip, throttleName(name, u))
	if wait := lim.throttled(key, cfg.knobs.now()); wait > 0 {
		ss.srv.metrics.countError("auth_throttled")
		return nil, fatalf(codeInvalidAuthSpec, "too many failed authentications for user %q from %s: try again in %s", name, ip, wait.Round(time.Second))
	}
	if err := ss.authenticate(u, name); err != nil {
		var e *Error
		if errors.As(err, &e) && e.Code == codeInvalidPassword {
			lim.authFailed(key, cfg.AuthFailureThreshold, cfg.AuthFailureWindow, cfg.AuthLockout, cfg.knobs.now())
			lim.authFailed(sourceKey(ip), cfg.AuthSourceFailureThreshold, cfg.AuthFailureWindow, cfg.AuthLockout, cfg.knobs.now())
			ss.srv.metrics.countError("auth_failed")
		}
		return nil, err
	}
	lim.authSucceeded(key)
	ss.user = u
	p, err := ss.identify(ctx, suffix)
	if err != nil {
		return nil, err
	}
	if !lim.admitTenant(p.Tenant.ID, ss.srv.cfg.MaxTenantConnections) {
		ss.srv.metrics.countError("too_many_tenant_clients")
		return nil, fatalf(codeTooManyConnections, "too many connections for tenant %q (stratum-proxy allows %d per tenant)",
			p.Tenant.Slug, ss.srv.cfg.MaxTenantConnections)
	}
	ss.tenantCounted = p.Tenant.ID
	ss.initial = p
	ss.setTenant(p)
	ss.counters = ss.srv.metrics.forTenant(p.Tenant.Slug)
	ss.userLog = ss.log.With(zap.String("user", u.Name))
	ss.log = ss.userLog.With(zap.String("tenant", p.Tenant.Slug))
	// Authenticated: from here the client waits in the pool's queue, bounded
	// by the queue timeout rather than the startup timeout.
	ss.cc.conn.SetDeadline(time.Time{})
	var sc *router.ServerConn
	status := map[string]string(nil)
	if ss.transactionPooling() {
		// A backend is needed only to learn its parameters; a known set spares it.
		status = ss.srv.backends.KnownStatus(p, ss.params)
	}
	if status == nil {
		cfg := ss.srv.backends.Config()
		// Derived from the session's context, not ctx: the startup timeout
		// no longer applies.
		actx, cancel := context.WithTimeout(ss.ctx, cfg.QueueTimeout+cfg.DialTimeout)
		defer cancel()
		if sc, err = ss.timedAcquire(actx, p); err != nil {
			return nil, ss.acquireError(err, true)
		}
		status = sc.Params
	}
	if sc != nil && !ss.transactionPooling() {
		ss.takeBackendPID(sc)
	}
	var out []byte
	for k, v := range status {
		out = appendMsg(out, &pgproto3.ParameterStatus{Name: k, Value: v})
	}
	out = append(out, ss.startupNotice...)
	out = appendMsg(out, &pgproto3.BackendKeyData{ProcessID: ss.key.pid, SecretKey: ss.key.secret[:]})
	out = readyForQuery(out, txIdle)
	if _, err := ss.cc.conn.Write(out); err != nil {
		if sc != nil {
			ss.srv.backends.Release(sc, router.Reset)
		}
		return nil, err
	}
	return sc, nil
}

// takeBackendPID makes the process id in the session's cancel key (which
// the client reads as its backend's) that of sc, the backend a session in
// session pooling starts on, with a fresh secret. The client then sees the
// same process id as pg_backend_pid(), and pg_terminate_backend or
// pg_cancel_backend of it, and its own notifications, work as on a direct
// connection. The (process id, secret) pair stays unique across the proxy,
// so a cancel key still reaches only this session. In transaction pooling
// no backend is the session's, and the process id stays the proxy's own.
//
// A later switch (SET stratum.tenant) moves the session to another backend,
// and the client cannot be told a new process id: the session's own
// notifications are then renamed to the one it has (foreignNotification),
// and the backend it was named after is closed, not pooled (switchTenant),
// so no other session of this proxy gets that process id while this one
// lives. A cancel goes to the session's current backend, as before.
func (ss *session) takeBackendPID(sc *router.ServerConn) {
	ss.srv.rekey(ss, sc.PID)
	ss.pidConn = sc
	sc.SetClientPID(ss.key.pid)
}

// finish hands the backend back when the client has gone: reset and pooled
// when the session ended idle, closed otherwise (PostgreSQL then rolls back).
func (ss *session) finish() {
	att := ss.attached()
	if att == nil {
		return
	}
	flushErr := att.flush()
	sc, err := ss.detach()
	if sc == nil || err != nil {
		return
	}
	ss.mu.Lock()
	clean := flushErr == nil && ss.idleLocked()
	ss.mu.Unlock()
	if clean {
		ss.srv.backends.Release(sc, router.Reset)
	} else {
		ss.srv.backends.Release(sc, router.Close)
	}
}

// requestStop asks the session to end with e at its next idle point (now,
// when it is idle): a transaction under way may finish first.
func (ss *session) requestStop(e *Error) {
	ss.mu.Lock()
	if ss.mu.stop == nil {
		ss.mu.stop = e
	}
	e = ss.mu.stop
	// An extended-protocol batch without its Sync yet is a transaction too.
	idle := ss.idleLocked()
	ss.mu.Unlock()
	if idle {
		ss.kill(e)
	}
}

// stopIfAsked ends the session at an idle point when shutdown (or a tenant's
// suspension) asked for it.
func (ss *session) stopIfAsked() {
	ss.mu.Lock()
	stop := ss.mu.stop
	if !ss.idleLocked() {
		stop = nil
	}
	ss.mu.Unlock()
	if stop != nil {
		ss.kill(stop)
	}
}

// kill ends the session now with e.
func (ss *session) kill(e *Error) {
	ss.writeClient(e.encode(nil))
	ss.cc.conn.Close()
	ss.cancel()
}

// cancelBackend forwards a client's cancel request to the backend the session
// holds, if any. The session lock is held while the cancel is sent so that the
// backend cannot pass to another session in between.
func (ss *session) cancelBackend() { ss.cancelRequest(0) }

// cancelRequest is cancelBackend for the proxy's statement timeout: seq, when
// not zero, is the request (watch.seq) to cancel, and nothing is sent when
// that one has finished.
func (ss *session) cancelRequest(seq uint64) {
	// A session that has ended holds no backend whose query could be cancelled.
	ctx, cancel := context.WithTimeout(ss.ctx, ss.srv.cfg.knobs.cancelTimeout)
	defer cancel()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.mu.att == nil || seq != 0 && (ss.mu.watch.seq != seq || ss.mu.pending == 0) {
		return
	}
	if err := ss.mu.att.sc.CancelVia(ctx, ss.srv.cfg.knobs.dialCancel); err != nil {
		ss.srv.log.Warn("forwarding cancel request failed", zap.Uint64("session", ss.id), zap.Error(err))
	}
}
