package isolation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
)

// TestTenantsSeeOnlyTheirOwnRows inserts a tagged row per tenant through the
// proxy, for every isolation strategy, and checks each tenant sees exactly its
// own, also after switching tenants inside one session.
func TestTenantsSeeOnlyTheirOwnRows(t *testing.T) {
	stacktest.PoolModes(t, func(t *testing.T, ts *stacktest.Stack) {
		ctx := context.Background()
		for i, slug := range stacktest.DemoSlugs {
			c := stacktest.Connect(t, ts.URL("demo", "demo", slug, ""))
			for j := 0; j <= i; j++ { // tenant i gets i+1 rows, so counts differ
				if _, err := c.Exec(ctx, `INSERT INTO orders (item) VALUES ($1)`, slug); err != nil {
					t.Fatalf("%s: insert: %v", slug, err)
				}
			}
		}
		for i, slug := range stacktest.DemoSlugs {
			t.Run(slug, func(t *testing.T) {
				c := stacktest.Connect(t, ts.URL("demo", "demo", slug, ""))
				if n := stacktest.Count(t, c, `SELECT count(*) FROM orders`); n != i+1 {
					t.Errorf("sees %d rows, want %d", n, i+1)
				}
				if n := stacktest.Count(t, c, `SELECT count(*) FROM orders WHERE item <> $1`, slug); n != 0 {
					t.Errorf("sees %d rows of other tenants", n)
				}
				var shown string
				if err := c.QueryRow(ctx, `SHOW stratum.tenant`).Scan(&shown); err != nil || shown != slug {
					t.Errorf("SHOW stratum.tenant = %q, %v", shown, err)
				}
			})
		}
		t.Run("switch", func(t *testing.T) {
			c := stacktest.Connect(t, ts.URL("demo", "demo", "client_alpha", ""))
			if _, err := c.Exec(ctx, `SET stratum.tenant = 'client_beta'`); err != nil {
				t.Fatalf("switching: %v", err)
			}
			if n := stacktest.Count(t, c, `SELECT count(*) FROM orders WHERE item = 'client_beta'`); n != 4 {
				t.Errorf("after switch to client_beta: %d of its rows, want 4", n)
			}
			if n := stacktest.Count(t, c, `SELECT count(*) FROM orders WHERE item <> 'client_beta'`); n != 0 {
				t.Errorf("after switch: %d rows of other tenants", n)
			}
			if _, err := c.Exec(ctx, `SET stratum.tenant = 'client_gamma'`); err != nil {
				t.Fatalf("switching to a database tenant: %v", err)
			}
			if n := stacktest.Count(t, c, `SELECT count(*) FROM orders`); n != 6 {
				t.Errorf("client_gamma sees %d rows, want 6", n)
			}
			if _, err := c.Exec(ctx, `RESET stratum.tenant`); err != nil {
				t.Fatalf("reset: %v", err)
			}
			if n := stacktest.Count(t, c, `SELECT count(*) FROM orders`); n != 3 {
				t.Errorf("after RESET (client_alpha) sees %d rows, want 3", n)
			}
			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_, err = tx.Exec(ctx, `SET stratum.tenant = 'client_beta'`)
			if stacktest.SQLState(err) != "25001" {
				t.Errorf("switch inside a transaction: got %v, want SQLSTATE 25001", err)
			}
			tx.Rollback(ctx)
			if n := stacktest.Count(t, c, `SELECT count(*) FROM orders WHERE item = 'client_alpha'`); n != 3 {
				t.Errorf("after refused switch: %d client_alpha rows, want 3", n)
			}
		})
	})
}

// TestRefusals checks each way a connection or a switch is refused gives a
// clear message and the right SQLSTATE.
func TestRefusals(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	if _, err := ts.Catalog.CreateUser(ctx, "northstar_ops", "pw-northstar", "northstar_msp", false); err != nil {
		t.Fatal(err)
	}
	beta, err := ts.Catalog.GetTenant(ctx, "client_beta")
	if err != nil {
		t.Fatal(err)
	}
	gamma, err := ts.Catalog.GetTenant(ctx, "client_gamma")
	if err != nil {
		t.Fatal(err)
	}
	// A database name mapped to a tenant outside the user's subtree is
	// answered as an unknown one.
	if err := ts.Catalog.MapDatabase(ctx, "gamma_db", gamma.ID); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, url, code, text string
	}{
		{"wrong password", ts.URL("demo", "nope", "client_alpha", ""), "28P01", `password authentication failed for user "demo"`},
		{"unknown database", ts.DatabaseURL("nope", "northstar_ops", "pw-northstar", "client_beta", ""), "3D000", `database "nope" does not exist`},
		{"database mapped outside subtree", ts.DatabaseURL("gamma_db", "northstar_ops", "pw-northstar", "client_beta", ""), "3D000", `database "gamma_db" does not exist`},
		{"unknown user", ts.URL("ghost", "demo", "client_alpha", ""), "28P01", `password authentication failed for user "ghost"`},
		{"unknown tenant", ts.URL("demo", "demo", "no_such_tenant", ""), "42501", `tenant "no_such_tenant" does not exist or user "demo" may not use it`},
		{"malformed tenant", ts.URL("demo", "demo", "Robert%27);DROP", ""), "22023", "invalid tenant name"},
		{"malformed tenant with a space", ts.URL("demo", "demo", "Bad%20Name!", ""), "22023", `invalid tenant name "Bad Name!"`},
		{"no tenant", ts.URL("demo", "demo", "", ""), "28000", "no tenant named"},
		{"outside subtree", ts.URL("northstar_ops", "pw-northstar", "client_gamma", ""), "42501", `tenant "client_gamma" does not exist or user "northstar_ops" may not use it`},
		{"outside subtree by id", ts.URL("northstar_ops", "pw-northstar", gamma.ID, ""), "42501", `tenant "` + gamma.ID + `" does not exist or user "northstar_ops" may not use it`},
		{"unknown tenant, same user", ts.URL("northstar_ops", "pw-northstar", "client_nope", ""), "42501", `tenant "client_nope" does not exist or user "northstar_ops" may not use it`},
		{"replication", ts.URL("demo", "demo", "client_alpha", "replication=database"), "0A000", "replication"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			c, err := pgx.Connect(cctx, tc.url)
			if err == nil {
				c.Close(ctx)
				t.Fatal("connected; want a refusal")
			}
			if stacktest.SQLState(err) != tc.code || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("got %v (SQLSTATE %s); want %s with %q", err, stacktest.SQLState(err), tc.code, tc.text)
			}
		})
	}
	t.Run("user.tenant suffix", func(t *testing.T) {
		c := stacktest.Connect(t, ts.URL("demo.client_beta", "demo", "", ""))
		var shown string
		if err := c.QueryRow(ctx, `SHOW stratum.tenant`).Scan(&shown); err != nil || shown != "client_beta" {
			t.Errorf("SHOW stratum.tenant = %q, %v", shown, err)
		}
	})
	t.Run("tenant by id and by mapped database", func(t *testing.T) {
		c := stacktest.Connect(t, ts.URL("demo", "demo", beta.ID, ""))
		var shown string
		if err := c.QueryRow(ctx, `SHOW stratum.tenant`).Scan(&shown); err != nil || shown != "client_beta" {
			t.Errorf("by id: SHOW stratum.tenant = %q, %v", shown, err)
		}
		if err := ts.Catalog.MapDatabase(ctx, "beta_app", beta.ID); err != nil {
			t.Fatal(err)
		}
		c2 := stacktest.Connect(t, strings.Replace(ts.URL("demo", "demo", "", ""), "/app?", "/beta_app?", 1))
		if err := c2.QueryRow(ctx, `SHOW stratum.tenant`).Scan(&shown); err != nil || shown != "client_beta" {
			t.Errorf("by database: SHOW stratum.tenant = %q, %v", shown, err)
		}
	})
	t.Run("switch refused", func(t *testing.T) {
		c := stacktest.Connect(t, ts.URL("northstar_ops", "pw-northstar", "client_alpha", ""))
		_, err := c.Exec(ctx, `SET stratum.tenant = 'client_beta'`)
		if stacktest.SQLState(err) != "42501" || !strings.Contains(err.Error(), "may not switch tenants") {
			t.Errorf("switch by a user without the flag: %v", err)
		}
		d := stacktest.Connect(t, ts.URL("demo", "demo", "client_alpha", ""))
		for ref, code := range map[string]string{"client_nope": "42501", "BAD NAME": "22023"} {
			_, err := d.Exec(ctx, fmt.Sprintf(`SET stratum.tenant = '%s'`, ref))
			if stacktest.SQLState(err) != code {
				t.Errorf("SET to %q: %v, want %s", ref, err, code)
			}
		}
		// A switching user bound to northstar_msp: an unknown tenant and one
		// outside its subtree get one answer (the ref aside).
		if _, err := ts.Catalog.CreateUser(ctx, "northstar_switch", "pw-switch", "northstar_msp", true); err != nil {
			t.Fatal(err)
		}
		sw := stacktest.Connect(t, ts.URL("northstar_switch", "pw-switch", "client_alpha", ""))
		answer := func(ref string) string {
			_, err := sw.Exec(ctx, fmt.Sprintf(`SET stratum.tenant = '%s'`, ref))
			var pe *pgconn.PgError
			if !errors.As(err, &pe) {
				t.Fatalf("SET to %q: %v, want a refusal", ref, err)
			}
			return strings.Join([]string{pe.Severity, pe.Code, strings.ReplaceAll(pe.Message, ref, "<ref>"), pe.Detail, pe.Hint}, "|")
		}
		unknown := answer("client_nope")
		for _, ref := range []string{"client_gamma", gamma.ID, "acmesec"} {
			if got := answer(ref); got != unknown {
				t.Errorf("SET to %q outside the subtree: %s\nunknown tenant: %s\nwant the same answer", ref, got, unknown)
			}
		}
		if !strings.HasPrefix(unknown, "ERROR|42501|") {
			t.Errorf("refused switch: %s, want ERROR 42501", unknown)
		}
		if n := stacktest.Count(t, d, `SELECT 1`); n != 1 {
			t.Error("session unusable after refused switches")
		}
	})
	t.Run("suspended tenant", func(t *testing.T) {
		alpha, _ := ts.Catalog.GetTenant(ctx, "client_alpha")
		if err := ts.Catalog.SetTenantStatus(ctx, alpha.ID, "suspended"); err != nil {
			t.Fatal(err)
		}
		ts.Router.Invalidate() // NOTIFY does this too; do not race it
		_, err := pgx.Connect(ctx, ts.URL("demo", "demo", "client_alpha", ""))
		if stacktest.SQLState(err) != "55000" || !strings.Contains(err.Error(), "suspended") {
			t.Errorf("suspended: %v", err)
		}
	})
}
