package proxy

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/stratum-hq/stratum-proxy/internal/wire"
	"github.com/stratum-hq/stratum-proxy/rewrite"
)

// relay reads client messages and forwards them raw to the backend, handling
// the few the proxy answers or rewrites itself. It returns when the client
// leaves or the session must end.
func (ss *session) relay() error {
	rd := ss.cc.rd
	var att *attachment // the backend written to since the last flush
	// flushAtt sends what was written; the proxy's own answers wait for the
	// backend's replies to everything before them, so it must go first.
	flushAtt := func() error {
		if att == nil {
			return nil
		}
		ss.srv.metrics.bytesIn.Add(float64(ss.bytesIn))
		ss.bytesIn = 0
		err := att.flush()
		att = nil
		if err != nil {
			return fmt.Errorf("flushing to backend: %w", err)
		}
		return nil
	}
	// refuseInBatch answers an extended-protocol message the proxy refuses as
	// a backend does after an error in a batch: report it, then discard
	// messages until Sync. What the batch sent before is synced first, so
	// its replies come in order ahead of the error.
	refuseInBatch := func(e *Error) error {
		if err := flushAtt(); err != nil {
			return err
		}
		if err := ss.syncOpenBatch(); err != nil {
			return err
		}
		ss.skipUntilSync = true
		return ss.answerError(e, false)
	}
	for {
		if !rd.HasMessage() {
			if err := flushAtt(); err != nil {
				return err
			}
			rd.Shrink()
		}
		typ, msg, err := rd.Next()
		if err != nil {
			if errors.Is(err, wire.ErrMessageTooLarge) {
				ss.writeClient(fatalf(codeProgramLimit, "message too large: %v", err).encode(nil))
			} else if errors.Is(err, wire.ErrBadLength) {
				ss.writeClient(fatalf(codeProtocolViolation, "invalid message: %v", err).encode(nil))
			}
			return err
		}
		if ss.skipUntilSync {
			if typ == wire.Sync {
				if err := flushAtt(); err != nil {
					return err
				}
				ss.skipUntilSync = false
				if err := ss.answer(nil); err != nil {
					return err
				}
			}
			continue
		}
		if startsTransaction(typ) && ss.srv.backends.Gen() != ss.polGen {
			if ss.pipeliningOutsideTransaction() {
				// Earlier requests, transactions of their own, are still
				// pending: a client that always keeps one in flight would
				// never reach a boundary, and keep the old policy (or a
				// suspended tenant's session) forever. Let them finish.
				if err := flushAtt(); err != nil {
					return err
				}
				if err := ss.waitIdle(); err != nil && !errors.Is(err, errCopyIn) {
					return err
				}
			}
			if err := ss.refreshPolicy(); err != nil {
				return err
			}
		}
		switch typ {
		case wire.Terminate:
			return nil
		case wire.Query:
			if rewrite.MentionsTenantSetting(msg[5:]) {
				if err := flushAtt(); err != nil {
					return err
				}
				handled, err := ss.tenantCommand(msg)
				if err != nil {
					return err
				}
				if handled {
					continue
				}
			}
			if e := ss.guardError(msg[5:len(msg)-1], true); e != nil {
				if err := flushAtt(); err != nil {
					return err
				}
				if err := ss.answerError(e, true); err != nil {
					return err
				}
				continue
			}
		case wire.Parse:
			var e *Error
			if q, ok := parseQuery(msg); ok {
				e = ss.guardError(q, false)
			}
			if e == nil && rewrite.MentionsTenantSetting(msg[5:]) && ss.parseIsTenantCommand(msg) {
				e = errorf(codeFeatureNotSupported, "SET and RESET of stratum.tenant must be sent with the simple query protocol")
			}
			if e != nil {
				if err := refuseInBatch(e); err != nil {
					return err
				}
				continue
			}
		case wire.Bind:
			// A named statement prepared under an earlier policy (or
			// another tenant's, replayed after a switch) is checked again.
			if e := ss.bindPolicyError(msg); e != nil {
				if err := refuseInBatch(e); err != nil {
					return err
				}
				continue
			}
		case wire.FunctionCall:
			if e := functionCallError(msg); e != nil {
				if err := flushAtt(); err != nil {
					return err
				}
				if err := ss.answerError(e, true); err != nil {
					return err
				}
				continue
			}
		case wire.Execute, wire.Describe, wire.CloseMessage, wire.Flush, wire.Sync, wire.CopyData, wire.CopyDone, wire.CopyFail:
		default:
			ss.writeClient(fatalf(codeProtocolViolation, "invalid frontend message type %d", typ).encode(nil))
			return errors.New("protocol violation")
		}
		ss.bytesIn += len(msg)
		if typ == wire.Query || typ == wire.Sync {
			ss.counters.countQuery()
		}
		cur, err := ss.attach(typ)
		if err != nil {
			if err := ss.refuse(typ, asError(err, false)); err != nil {
				return err
			}
			continue
		}
		if att != cur {
			if err := flushAtt(); err != nil {
				return err
			}
		}
		att = cur
		out, err := ss.state.track(ss, att, typ, msg)
		if err != nil {
			return err
		}
		if err := att.write(out); err != nil {
			return fmt.Errorf("writing to backend: %w", err)
		}
		if typ == wire.Query && ss.pol.ReadOnly != "" && att.sc.Policy != ss.pol.Sig {
			// The Query resets the backend's settings (RESET ALL or DISCARD
			// ALL, alone: policyError refuses them with other statements, so
			// no COPY FROM STDIN can be waiting for the client), the
			// read-only default with them. Nothing more goes to the backend
			// before its reply: then attach applies the policy again ahead of
			// the next message, which would run writable otherwise.
			if err := flushAtt(); err != nil {
				return err
			}
			if err := ss.syncOpenBatch(); err != nil {
				return err
			}
			if err := ss.waitIdle(); err != nil {
				return err
			}
		}
	}
}

// refuse answers a message the proxy could not forward (no backend could be
// had): a simple Query gets the error and ReadyForQuery; in an extended batch
// the error comes now and the rest is skipped until Sync.
func (ss *session) refuse(typ byte, e *Error) error {
	switch typ {
	case wire.Query, wire.FunctionCall, wire.Sync:
		return ss.writeClient(readyForQuery(e.encode(nil), ss.txStatus()))
	default:
		ss.skipUntilSync = true
		return ss.writeClient(e.encode(nil))
	}
}

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
	e.Hint = "the session's role and tenant, and the settings that choose them, are fixed by stratum-proxy"
	return e
}

// syncOpenBatch ends an extended-protocol batch the backend has begun (messages
// sent since the last Sync) with a Sync of the proxy's own, whose
// ReadyForQuery the pump drops, so that the batch's replies reach the client
// before an error the proxy reports itself.
func (ss *session) syncOpenBatch() error {
	ss.mu.Lock()
	att := ss.mu.att
	open := att != nil && ss.mu.unsynced
	if open {
		ss.mu.pending++
		ss.mu.unsynced = false
		att.dropReady.Add(1)
	}
	ss.mu.Unlock()
	if !open {
		return nil
	}
	if err := att.write([]byte(syncMsg)); err != nil {
		return err
	}
	return att.flush()
}
