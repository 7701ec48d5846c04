package policy

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/internal/scramverifier"
	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
)

// endsWith runs SELECT 1 on c until it fails (the catalog change arrives by
// NOTIFY), and checks the failure is SQLSTATE code with every text in want
// and none of the texts in never.
func endsWith(t *testing.T, name string, c *pgx.Conn, code string, want, never []string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := c.Exec(context.Background(), "SELECT 1", pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			if stacktest.SQLState(err) != code {
				t.Errorf("%s: %v, want SQLSTATE %s", name, err, code)
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: %v, want it to say %q", name, err, w)
				}
			}
			for _, n := range never {
				if strings.Contains(err.Error(), n) {
					t.Errorf("%s: %v names %q, which the user may not see", name, err, n)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: session still works 15s after the change", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testSessionsReauthorizedAtTransactionBoundary: at the next transaction
// boundary after a catalog change, a session is checked again as at login,
// in both pool modes. Its tenant moved out of the user's subtree, its user
// deleted, re-bound elsewhere, or (after a switch) denied switching: the
// session ends with FATAL 42501 naming the tenant and the reason, never the
// tenant it was moved under. A statement inside an open transaction finishes
// first; sessions still allowed (and one whose user's password changed) go on.
func testSessionsReauthorizedAtTransactionBoundary(t *testing.T, ts *stacktest.Stack) {
	ctx := context.Background()
	own := standIns(t, ts, "reauth", "alpha", "beta", "gamma")
	for _, u := range []struct {
		name, tenant string
		canSwitch    bool
	}{{"ops_a", own.northstar, false}, {"ops_b", own.northstar, false},
		{"ops_c", "acmesec", true}, {"ops_d", own.northstar, false}} {
		if _, err := ts.Catalog.CreateUser(ctx, u.name, "pw-"+u.name, u.tenant, u.canSwitch); err != nil {
			t.Fatal(err)
		}
	}
	conn := func(user, tenant string) *pgx.Conn {
		return stacktest.Connect(t, ts.URL(user, "pw-"+user, tenant, ""))
	}
	movedIdle := conn("ops_a", own.alpha)
	movedBusy := conn("ops_a", own.alpha)
	stays := conn("ops_a", own.beta)
	demoAlpha := stacktest.Connect(t, ts.URL("demo", "demo", own.alpha, ""))
	deleted := conn("ops_b", own.beta)
	switched := conn("ops_c", own.alpha)
	if _, err := switched.Exec(ctx, "SET stratum.tenant = '"+own.beta+"'"); err != nil {
		t.Fatal(err)
	}
	notSwitched := conn("ops_c", own.gamma)
	rebound := conn("ops_d", own.beta)
	if _, err := movedBusy.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := movedBusy.Exec(ctx, "INSERT INTO orders (item) VALUES ('before the move')"); err != nil {
		t.Fatal(err)
	}

	ts.AdminWant(t, http.MethodPost, "/v1/tenants/"+own.alpha+"/move", map[string]any{"parent": own.apex}, http.StatusOK)
	cat, err := pgx.Connect(ctx, ts.CatalogURL)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close(ctx)
	apex, err := ts.Catalog.GetTenant(ctx, own.apex)
	if err != nil {
		t.Fatal(err)
	}
	newVerifier, err := scramverifier.Make("a-new-password")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`DELETE FROM proxy_users WHERE name = 'ops_b'`, nil},
		{`UPDATE proxy_users SET can_switch = false WHERE name = 'ops_c'`, nil},
		{`UPDATE proxy_users SET tenant_id = $1 WHERE name = 'ops_d'`, []any{apex.ID}},
		{`UPDATE proxy_users SET verifier = $1 WHERE name = 'ops_a'`, []any{newVerifier}},
	} {
		if _, err := cat.Exec(ctx, q.sql, q.args...); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
	}

	// The open transaction finishes; the session ends after it.
	if _, err := movedBusy.Exec(ctx, "INSERT INTO orders (item) VALUES ('in the open transaction')"); err != nil {
		t.Fatalf("statement inside the open transaction: %v", err)
	}
	if _, err := movedBusy.Exec(ctx, "COMMIT"); err != nil {
		t.Fatalf("commit of the open transaction: %v", err)
	}
	hidden := []string{own.apex, apex.ID}
	quoted := func(s string) string { return `"` + s + `"` }
	endsWith(t, "busy session after the move", movedBusy, "42501", []string{quoted(own.alpha), "no longer inside", `"ops_a"`}, hidden)
	endsWith(t, "idle session after the move", movedIdle, "42501", []string{quoted(own.alpha), "no longer inside"}, hidden)
	endsWith(t, "deleted user", deleted, "42501", []string{`user "ops_b" no longer exists`}, hidden)
	endsWith(t, "switched, then denied switching", switched, "42501", []string{"may no longer switch", quoted(own.beta)}, hidden)
	endsWith(t, "re-bound user", rebound, "42501", []string{quoted(own.beta), "no longer inside", `"ops_d"`}, hidden)

	for name, c := range map[string]*pgx.Conn{"ops_a on " + own.beta + " (password changed)": stays,
		"demo on the moved tenant (still in its subtree)": demoAlpha, "ops_c on the tenant it named": notSwitched} {
		if _, err := c.Exec(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Errorf("%s: %v; the session is still allowed", name, err)
		}
	}
	if n := stacktest.Count(t, demoAlpha, "SELECT count(*) FROM orders WHERE item IN ('before the move', 'in the open transaction')"); n != 2 {
		t.Errorf("the open transaction's rows: %d, want 2 (it committed)", n)
	}
	// New logins see the same: the moved tenant is refused like an unknown one.
	_, err = pgx.Connect(ctx, ts.URL("ops_a", "a-new-password", own.alpha, ""))
	if stacktest.SQLState(err) != "42501" || strings.Contains(err.Error(), own.apex) {
		t.Errorf("new login to the moved tenant: %v, want 42501", err)
	}
}
