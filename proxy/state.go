package proxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"sort"
	"strings"

	"github.com/stratum-hq/stratum-proxy/internal/wire"
	"github.com/stratum-hq/stratum-proxy/policy"
	"github.com/stratum-hq/stratum-proxy/rewrite"
	"github.com/stratum-hq/stratum-proxy/router"
)

// sessionState is the client session state the proxy carries from one backend
// connection to the next: session settings (client SETs), replayed on a
// backend that lacks them, and named prepared statements. In session pooling a
// new backend (after a tenant switch) gets the statements replayed; in
// transaction pooling statements live on backends under names derived from
// their text, shared by the tenant's sessions, and are prepared on demand.
type sessionState struct {
	settings map[string]string // setting name -> SET statement
	sig      string            // settings as a signature, "" when none

	prepared prepared         // session pooling: client statements to replay
	stmts    map[string]*stmt // transaction pooling: client name -> backend statement
}

// stmt is a client's named prepared statement in transaction pooling.
type stmt struct {
	backendName string
	rest        []byte // the Parse body after the name: query, parameter types
}

// maxStatementsPerSession bounds stmts, like maxTrackedStatements for replay.
const maxStatementsPerSession = 4096

// noopStatement is a statement name never prepared: closing it answers
// CloseComplete, which keeps replies in order when a client closes a shared one.
const noopStatement = "stratum_noop"

// prepareBackend brings a freshly acquired backend up to the session's
// statements (session pooling only; transaction pooling prepares on demand).
func (st *sessionState) prepareBackend(ss *session, sc *router.ServerConn) error {
	if ss.transactionPooling() {
		return nil
	}
	return st.prepared.replay(sc, ss.srv.cfg.StartupTimeout)
}

// injectSettings brings sc's settings to the session's own when they differ:
// RESET ALL, then the tenant's policy (pol.SQL: statement timeout, read-only
// default, stratum.config.* settings), then each of the session's SETs, each
// as a Query of its own so that one the server refuses cannot undo the
// others. The client's SETs come last, so they win over the policy's
// defaults, except that a read-only tenant's SETs of the read-only settings
// (made before it became read-only; later ones are refused) are left out.
// It returns how many Queries it wrote; their replies are dropped by the
// pump.
func (st *sessionState) injectSettings(sc *router.ServerConn, pol *policy.Policy) int {
	if sc.Settings == st.sig && sc.Policy == pol.Sig {
		return 0
	}
	writeQuery(sc, "RESET ALL")
	n := 1
	if pol.SQL != "" {
		writeQuery(sc, pol.SQL)
		n++
	}
	names := make([]string, 0, len(st.settings))
	for n := range st.settings {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if pol.ReadOnly != "" && (name == "default_transaction_read_only" || name == "transaction_read_only") {
			// A SET the session made before its tenant became read-only
			// (or before a switch to a read-only tenant) must not undo the
			// policy's default.
			continue
		}
		writeQuery(sc, st.settings[name])
		n++
	}
	sc.Settings, sc.Policy = st.sig, pol.Sig
	return n
}

func writeQuery(sc *router.ServerConn, q string) {
	msg := make([]byte, 5, 6+len(q))
	msg[0] = wire.Query
	binary.BigEndian.PutUint32(msg[1:], uint32(4+len(q)+1))
	msg = append(append(msg, q...), 0)
	sc.Writer.Write(msg)
}

// track notes what a client message does to session state and returns the
// bytes to send in its place (the message itself, or a rewrite of it). It may
// write injected messages to the backend first.
func (st *sessionState) track(ss *session, att *attachment, typ byte, msg []byte) ([]byte, error) {
	txn := ss.transactionPooling()
	switch typ {
	case wire.Query:
		q := msg[5 : len(msg)-1]
		if txn && rewrite.MayPin(q) {
			if r := rewrite.PinReason(string(q)); r != "" {
				ss.pin(r)
			}
		}
		if rewrite.MayChangeSettings(q) {
			st.noteSettings(att.sc, rewrite.SessionSettings(string(q)))
		}
		markIfSetConfig(att.sc, q)
	case wire.Parse:
		name, ok := cstring(msg[5:])
		if !ok {
			return msg, nil
		}
		rest := msg[5+len(name)+1:]
		if q, ok := cstring(rest); ok {
			if txn {
				if r := rewrite.PinReason(q); r != "" {
					ss.pin(r)
				}
			}
			markIfSetConfig(att.sc, []byte(q))
		}
		if !txn || name == "" {
			st.prepared.noteParse(msg)
			return msg, nil
		}
		sum := sha256.Sum256(rest)
		s := &stmt{backendName: "stratum_" + hex.EncodeToString(sum[:12]), rest: append([]byte(nil), rest...)}
		if _, known := st.stmts[name]; !known && len(st.stmts) >= maxStatementsPerSession {
			return msg, nil // untracked: it lives on this backend only
		}
		if st.stmts == nil {
			st.stmts = map[string]*stmt{}
		}
		st.stmts[name] = s
		if _, has := att.sc.Statements[s.backendName]; has {
			// Same text prepared before on this backend: re-prepare it so the
			// client gets its ParseComplete in order; drop the Close's reply.
			att.write(closeMsg(wire.TargetStatement, s.backendName))
			att.dropClose.Add(1)
		}
		att.sc.Statements[s.backendName] = struct{}{}
		return parseMsg(s.backendName, s.rest), nil
	case wire.Bind:
		if !txn {
			return msg, nil
		}
		portal, ok := cstring(msg[5:])
		if !ok {
			return msg, nil
		}
		name, ok := cstring(msg[5+len(portal)+1:])
		if !ok || name == "" {
			return msg, nil
		}
		s := st.ensure(att, name)
		if s == nil {
			return msg, nil
		}
		var b bytes.Buffer
		b.Grow(len(msg) + 32)
		b.Write([]byte{wire.Bind, 0, 0, 0, 0})
		b.WriteString(portal)
		b.WriteByte(0)
		b.WriteString(s.backendName)
		b.WriteByte(0)
		b.Write(msg[5+len(portal)+1+len(name)+1:])
		out := b.Bytes()
		binary.BigEndian.PutUint32(out[1:], uint32(len(out)-1))
		return out, nil
	case wire.Describe, wire.CloseMessage:
		if len(msg) < 7 || msg[5] != wire.TargetStatement {
			return msg, nil
		}
		name, ok := cstring(msg[6:])
		if !ok || name == "" {
			return msg, nil
		}
		if !txn {
			if typ == wire.CloseMessage {
				st.prepared.noteClose(msg)
			}
			return msg, nil
		}
		if typ == wire.CloseMessage {
			if _, known := st.stmts[name]; known {
				delete(st.stmts, name)
				return closeMsg(wire.TargetStatement, noopStatement), nil
			}
			return msg, nil
		}
		if s := st.ensure(att, name); s != nil {
			return describeMsg(wire.TargetStatement, s.backendName), nil
		}
	}
	return msg, nil
}

// statementText returns the text of the client's named statement when the
// session tracks it (transaction pooling's statements, or those session
// pooling replays).
func (st *sessionState) statementText(name []byte) ([]byte, bool) {
	if s := st.stmts[string(name)]; s != nil {
		return cstringBytes(s.rest)
	}
	if msg, ok := st.prepared.byName[string(name)]; ok {
		return parseQuery(msg)
	}
	return nil, false
}

// cstringBytes returns the NUL-terminated bytes at the start of b.
func cstringBytes(b []byte) ([]byte, bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return nil, false
	}
	return b[:i], true
}

// ensure makes sure the client's statement name exists on the attached
// backend, injecting a Parse (whose reply is dropped) when it does not. It
// returns nil for a name the session never prepared.
func (st *sessionState) ensure(att *attachment, name string) *stmt {
	s := st.stmts[name]
	if s == nil {
		return nil
	}
	if _, has := att.sc.Statements[s.backendName]; !has {
		att.write(parseMsg(s.backendName, s.rest))
		att.dropParse.Add(1)
		att.sc.Statements[s.backendName] = struct{}{}
	}
	return s
}

// noteSettings applies a Query's setting changes to the session's record and
// to what the backend is known to hold.
func (st *sessionState) noteSettings(sc *router.ServerConn, changes []rewrite.SettingChange) {
	if len(changes) == 0 {
		return
	}
	for _, c := range changes {
		switch c.Kind {
		case rewrite.SetSetting:
			if st.settings == nil {
				st.settings = map[string]string{}
			}
			st.settings[c.Name] = c.Text
		case rewrite.ResetSetting:
			delete(st.settings, c.Name)
		case rewrite.ResetAll:
			st.settings = nil
			sc.Policy = "" // RESET ALL undid the policy too: apply it again
		}
		if c.DropsStatements {
			st.stmts = nil
			st.prepared = prepared{}
			sc.Statements = map[string]struct{}{}
		}
	}
	names := make([]string, 0, len(st.settings))
	for n := range st.settings {
		names = append(names, n)
	}
	sort.Strings(names)
	var sig strings.Builder
	for _, n := range names {
		sig.WriteString(st.settings[n])
		sig.WriteByte(0)
	}
	st.sig = sig.String()
	sc.Settings = st.sig
}

func parseMsg(name string, rest []byte) []byte {
	out := make([]byte, 5, 5+len(name)+1+len(rest))
	out[0] = wire.Parse
	out = append(append(append(out, name...), 0), rest...)
	binary.BigEndian.PutUint32(out[1:], uint32(len(out)-1))
	return out
}

func closeMsg(kind byte, name string) []byte    { return targetMsg(wire.CloseMessage, kind, name) }
func describeMsg(kind byte, name string) []byte { return targetMsg(wire.Describe, kind, name) }

func targetMsg(typ, kind byte, name string) []byte {
	out := make([]byte, 6, 7+len(name))
	out[0], out[5] = typ, kind
	out = append(append(out, name...), 0)
	binary.BigEndian.PutUint32(out[1:], uint32(len(out)-1))
	return out
}

// dirtySettings marks a backend whose settings were changed in a way the
// proxy does not track (set_config): no session's signature matches it, so
// the next session to use the backend, the same one included, has it reset
// first. In transaction pooling set_config(…, false) therefore lasts until the
// session's backend changes hands, as with PgBouncer.
const dirtySettings = "\x00untracked"

func markIfSetConfig(sc *router.ServerConn, q []byte) {
	if rewrite.MentionsSetConfig(q) {
		sc.Settings = dirtySettings
	}
}
