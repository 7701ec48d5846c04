package proxy

import (
	"context"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/stratum-hq/stratum-proxy/rewrite"
	"github.com/stratum-hq/stratum-proxy/router"
)

// tenantCommand answers SET / RESET stratum.tenant sent as a simple Query. It
// reports handled=false for a query that only mentions the word and should go
// to the backend (SHOW stratum.tenant does: the backend knows the slug). A
// returned error ends the session.
func (ss *session) tenantCommand(msg []byte) (handled bool, err error) {
	var q pgproto3.Query
	if err := q.Decode(msg[5:]); err != nil {
		return true, ss.answerError(errorf(codeProtocolViolation, "invalid Query message"), true)
	}
	cmd, cerr := rewrite.ClassifyTenantCommand(q.String)
	if cerr != nil {
		return true, ss.answerError(errorf(codeFeatureNotSupported, "%v", cerr), true)
	}
	switch cmd.Kind {
	case rewrite.SetTenant:
		return true, ss.switchTenant(cmd.Value)
	case rewrite.ResetTenant:
		return true, ss.switchTenant(ss.initial.Tenant.ID)
	default:
		return false, nil
	}
}

// switchTenant moves the session to another tenant: a backend it holds goes
// back to its pool (reset) and the new tenant's is acquired, with the
// session's settings and prepared statements brought along. Only allowed when
// safeToSwitchTenant holds, i.e. outside a transaction.
func (ss *session) switchTenant(ref string) error {
	if err := ss.waitIdle(); err != nil {
		return err
	}
	ss.mu.Lock()
	idle := safeToSwitchTenant(ss.mu.pending, ss.mu.txStatus)
	ss.mu.Unlock()
	if !idle {
		e := errorf(codeActiveTransaction, "cannot change stratum.tenant inside a transaction block")
		e.Hint = "COMMIT or ROLLBACK first, then SET stratum.tenant"
		return ss.answerError(e, true)
	}
	if !ss.user.CanSwitch {
		e := errorf(codeInsufficientPriv, "user %q may not switch tenants", ss.user.Name)
		e.Hint = "connect again naming the tenant, or ask an operator to allow switching for this user"
		return ss.answerError(e, true)
	}
	ctx, cancel := context.WithTimeout(ss.ctx, ss.srv.cfg.StartupTimeout)
	defer cancel()
	p, err := ss.resolve(ctx, ref, false)
	if err != nil {
		return ss.answerError(asError(err, false), true)
	}
	done := oldSlugNotice(nil, ref, p)
	done = appendMsg(done, &pgproto3.CommandComplete{CommandTag: []byte("SET")})
	if p.Tenant.ID == ss.cur.Tenant.ID {
		return ss.answer(done)
	}
	old, err := ss.detach()
	if err != nil {
		return err
	}
	var oldParams map[string]string
	if old != nil {
		oldParams = old.Params
		go ss.srv.backends.Release(old, ss.leavingMode(old))
	}
	prev := ss.cur
	ss.setTenant(p)
	ss.counters = ss.srv.metrics.forTenant(p.Tenant.Slug)
	ss.mu.Lock()
	ss.mu.pinned = "" // pinned state stayed with the old backend, now reset
	ss.mu.Unlock()
	// Acquire now, so that an unreachable tenant is reported by the SET.
	att, err := ss.acquire()
	if err != nil {
		ss.setTenant(prev)
		ss.counters = ss.srv.metrics.forTenant(prev.Tenant.Slug)
		return ss.answerError(asError(err, false), true)
	}
	go ss.pump(att)
	// acquire wrote the tenant's policy and the session's settings, if the
	// backend lacked them; no client message follows here to flush them.
	if err := att.flush(); err != nil {
		return err
	}
	var status []byte
	for k, v := range att.sc.Params {
		if oldParams == nil || oldParams[k] != v {
			status = appendMsg(status, &pgproto3.ParameterStatus{Name: k, Value: v})
		}
	}
	ss.log = ss.userLog.With(zap.String("tenant", p.Tenant.Slug)) // one tenant field, the current one
	ss.log.Info("tenant switched", zap.String("from", prev.Tenant.Slug))
	if err := ss.waitIdle(); err != nil { // the injected settings, if any
		return err
	}
	if ss.transactionPooling() {
		if sc, err := ss.detach(); err != nil {
			return err
		} else if sc != nil {
			ss.srv.backends.Release(sc, router.Keep)
		}
	}
	return ss.answer(append(status, done...))
}

// leavingMode is how a backend the session moves off goes back: reset and
// pooled, unless the client was given its process id (takeBackendPID), in
// which case it is closed, so that no other session is handed a backend
// whose process id this client takes for its own.
func (ss *session) leavingMode(sc *router.ServerConn) router.ReleaseMode {
	if sc == ss.pidConn {
		ss.pidConn = nil
		return router.Close
	}
	return router.Reset
}
