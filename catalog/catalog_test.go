package catalog_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// open opens the catalog at url with a fresh one-key keyring.
func open(t *testing.T, url string) *catalog.Catalog {
	t.Helper()
	return openKeyring(t, url, "")
}

// TestMigrateConcurrently starts several catalogs on one fresh database at once,
// as proxies starting together do: each migration is applied exactly once and
// all of them end up with the same deployment id.
func TestMigrateConcurrently(t *testing.T) {
	srv := pgtest.Get(t)
	db := srv.NewDatabase(t, "cat")
	const n = 4
	applied := make([]int, n)
	errs := make([]error, n)
	cats := make([]*catalog.Catalog, n)
	for i := range cats {
		cats[i] = open(t, srv.URL(db))
	}
	var wg sync.WaitGroup
	for i := range cats {
		wg.Add(1)
		go func() {
			defer wg.Done()
			applied[i], errs[i] = cats[i].Migrate(context.Background())
		}()
	}
	wg.Wait()
	total := 0
	for i := range cats {
		if errs[i] != nil {
			t.Fatalf("migrate %d: %v", i, errs[i])
		}
		total += applied[i]
	}
	// The expectation comes from the migration files themselves, not from
	// what Migrate reports.
	files, err := filepath.Glob("../migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("listing the migration files: %v %v", files, err)
	}
	if total != len(files) {
		t.Fatalf("the catalogs applied %v migrations, %d in all; want each of the %d files applied exactly once", applied, total, len(files))
	}
	// And each file is recorded once, by name.
	conn, err := pgx.Connect(context.Background(), srv.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), `SELECT name FROM schema_migrations ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	recorded, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	slices.Sort(names)
	if !slices.Equal(recorded, names) {
		t.Fatalf("schema_migrations records %q, want %q", recorded, names)
	}
	again, err := cats[0].Migrate(context.Background())
	if err != nil || again != 0 {
		t.Fatalf("second migrate applied %d, %v", again, err)
	}
	ids := map[string]bool{}
	for _, c := range cats {
		id, err := c.DeploymentID(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		ids[id] = true
	}
	if len(ids) != 1 {
		t.Fatalf("deployment ids %v", ids)
	}
}

// TestTenantTree checks paths, depth, the 20-level limit, lookups by slug and
// id, sealed credentials and slug validation.
func TestTenantTree(t *testing.T) {
	srv := pgtest.Get(t)
	dbURL := srv.URL(srv.NewDatabase(t, "cat"))
	c := open(t, dbURL)
	ctx := context.Background()
	if _, err := c.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	insert := func(slug, parent string) (*catalog.Tenant, error) {
		id, short, err := catalog.NewID()
		if err != nil {
			t.Fatal(err)
		}
		return c.InsertTenant(ctx, catalog.NewTenant{ID: id, ShortID: short, Slug: slug, Name: slug, Parent: parent,
			Isolation: "shared", Backend: "main", Database: "app", Schema: "public", Role: "r_" + short,
			RolePassword: "pw-" + slug})
	}
	parent := ""
	var last *catalog.Tenant
	for level := 1; level <= catalog.MaxDepth; level++ {
		tn, err := insert(fmt.Sprintf("level_%d", level), parent)
		if err != nil {
			t.Fatalf("level %d: %v", level, err)
		}
		if tn.Depth != level {
			t.Fatalf("level %d has depth %d", level, tn.Depth)
		}
		parent, last = tn.Slug, tn
	}
	if _, err := insert("level_21", parent); !errors.Is(err, catalog.ErrDepthExceeded) {
		t.Fatalf("21st level: %v, want ErrDepthExceeded", err)
	}
	if _, err := c.GetTenant(ctx, "level_21"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("level_21 was written: %v", err)
	}
	if _, err := insert("level_5", ""); !errors.Is(err, catalog.ErrConflict) {
		t.Fatalf("duplicate slug: %v", err)
	}
	for _, bad := range []string{"", "Upper", "1abc", "has-dash", "x;drop"} {
		if _, err := insert(bad, ""); !errors.Is(err, catalog.ErrInvalid) {
			t.Errorf("slug %q: %v, want ErrInvalid", bad, err)
		}
	}
	byID, err := c.GetTenant(ctx, last.ID)
	if err != nil || byID.Slug != "level_20" {
		t.Fatalf("by id: %v %v", byID, err)
	}
	root, _ := c.GetTenant(ctx, "level_1")
	mid, _ := c.GetTenant(ctx, "level_10")
	if !last.Within(root) || !last.Within(mid) || mid.Within(last) {
		t.Errorf("Within: deep in root %v, deep in mid %v, mid in deep %v", last.Within(root), last.Within(mid), mid.Within(last))
	}
	pw, err := c.BackendPassword(ctx, last.ID)
	if err != nil || pw != "pw-level_20" {
		t.Fatalf("backend password: %q %v", pw, err)
	}
	// Nothing in the catalog holds the password in the clear.
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var leaks int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM backend_credentials
		WHERE position(convert_to('pw-level_20', 'UTF8') IN ciphertext) > 0`).Scan(&leaks); err != nil || leaks != 0 {
		t.Fatalf("plaintext found in %d credentials (%v)", leaks, err)
	}
}
