package rewrite

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
)

// readOnlyWords are the words without which a text cannot leave read-only
// mode (LeavesReadOnly's allocation-free pre-check): the setting names hold
// "read" unless spelled U&"..." (and set_config's name argument needs a
// set_config call, itself spelled plainly or U&"..."), READ WRITE holds
// "read", RESET ALL and DISCARD ALL their first word.
var readOnlyWords = []string{"read", "reset", "discard", "set_config", "u&"}

// LeavesReadOnly reports whether sql could take a session out of read-only
// mode: a READ WRITE transaction mode (BEGIN / START TRANSACTION / SET
// TRANSACTION / SET SESSION CHARACTERISTICS ... READ WRITE), any mention of
// the settings transaction_read_only or default_transaction_read_only in a
// SET or RESET, or in a text that calls set_config, or RESET ALL / DISCARD
// ALL. In a simple Query (simple) RESET ALL and DISCARD ALL alone are allowed:
// the proxy applies the tenant's read-only default again before the next
// statement; combined with other statements, or in a Parse (a prepared
// statement may run any number of times later), they count as leaving. Names
// and strings are compared decoded (quoted, U&"...", E'...', U&'...'), as
// PostgreSQL reads them; a UESCAPE clause, or text the lexer cannot read,
// counts as leaving. The proxy asks this only for read-only tenants.
// Comments between keywords do not hide anything: the check works on tokens.
func LeavesReadOnly(sql string, simple bool) bool {
	if i := strings.IndexByte(sql, 0); i >= 0 {
		sql = sql[:i]
	}
	if !containsAnyFold(sql, readOnlyWords) {
		return false
	}
	toks, ok := guardScanTokens(sql)
	if !ok {
		return true
	}
	resets, statements := false, 1
	first, setConfig, mentions := "", false, false
	for i, t := range toks {
		word, ok := readOnlyWord(t)
		if !ok {
			return true
		}
		if i == 0 || toks[i-1].tok == pg_query.Token_ASCII_59 {
			first = word
		}
		switch {
		case t.tok == pg_query.Token_ASCII_59: // ;
			if i+1 < len(toks) {
				statements++
			}
		case t.kw && word == "uescape":
			return true // a Unicode escape character of the text's own choosing
		case strings.Contains(word, "transaction_read_only"):
			// SET or RESET of the setting; reading it (SHOW,
			// current_setting) is fine.
			if first == "set" || first == "reset" {
				return true
			}
			mentions = true
		case word == "set_config":
			setConfig = true
		case t.kw && word == "read" && i+1 < len(toks) && strings.EqualFold(toks[i+1].text, "write"):
			return true
		case t.kw && (word == "reset" || word == "discard") && i+1 < len(toks) && strings.EqualFold(toks[i+1].text, "all"):
			resets = true
		}
	}
	return mentions && setConfig || resets && (statements > 1 || !simple)
}

// readOnlyWord is a token as PostgreSQL reads it, lower-cased (setting names
// are compared case-insensitively): identifiers and keywords by name, string
// constants by value. False when a Unicode-escaped one cannot be decoded.
func readOnlyWord(t guardToken) (string, bool) {
	switch t.tok {
	case pg_query.Token_SCONST:
		return guardLower(guardStringValue(t)), true
	case pg_query.Token_USCONST:
		v := guardStringValue(t)
		return guardLower(v), v != t.text
	case pg_query.Token_IDENT, pg_query.Token_UIDENT:
		v, ok := guardIdentValue(t)
		return guardLower(v), ok
	}
	if t.kw {
		return guardLower(t.text), true
	}
	return t.text, true
}
