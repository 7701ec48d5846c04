package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/stratum-hq/stratum-proxy/internal/wire"
	"github.com/stratum-hq/stratum-proxy/rewrite"
	"github.com/stratum-hq/stratum-proxy/router"
)

// maxTrackedStatements bounds the named prepared statements a session
// remembers for replay; past it, new ones are not tracked (and do not survive a
// tenant switch).
const maxTrackedStatements = 4096

// prepared remembers a session's named prepared statements (protocol-level
// Parse), so that after a tenant switch they exist on the new backend too and a
// driver's statement cache keeps working.
type prepared struct {
	byName map[string][]byte // name -> the raw Parse message
}

// cstring returns the NUL-terminated string at the start of b.
func cstring(b []byte) (string, bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "", false
	}
	return string(b[:i]), true
}

// noteParse records a Parse message with a name.
func (p *prepared) noteParse(msg []byte) {
	name, ok := cstring(msg[5:])
	if !ok || name == "" {
		return
	}
	if p.byName == nil {
		p.byName = map[string][]byte{}
	}
	if _, known := p.byName[name]; !known && len(p.byName) >= maxTrackedStatements {
		return
	}
	p.byName[name] = append([]byte(nil), msg...)
}

// noteClose forgets a statement closed with Close('S', name).
func (p *prepared) noteClose(msg []byte) {
	if len(msg) < 6 || msg[5] != wire.TargetStatement {
		return
	}
	if name, ok := cstring(msg[6:]); ok {
		delete(p.byName, name)
	}
}

// replay prepares every remembered statement on sc, each followed by its own
// Sync so one failure does not skip the rest. Statements the new backend
// refuses are forgotten: the client gets the backend's error when it uses them.
// It runs while the pump is paused, so it reads sc itself.
func (p *prepared) replay(sc *router.ServerConn, timeout time.Duration) error {
	if len(p.byName) == 0 {
		return nil
	}
	sc.Conn.SetDeadline(time.Now().Add(timeout))
	defer sc.Conn.SetDeadline(time.Time{})
	names := make([]string, 0, len(p.byName))
	for name, msg := range p.byName {
		names = append(names, name)
		sc.Writer.Write(msg)
		sc.Writer.WriteString(syncMsg)
	}
	if err := sc.Writer.Flush(); err != nil {
		return fmt.Errorf("replaying prepared statements: %w", err)
	}
	for _, name := range names {
		failed := false
		for done := false; !done; {
			typ, _, err := sc.Reader.Next()
			if err != nil {
				return fmt.Errorf("replaying prepared statements: %w", err)
			}
			switch typ {
			case wire.ErrorResponse:
				failed = true
			case wire.ReadyForQuery:
				done = true
			case wire.ParseComplete, wire.NoticeResponse, wire.ParameterStatus:
			default:
				return errors.New("replaying prepared statements: unexpected reply from backend")
			}
		}
		if failed {
			delete(p.byName, name)
		}
	}
	return nil
}

// noteDeallocate forgets the statements a DEALLOCATE in sql drops, so that a
// tenant switch does not bring them back (a later Parse of the name would
// then fail with 42P05 where PostgreSQL accepts it).
func (p *prepared) noteDeallocate(sql string) {
	ds, _ := rewrite.Deallocations(sql)
	for _, d := range ds {
		if d.All {
			p.byName = nil
			return
		}
		delete(p.byName, d.Name)
	}
}
