package rewrite

import "strings"

// This file holds the allocation-free byte scans of the hot path.
//
// For NeedsFullCheck a word is a maximal run of [A-Za-z0-9_] and bytes >=
// 0x80, without its leading digits, matched ASCII case-insensitively (as
// PostgreSQL's lexer and setting-name comparisons fold case). Every keyword
// the lexer produces is such a word: a keyword ends before a byte that could
// continue an identifier (those bytes and '$'), and starts at a letter that
// follows something that is not one: a separator, a quote, '$' (which cannot
// start an identifier: "$DO" lexes as "$" and DO; "$$x$$DO" as a string and
// DO) or digits (in PostgreSQL 16 a number followed by letters is an error).
// So keywords are searched as words; names that may sit inside a longer
// identifier or string (session_authorization, "stratum.x") as substrings.

// NeedsFullCheck is the cheap pre-check: false means Check would allow sql
// and report no Reason other than "" or "parse_error", so the proxy may skip
// it (Writes and DDL still come from Guard.Classify). It is true when sql
// contains, ASCII case-insensitively:
//   - one of the words do, role, drop, load, copy, reset, alter, grant,
//     names, create, revoke, discard; or
//   - anywhere, authorization, set_config, stratum, pg_settings,
//     client_encoding, standard_conforming_strings, or u& (a Unicode-escaped
//     identifier or string that could spell any of them).
//
// Plain SELECT, INSERT, UPDATE and DELETE statements rarely contain these, so
// they never reach the parser. It does not allocate.
func NeedsFullCheck(sql []byte) bool {
	return hasGuardWord(sql, true)
}

// mentionsGuardedName is NeedsFullCheck limited to the names the rules
// protect: the word role and the substrings; used to judge code the guard
// cannot follow.
func mentionsGuardedName(s string) bool {
	return hasGuardWord(s, false)
}

func hasGuardWord[T string | []byte](s T, statements bool) bool {
	start := -1 // of the current word, after its leading digits
	for i := 0; i < len(s); i++ {
		c := s[i]
		class := guardByteClass[c]
		if class&guardWordByte != 0 {
			if start < 0 && class&guardDigit == 0 {
				start = i
			}
			if class&guardNameStart != 0 && guardSubstringAt(s, i) {
				return true
			}
			continue
		}
		if c == '&' && i > 0 && s[i-1]|0x20 == 'u' {
			return true
		}
		if start >= 0 && isGuardWord(s[start:i], statements) {
			return true
		}
		start = -1
	}
	return start >= 0 && isGuardWord(s[start:], statements)
}

// Byte classes for hasGuardWord.
const (
	guardWordByte  = 1 << iota // [A-Za-z0-9_] or >= 0x80: continues a word
	guardDigit                 // [0-9]: not the start of a word
	guardNameStart             // [AaCcPpSs]: may start a protected name
)

var guardByteClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		switch {
		case c >= '0' && c <= '9':
			t[c] = guardWordByte | guardDigit
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c >= 0x80:
			t[c] = guardWordByte
		}
		switch c | 0x20 { // only ASCII letters fold onto these
		case 'a', 'c', 'p', 's':
			t[c] |= guardNameStart
		}
	}
	return t
}()

// isGuardWord reports whether the word w is one NeedsFullCheck looks for
// (statements) or the name role.
func isGuardWord[T string | []byte](w T, statements bool) bool {
	switch len(w) {
	case 2:
		return statements && guardFoldEqual(w, "do")
	case 4:
		return guardFoldEqual(w, "role") ||
			statements && (guardFoldEqual(w, "drop") || guardFoldEqual(w, "load") || guardFoldEqual(w, "copy"))
	case 5:
		return statements && (guardFoldEqual(w, "reset") || guardFoldEqual(w, "alter") ||
			guardFoldEqual(w, "grant") || guardFoldEqual(w, "names"))
	case 6:
		return statements && (guardFoldEqual(w, "create") || guardFoldEqual(w, "revoke"))
	case 7:
		return statements && guardFoldEqual(w, "discard")
	}
	return false
}

// guardSubstringAt reports whether a protected name starts at s[i].
func guardSubstringAt[T string | []byte](s T, i int) bool {
	switch s[i] | 0x20 {
	case 'a':
		return guardFoldPrefixAt(s, i, "authorization")
	case 's':
		return guardFoldPrefixAt(s, i, "set_config") || guardFoldPrefixAt(s, i, "stratum") ||
			guardFoldPrefixAt(s, i, "standard_conforming_strings")
	case 'p':
		return guardFoldPrefixAt(s, i, "pg_settings")
	case 'c':
		return guardFoldPrefixAt(s, i, "client_encoding")
	}
	return false
}

// guardIdentByte reports whether c may continue an identifier in PostgreSQL.
func guardIdentByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '$' || c >= 0x80
}

// guardFoldEqual reports whether s equals lower (all lower case) ASCII
// case-insensitively.
func guardFoldEqual[T string | []byte](s T, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	return guardFoldPrefixAt(s, 0, lower)
}

// guardFoldPrefixAt reports whether lower (all lower case) occurs at s[i:], ASCII
// case-insensitively.
func guardFoldPrefixAt[T string | []byte](s T, i int, lower string) bool {
	if len(s)-i < len(lower) {
		return false
	}
	for j := 0; j < len(lower); j++ {
		c := s[i+j]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[j] {
			return false
		}
	}
	return true
}

// guardFoldContains reports whether lower occurs in s, ASCII case-insensitively.
func guardFoldContains(s, lower string) bool {
	for i := 0; i+len(lower) <= len(s); i++ {
		if guardFoldPrefixAt(s, i, lower) {
			return true
		}
	}
	return false
}

// guardHasWord reports whether lower occurs in s as a whole word.
func guardHasWord(s, lower string) bool {
	start := -1
	for i := 0; i <= len(s); i++ {
		if i < len(s) && guardIdentByte(s[i]) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 && guardFoldEqual(s[start:i], lower) {
			return true
		}
		start = -1
	}
	return false
}

// guardEqualFold compares as PostgreSQL compares setting names: ASCII letters
// case-insensitively, every other byte exactly (strings.EqualFold would also
// fold Unicode, matching "ſtratum" to "stratum").
func guardEqualFold(a, b string) bool {
	return len(a) == len(b) && guardHasPrefixFold(a, b)
}

// guardHasPrefixFold is strings.HasPrefix with ASCII case folding.
func guardHasPrefixFold(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		a, b := s[i], prefix[i]
		if a >= 'A' && a <= 'Z' {
			a += 'a' - 'A'
		}
		if b >= 'A' && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

func guardLower(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= 'A' && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

func guardUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
	return string(b)
}

// classifyByKeyword answers Guard.Classify without parsing for a single
// statement (no ';' anywhere) that starts with SELECT, INSERT, UPDATE, DELETE
// or MERGE; ok is false for anything else. A SELECT qualifies only when none
// of into, insert, update, delete, merge occurs anywhere in the text (SELECT
// INTO, data-modifying WITH inside a subquery). Each answer equals Check's,
// for texts that parse and (through guardClassifyWords) for texts that do not.
func classifyByKeyword(sql string) (writes, ddl, ok bool) {
	i := 0
	for i < len(sql) && (sql[i] == ' ' || sql[i] == '\t' || sql[i] == '\n' || sql[i] == '\r' || sql[i] == '\f') {
		i++
	}
	j := i
	for j < len(sql) && (sql[j]|0x20 >= 'a' && sql[j]|0x20 <= 'z') {
		j++
	}
	if j < len(sql) && guardIdentByte(sql[j]) {
		return false, false, false
	}
	isSelect := guardFoldEqual(sql[i:j], "select")
	if !isSelect && !guardFoldEqual(sql[i:j], "insert") && !guardFoldEqual(sql[i:j], "update") &&
		!guardFoldEqual(sql[i:j], "delete") && !guardFoldEqual(sql[i:j], "merge") {
		return false, false, false
	}
	if !isSelect {
		if strings.IndexByte(sql[j:], ';') >= 0 {
			return false, false, false
		}
		return true, false, true
	}
	for k := j; k < len(sql); k++ {
		c := sql[k]
		if c == ';' {
			return false, false, false
		}
		var hit bool
		switch c | 0x20 {
		case 'i':
			hit = guardFoldPrefixAt(sql, k, "into") || guardFoldPrefixAt(sql, k, "insert")
		case 'u':
			hit = guardFoldPrefixAt(sql, k, "update")
		case 'd':
			hit = guardFoldPrefixAt(sql, k, "delete")
		case 'm':
			hit = guardFoldPrefixAt(sql, k, "merge")
		}
		if hit {
			return false, false, false
		}
	}
	return false, false, true
}
