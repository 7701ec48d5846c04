package rewrite

import "testing"

func TestLeavesReadOnly(t *testing.T) {
	tests := []struct {
		sql  string
		want bool
	}{
		{"SELECT 1", false},
		{"INSERT INTO t VALUES (1)", false}, // a write, but the write check refuses it
		{"BEGIN", false},
		{"BEGIN READ ONLY", false},
		{"BEGIN READ WRITE", true},
		{"begin isolation level serializable, read write", true},
		{"BEGIN READ/**/WRITE", true},
		{"START TRANSACTION READ\n WRITE", true},
		{"SET TRANSACTION READ WRITE", true},
		{"SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", true},
		{"SET default_transaction_read_only = off", true},
		{"set transaction_read_only to off", true},
		{"RESET default_transaction_read_only", true},
		{`SET "default_transaction_read_only" = off`, true},
		{"SELECT set_config('default_transaction_read_only', 'off', false)", true},
		{"SHOW default_transaction_read_only", false},
		{"SELECT current_setting('transaction_read_only')", false},
		{"SELECT pg_catalog.set_config('transaction_read_only', 'off', true)", true},
		{"BEGIN; SET LOCAL transaction_read_only = off; COMMIT", true},
		{"RESET ALL", false},
		{"DISCARD ALL;", false},
		{"RESET ALL; SELECT f()", true},
		{"SELECT 'read write'", false}, // a string, not keywords
		{"SELECT 1 AS read", false},
		{"SELECT $$ unterminated", false}, // no word that could leave: nothing to lex
		{"SELECT $$ unterminated read", true},
		{"SELECT 1\x00BEGIN READ WRITE", false},
		// Escaped spellings are the same names to PostgreSQL.
		{`SET U&"default_transaction\005fread_only" = off`, true},
		{`SET U&"default!005ftransaction!005fread!005fonly" UESCAPE '!' = off`, true},
		{`SET "DEFAULT_TRANSACTION_READ_ONLY" = off`, true},
		{`SELECT set_config(E'default_transaction\137read_only', 'off', false)`, true},
		{`SELECT set_config(U&'default\005ftransaction\005fread\005fonly', 'off', false)`, true},
		{`SELECT U&"set\005fconfig"('default_transaction_read_only', 'off', false)`, true},
		{`SELECT "set_config"($$default_transaction_read_only$$, 'off', false)`, true},
		{`SELECT U&'\zzzz'`, true}, // undecodable: assume the worst
		{`SELECT U&'caf\00e9'`, false},
		{"SELECT * FROM threads WHERE already", false},
	}
	for _, tc := range tests {
		if got := LeavesReadOnly(tc.sql, true); got != tc.want {
			t.Errorf("LeavesReadOnly(%q, simple) = %v, want %v", tc.sql, got, tc.want)
		}
	}
	// In a Parse, a reset may run later, any number of times: always leaving.
	for _, q := range []string{"RESET ALL", "DISCARD ALL", "discard all;"} {
		if !LeavesReadOnly(q, false) {
			t.Errorf("LeavesReadOnly(%q, extended) = false, want true", q)
		}
	}
	if LeavesReadOnly("SELECT 1", false) {
		t.Error("LeavesReadOnly(SELECT 1, extended) = true")
	}
}
