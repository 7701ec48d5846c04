package sqlquote

import "strings"

// Literal returns s as an escape string constant, E'…', with quotes and
// backslashes doubled. Unlike a plain '…' literal it reads the same whatever
// standard_conforming_strings is, so a value with backslashes cannot end the
// literal early in a session (or a role default) that turned it off.
// PostgreSQL text cannot hold NUL; s must not contain one.
func Literal(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 3)
	b.WriteString("E'")
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\'', '\\':
			b.WriteByte(s[i])
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('\'')
	return b.String()
}
