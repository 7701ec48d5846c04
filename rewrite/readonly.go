package rewrite

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
)

// LeavesReadOnly reports whether sql could take a session out of read-only
// mode: a READ WRITE transaction mode (BEGIN / START TRANSACTION / SET
// TRANSACTION / SET SESSION CHARACTERISTICS ... READ WRITE), any mention of
// the settings transaction_read_only or default_transaction_read_only in a
// SET or RESET, or in a text that calls set_config, or RESET ALL / DISCARD ALL combined with other
// statements in one text (alone they are allowed: the proxy applies the
// tenant's read-only default again before the next statement). Text the lexer
// cannot read counts as leaving. The proxy asks this only for read-only
// tenants. Comments between keywords do not hide anything: the check works on
// tokens.
func LeavesReadOnly(sql string) bool {
	if i := strings.IndexByte(sql, 0); i >= 0 {
		sql = sql[:i]
	}
	toks, ok := guardScanTokens(sql)
	if !ok {
		return true
	}
	resets, statements := false, 1
	first, setConfig, mentions := "", false, false
	for i, t := range toks {
		word := strings.ToLower(t.text)
		if i == 0 || toks[i-1].tok == pg_query.Token_ASCII_59 {
			first = word
		}
		switch {
		case t.tok == pg_query.Token_ASCII_59: // ;
			if i+1 < len(toks) {
				statements++
			}
		case strings.Contains(word, "transaction_read_only"):
			// SET or RESET of the setting; reading it (SHOW,
			// current_setting) is fine.
			if first == "set" || first == "reset" {
				return true
			}
			mentions = true
		case word == "set_config" || word == `"set_config"`:
			setConfig = true
		case t.kw && word == "read" && i+1 < len(toks) && strings.EqualFold(toks[i+1].text, "write"):
			return true
		case t.kw && (word == "reset" || word == "discard") && i+1 < len(toks) && strings.EqualFold(toks[i+1].text, "all"):
			resets = true
		}
	}
	return mentions && setConfig || resets && statements > 1
}
