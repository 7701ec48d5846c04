package schema

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
)

// TestProxyLocksCannotBeTakenByTenants: the advisory-lock keys the proxy once
// took in the shared database (start-up and schema apply) are held there by
// other sessions, as a tenant could before: tenants now try, plainly, hidden
// in dynamic SQL and through FunctionCall, and are refused; a superuser
// session then holds them all. Start-up preparation and a schema apply must
// still complete (their locks live in the catalog), within a deadline rather
// than hang.
func TestProxyLocksCannotBeTakenByTenants(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	beta, err := ts.Catalog.GetTenant(ctx, "client_beta")
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"stratum.prepare_shared", "stratum.apply.shared", "stratum.apply." + beta.ID}
	for _, slug := range []string{"client_alpha", "client_beta"} {
		c := stacktest.Connect(t, ts.URL("demo", "demo", slug, ""))
		var oid uint32
		if err := c.QueryRow(ctx, "SELECT 'pg_catalog.pg_advisory_lock(bigint)'::regprocedure::oid").Scan(&oid); err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			q := "SELECT pg_catalog.pg_advisory_lock(pg_catalog.hashtext('" + k + "'))"
			for _, form := range []string{q, stacktest.Hidden(q)} {
				if _, err := c.Exec(ctx, form); stacktest.SQLState(err) != "42501" {
					t.Errorf("%s: %s: %v, want 42501", slug, form, err)
				}
			}
			var h int32
			if err := ts.SrvConn(t, "postgres").QueryRow(ctx, "SELECT hashtext($1)", k).Scan(&h); err != nil {
				t.Fatal(err)
			}
			if _, code := stacktest.CallFunction(t, c, oid, strconv.Itoa(int(h))); code != "42501" {
				t.Errorf("%s: FunctionCall pg_advisory_lock(hashtext(%q)): %q, want 42501", slug, k, code)
			}
		}
	}
	// Whoever holds the old keys in the shared database stalls nothing.
	holder := ts.SrvConn(t, ts.Router.Config().SharedDatabase)
	for _, k := range keys {
		if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock(hashtext($1))", k); err != nil {
			t.Fatal(err)
		}
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := ts.Provisioner.PrepareShared(dctx); err != nil {
		t.Fatalf("start-up preparation with the old keys held: %v", err)
	}
	rep, err := ts.Provisioner.ApplySchema(dctx, `CREATE TABLE lock_probe (id int PRIMARY KEY, tenant_id text)`)
	if err != nil || rep.Failed() != 0 {
		t.Fatalf("schema apply with the old keys held: %+v %v", rep, err)
	}
}
