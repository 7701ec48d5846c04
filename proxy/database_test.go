package proxy

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stratum-hq/stratum-proxy/router"
)

// TestDatabaseNames checks the rule for the client's database name: the
// app's name and names mapped to a tenant inside the user's subtree pass;
// any other name, a name mapped outside the subtree and a missing name
// (PostgreSQL's default, the user name) get FATAL 3D000 after
// authentication; a wrong password hears nothing about the name; and
// AllowAnyDatabase lifts the rule. proxytest maps a tenant's slug as a
// database name to that tenant.
func TestDatabaseNames(t *testing.T) {
	h := newHarness(t, PoolTransaction) // known status: no backend events
	h.be.AddTenant("other", nil)        // outside the user's subtree (root)
	h.start()
	login := func(user, password, database string) error {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		pc, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", user, password, h.addr, database))
		if err != nil {
			return err
		}
		return pc.Close(ctx)
	}
	for _, tc := range []struct {
		name, user, password, database string
		code, message                  string
	}{
		{"app name", "app.t1", "secret", "app", "", ""},
		// Without a tenant named, only the mapping can name t2.
		{"mapped name names the tenant", "app", "secret", "t2", "", ""},
		{"unknown name", "app.t1", "secret", "nope", "3D000", `database "nope" does not exist`},
		{"unknown name, no tenant named", "app", "secret", "nope", "3D000", `database "nope" does not exist`},
		{"name mapped outside the subtree", "app.t1", "secret", "other", "3D000", `database "other" does not exist`},
		{"no name: the user name", "app.t1", "secret", "", "3D000", `database "app.t1" does not exist`},
		{"case matters", "app.t1", "secret", "APP", "3D000", `database "APP" does not exist`},
		{"wrong password", "app.t1", "wrong", "nope", "28P01", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := login(tc.user, tc.password, tc.database)
			var pe *pgconn.PgError
			switch {
			case tc.code == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.code == "":
			case !errors.As(err, &pe):
				t.Fatalf("got %v, want SQLSTATE %s", err, tc.code)
			case pe.Code != tc.code || tc.message != "" && pe.Message != tc.message || pe.Severity != "FATAL":
				t.Errorf("got %s %s %q, want FATAL %s %q", pe.Severity, pe.Code, pe.Message, tc.code, tc.message)
			}
		})
	}
}

// TestAllowAnyDatabase checks that the switch accepts any name, and that a
// mapped name still names its tenant.
func TestAllowAnyDatabase(t *testing.T) {
	h := newHarness(t, PoolTransaction)
	h.configured = func(c *Config) { c.PoolMode = PoolTransaction; c.AllowAnyDatabase = true }
	h.start()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	for _, db := range []string{"nope", ""} {
		pc, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://app.t1:secret@%s/%s?sslmode=disable", h.addr, db))
		if err != nil {
			t.Fatalf("database %q: %v", db, err)
		}
		pc.Close(ctx)
	}
	if _, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://app:secret@%s/nope?sslmode=disable", h.addr)); err == nil {
		t.Errorf("an unmapped name named a tenant")
	}
	pc, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://app:secret@%s/t2?sslmode=disable", h.addr))
	if err != nil {
		t.Fatalf("mapped name: %v", err)
	}
	pc.Close(ctx)
}

// TestDefaultDatabaseName checks DatabaseNames' default: the shared
// database's name, which the router's defaults make "app".
func TestDefaultDatabaseName(t *testing.T) {
	var rc router.Config
	if got := defaultDatabaseName(rc); got != "app" {
		t.Errorf("no shared database: %q, want app", got)
	}
	rc.Set.SharedDatabase = "saas"
	if got := defaultDatabaseName(rc); got != "saas" {
		t.Errorf("shared database saas: %q, want saas", got)
	}
}
