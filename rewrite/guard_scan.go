package rewrite

import (
	"strconv"
	"strings"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v5"
)

// This file handles SQL that does not parse. PostgreSQL parses a whole Query
// text before running any of it, so on a backend of the same version such a
// text runs nothing and the backend's syntax error is the best answer. But
// the backend may be newer than pg_query's parser (PostgreSQL 16) and accept
// what pg_query rejects, so the text is still searched for refused patterns:
// statement by statement (split at ';' tokens) with the full rules where a
// statement parses alone, and by tokens where it does not. When even the
// lexer fails (an unterminated quote), words are searched instead. These
// fallbacks err towards refusing.

// guardToken is one lexical token, comments dropped.
type guardToken struct {
	tok   pg_query.Token
	kw    bool   // a keyword, reserved or not
	start int    // byte offset in the scanned text
	text  string // raw source text
}

// guardScanTokens lexes s; false when the lexer fails.
func guardScanTokens(s string) ([]guardToken, bool) {
	res, err := pg_query.Scan(s)
	if err != nil {
		return nil, false
	}
	raw := res.GetTokens()
	toks := make([]guardToken, 0, len(raw))
	for i, t := range raw {
		if t.Token == pg_query.Token_SQL_COMMENT || t.Token == pg_query.Token_C_COMMENT {
			continue
		}
		start, end := int(t.Start), int(t.End)
		next := len(s)
		if i+1 < len(raw) {
			next = int(raw[i+1].Start)
		}
		if start < 0 || start > len(s) || next < start || next > len(s) {
			return nil, false
		}
		// The lexer reports unreliable ends for U&"..." and U&'...'; a token
		// then runs to the next one.
		if t.Token == pg_query.Token_UIDENT || t.Token == pg_query.Token_USCONST || end <= start || end > next {
			end = start + len(strings.TrimRight(s[start:next], " \t\n\r\f\v"))
		}
		toks = append(toks, guardToken{
			tok:   t.Token,
			kw:    t.KeywordKind != pg_query.KeywordKind_NO_KEYWORD,
			start: start,
			text:  s[start:end],
		})
	}
	return toks, true
}

// unparseable checks a top-level text that pg_query cannot parse.
func (c *checker) unparseable(sql string) guardResult {
	toks, ok := guardScanTokens(sql)
	if !ok {
		c.scanWords(sql)
		return guardResult{class: guardClassifyWords(guardLowerWords(sql))}
	}
	type piece struct {
		text string
		toks []guardToken
	}
	var pieces []piece
	from := 0
	for i := 0; i <= len(toks); i++ {
		if i < len(toks) && toks[i].tok != pg_query.Token_ASCII_59 {
			continue
		}
		if i > from {
			end := len(sql)
			if i < len(toks) {
				end = toks[i].start
			}
			pieces = append(pieces, piece{text: sql[toks[from].start:end], toks: toks[from:i]})
		}
		from = i + 1
	}
	var res guardResult
	res.class.tx = len(pieces) > 0
	for _, p := range pieces {
		var cls guardClass
		var reason string
		if tree, err := pg_query.Parse(p.text); err == nil && len(tree.Stmts) == 1 {
			cls, reason = c.topStatement(tree.Stmts[0].GetStmt(), len(pieces))
		} else {
			c.scanTokenList(p.toks)
			cls = guardClassifyWords(guardTokenWords(p.toks))
		}
		res.add(cls, reason)
	}
	return res
}

// scanText applies the token rules to SQL that does not parse.
func (c *checker) scanText(s string) {
	toks, ok := guardScanTokens(s)
	if !ok {
		c.scanWords(s)
		return
	}
	c.scanTokenList(toks)
}

// scanTokenList applies the token rules: SET or RESET of role, session
// authorization or a stratum.* setting; set_config of a protected name, of a
// non-constant name, or named without a call; pg_settings in a statement that
// writes or defines; a DO body; and, in PL/pgSQL, string constants as SQL.
func (c *checker) scanTokenList(toks []guardToken) {
	sawPgSettings, sawWrite := false, false
	for i := 0; i < len(toks) && c.deny == nil; i++ {
		t := toks[i]
		switch t.tok {
		case pg_query.Token_SET, pg_query.Token_RESET:
			c.scanSetTarget(toks, i)
		case pg_query.Token_INSERT, pg_query.Token_UPDATE, pg_query.Token_DELETE_P,
			pg_query.Token_MERGE, pg_query.Token_CREATE, pg_query.Token_ALTER:
			sawWrite = true
		case pg_query.Token_DO:
			c.scanDo(toks, i)
		case pg_query.Token_IDENT, pg_query.Token_UIDENT:
			name, ok := guardIdentValue(t)
			switch {
			case ok && guardEqualFold(name, "pg_settings"):
				sawPgSettings = true
			case !ok || guardEqualFold(name, "set_config"):
				c.scanSetConfig(toks, i, ok)
			}
		case pg_query.Token_SCONST, pg_query.Token_USCONST:
			if c.dynamic {
				c.dynamicString(guardStringValue(t))
			}
		}
	}
	if sawPgSettings && sawWrite {
		c.refuse("pg_settings_write", "a statement that writes to or builds on pg_settings",
			"updating pg_settings changes session settings, including the role")
	}
}

// scanSetTarget looks at what follows SET or RESET at toks[i].
func (c *checker) scanSetTarget(toks []guardToken, i int) {
	verb := guardUpper(toks[i].text)
	session := false
	j := i + 1
	for ; j < len(toks) && (toks[j].tok == pg_query.Token_LOCAL || toks[j].tok == pg_query.Token_SESSION); j++ {
		session = session || toks[j].tok == pg_query.Token_SESSION
	}
	if j >= len(toks) {
		return
	}
	switch toks[j].tok {
	case pg_query.Token_ROLE:
		c.refuse("set_role", verb+" ROLE", whyRole)
	case pg_query.Token_AUTHORIZATION:
		if session {
			c.refuse("set_session_authorization", verb+" SESSION AUTHORIZATION", whyRole)
		}
	case pg_query.Token_IDENT, pg_query.Token_UIDENT:
		name, ok := guardIdentValue(toks[j])
		if !ok {
			c.refuse("set_unreadable_name", verb+" of a setting whose name the proxy cannot read", whyRole)
			return
		}
		if j+2 < len(toks) && toks[j+1].tok == pg_query.Token_ASCII_46 {
			if rest, ok := guardIdentValue(toks[j+2]); ok {
				name += "." + rest
			}
		}
		switch {
		case guardEqualFold(name, "role"):
			c.refuse("set_role", verb+" ROLE", whyRole)
		case guardEqualFold(name, "session_authorization"):
			c.refuse("set_session_authorization", verb+" SESSION AUTHORIZATION", whyRole)
		case guardHasPrefixFold(name, "stratum."):
			c.refuse("stratum_setting", verb+" "+name, whyStratum)
		}
	}
}

// scanSetConfig looks at a call of set_config at toks[i] (or of a function
// whose name cannot be read, readable false).
func (c *checker) scanSetConfig(toks []guardToken, i int, readable bool) {
	if i+1 >= len(toks) || toks[i+1].tok != pg_query.Token_ASCII_40 {
		if readable {
			c.refuse("set_config_reference", "naming set_config other than in a call", whyRole)
		}
		return
	}
	if i+2 < len(toks) && (toks[i+2].tok == pg_query.Token_SCONST || toks[i+2].tok == pg_query.Token_USCONST) &&
		(i+3 >= len(toks) || toks[i+3].tok != pg_query.Token_EQUALS_GREATER) {
		if readable {
			// The value is not read here (the text did not parse): the
			// lexer's settings are refused whatever it is.
			c.setConfigName(guardStringValue(toks[i+2]), "", false)
		} else if mentionsGuardedName(guardStringValue(toks[i+2])) {
			c.refuse("set_config_dynamic", "a call of a function whose name the proxy cannot read", whyRole)
		}
		return
	}
	if readable {
		c.refuse("set_config_dynamic", "set_config with a setting name that is not a constant",
			"it could change the session's role or tenant")
	}
}

// scanDo checks the body of "DO [LANGUAGE x] 'body' [LANGUAGE x]" at toks[i].
func (c *checker) scanDo(toks []guardToken, i int) {
	lang, body, found := "plpgsql", "", false
	for j := i + 1; j < len(toks) && j <= i+4; j++ {
		switch toks[j].tok {
		case pg_query.Token_LANGUAGE:
			if j+1 < len(toks) {
				if v, ok := guardIdentValue(toks[j+1]); ok {
					lang = v
				} else {
					lang = guardStringValue(toks[j+1])
				}
				j++
			}
		case pg_query.Token_SCONST, pg_query.Token_USCONST:
			body, found = guardStringValue(toks[j]), true
		default:
			j = len(toks)
		}
	}
	if !found {
		return
	}
	sub := c.enter("a DO block")
	if sub == nil {
		return
	}
	sub.body(lang, body)
	c.absorb(sub, true)
}

// scanWords is the last resort when even the lexer fails: the same rules on
// lower-cased words (runs of identifier characters).
func (c *checker) scanWords(s string) {
	w := guardLowerWords(s)
	sawPgSettings, sawWrite := false, false
	for i := 0; i < len(w) && c.deny == nil; i++ {
		switch {
		case w[i] == "set" || w[i] == "reset":
			verb := guardUpper(w[i])
			j, session := i+1, false
			for ; j < len(w) && (w[j] == "local" || w[j] == "session"); j++ {
				session = session || w[j] == "session"
			}
			switch {
			case j >= len(w):
			case w[j] == "role":
				c.refuse("set_role", verb+" ROLE", whyRole)
			case w[j] == "authorization" && session, w[j] == "session_authorization":
				c.refuse("set_session_authorization", verb+" SESSION AUTHORIZATION", whyRole)
			case strings.HasPrefix(w[j], "stratum"):
				c.refuse("stratum_setting", verb+" "+w[j], whyStratum)
			}
		case strings.Contains(w[i], "set_config"):
			c.refuse("set_config_dynamic", "set_config in SQL the proxy cannot read", whyRole)
		case w[i] == "pg_settings":
			sawPgSettings = true
		case w[i] == "insert" || w[i] == "update" || w[i] == "delete" || w[i] == "merge" ||
			w[i] == "create" || w[i] == "alter":
			sawWrite = true
		}
	}
	if sawPgSettings && sawWrite && c.deny == nil {
		c.refuse("pg_settings_write", "a statement that writes to or builds on pg_settings",
			"updating pg_settings changes session settings, including the role")
	}
}

// guardLowerWords splits s into lower-cased runs of identifier characters.
func guardLowerWords(s string) []string {
	var words []string
	start := -1
	for i := 0; i <= len(s); i++ {
		if i < len(s) && guardIdentByte(s[i]) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			words = append(words, guardLower(s[start:i]))
			start = -1
		}
	}
	return words
}

// guardTokenWords lists keywords (lower-cased) and punctuation; other tokens
// (identifiers, constants) become "".
func guardTokenWords(toks []guardToken) []string {
	w := make([]string, len(toks))
	for i, t := range toks {
		if t.kw || t.tok == pg_query.Token_ASCII_40 {
			w[i] = guardLower(t.text)
		}
	}
	return w
}

// guardClassifyWords classifies a statement that does not parse by its keywords.
// Statements are recognised by their first keyword, as PostgreSQL's grammar
// does; text that starts with none is no statement and classified as
// neither.
func guardClassifyWords(w []string) guardClass {
	i := 0
	for i < len(w) && w[i] == "(" {
		i++
	}
	if i >= len(w) {
		return guardRead
	}
	has := func(words ...string) bool {
		for _, x := range w[i:] {
			for _, y := range words {
				if x == y {
					return true
				}
			}
		}
		return false
	}
	switch w[i] {
	case "select", "values", "table", "with":
		cls := guardRead
		if has("insert", "update", "delete", "merge") {
			cls.writes = true
		}
		if has("into") && w[i] != "values" {
			cls = guardBoth
		}
		return cls
	case "insert", "update", "delete", "merge", "truncate", "copy", "vacuum", "analyze", "analyse",
		"cluster", "reindex", "refresh", "lock", "call", "checkpoint", "execute":
		return guardWrite
	case "explain":
		if has("analyze", "analyse") {
			return guardWrite
		}
		return guardRead
	case "prepare":
		if i+1 < len(w) && w[i+1] == "transaction" {
			return guardTx
		}
		for j := i + 1; j < len(w); j++ {
			if w[j] == "as" {
				return guardClassifyWords(w[j+1:])
			}
		}
		return guardRead
	case "begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release":
		return guardTx
	case "do":
		return guardBoth
	case "create", "alter", "drop", "comment", "grant", "revoke", "security", "reassign", "import":
		return guardDDL
	}
	return guardRead
}

// guardIdentValue returns an identifier token's name: unquoted folded to lower
// case, quoted with "" undoubled, U&"..." decoded. False when it cannot be
// read (a UESCAPE clause, a bad escape).
func guardIdentValue(t guardToken) (string, bool) {
	s := t.text
	switch {
	case t.tok == pg_query.Token_UIDENT:
		if len(s) < 4 || s[0]|0x20 != 'u' || s[1] != '&' || s[2] != '"' || s[len(s)-1] != '"' {
			return "", false
		}
		return guardUnicodeEscapes(strings.ReplaceAll(s[3:len(s)-1], `""`, `"`))
	case strings.HasPrefix(s, `"`):
		if len(s) < 2 || s[len(s)-1] != '"' {
			return "", false
		}
		return strings.ReplaceAll(s[1:len(s)-1], `""`, `"`), true
	case t.tok == pg_query.Token_IDENT || t.kw:
		return guardLower(s), true
	}
	return "", false
}

// guardStringValue returns a string constant's value as well as it can: plain,
// E'...', U&'...' and dollar-quoted strings are decoded; anything else is
// returned raw, which still shows its words.
func guardStringValue(t guardToken) string {
	s := t.text
	switch {
	case strings.HasPrefix(s, "$"):
		if end := strings.IndexByte(s[1:], '$'); end >= 0 {
			tag := s[:end+2]
			if len(s) >= 2*len(tag) && strings.HasSuffix(s, tag) {
				return s[len(tag) : len(s)-len(tag)]
			}
		}
	case strings.HasPrefix(s, "'"):
		if v, ok := guardQuotedValue(s, false); ok {
			return v
		}
	case len(s) > 1 && s[0]|0x20 == 'e' && s[1] == '\'':
		if v, ok := guardQuotedValue(s[1:], true); ok {
			return v
		}
	case len(s) > 2 && s[0]|0x20 == 'u' && s[1] == '&' && s[2] == '\'':
		if v, ok := guardQuotedValue(s[2:], false); ok {
			if d, ok := guardUnicodeEscapes(v); ok {
				return d
			}
		}
	}
	return s
}

// guardQuotedValue decodes a '...' literal, with continuation across a newline
// ('a'\n'b') and, for E'...', backslash escapes.
func guardQuotedValue(s string, escapes bool) (string, bool) {
	var b strings.Builder
	i := 1
	for i < len(s) {
		ch := s[i]
		switch {
		case ch == '\'':
			if i+1 < len(s) && s[i+1] == '\'' {
				b.WriteByte('\'')
				i += 2
				continue
			}
			// End, or continuation: whitespace holding a newline, then a quote.
			j, newline := i+1, false
			for j < len(s) && strings.IndexByte(" \t\n\r\f\v", s[j]) >= 0 {
				newline = newline || s[j] == '\n' || s[j] == '\r'
				j++
			}
			if j < len(s) && s[j] == '\'' && newline {
				i = j + 1
				continue
			}
			return b.String(), j == len(s)
		case ch == '\\' && escapes && i+1 < len(s):
			n, r := guardBackslash(s[i+1:])
			if n == 0 {
				return "", false
			}
			b.WriteString(r)
			i += 1 + n
		default:
			b.WriteByte(ch)
			i++
		}
	}
	return "", false
}

// guardBackslash decodes one escape of an E'...' string, after its
// backslash: the bytes used and the text they stand for; 0 when it cannot.
func guardBackslash(s string) (int, string) {
	switch c := s[0]; c {
	case 'b':
		return 1, "\b"
	case 'f':
		return 1, "\f"
	case 'n':
		return 1, "\n"
	case 'r':
		return 1, "\r"
	case 't':
		return 1, "\t"
	case 'x':
		n := 1
		for n < len(s) && n < 3 && guardHexDigit(s[n]) {
			n++
		}
		if n == 1 {
			return 1, "x"
		}
		v, _ := strconv.ParseUint(s[1:n], 16, 8)
		return n, string([]byte{byte(v)})
	case 'u', 'U':
		width := 4
		if c == 'U' {
			width = 8
		}
		if len(s) < 1+width {
			return 0, ""
		}
		v, err := strconv.ParseUint(s[1:1+width], 16, 32)
		if err != nil || !utf8.ValidRune(rune(v)) {
			return 0, ""
		}
		return 1 + width, string(rune(v))
	default:
		if c >= '0' && c <= '7' {
			n := 1
			for n < len(s) && n < 3 && s[n] >= '0' && s[n] <= '7' {
				n++
			}
			v, _ := strconv.ParseUint(s[:n], 8, 16)
			return n, string([]byte{byte(v)})
		}
		return 1, string(c)
	}
}

// guardUnicodeEscapes decodes the body of U&"..." or U&'...' with the default
// escape character: \XXXX, \+XXXXXX and \\.
func guardUnicodeEscapes(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			i++
			continue
		}
		switch {
		case i+1 < len(s) && s[i+1] == '\\':
			b.WriteByte('\\')
			i += 2
		case i+7 < len(s) && s[i+1] == '+':
			v, err := strconv.ParseUint(s[i+2:i+8], 16, 32)
			if err != nil || !utf8.ValidRune(rune(v)) {
				return "", false
			}
			b.WriteRune(rune(v))
			i += 8
		case i+4 < len(s):
			v, err := strconv.ParseUint(s[i+1:i+5], 16, 32)
			if err != nil || !utf8.ValidRune(rune(v)) {
				return "", false
			}
			b.WriteRune(rune(v))
			i += 5
		default:
			return "", false
		}
	}
	return b.String(), true
}

func guardHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'f'
}
