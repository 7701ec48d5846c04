package rewrite

import (
	"bytes"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
)

// Transaction pooling hands a session a different backend connection for each
// transaction. Most session state can follow it (the proxy replays SETs and
// prepares statements on demand); some cannot, and pins the session to its
// backend. These functions tell which is which.

// pinWords are the words whose presence makes PinReason parse the statement.
var pinWords = []string{"listen", "advisory", "hold", "temp", "prepare"}

// PinReason reports why a statement must keep the session on its backend
// connection until the session ends, or "" when it need not: LISTEN, session
// advisory locks, cursors WITH HOLD, temporary tables and SQL-level PREPARE
// leave state on the backend that another client must never inherit and that
// cannot be moved. A cheap word scan comes first; only candidates are parsed.
func PinReason(sql string) string {
	if !containsAnyFold(sql, pinWords) {
		return ""
	}
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return ""
	}
	for _, raw := range tree.Stmts {
		if r := pinReasonStmt(raw.Stmt); r != "" {
			return r
		}
	}
	// Session-level advisory locks are function calls anywhere in a query.
	lower := strings.ToLower(sql)
	for _, fn := range []string{"pg_advisory_lock(", "pg_advisory_lock_shared(", "pg_try_advisory_lock(", "pg_try_advisory_lock_shared("} {
		if strings.Contains(lower, fn) {
			return "session advisory lock"
		}
	}
	return ""
}

func pinReasonStmt(n *pg_query.Node) string {
	switch s := n.GetNode().(type) {
	case *pg_query.Node_ListenStmt:
		return "LISTEN"
	case *pg_query.Node_PrepareStmt:
		return "PREPARE"
	case *pg_query.Node_DeclareCursorStmt:
		// CURSOR_OPT_HOLD = 0x0020 in PostgreSQL's parsenodes.h.
		if s.DeclareCursorStmt.Options&0x20 != 0 {
			return "cursor WITH HOLD"
		}
	case *pg_query.Node_CreateStmt:
		if s.CreateStmt.Relation.GetRelpersistence() == "t" {
			return "temporary table"
		}
	case *pg_query.Node_CreateTableAsStmt:
		if s.CreateTableAsStmt.GetInto().GetRel().GetRelpersistence() == "t" {
			return "temporary table"
		}
	case *pg_query.Node_SelectStmt:
		if s.SelectStmt.GetIntoClause().GetRel().GetRelpersistence() == "t" {
			return "temporary table"
		}
	}
	return ""
}

// SettingKind says how a statement changes the session's settings.
type SettingKind int

const (
	// NoSetting: the statement does not change session settings.
	NoSetting SettingKind = iota
	// SetSetting: SET [SESSION] name = value; Name and Text are filled.
	SetSetting
	// ResetSetting: RESET name or SET name TO DEFAULT; Name is filled.
	ResetSetting
	// ResetAll: RESET ALL, or DISCARD ALL (which also drops prepared statements).
	ResetAll
)

// SettingChange is what a statement does to session settings and prepared statements.
type SettingChange struct {
	Kind SettingKind
	Name string // lower-case setting name
	Text string // the SET statement, deparsed, ready to replay
	// DropsStatements: DISCARD ALL or DEALLOCATE ALL removed every prepared statement.
	DropsStatements bool
}

var settingWords = []string{"set", "reset", "discard", "deallocate"}

// SessionSettings lists the session-setting changes in a simple Query's text,
// in order. Statements with no such effect are skipped. SET LOCAL and SET
// inside a transaction block are reported all the same: the proxy replays what
// the client asked for (a rolled-back SET may then outlive its transaction on a
// later backend; documented).
func SessionSettings(sql string) []SettingChange {
	if !containsAnyFold(sql, settingWords) {
		return nil
	}
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return nil
	}
	var out []SettingChange
	for _, raw := range tree.Stmts {
		switch s := raw.Stmt.GetNode().(type) {
		case *pg_query.Node_VariableSetStmt:
			v := s.VariableSetStmt
			name := strings.ToLower(v.Name)
			if v.IsLocal || strings.HasPrefix(name, "stratum.") || name == "" && v.Kind != pg_query.VariableSetKind_VAR_RESET_ALL {
				continue
			}
			switch v.Kind {
			case pg_query.VariableSetKind_VAR_SET_VALUE, pg_query.VariableSetKind_VAR_SET_CURRENT:
				text, err := pg_query.Deparse(&pg_query.ParseResult{Stmts: []*pg_query.RawStmt{{Stmt: raw.Stmt}}})
				if err == nil {
					out = append(out, SettingChange{Kind: SetSetting, Name: name, Text: text})
				}
			case pg_query.VariableSetKind_VAR_SET_DEFAULT, pg_query.VariableSetKind_VAR_RESET:
				out = append(out, SettingChange{Kind: ResetSetting, Name: name})
			case pg_query.VariableSetKind_VAR_RESET_ALL:
				out = append(out, SettingChange{Kind: ResetAll})
			}
		case *pg_query.Node_DiscardStmt:
			if s.DiscardStmt.Target == pg_query.DiscardMode_DISCARD_ALL {
				out = append(out, SettingChange{Kind: ResetAll, DropsStatements: true})
			}
		case *pg_query.Node_DeallocateStmt:
			if s.DeallocateStmt.Name == "" {
				out = append(out, SettingChange{DropsStatements: true})
			}
		}
	}
	return out
}

// containsAnyFold reports whether s contains any of the lower-case words, ignoring case.
func containsAnyFold[T string | []byte](s T, words []string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20
		for _, w := range words {
			if c == w[0] && i+len(w) <= len(s) && asciiFoldEqual(s[i:i+len(w)], w) {
				return true
			}
		}
	}
	return false
}

// asciiFoldEqual compares s with the lower-case ASCII word w, ignoring ASCII case.
func asciiFoldEqual[T string | []byte](s T, w string) bool {
	for i := 0; i < len(w); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != w[i] {
			return false
		}
	}
	return true
}

// MayPin is PinReason's allocation-free pre-check on a message's bytes.
func MayPin(sql []byte) bool { return containsAnyFold(sql, pinWords) }

// MayUseNotifications is UsesNotifications' allocation-free pre-check.
func MayUseNotifications(sql []byte) bool { return containsAnyFold(sql, notifyWords) }

// MentionsSetConfig reports whether the text calls (or names) set_config, the
// one way to change session settings that SessionSettings does not track.
func MentionsSetConfig(sql []byte) bool { return containsAnyFold(sql, setConfigWords) }

var setConfigWords = []string{"set_config"}

// MayChangeSettings is the cheap pre-check for SessionSettings: true when the
// text's first word is SET, RESET, DISCARD or DEALLOCATE, or when it holds
// several statements (a ';' before its end) and one of those words.
func MayChangeSettings(sql []byte) bool {
	i := 0
	for i < len(sql) {
		switch c := sql[i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '(':
			i++
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			end := strings.Index(string(sql[i+2:]), "*/")
			if end < 0 {
				return false
			}
			i += end + 4
		default:
			rest := sql[i:]
			for _, w := range settingWords {
				if len(rest) > len(w) && strings.EqualFold(string(rest[:len(w)]), w) && !isIdentByte(rest[len(w)]) {
					return true
				}
			}
			semi := bytes.IndexByte(rest, ';')
			return semi >= 0 && semi < len(bytes.TrimRight(rest, " \t\r\n;")) && containsAnyFold(string(rest), settingWords)
		}
	}
	return false
}

func isIdentByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// notifyWords are the words whose presence makes UsesNotifications parse.
var notifyWords = []string{"listen", "notify"}

// UsesNotifications reports whether a statement uses PostgreSQL's
// LISTEN/NOTIFY: LISTEN, UNLISTEN, NOTIFY or a call of pg_notify. Channels are
// database-wide and unprivileged, so tenants sharing a database could talk
// through them; the proxy refuses these for such tenants.
func UsesNotifications(sql string) bool {
	if !containsAnyFold(sql, notifyWords) {
		return false
	}
	if strings.Contains(strings.ToLower(sql), "pg_notify") {
		return true
	}
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return false
	}
	for _, raw := range tree.Stmts {
		switch raw.Stmt.GetNode().(type) {
		case *pg_query.Node_ListenStmt, *pg_query.Node_UnlistenStmt, *pg_query.Node_NotifyStmt:
			return true
		}
	}
	return false
}

// Deallocate is one DEALLOCATE [PREPARE] statement: of the prepared
// statement Name, or (All) of every one.
type Deallocate struct {
	Name string
	All  bool
}

var deallocateWords = []string{"deallocate"}

// MayDeallocate is Deallocations' allocation-free pre-check.
func MayDeallocate[T string | []byte](sql T) bool { return containsAnyFold(sql, deallocateWords) }

// Deallocations lists the DEALLOCATE statements in sql, in order, and how
// many statements sql holds in all. Text that does not parse gives nil and 0:
// the backend reports its error.
func Deallocations(sql string) (ds []Deallocate, stmts int) {
	if !containsAnyFold(sql, deallocateWords) {
		return nil, 0
	}
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return nil, 0
	}
	for _, raw := range tree.Stmts {
		if d, ok := raw.Stmt.GetNode().(*pg_query.Node_DeallocateStmt); ok {
			// PostgreSQL's grammar leaves the name NULL for DEALLOCATE ALL.
			ds = append(ds, Deallocate{Name: d.DeallocateStmt.Name, All: d.DeallocateStmt.Name == ""})
		}
	}
	return ds, len(tree.Stmts)
}
