package proxy

import (
	"bytes"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/stratum-hq/stratum-proxy/rewrite"
)

// parseIsTenantCommand reports whether a Parse message sets or resets the tenant.
func (ss *session) parseIsTenantCommand(msg []byte) bool {
	var p pgproto3.Parse
	if err := p.Decode(msg[5:]); err != nil {
		return false
	}
	cmd, err := rewrite.ClassifyTenantCommand(p.Query)
	return err != nil || cmd.Kind == rewrite.SetTenant || cmd.Kind == rewrite.ResetTenant
}

// parseQuery returns the query text of a Parse message.
func parseQuery(msg []byte) ([]byte, bool) {
	body := msg[5:]
	i := bytes.IndexByte(body, 0)
	if i < 0 {
		return nil, false
	}
	q := body[i+1:]
	j := bytes.IndexByte(q, 0)
	if j < 0 {
		return nil, false
	}
	return q[:j], true
}

// guardError runs the SQL guard on a statement text, only when the cheap
// pre-check says it could be refused, and returns the error for a refused one.
// The denial is logged with the statement's fingerprint, never its literals,
// and counted.
func (ss *session) guardError(sql []byte, simple bool) *Error {
	if ss.cur.Tenant.Isolation != "database" && rewrite.MayUseNotifications(sql) && rewrite.UsesNotifications(string(sql)) {
		ss.srv.metrics.denials.WithLabelValues("notifications").Inc()
		e := errorf(codeFeatureNotSupported, "LISTEN and NOTIFY are not available to tenant %q: "+
			"PostgreSQL's notification channels span a whole database, which this tenant shares with others", ss.cur.Tenant.Slug)
		e.Hint = "give the tenant database isolation to use LISTEN/NOTIFY"
		return e
	}
	if !rewrite.NeedsFullCheck(sql) {
		return ss.policyError(sql, simple)
	}
	v := ss.srv.guard.Check(string(sql))
	if v.Allow {
		return ss.policyError(sql, simple)
	}
	ss.srv.metrics.denials.WithLabelValues(v.Reason).Inc()
	ss.log.Warn("statement refused by the guard", zap.String("reason", v.Reason), zap.String("fingerprint", v.Fingerprint))
	e := errorf(v.Code, "%s", v.Message)
	e.Hint = guardHint(v)
	return e
}

// guardHint is the hint of a guard refusal: what to do instead.
func guardHint(v rewrite.Verdict) string {
	if v.Code == rewrite.CodeFeatureNotSupported {
		return "stratum-proxy keeps client_encoding ASCII-safe (UTF8) and standard_conforming_strings on; those values may be set"
	}
	return "the session's role and tenant, and the settings that choose them, are fixed by stratum-proxy"
}
