package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"

	"go.uber.org/zap"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/wire"
	"github.com/stratum-hq/stratum-proxy/policy"
	"github.com/stratum-hq/stratum-proxy/rewrite"
	"github.com/stratum-hq/stratum-proxy/router"
)

// SQLSTATEs of policy refusals.
const (
	codeReadOnlyTransaction = "25006" // read_only_sql_transaction
	codeUnknownStatement    = "26000" // invalid_sql_statement_name
)

// startsTransaction reports whether a client message can be the first of a
// transaction, where a changed tenant policy is picked up.
func startsTransaction(typ byte) bool {
	return typ == wire.Query || typ == wire.Parse || typ == wire.Bind || typ == wire.FunctionCall
}

// pipeliningOutsideTransaction reports whether requests are pending while
// the last ReadyForQuery said idle and no extended-protocol batch is open: the
// client sent this message before the answers to earlier ones, which are
// transactions of their own (or begin one).
func (ss *session) pipeliningOutsideTransaction() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.mu.pending > 0 && !ss.mu.unsynced && ss.mu.txStatus == txIdle
}

// pipeliningWhilePaused reports whether requests are pending, no
// extended-protocol batch is open, and the tenant is paused (as the session
// last read, or as the router says now): a request in flight may end the
// session's transaction, and the message at hand begin the next, which the
// pause must hold (waitPaused). It reads the tenant's placement only when
// requests are pending.
func (ss *session) pipeliningWhilePaused() bool {
	ss.mu.Lock()
	inFlight := ss.mu.pending > 0 && !ss.mu.unsynced
	ss.mu.Unlock()
	if !inFlight {
		return false
	}
	if ss.pol.Paused != "" {
		return true
	}
	ctx, cancel := context.WithTimeout(ss.ctx, ss.srv.cfg.StartupTimeout)
	defer cancel()
	p, err := ss.srv.backends.Resolve(ctx, ss.cur.Tenant.ID)
	return err == nil && p.Policy.Paused != ""
}

// atBoundary reports whether the session is at a transaction boundary (an
// idle point), where a paused tenant's session waits.
func (ss *session) atBoundary() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.idleLocked()
}

// refreshPolicy picks up catalog changes at a transaction boundary: when the
// router's generation moved past the one the session's policy was read in,
// and the session is between transactions, the tenant is resolved again and
// the session re-authorized (reauthorize). A session no longer authorized, or
// whose tenant is now blocked (suspended, archived, or under such an
// ancestor), ends; otherwise the new policy applies from this transaction on
// (its settings reach the backend before the next statement, see attach),
// and on the tenant's placement now: a session that holds a backend of
// another access level or placement moves off it (moveBackend).
// It returns an error only when the session must end.
func (ss *session) refreshPolicy() error {
	ss.mu.Lock()
	boundary := ss.idleLocked()
	att := ss.mu.att
	ss.mu.Unlock()
	held := att != nil
	if !boundary {
		return nil // inside a transaction: at its end
	}
	// The generation before the read: a change committed during it moves the
	// generation on again, and the next boundary reads once more. During a
	// catalog outage Resolve serves the last known placement, and the session
	// does not ask again until the generation moves (the reconnection).
	gen := ss.srv.backends.Gen()
	ctx, cancel := context.WithTimeout(ss.ctx, ss.srv.cfg.StartupTimeout)
	defer cancel()
	p, err := ss.srv.backends.Resolve(ctx, ss.cur.Tenant.ID)
	if errors.Is(err, catalog.ErrNotFound) {
		e := fatalf(codeAdminShutdown, "tenant %q was deleted; the session ends", ss.cur.Tenant.Slug)
		ss.kill(e)
		return e
	}
	if err != nil {
		ss.log.Warn("refreshing the tenant's policy failed; keeping the last one", zap.Error(err))
		return nil
	}
	if e := ss.reauthorize(ctx, p); e != nil {
		ss.srv.metrics.countError("reauthorization_failed")
		ss.log.Info("ending session: no longer authorized", zap.String("reason", e.Message))
		ss.kill(e)
		return e
	}
	if p.Policy.Blocked != "" {
		e := fatalf(codeAdminShutdown, "%s; the session ends", p.Policy.Blocked)
		ss.srv.metrics.countError("tenant_blocked")
		ss.log.Info("ending session: tenant blocked", zap.String("reason", p.Policy.Blocked))
		ss.kill(e)
		return e
	}
	if held && (att.sc.Access != p.Policy.Access || att.sc.Placement != p.Where()) {
		return ss.moveBackend(p, gen)
	}
	if held {
		// A pump runs and reads cur: keep the placement, take its policy,
		// and let the suspension sweep see the tenant where it is now.
		ss.pol, ss.polGen = &p.Policy, gen
		ss.mu.Lock()
		ss.mu.tenant = p.Tenant
		ss.setTimeoutsLocked(ss.pol)
		ss.mu.Unlock()
		return nil
	}
	ss.setTenant(p) // no pump runs: the new limits apply to the next acquire
	ss.polGen = gen
	if ss.initial.Tenant.ID == p.Tenant.ID {
		ss.initial = p
	}
	return nil
}

// moveBackend moves a session that holds a backend logged in at another
// access level than p's policy asks (the tenant became read-only, or may
// write again), or dialed for another placement than p's (the tenant moved:
// shared tables, its own schema or database, another server), off that
// backend, at a transaction boundary: the backend is closed (it is stale,
// the pools would not hand it out again) and the session takes p. Its next
// message attaches a backend of the new level and placement, which gets the
// session's prepared statements and settings as after SET stratum.tenant
// (acquire: prepareBackend, injectSettings). Other state on the old backend
// (temporary tables, LISTEN, session advisory locks, SQL PREPARE) is lost,
// as at a tenant switch. The caller flushed what it wrote.
func (ss *session) moveBackend(p *router.Placement, gen uint64) error {
	old, err := ss.detach()
	if err != nil {
		return err
	}
	fromAccess, fromWhere := "none", "none"
	if old != nil {
		fromAccess, fromWhere = old.Access.String(), old.Placement
		if old == ss.pidConn {
			ss.pidConn = nil
		}
		ss.srv.backends.Release(old, router.Close)
	}
	ss.setTenant(p)
	ss.polGen = gen
	if ss.initial.Tenant.ID == p.Tenant.ID {
		ss.initial = p
	}
	ss.mu.Lock()
	ss.mu.pinned = "" // pinned state stayed with the old backend
	ss.mu.Unlock()
	if to := p.Where(); fromWhere != to {
		ss.log.Info("tenant's placement changed; moving to a backend of the new placement",
			zap.String("from", fromWhere), zap.String("to", to),
			zap.String("from_access", fromAccess), zap.String("to_access", p.Policy.Access.String()))
		return nil
	}
	ss.log.Info("tenant's access level changed; moving to a backend of the new level",
		zap.String("from", fromAccess), zap.String("to", p.Policy.Access.String()))
	return nil
}

// policyError checks a statement text against the tenant's policy: writes of
// a read-only tenant (25006), DDL without the sql.ddl permission (42501), and
// attempts to leave read-only mode. PostgreSQL enforces read-only too: the
// tenant's backend connections run with default_transaction_read_only on.
// simple is true for a simple Query's text, false for a prepared statement's.
func (ss *session) policyError(sql []byte, simple bool) *Error {
	pol := ss.pol
	if pol.ReadOnly == "" && pol.NoDDL == "" {
		return nil
	}
	text := string(sql)
	if pol.ReadOnly != "" && rewrite.LeavesReadOnly(text, simple) {
		ss.srv.metrics.denials.WithLabelValues("read_only").Inc()
		e := errorf(codeReadOnlyTransaction, "%s: read-write transactions, changes of the read-only settings and RESET ALL or DISCARD ALL other than alone in a simple query are refused", pol.ReadOnly)
		e.Hint = "an operator can lift proxy.read_only through the admin API"
		return e
	}
	writes, ddl := ss.srv.guard.Classify(text)
	switch {
	case ddl && pol.NoDDL != "":
		ss.srv.metrics.denials.WithLabelValues("ddl_denied").Inc()
		e := errorf(codeInsufficientPriv, "%s", pol.NoDDL)
		e.Hint = "an operator can grant sql.ddl through the admin API"
		return e
	case (writes || ddl) && pol.ReadOnly != "":
		ss.srv.metrics.denials.WithLabelValues("read_only").Inc()
		e := errorf(codeReadOnlyTransaction, "cannot execute this statement: %s", pol.ReadOnly)
		e.Hint = "an operator can lift proxy.read_only (or grant sql.write) through the admin API"
		return e
	}
	return nil
}

// bindPolicyError checks the named statement a Bind runs against the policy
// of a tenant that has restrictions: it may have been prepared under an
// earlier policy, or under another tenant and replayed after a switch, and
// the proxy saw its text only then. A statement the session did not prepare
// through the protocol (SQL PREPARE, beyond the tracking limit, another
// session's on a shared backend) cannot be checked and is refused. The
// unnamed statement needs no check: a change of the policy reaches the
// backend as simple Queries (injectSettings), which drop it, and in
// transaction pooling the client's record of it (ensureUnnamed).
func (ss *session) bindPolicyError(msg []byte) *Error {
	pol := ss.pol
	if pol.ReadOnly == "" && pol.NoDDL == "" {
		return nil
	}
	body := msg[5:]
	i := bytes.IndexByte(body, 0)
	if i < 0 {
		return nil // malformed: the backend answers it
	}
	name := body[i+1:]
	j := bytes.IndexByte(name, 0)
	if j < 0 {
		return nil // malformed
	}
	if j == 0 {
		return nil // the unnamed statement: see ensureUnnamed
	}
	name = name[:j]
	if sql, ok := ss.state.statementText(name); ok {
		return ss.policyError(sql, false)
	}
	reason := pol.ReadOnly
	if reason == "" {
		reason = pol.NoDDL
	}
	// 26000, as PostgreSQL answers a statement it does not know: after
	// DISCARD ALL, this is what the client would get without the proxy.
	e := errorf(codeUnknownStatement, "prepared statement %q is unknown to stratum-proxy (not prepared with a protocol Parse in this session), so it cannot be checked against the tenant's policy: %s", name, reason)
	e.Hint = "prepare the statement again with a protocol Parse"
	return e
}

// setConfigOID is the OID of pg_catalog.set_config(text, text, boolean),
// fixed in every PostgreSQL version.
const setConfigOID = 2078

// functionCallError refuses a FunctionCall message (the fast-path protocol)
// that calls set_config: its arguments carry no SQL text for the guard or the
// policy check to read, and set_config could change the role, the stratum.*
// settings, the lexer's settings or the read-only default.
func functionCallError(msg []byte) *Error {
	if len(msg) < 9 || binary.BigEndian.Uint32(msg[5:9]) != setConfigOID {
		return nil
	}
	e := errorf(codeInsufficientPriv, "set_config through the function-call protocol is not allowed through stratum-proxy: the proxy cannot check which setting it changes")
	e.Hint = "call SELECT set_config(...) in a query instead"
	return e
}

// injectPolicyLocked applies the session's policy on the attached backend when
// it lacks it and the backend is between requests (so the injected Query's
// replies, dropped by the pump, come before the client's). Holds ss.mu.
func (ss *session) injectPolicyLocked(att *attachment) {
	if att.sc.Policy == ss.pol.Sig || ss.mu.pending != 0 || ss.mu.unsynced {
		return
	}
	if n := ss.state.injectSettings(att.sc, ss.pol); n > 0 {
		att.dropUntilRF.Add(int32(n))
		ss.mu.pending += int32(n)
	}
}

// stopBlockedSessions ends, at their next idle point, the sessions of the
// subtree of a tenant that is now blocked. The router calls it (through
// OnChange) for every change of a tenant row.
func (s *Server) stopBlockedSessions(c catalog.Change) {
	if c.Table != "tenants" || c.Key == "" {
		return
	}
	// Background: the sweep belongs to no session, and the Server has no
	// lifetime context of its own (Shutdown's ctx bounds only the shutdown).
	// The timeout bounds the one catalog read.
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StartupTimeout)
	defer cancel()
	p, err := s.backends.Resolve(ctx, c.Key)
	if err != nil || p.Policy.Blocked == "" {
		return // a deleted tenant's sessions end at their next transaction
	}
	s.mu.Lock()
	var victims []*session
	for _, ss := range s.mu.sessions {
		ss.mu.Lock()
		t := ss.mu.tenant
		ss.mu.Unlock()
		if t != nil && t.Within(p.Tenant) {
			victims = append(victims, ss)
		}
	}
	s.mu.Unlock()
	for _, ss := range victims {
		ss.requestStop(fatalf(codeAdminShutdown, "%s; the session ends", p.Policy.Blocked))
	}
	if len(victims) > 0 {
		s.log.Info("ending sessions of a blocked tenant", zap.String("tenant", p.Tenant.Slug), zap.Int("sessions", len(victims)))
	}
}

// mayUndoReadOnly reports whether a simple Query just written to sc reset a
// read-only tenant's policy on it: the tenant is read-only and sc no longer
// holds the policy (track clears sc.Policy for RESET ALL and DISCARD ALL).
func mayUndoReadOnly(pol *policy.Policy, sc *router.ServerConn) bool {
	return pol.ReadOnly != "" && sc.Policy != pol.Sig
}
