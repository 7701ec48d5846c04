package protocol

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
)

// TestSafeSettingsAndDatabaseNames checks, on real PostgreSQL in both pool modes, the refusals
// real drivers' test suites meet: the lexer's settings and the database
// name. What is safe passes; what is not is refused with the README's
// SQLSTATE; and the lexer settings hidden in dynamic SQL (which the guard
// cannot read) give what docs/security.md promises: PostgreSQL accepts them,
// and they open nothing, since PostgreSQL refuses what they could smuggle
// past the guard.
func TestSafeSettingsAndDatabaseNames(t *testing.T) {
	stacktest.PoolModes(t, func(t *testing.T, ts *stacktest.Stack) {
		t.Run("lexer settings", func(t *testing.T) { testLexerSettings(t, ts) })
		t.Run("database names", func(t *testing.T) { testDatabaseNames(t, ts) })
	})
}

func testLexerSettings(t *testing.T, ts *stacktest.Stack) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := stacktest.Connect(t, ts.URL("demo", "demo", "client_alpha", ""))
	show := func(name string) string { t.Helper(); return showSetting(t, ctx, c, name) }
	t.Run("safe values pass", func(t *testing.T) {
		for _, q := range []string{
			"SET standard_conforming_strings = on",
			"SET standard_conforming_strings TO 'yes'",
			"RESET standard_conforming_strings",
			"SET client_encoding = 'UTF-8'",
			"SET NAMES 'unicode'",
			"RESET client_encoding",
			"SELECT set_config('client_encoding', 'UTF8', false)",
			"SELECT pg_catalog.set_config('standard_conforming_strings', 'on', false)",
		} {
			if _, err := c.Exec(ctx, q); err != nil { // simple protocol
				t.Errorf("%s: %v", q, err)
			}
		}
		// The extended protocol (pgx's default with arguments).
		var v string
		if err := c.QueryRow(ctx, "SELECT set_config('client_encoding', 'utf8', $1)", false).Scan(&v); err != nil || v != "UTF8" {
			t.Errorf("set_config of client_encoding, extended protocol: %q %v", v, err)
		}
		if got := show("standard_conforming_strings"); got != "on" {
			t.Errorf("standard_conforming_strings = %s", got)
		}
		if got := show("client_encoding"); got != "UTF8" {
			t.Errorf("client_encoding = %s", got)
		}
	})
	t.Run("unsafe values refused", func(t *testing.T) {
		for _, tc := range []struct {
			sql  string
			args []any
		}{
			{"SET standard_conforming_strings = off", nil},
			{"SET standard_conforming_strings TO 0", nil},
			{"SELECT set_config('standard_conforming_strings', 'off', false)", nil},
			{"SET client_encoding = 'SJIS'", nil},
			{"SET NAMES 'big5'", nil},
			{"SELECT set_config('client_encoding', 'GBK', false)", nil},
			{"SELECT set_config('client_encoding', $1, false)", []any{"UTF8"}}, // a value the proxy cannot read
		} {
			_, err := c.Exec(ctx, tc.sql, tc.args...)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "0A000" || !strings.Contains(pe.Message, "is not allowed through stratum-proxy") ||
				!strings.Contains(pe.Message, "hide statements from the proxy's checks") && !strings.Contains(pe.Message, "cannot tell") {
				t.Errorf("%s: %v, want the guard's 0A000 saying why", tc.sql, err)
			}
		}
		if got := show("standard_conforming_strings"); got != "on" {
			t.Errorf("after the refusals standard_conforming_strings = %s", got)
		}
		if got := show("client_encoding"); got != "UTF8" {
			t.Errorf("after the refusals client_encoding = %s", got)
		}
	})
	// In every placement: what the settings could smuggle past the guard,
	// PostgreSQL refuses whatever the tenant's role.
	for _, tenant := range []string{"client_alpha", "client_beta", "client_gamma"} {
		t.Run("hidden in dynamic SQL/"+tenant, func(t *testing.T) {
			testHiddenLexerSettings(t, stacktest.Connect(t, ts.URL("demo", "demo", tenant, "")))
		})
	}
}

// testHiddenLexerSettings sends, on c, the lexer settings the guard refuses
// hidden in dynamic SQL: PostgreSQL accepts them, and the statement they
// smuggle past the guard is refused by PostgreSQL itself.
func testHiddenLexerSettings(t *testing.T, c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	show := func(name string) string { t.Helper(); return showSetting(t, ctx, c, name) }
	// Inside a transaction, so that the settings end with it and no
	// pooled backend keeps them.
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	for _, q := range []string{"SET client_encoding = 'SJIS'", "SET client_encoding = 'UTF8'", "SET standard_conforming_strings = off"} {
		if _, err := tx.Exec(ctx, stacktest.Hidden(q)); err != nil {
			t.Fatalf("hidden %s: %v; PostgreSQL accepts it", q, err)
		}
	}
	// With standard_conforming_strings off, PostgreSQL reads 'a\', '
	// as one literal, so it runs the SET ROLE that the guard (reading
	// with it on) sees inside a second literal: the smuggled statement
	// reaches PostgreSQL, which refuses it itself.
	_, err = tx.Exec(ctx, `SELECT 'a\', 'b; SET ROLE postgres; --'`, pgx.QueryExecModeSimpleProtocol)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" || strings.Contains(pe.Message, "stratum-proxy") {
		t.Errorf("smuggled SET ROLE: %v, want PostgreSQL's own 42501", err)
	}
	tx.Rollback(ctx)
	var role string
	if err := c.QueryRow(ctx, "SELECT current_user").Scan(&role); err != nil || !strings.HasPrefix(role, "stratum_t_") {
		t.Errorf("current_user after the smuggled SET ROLE: %q %v", role, err)
	}
	if got := show("standard_conforming_strings"); got != "on" {
		t.Errorf("after the rollback standard_conforming_strings = %s", got)
	}
}

// showSetting is SHOW name on c.
func showSetting(t *testing.T, ctx context.Context, c *pgx.Conn, name string) string {
	t.Helper()
	var v string
	if err := c.QueryRow(ctx, "SHOW "+name).Scan(&v); err != nil {
		t.Fatalf("SHOW %s: %v", name, err)
	}
	return v
}

func testDatabaseNames(t *testing.T, ts *stacktest.Stack) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ts.AdminWant(t, "PUT", "/v1/tenants/client_beta/databases/beta_db", nil, 200)
	tenantOf := func(url string) (string, error) {
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			return "", err
		}
		defer c.Close(ctx)
		var shown string
		err = c.QueryRow(ctx, "SHOW stratum.tenant").Scan(&shown)
		return shown, err
	}
	for _, tc := range []struct {
		name, url, tenant, code, message string
	}{
		{"app name", ts.URL("demo", "demo", "client_alpha", ""), "client_alpha", "", ""},
		{"mapped name", ts.DatabaseURL("beta_db", "demo", "demo", "", ""), "client_beta", "", ""},
		{"mapped name, tenant named", ts.DatabaseURL("beta_db", "demo", "demo", "client_alpha", ""), "client_alpha", "", ""},
		{"unknown name", ts.DatabaseURL("nope", "demo", "demo", "client_alpha", ""), "", "3D000", `database "nope" does not exist`},
		{"no name: the user name", ts.DatabaseURL("", "demo.client_alpha", "demo", "", ""), "", "3D000", `database "demo.client_alpha" does not exist`},
		{"wrong password", ts.DatabaseURL("nope", "demo", "wrong", "client_alpha", ""), "", "28P01", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shown, err := tenantOf(tc.url)
			var pe *pgconn.PgError
			switch {
			case tc.code == "" && (err != nil || shown != tc.tenant):
				t.Errorf("got tenant %q, %v; want %s", shown, err, tc.tenant)
			case tc.code == "":
			case !errors.As(err, &pe) || pe.Code != tc.code || pe.Severity != "FATAL" || tc.message != "" && pe.Message != tc.message:
				t.Errorf("got %v, want FATAL %s %s", err, tc.code, tc.message)
			}
		})
	}
}
