package privileges

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/pgtest"
	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
	"github.com/stratum-hq/stratum-proxy/provision"
	"github.com/stratum-hq/stratum-proxy/server"
)

var update = flag.Bool("update", false, "rewrite testdata/privileges.golden from the picture read now")

const goldenFile = "testdata/privileges.golden"

// appV1 and appV2 are the app's schema: tables with and without tenant_id
// (uuid and text), sequences (owned and free), a view, a function and an
// enum type. V1 is applied before the tenants exist (they replay it), V2
// after (it is applied to every placement).
const (
	appV1 = `CREATE TYPE order_status AS ENUM ('new', 'done');
CREATE TABLE orders (id bigserial PRIMARY KEY, tenant_id uuid NOT NULL, item text NOT NULL,
	status order_status NOT NULL DEFAULT 'new');
CREATE TABLE countries (code text PRIMARY KEY, name text NOT NULL);
CREATE SEQUENCE invoice_no;
CREATE VIEW open_orders AS SELECT id, item FROM orders WHERE status = 'new';
CREATE FUNCTION order_count() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM orders $$;`
	appV2 = `CREATE TABLE notes (id serial PRIMARY KEY, tenant_id text NOT NULL, body text);`
)

// tenantSlugs are the audited tenants: two in each placement, so that each
// one's rights on the other's schema or database show.
var tenantSlugs = map[string]string{
	"shared_a": catalog.IsolationShared, "shared_b": catalog.IsolationShared,
	"schema_a": catalog.IsolationSchema, "schema_b": catalog.IsolationSchema,
	"database_a": catalog.IsolationDatabase, "database_b": catalog.IsolationDatabase,
}

// openSharedDatabase makes the shared database before the stack starts, left
// open as an older version or a careless operator might have left it:
// everything granted to PUBLIC, the stratum schemas and table already there
// with PUBLIC's grants, and the admin's default privileges granting every new
// schema to PUBLIC. Provisioning must close all of it; without this the
// revokes on objects that PostgreSQL makes closed anyway could be dropped
// unnoticed.
func openSharedDatabase(t *testing.T, srv *pgtest.Server, name string) {
	t.Helper()
	srv.Exec(t, "postgres", "CREATE DATABASE "+name+" TEMPLATE template0")
	t.Cleanup(func() { // the stack's teardown drops it; this is for a failed start
		srv.Exec(t, "postgres", "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	srv.Exec(t, "postgres", "GRANT ALL ON DATABASE "+name+" TO PUBLIC")
	srv.Exec(t, name, `GRANT ALL ON SCHEMA public TO PUBLIC;
CREATE SCHEMA stratum; GRANT ALL ON SCHEMA stratum TO PUBLIC;
CREATE TABLE stratum.tenant_roles (role_name name PRIMARY KEY, tenant_id uuid NOT NULL UNIQUE);
GRANT ALL ON stratum.tenant_roles TO PUBLIC;
CREATE SCHEMA stratum_template; GRANT ALL ON SCHEMA stratum_template TO PUBLIC;
ALTER DEFAULT PRIVILEGES GRANT USAGE, CREATE ON SCHEMAS TO PUBLIC;`)
}

// TestPrivilegesMatchModel provisions tenants in every placement over an
// open shared database, applies an app schema before and after, leaves an
// object owned by the admin in a schema and a database tenant's placement (as
// older versions did), restarts the provisioner (PrepareShared), and then
// compares the privilege picture of every role the proxy made, and of PUBLIC,
// with the golden file.
func TestPrivilegesMatchModel(t *testing.T) {
	srv := pgtest.Get(t)
	sharedDB := pgtest.UniqueName("app")
	openSharedDatabase(t, srv, sharedDB)
	ts := stacktest.StartEmpty(t, func(c *server.Config) { c.Router.Set.SharedDatabase = sharedDB })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := ts.Provisioner

	applySchema(ctx, t, p, appV1)
	slugs := make([]string, 0, len(tenantSlugs))
	for s := range tenantSlugs {
		slugs = append(slugs, s)
	}
	sort.Strings(slugs)
	for _, s := range slugs {
		if _, err := p.CreateTenant(ctx, provision.TenantSpec{Slug: s, Isolation: tenantSlugs[s]}); err != nil {
			t.Fatalf("creating %s: %v", s, err)
		}
	}
	applySchema(ctx, t, p, appV2)
	tenants, err := ts.Catalog.ListTenants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tn := range tenants {
		if tn.Slug == "schema_a" || tn.Slug == "database_a" {
			if _, err := ts.SrvConn(t, tn.Database).Exec(ctx, "CREATE TABLE "+tn.Schema+".legacy (id int)"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := p.PrepareShared(ctx); err != nil {
		t.Fatalf("restarting: %v", err)
	}

	pic := newPicture(ctx, t, ts, sharedDB, tenants)
	got := pic.read(ctx, t, func(db string) *pgx.Conn { return ts.SrvConn(t, db) })
	if *update {
		if err := os.MkdirAll(filepath.Dir(goldenFile), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenFile, []byte(strings.Join(got, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d lines); review its diff against the privilege model", goldenFile, len(got))
		return
	}
	b, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	want := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if d := diff(want, got); d != "" {
		t.Errorf("the privilege picture differs from %s (- expected, missing now; + there now, not expected):\n%s\n"+
			"If the change is intended, run with -update and review the golden file's diff.", goldenFile, d)
	}
}

func applySchema(ctx context.Context, t *testing.T, p *provision.Provisioner, ddl string) {
	t.Helper()
	rep, err := p.ApplySchema(ctx, ddl)
	if err != nil {
		t.Fatalf("applying schema: %v", err)
	}
	if rep.Failed() > 0 {
		t.Fatalf("applying schema: %+v", rep.Placements)
	}
}

// newPicture finds what the audit covers: every stratum_% role of this stack
// (named with its deployment id or one of its tenants' short ids, so that
// roles added later are picked up without a change here), the shared
// database and each database tenant's database; and the names to normalise.
func newPicture(ctx context.Context, t *testing.T, ts *stacktest.Stack, sharedDB string, tenants []*catalog.Tenant) *picture {
	t.Helper()
	dep, err := ts.Catalog.DeploymentID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(tenants, func(i, j int) bool { return tenants[i].Slug < tenants[j].Slug })
	var pairs []string
	for _, tn := range tenants { // ids first: a replacer tries its pairs in order
		pairs = append(pairs, tn.ID, "<id:"+tn.Slug+">")
	}
	ours := []string{dep}
	pic := &picture{tenantDBs: []string{sharedDB}}
	for _, tn := range tenants {
		pairs = append(pairs, tn.ShortID, "<"+tn.Slug+">")
		ours = append(ours, tn.ShortID)
		if tn.Isolation == catalog.IsolationDatabase {
			pic.tenantDBs = append(pic.tenantDBs, tn.Database)
		}
	}
	pairs = append(pairs, dep, "<dep>", sharedDB, "<shared-db>")

	admin := ts.SrvConn(t, "postgres")
	rows, err := admin.Query(ctx, `SELECT rolname FROM pg_catalog.pg_roles WHERE rolname LIKE 'stratum\_%' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	all, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range all {
		mine := false
		for _, o := range ours {
			mine = mine || strings.Contains(r, o)
		}
		if mine {
			pic.roles = append(pic.roles, r)
		} else {
			t.Logf("role %s is not this stack's; not audited", r)
		}
	}
	// The catalog database is the one whose stratum_meta names this deployment.
	rows, err = admin.Query(ctx, `SELECT datname FROM pg_catalog.pg_database WHERE datallowconn AND NOT (datname = ANY($1)) AND datname <> 'postgres'`, pic.tenantDBs)
	if err != nil {
		t.Fatal(err)
	}
	others, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, db := range others {
		c := ts.SrvConn(t, db)
		var has bool
		if err := c.QueryRow(ctx, `SELECT pg_catalog.to_regclass('public.stratum_meta') IS NOT NULL`).Scan(&has); err != nil {
			t.Fatal(err)
		}
		var id string
		if has {
			if err := c.QueryRow(ctx, `SELECT deployment_id FROM public.stratum_meta`).Scan(&id); err != nil {
				t.Fatal(err)
			}
		}
		if id == dep {
			pairs = append(pairs, db, "<catalog-db>")
		}
	}
	pic.norm = strings.NewReplacer(pairs...)
	return pic
}

// diff lists the lines of want missing from got ("- ") and those of got
// missing from want ("+ "), in order; "" when they hold the same lines.
func diff(want, got []string) string {
	in := func(s []string) map[string]bool {
		m := make(map[string]bool, len(s))
		for _, l := range s {
			m[l] = true
		}
		return m
	}
	w, g := in(want), in(got)
	var b strings.Builder
	all := append(append([]string(nil), want...), got...)
	sort.Strings(all)
	last := ""
	for _, l := range all {
		if l == last {
			continue
		}
		last = l
		switch {
		case w[l] && !g[l]:
			b.WriteString("- " + l + "\n")
		case g[l] && !w[l]:
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}
