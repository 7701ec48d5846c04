package isolation

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
)

// TestOldSlugStaysWithItsTenant: after a rename, a connection (or a SET
// stratum.tenant) naming the old slug reaches the renamed tenant, with a
// NOTICE naming the new slug; no other tenant, in any subtree, may take the
// old slug (409); the tenant itself may take it back; and a user who may not
// use the tenant is refused for the old slug exactly as for an unknown one.
func TestOldSlugStaysWithItsTenant(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	ts.AdminWant(t, http.MethodPatch, "/v1/tenants/client_alpha", map[string]any{"slug": "client_alpha_renamed"}, http.StatusOK)
	ts.Router.Invalidate() // NOTIFY does this too; do not race it

	var notices []*pgconn.Notice
	cfg, err := pgx.ParseConfig(ts.URL("demo", "demo", "client_alpha", ""))
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n) }
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connecting with the old slug: %v", err)
	}
	defer c.Close(ctx)
	var shown string
	if err := c.QueryRow(ctx, `SHOW stratum.tenant`).Scan(&shown); err != nil || shown != "client_alpha_renamed" {
		t.Errorf("old slug reached %q (%v), want client_alpha_renamed", shown, err)
	}
	if len(notices) != 1 || notices[0].Code != "01P01" || !strings.Contains(notices[0].Message, `renamed to "client_alpha_renamed"`) {
		t.Errorf("notices at startup: %+v, want one 01P01 naming the new slug", notices)
	}
	notices = nil
	if _, err := c.Exec(ctx, `SET stratum.tenant = 'client_beta'`); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, `SET stratum.tenant = 'client_alpha'`); err != nil {
		t.Fatalf("SET stratum.tenant to the old slug: %v", err)
	}
	if err := c.QueryRow(ctx, `SHOW stratum.tenant`).Scan(&shown); err != nil || shown != "client_alpha_renamed" {
		t.Errorf("SET to the old slug reached %q (%v)", shown, err)
	}
	if len(notices) != 1 || notices[0].Code != "01P01" {
		t.Errorf("notices at the switch: %+v, want one 01P01", notices)
	}

	// Nobody else takes the old slug: not a new tenant anywhere, not a rename.
	for _, parent := range []any{"apex_partners", "client_alpha_renamed", nil} {
		body := map[string]any{"slug": "client_alpha", "name": "Squatter", "isolation": "shared"}
		if parent != nil {
			body["parent"] = parent
		}
		if out := ts.AdminWant(t, http.MethodPost, "/v1/tenants", body, http.StatusConflict); !strings.Contains(out, "reserved") {
			t.Errorf("create with the old slug under %v: %s, want a 409 saying old slugs are reserved", parent, out)
		}
	}
	ts.AdminWant(t, http.MethodPatch, "/v1/tenants/client_gamma", map[string]any{"slug": "client_alpha"}, http.StatusConflict)
	// The current slug is taken too, of course; and the tenant may go back.
	ts.AdminWant(t, http.MethodPatch, "/v1/tenants/client_gamma", map[string]any{"slug": "client_alpha_renamed"}, http.StatusConflict)

	// A user who may not use the tenant: the old slug is refused like an
	// unknown one.
	if _, err := ts.Catalog.CreateUser(ctx, "apex_ops", "pw-apex", "apex_partners", false); err != nil {
		t.Fatal(err)
	}
	refusal := func(ref string) string {
		_, err := pgx.Connect(ctx, ts.URL("apex_ops", "pw-apex", ref, ""))
		var pe *pgconn.PgError
		if err == nil || !errors.As(err, &pe) {
			t.Fatalf("apex_ops naming %q: %v, want a refusal", ref, err)
		}
		return pe.Code + "|" + strings.ReplaceAll(pe.Message, ref, "<ref>") + "|" + pe.Hint
	}
	if old, unknown := refusal("client_alpha"), refusal("client_never_was"); old != unknown {
		t.Errorf("old slug outside the subtree: %s\nunknown: %s\nwant the same", old, unknown)
	}

	ts.AdminWant(t, http.MethodPatch, "/v1/tenants/client_alpha_renamed", map[string]any{"slug": "client_alpha"}, http.StatusOK)
	// The rename reaches the proxy's cache by NOTIFY: retry briefly.
	deadline := time.Now().Add(15 * time.Second)
	for {
		d := stacktest.Connect(t, ts.URL("demo", "demo", "client_alpha_renamed", ""))
		err := d.QueryRow(ctx, `SHOW stratum.tenant`).Scan(&shown)
		d.Close(ctx)
		if err == nil && shown == "client_alpha" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after renaming back, the other old slug reached %q (%v), want client_alpha", shown, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
