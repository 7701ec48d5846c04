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
		{"SELECT $$ unterminated", true},
		{"SELECT 1\x00BEGIN READ WRITE", false},
	}
	for _, tc := range tests {
		if got := LeavesReadOnly(tc.sql); got != tc.want {
			t.Errorf("LeavesReadOnly(%q) = %v, want %v", tc.sql, got, tc.want)
		}
	}
}
