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
	// unnamed is the client's unnamed prepared statement in transaction
	// pooling (its last Parse of ""), nil when it has none: PostgreSQL keeps
	// it until the next Parse of "", a Close of it or a simple Query, while
	// the backend that holds it may serve other clients in between.
	unnamed *unnamedStmt
	// deallocs are the client's statements a DEALLOCATE through Parse
	// dropped, kept until its request is answered (settleDeallocations).
	deallocs []deallocation
}

// deallocation is a client statement dropped by a DEALLOCATE through Parse
// whose request is unanswered: marker is settled as a Parse's would be
// (session.awaitParse), and confirmed when the request had no error.
type deallocation struct {
	name   string
	s      *stmt
	marker *stmt
}

// unnamedStmt is a client's unnamed prepared statement in transaction pooling.
type unnamedStmt struct {
	token  uint64 // unique to this Parse; router.ServerConn.Unnamed names the backend's
	rest   []byte // the Parse body after the name: query, parameter types
	polSig string // the policy's signature at the Parse (ensureUnnamed)
}

// stmt is a client's named prepared statement in transaction pooling.
type stmt struct {
	backendName string
	rest        []byte // the Parse body after the name: query, parameter types
	// ready is the number of the ReadyForQuery that ends the Parse's
	// request, and confirmed whether that request had no error, i.e. the
	// Parse surely ran (session.confirmReadyLocked). Both under session.mu.
	ready     uint64
	confirmed bool
}

// maxStatementsPerSession bounds stmts, like maxTrackedStatements for replay.
const maxStatementsPerSession = 4096

// noopStatement is a statement name never prepared: closing it answers
// CloseComplete, which keeps replies in order when a client closes a shared one.
const noopStatement = "stratum_noop"

// deallocStatement is the statement a client's extended-protocol DEALLOCATE
// of one of its statements deallocates instead (prepared just before), so
// that the backend gives the replies PostgreSQL would, without dropping a
// statement the tenant's other sessions share.
const deallocStatement = "stratum_dealloc"

// reservedStatementName reports whether a statement name is one the proxy
// uses on backends in transaction pooling (backend names of shared
// statements, noopStatement, deallocStatement): a client's DEALLOCATE of such
// a name it does not own must not reach a backend.
func reservedStatementName(name string) bool { return strings.HasPrefix(name, "stratum_") }

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
	sc.Writer.Write(queryMsg(q))
	sc.Unnamed = 0 // a simple Query drops the unnamed statement
}

func queryMsg(q string) []byte {
	msg := make([]byte, 5, 6+len(q))
	msg[0] = wire.Query
	binary.BigEndian.PutUint32(msg[1:], uint32(4+len(q)+1))
	return append(append(msg, q...), 0)
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
		att.sc.Unnamed = 0 // a simple Query drops the unnamed statement
		if !txn && rewrite.MayDeallocate(q) {
			st.prepared.noteDeallocate(string(q))
		}
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
			if rewrite.MayDeallocate(q) {
				if txn {
					rest = st.deallocateThroughParse(ss, att, q, rest)
					msg = parseMsg(name, rest)
				} else {
					st.prepared.noteDeallocate(q)
				}
			}
		}
		if name == "" {
			att.sc.Unnamed = 0
			if txn {
				st.unnamed = &unnamedStmt{token: ss.srv.nextUnnamed.Add(1), rest: append([]byte(nil), rest...), polSig: ss.pol.Sig}
				att.sc.Unnamed = st.unnamed.token
			}
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
		ss.awaitParse(s)
		if _, has := att.sc.Statements[s.backendName]; has {
			// Same text prepared before on this backend: re-prepare it so the
			// client gets its ParseComplete in order; drop the Close's reply.
			att.injected.expect(wire.CloseComplete)
			att.write(closeMsg(wire.TargetStatement, s.backendName))
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
		if !ok {
			return msg, nil
		}
		if name == "" {
			st.ensureUnnamed(ss, att)
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
		if !ok {
			return msg, nil
		}
		if name == "" {
			if !txn {
				return msg, nil
			}
			if typ == wire.CloseMessage {
				return st.closeUnnamed(att, msg), nil
			}
			st.ensureUnnamed(ss, att)
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
		att.injected.expect(wire.ParseComplete)
		att.write(parseMsg(s.backendName, s.rest))
		att.sc.Statements[s.backendName] = struct{}{}
	}
	return s
}

// ensureUnnamed makes the attached backend's unnamed statement the client's
// own before a Bind or Describe of it (transaction pooling): since the
// client's Parse, the backend may have served other clients, or the client
// may be on another backend. The client's statement is prepared again (the
// ParseComplete dropped); a client that has none gets the backend's
// unnamed statement closed first (the CloseComplete dropped), so that the
// backend answers 26000 as PostgreSQL would, instead of running another
// client's statement. A change of the tenant's policy since the Parse drops
// the client's statement, as in session pooling, where the change reaches the
// backend as simple Queries (injectSettings): its text was checked under the
// old policy only.
func (st *sessionState) ensureUnnamed(ss *session, att *attachment) {
	u := st.unnamed
	if u != nil && u.polSig != ss.pol.Sig {
		st.unnamed, u = nil, nil
	}
	switch {
	case u == nil:
		att.injected.expect(wire.CloseComplete)
		att.write(closeMsg(wire.TargetStatement, ""))
		att.sc.Unnamed = 0
	case att.sc.Unnamed != u.token:
		att.injected.expect(wire.ParseComplete)
		att.write(parseMsg("", u.rest))
		att.sc.Unnamed = u.token
	}
}

// closeUnnamed returns what to send for the client's Close of the unnamed
// statement (transaction pooling): the Close itself when the backend's
// unnamed statement is the client's, else a Close of a statement that never
// exists, so that another client's is left alone and the client still gets
// its CloseComplete.
func (st *sessionState) closeUnnamed(att *attachment, msg []byte) []byte {
	u := st.unnamed
	st.unnamed = nil
	if u != nil && att.sc.Unnamed == u.token {
		att.sc.Unnamed = 0
		return msg
	}
	return closeMsg(wire.TargetStatement, noopStatement)
}

// deallocateThroughParse handles a Parse of DEALLOCATE in transaction
// pooling and returns the Parse body to send in place of rest. A DEALLOCATE
// of one of the client's statements, or of ALL, must not drop the backend's,
// which the tenant's other sessions share: the client's are forgotten here,
// and the backend deallocates a statement of the proxy's instead
// (deallocStatement, closed and prepared again just before, the replies
// dropped), so the client gets the replies PostgreSQL gives (ParseComplete,
// NoData, CommandComplete DEALLOCATE or DEALLOCATE ALL, the pump rewriting
// the tag; 25P02 in a failed transaction, and the statements are kept).
// In a pinned session DEALLOCATE ALL goes to the backend as it is, as the
// simple Query does: the backend is the session's alone, and the statements
// of SQL-level PREPARE go too. Anything else (another client name, which
// the backend reports as 26000 when it runs) is sent as it is; reserved
// names are refused before (relayer.parse).
func (st *sessionState) deallocateThroughParse(ss *session, att *attachment, q string, rest []byte) []byte {
	ds, n := rewrite.Deallocations(q)
	if n != 1 || len(ds) != 1 {
		return rest
	}
	marker := &stmt{}
	switch d := ds[0]; {
	case d.All && ss.pinned():
		st.stmts, st.deallocs = nil, nil
		att.sc.Statements = map[string]struct{}{}
		return rest
	case d.All:
		for name, s := range st.stmts {
			st.deallocs = append(st.deallocs, deallocation{name: name, s: s, marker: marker})
		}
		st.stmts = nil
		att.injected.expect(wire.CommandComplete)
	case st.stmts[d.Name] == nil:
		return rest
	default:
		st.deallocs = append(st.deallocs, deallocation{name: d.Name, s: st.stmts[d.Name], marker: marker})
		delete(st.stmts, d.Name)
	}
	ss.awaitParse(marker)
	att.injected.expect(wire.CloseComplete)
	att.write(closeMsg(wire.TargetStatement, deallocStatement))
	att.injected.expect(wire.ParseComplete)
	att.write(parseMsg(deallocStatement, []byte("SELECT\x00\x00\x00")))
	after := rest[len(q)+1:] // the parameter types
	out := make([]byte, 0, len("DEALLOCATE ")+len(deallocStatement)+1+len(after))
	out = append(append(append(out, "DEALLOCATE "+deallocStatement...), 0), after...)
	return out
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
			st.deallocs = nil
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
