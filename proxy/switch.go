package proxy

import (
	"context"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/stratum-hq/stratum-proxy/rewrite"
)

// tenantCommand answers SET / RESET / SHOW stratum.tenant sent as a simple
// Query. It reports handled=false for a query that only mentions the word and
// should go to the backend. A returned error ends the session.
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
	case rewrite.NotTenantCommand:
		return false, nil
	case rewrite.ShowTenant:
		// The backend knows: the router opens every backend connection with
		// stratum.tenant set to the tenant's slug.
		return false, nil
	case rewrite.ResetTenant:
		return true, ss.switchTenant(ss.initial.Tenant.ID)
	default:
		return true, ss.switchTenant(cmd.Value)
	}
}

// switchTenant moves the session to another tenant: the current backend goes
// back to its pool and one of the new tenant's is acquired. Only allowed when
// safeToSwitchTenant holds, i.e. outside a transaction.
func (ss *session) switchTenant(ref string) error {
	if err := ss.waitIdle(); err != nil {
		return err
	}
	if !safeToSwitchTenant(ss.pending.Load(), byte(ss.txStatus.Load())) {
		e := errorf(codeActiveTransaction, "cannot change stratum.tenant inside a transaction block")
		e.Hint = "COMMIT or ROLLBACK first, then SET stratum.tenant"
		return ss.answerError(e, true)
	}
	if !ss.user.CanSwitch {
		e := errorf(codeInsufficientPriv, "user %q may not switch tenants", ss.user.Name)
		e.Hint = "connect again naming the tenant, or ask an operator to allow switching for this user"
		return ss.answerError(e, true)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ss.srv.cfg.StartupTimeout)
	defer cancel()
	p, err := ss.resolve(ctx, ref, false)
	if err != nil {
		return ss.answerError(asError(err, false), true)
	}
	done := appendMsg(nil, &pgproto3.CommandComplete{CommandTag: []byte("SET")})
	if p.Tenant.ID == ss.cur.Tenant.ID {
		return ss.answer(done)
	}
	next, err := ss.srv.router.Acquire(ctx, p, ss.params)
	if err != nil {
		return ss.answerError(asError(err, false), true)
	}
	if err := ss.prepared.replay(next, ss.srv.cfg.StartupTimeout); err != nil {
		ss.srv.router.Release(next, false)
		return ss.answerError(asError(err, false), true)
	}
	old := ss.backend()
	if err := ss.pausePump(old); err != nil {
		ss.srv.router.Release(next, true)
		ss.pumpDone <- err
		return err
	}
	ss.setBackend(next)
	prev := ss.cur
	ss.cur = p
	ss.log = ss.log.With(zap.String("tenant", p.Tenant.Slug))
	go ss.srv.router.Release(old, true)
	go ss.pump(next)
	var status []byte
	for k, v := range next.Params {
		if old.Params[k] != v {
			status = appendMsg(status, &pgproto3.ParameterStatus{Name: k, Value: v})
		}
	}
	done = append(status, done...)
	ss.log.Info("tenant switched", zap.String("from", prev.Tenant.Slug))
	return ss.answer(done)
}
