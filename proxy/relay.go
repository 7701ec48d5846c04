package proxy

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/stratum-hq/stratum-proxy/internal/wire"
	"github.com/stratum-hq/stratum-proxy/rewrite"
)

// relay reads client messages and forwards them raw to the backend, handling
// the few the proxy answers or rewrites itself. It returns when the client
// leaves or the session must end.
func (ss *session) relay() error {
	rd := ss.cc.rd
	var att *attachment // the backend written to since the last flush
	for {
		if !rd.HasMessage() {
			if att != nil {
				if err := att.flush(); err != nil {
					return fmt.Errorf("flushing to backend: %w", err)
				}
				att = nil
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
			if typ == 'S' {
				ss.skipUntilSync = false
				if err := ss.answer(nil); err != nil {
					return err
				}
			}
			continue
		}
		switch typ {
		case 'X': // Terminate
			return nil
		case 'Q':
			if rewrite.MentionsTenantSetting(msg[5:]) {
				if att != nil {
					if err := att.flush(); err != nil {
						return err
					}
					att = nil
				}
				handled, err := ss.tenantCommand(msg)
				if err != nil {
					return err
				}
				if handled {
					continue
				}
			}
		case 'P':
			if rewrite.MentionsTenantSetting(msg[5:]) && ss.parseIsTenantCommand(msg) {
				// Errors in an extended-protocol batch discard messages until
				// Sync, as a backend does.
				ss.skipUntilSync = true
				if err := ss.answerError(errorf(codeFeatureNotSupported,
					"SET and RESET of stratum.tenant must be sent with the simple query protocol"), false); err != nil {
					return err
				}
				continue
			}
		case 'B', 'E', 'D', 'C', 'H', 'S', 'F', 'd', 'c', 'f':
		default:
			ss.writeClient(fatalf(codeProtocolViolation, "invalid frontend message type %d", typ).encode(nil))
			return errors.New("protocol violation")
		}
		cur, err := ss.attach(typ)
		if err != nil {
			if err := ss.refuse(typ, asError(err, false)); err != nil {
				return err
			}
			continue
		}
		if att != nil && att != cur {
			if err := att.flush(); err != nil {
				return fmt.Errorf("flushing to previous backend: %w", err)
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
	}
}

// refuse answers a message the proxy could not forward (no backend could be
// had): a simple Query gets the error and ReadyForQuery; in an extended batch
// the error comes now and the rest is skipped until Sync.
func (ss *session) refuse(typ byte, e *Error) error {
	switch typ {
	case 'Q', 'F':
		return ss.writeClient(readyForQuery(e.encode(nil), ss.txStatus()))
	case 'S':
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
