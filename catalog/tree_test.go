package catalog_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/pgtest"
)

// treeEnv is a migrated catalog on a fresh database plus a plain connection
// for checking what was written.
type treeEnv struct {
	t    *testing.T
	c    *catalog.Catalog
	conn *pgx.Conn
}

func newTreeEnv(t *testing.T) *treeEnv {
	t.Helper()
	srv := pgtest.Get(t)
	url := srv.URL(srv.NewDatabase(t, "cat"))
	c := open(t, url)
	ctx := context.Background()
	if _, err := c.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return &treeEnv{t: t, c: c, conn: conn}
}

// insert records a tenant (catalog only, status provisioning).
func (e *treeEnv) insert(slug, parent string) (*catalog.Tenant, error) {
	id, short, err := catalog.NewID()
	if err != nil {
		e.t.Fatal(err)
	}
	return e.c.InsertTenant(context.Background(), catalog.NewTenant{ID: id, ShortID: short, Slug: slug, Name: slug,
		Parent: parent, Isolation: "shared", Backend: "main", Database: "app", Schema: "public", Role: "r_" + short,
		RolePassword: "pw"})
}

func (e *treeEnv) mustInsert(slug, parent string) *catalog.Tenant {
	e.t.Helper()
	tn, err := e.insert(slug, parent)
	if err != nil {
		e.t.Fatalf("inserting %s under %q: %v", slug, parent, err)
	}
	return tn
}

func (e *treeEnv) get(ref string) *catalog.Tenant {
	e.t.Helper()
	tn, err := e.c.GetTenant(context.Background(), ref)
	if err != nil {
		e.t.Fatalf("reading %s: %v", ref, err)
	}
	return tn
}

// scalar runs a query answering one integer.
func (e *treeEnv) scalar(q string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.conn.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
	return n
}

func (e *treeEnv) auditCount(action string) int {
	e.t.Helper()
	return e.scalar(`SELECT count(*) FROM audit_log WHERE action = $1`, action)
}

// snapshot is every tenant's place, status and names, to prove a refused
// change wrote nothing.
func (e *treeEnv) snapshot() string {
	e.t.Helper()
	var s string
	if err := e.conn.QueryRow(context.Background(), `SELECT coalesce(string_agg(concat_ws('|', id, slug, name,
		parent_id, path, depth, status, updated_at), E'\n' ORDER BY id), '') || (SELECT count(*) FROM audit_log)::text
		FROM tenants`).Scan(&s); err != nil {
		e.t.Fatal(err)
	}
	return s
}

// checkTreeShape fails unless the tree is well formed: a root has no parent
// and its short id as path; everyone else's path is the parent's path plus
// its own short id; depth = nlevel(path); every parent chain reaches a root.
func (e *treeEnv) checkTreeShape() {
	e.t.Helper()
	if n := e.scalar(`SELECT count(*) FROM tenants t LEFT JOIN tenants p ON p.id = t.parent_id
		WHERE t.depth <> nlevel(t.path)
		   OR (t.parent_id IS NULL AND t.path <> text2ltree(t.short_id))
		   OR (t.parent_id IS NOT NULL AND (p.id IS NULL OR t.path <> p.path || text2ltree(t.short_id)))`); n != 0 {
		e.t.Errorf("%d tenants have a path, depth or parent that does not fit", n)
	}
	// Walk each parent chain; a cycle never reaches a root.
	if n := e.scalar(`WITH RECURSIVE up(start, id, parent_id, steps) AS (
			SELECT id, id, parent_id, 1 FROM tenants
			UNION ALL
			SELECT up.start, p.id, p.parent_id, up.steps + 1 FROM up JOIN tenants p ON p.id = up.parent_id
			WHERE up.steps <= 25)
		SELECT count(*) FROM tenants t WHERE NOT EXISTS
			(SELECT 1 FROM up WHERE up.start = t.id AND up.parent_id IS NULL)`); n != 0 {
		e.t.Errorf("%d tenants have a parent chain that never reaches a root", n)
	}
}

// TestTreeConcurrentChanges runs random moves and creates from 8 goroutines
// on one tree; the tree lock must keep it well formed (no cycles, no stale
// paths) and lose no create.
func TestTreeConcurrentChanges(t *testing.T) {
	e := newTreeEnv(t)
	ctx := context.Background()
	var (
		mu  sync.Mutex
		ids []string
	)
	for i := range 20 {
		parent := ""
		if i > 0 && i%4 != 0 {
			parent = ids[rand.IntN(len(ids))]
		}
		ids = append(ids, e.mustInsert(fmt.Sprintf("seed_%02d", i), parent).ID)
	}
	pick := func() string {
		mu.Lock()
		defer mu.Unlock()
		return ids[rand.IntN(len(ids))]
	}
	const workers, ops = 8, 30
	var (
		wg                               sync.WaitGroup
		created, succeeded, refused, bad sync.Map
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ops {
				name := fmt.Sprintf("w%d_%02d", w, i)
				var err error
				switch r := rand.IntN(10); {
				case r < 3:
					var tn *catalog.Tenant
					tn, err = e.insert(name, pick())
					if err == nil {
						created.Store(tn.ID, true)
						mu.Lock()
						ids = append(ids, tn.ID)
						mu.Unlock()
					}
				case r < 4:
					_, err = e.c.MoveTenant(ctx, pick(), "")
				default:
					_, err = e.c.MoveTenant(ctx, pick(), pick())
				}
				switch {
				case err == nil:
					succeeded.Store(name, true)
				case errors.Is(err, catalog.ErrCycle), errors.Is(err, catalog.ErrDepthExceeded):
					refused.Store(name, err.Error())
				default:
					bad.Store(name, err)
				}
			}
		}()
	}
	wg.Wait()
	bad.Range(func(k, v any) bool {
		t.Errorf("%s: unexpected error %v", k, v)
		return true
	})
	nCreated, nOK, nRefused := 0, 0, 0
	created.Range(func(any, any) bool { nCreated++; return true })
	succeeded.Range(func(any, any) bool { nOK++; return true })
	refused.Range(func(any, any) bool { nRefused++; return true })
	t.Logf("%d changes succeeded (%d creates, %d moves audited), %d refused (cycle or depth)",
		nOK, nCreated, e.auditCount("tenant.move"), nRefused)
	e.checkTreeShape()
	if n := e.scalar(`SELECT count(*) FROM tenants`); n != 20+nCreated {
		t.Errorf("%d tenants, want %d (20 seeds + %d creates)", n, 20+nCreated, nCreated)
	}
	if n := e.auditCount("tenant.create"); n != 20+nCreated {
		t.Errorf("%d tenant.create audit rows, want %d", n, 20+nCreated)
	}
	if e.auditCount("tenant.move") == 0 {
		t.Error("no move succeeded; the test proves nothing")
	}
}

// TestTreeMove checks moves: the whole subtree follows, to root and back,
// same-parent no-ops, and refusals for cycles, depth and unknown tenants that
// write nothing.
func TestTreeMove(t *testing.T) {
	e := newTreeEnv(t)
	ctx := context.Background()
	a := e.mustInsert("a", "")
	b := e.mustInsert("b", "a")
	c := e.mustInsert("c", "b")
	d := e.mustInsert("d", "c")
	x := e.mustInsert("x", "")

	t.Run("subtree follows", func(t *testing.T) {
		moved, err := e.c.MoveTenant(ctx, "b", "x")
		if err != nil {
			t.Fatal(err)
		}
		if moved.ID != b.ID || moved.ParentID == nil || *moved.ParentID != x.ID ||
			moved.Path != x.ShortID+"."+b.ShortID || moved.Depth != 2 {
			t.Errorf("moved %+v", moved)
		}
		if got := e.get("d"); got.Path != x.ShortID+"."+b.ShortID+"."+c.ShortID+"."+d.ShortID || got.Depth != 4 {
			t.Errorf("descendant d: path %s depth %d", got.Path, got.Depth)
		}
		if got := e.get("c"); got.ParentID == nil || *got.ParentID != b.ID {
			t.Errorf("c's parent changed: %v", got.ParentID)
		}
		e.checkTreeShape()
		var before, after map[string]any
		var target string
		if err := e.conn.QueryRow(ctx, `SELECT target, before, after FROM audit_log
			WHERE action = 'tenant.move' ORDER BY seq DESC LIMIT 1`).Scan(&target, &before, &after); err != nil {
			t.Fatal(err)
		}
		if target != "tenant:b" || before["parent"] != "a" || before["path"] != a.ShortID+"."+b.ShortID ||
			after["parent"] != "x" || after["path"] != moved.Path || after["subtree"] != float64(3) {
			t.Errorf("audit row %s before %v after %v", target, before, after)
		}
	})

	t.Run("to root and back", func(t *testing.T) {
		moved, err := e.c.MoveTenant(ctx, c.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		if moved.ParentID != nil || moved.Path != c.ShortID || moved.Depth != 1 {
			t.Errorf("moved to root: %+v", moved)
		}
		if got := e.get("d"); got.Path != c.ShortID+"."+d.ShortID || got.Depth != 2 {
			t.Errorf("d: %s %d", got.Path, got.Depth)
		}
		if _, err := e.c.MoveTenant(ctx, "c", "b"); err != nil {
			t.Fatal(err)
		}
		e.checkTreeShape()
	})

	t.Run("same parent is a no-op", func(t *testing.T) {
		for _, tc := range [][2]string{{"b", "x"}, {"b", x.ID}, {"x", ""}} {
			before := e.snapshot()
			got, err := e.c.MoveTenant(ctx, tc[0], tc[1])
			if err != nil {
				t.Fatalf("%v: %v", tc, err)
			}
			if got.Slug != tc[0] && got.ID != tc[0] {
				t.Errorf("%v answered %s", tc, got.Slug)
			}
			if after := e.snapshot(); after != before {
				t.Errorf("%v wrote something", tc)
			}
		}
	})

	t.Run("refusals write nothing", func(t *testing.T) {
		tests := []struct {
			name, ref, parent string
			want              error
		}{
			{"under itself", "b", "b", catalog.ErrCycle},
			{"under its child", "b", "c", catalog.ErrCycle},
			{"under its grandchild", "x", "d", catalog.ErrCycle},
			{"unknown tenant", "nobody", "x", catalog.ErrNotFound},
			{"unknown parent", "b", "nobody", catalog.ErrNotFound},
			{"malformed parent", "b", "Not A Slug", catalog.ErrNotFound},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				before := e.snapshot()
				_, err := e.c.MoveTenant(ctx, tc.ref, tc.parent)
				if !errors.Is(err, tc.want) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
				t.Logf("refused: %v", err)
				if after := e.snapshot(); after != before {
					t.Error("a refused move wrote something")
				}
			})
		}
	})

	t.Run("depth", func(t *testing.T) {
		parent := ""
		for level := 1; level <= 18; level++ {
			parent = e.mustInsert(fmt.Sprintf("deep_%02d", level), parent).Slug
		}
		// s1 -> s2 -> s3: three levels.
		e.mustInsert("s1", "")
		e.mustInsert("s2", "s1")
		e.mustInsert("s3", "s2")
		before := e.snapshot()
		_, err := e.c.MoveTenant(ctx, "s1", "deep_18")
		var de *catalog.DepthError
		if !errors.As(err, &de) || !errors.Is(err, catalog.ErrDepthExceeded) || de.Level != 21 {
			t.Fatalf("got %v, want a depth error at level 21", err)
		}
		if !strings.Contains(err.Error(), "level 21") {
			t.Errorf("message %q does not name level 21", err)
		}
		if after := e.snapshot(); after != before {
			t.Error("a refused move wrote something")
		}
		// Moving the middle of the chain down is judged by its deepest tenant too.
		if _, err := e.c.MoveTenant(ctx, "deep_01", "s3"); !errors.As(err, &de) || de.Level != 21 {
			t.Fatalf("moving deep_01 under s3: %v, want level 21", err)
		}
		// One level less fits exactly.
		moved, err := e.c.MoveTenant(ctx, "s1", "deep_17")
		if err != nil {
			t.Fatal(err)
		}
		if moved.Depth != 18 || e.get("s3").Depth != catalog.MaxDepth {
			t.Errorf("s1 at %d, s3 at %d", moved.Depth, e.get("s3").Depth)
		}
		e.checkTreeShape()
	})
}

// TestTreeUpdateTenant checks renames: slug and name, validation, taken
// slugs, no-op updates, and the audit row.
func TestTreeUpdateTenant(t *testing.T) {
	e := newTreeEnv(t)
	ctx := context.Background()
	acme := e.mustInsert("acme", "")
	e.mustInsert("globex", "")
	child := e.mustInsert("acme_child", "acme")
	str := func(s string) *string { return &s }

	got, err := e.c.UpdateTenant(ctx, "acme", catalog.TenantUpdate{Slug: str("acme_corp"), Name: str("Acme Corporation")})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != acme.ID || got.Slug != "acme_corp" || got.Name != "Acme Corporation" || got.Path != acme.Path {
		t.Errorf("updated %+v", got)
	}
	if _, err := e.c.GetTenant(ctx, "acme"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("old slug still resolves: %v", err)
	}
	if c := e.get(child.ID); c.ParentID == nil || *c.ParentID != acme.ID {
		t.Errorf("child lost its parent")
	}
	var before, after map[string]any
	if err := e.conn.QueryRow(ctx, `SELECT before, after FROM audit_log WHERE action = 'tenant.update'`).Scan(&before, &after); err != nil {
		t.Fatal(err)
	}
	if before["slug"] != "acme" || after["slug"] != "acme_corp" || after["name"] != "Acme Corporation" {
		t.Errorf("audit before %v after %v", before, after)
	}

	tests := []struct {
		name string
		u    catalog.TenantUpdate
		want error
	}{
		{"taken slug", catalog.TenantUpdate{Slug: str("globex")}, catalog.ErrConflict},
		{"bad slug", catalog.TenantUpdate{Slug: str("Bad-Slug")}, catalog.ErrInvalid},
		{"empty slug", catalog.TenantUpdate{Slug: str("")}, catalog.ErrInvalid},
		{"empty name", catalog.TenantUpdate{Name: str("")}, catalog.ErrInvalid},
		{"long name", catalog.TenantUpdate{Name: str(strings.Repeat("n", 201))}, catalog.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap := e.snapshot()
			if _, err := e.c.UpdateTenant(ctx, "acme_corp", tc.u); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if e.snapshot() != snap {
				t.Error("a refused update wrote something")
			}
		})
	}
	t.Run("no-op", func(t *testing.T) {
		snap := e.snapshot()
		for _, u := range []catalog.TenantUpdate{{}, {Slug: str("acme_corp")}, {Name: str("Acme Corporation")}} {
			if _, err := e.c.UpdateTenant(ctx, acme.ID, u); err != nil {
				t.Fatal(err)
			}
		}
		if e.snapshot() != snap {
			t.Error("an update that changes nothing wrote something")
		}
	})
	if _, err := e.c.UpdateTenant(ctx, "nobody", catalog.TenantUpdate{Name: str("x")}); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("unknown tenant: %v", err)
	}
}

// TestTreeLifecycle walks the lifecycle: provisioning -> active (activate),
// suspend, resume, archive; repeats are no-ops, archived is final.
func TestTreeLifecycle(t *testing.T) {
	e := newTreeEnv(t)
	ctx := context.Background()
	tn := e.mustInsert("life", "")
	type step struct {
		name   string
		do     func() error
		status string // afterwards
		action string // the audit row it writes; "" none
		want   error
	}
	change := func(f func(context.Context, string) (*catalog.Tenant, error)) func() error {
		return func() error { _, err := f(ctx, "life"); return err }
	}
	suspend, resume, archive := change(e.c.SuspendTenant), change(e.c.ResumeTenant), change(e.c.ArchiveTenant)
	steps := []step{
		{"suspend while provisioning", suspend, "provisioning", "", catalog.ErrStatus},
		{"resume while provisioning", resume, "provisioning", "", catalog.ErrStatus},
		{"archive while provisioning", archive, "provisioning", "", catalog.ErrStatus},
		{"activate", func() error { return e.c.SetTenantStatus(ctx, tn.ID, catalog.StatusActive) }, "active", "tenant.activate", nil},
		{"activate again", func() error { return e.c.SetTenantStatus(ctx, tn.ID, catalog.StatusActive) }, "active", "", nil},
		{"resume an active tenant", resume, "active", "", nil},
		{"suspend", suspend, "suspended", "tenant.suspend", nil},
		{"suspend again", suspend, "suspended", "", nil},
		{"resume", resume, "active", "tenant.resume", nil},
		{"suspend once more", suspend, "suspended", "tenant.suspend", nil},
		{"archive a suspended tenant", archive, "archived", "tenant.archive", nil},
		{"archive again", archive, "archived", "", nil},
		{"resume an archived tenant", resume, "archived", "", catalog.ErrStatus},
		{"suspend an archived tenant", suspend, "archived", "", catalog.ErrStatus},
		{"set an archived tenant active", func() error { return e.c.SetTenantStatus(ctx, tn.ID, catalog.StatusActive) }, "archived", "", catalog.ErrStatus},
		{"unknown status", func() error { return e.c.SetTenantStatus(ctx, tn.ID, "sleeping") }, "archived", "", catalog.ErrInvalid},
	}
	for _, s := range steps {
		rows := e.scalar(`SELECT count(*) FROM audit_log`)
		err := s.do()
		if s.want == nil && err != nil || s.want != nil && !errors.Is(err, s.want) {
			t.Fatalf("%s: got %v, want %v", s.name, err, s.want)
		}
		if err != nil && s.name == "resume an archived tenant" && !strings.Contains(err.Error(), "archived, which is final") {
			t.Errorf("%s: message %q", s.name, err)
		}
		if got := e.get("life").Status; got != s.status {
			t.Fatalf("%s: status %s, want %s", s.name, got, s.status)
		}
		added := e.scalar(`SELECT count(*) FROM audit_log`) - rows
		switch {
		case s.action == "" && added != 0:
			t.Errorf("%s: wrote %d audit rows, want none", s.name, added)
		case s.action != "":
			var action, target string
			var before, after map[string]any
			if err := e.conn.QueryRow(ctx, `SELECT action, target, before, after FROM audit_log ORDER BY seq DESC LIMIT 1`).
				Scan(&action, &target, &before, &after); err != nil {
				t.Fatal(err)
			}
			if added != 1 || action != s.action || target != "tenant:life" || after["status"] != s.status || before["status"] == s.status {
				t.Errorf("%s: %d rows, last %s %s before %v after %v", s.name, added, action, target, before["status"], after["status"])
			}
		}
	}
	// An archived tenant gets no new children, by creation or by a move.
	e.mustInsert("loose", "")
	before := e.snapshot()
	if _, err := e.insert("under_archived", "life"); !errors.Is(err, catalog.ErrStatus) {
		t.Errorf("creating under an archived tenant: %v, want ErrStatus", err)
	}
	if _, err := e.c.MoveTenant(ctx, "loose", "life"); !errors.Is(err, catalog.ErrStatus) {
		t.Errorf("moving under an archived tenant: %v, want ErrStatus", err)
	}
	if after := e.snapshot(); after != before {
		t.Errorf("refused changes under an archived tenant wrote something:\n%s\nthen\n%s", before, after)
	}
	// Another active tenant goes straight to archived.
	other := e.mustInsert("other", "")
	if err := e.c.SetTenantStatus(ctx, other.ID, catalog.StatusActive); err != nil {
		t.Fatal(err)
	}
	if got, err := e.c.ArchiveTenant(ctx, other.ID); err != nil || got.Status != catalog.StatusArchived {
		t.Fatalf("archiving an active tenant: %v %v", got, err)
	}
}

// walkPages lists every page of f (page size n), calling between before each
// page after the first, and returns the slugs in the order listed.
func walkPages(t *testing.T, c *catalog.Catalog, f catalog.TenantFilter, n int, between func(page int)) []string {
	t.Helper()
	var slugs []string
	cursor := ""
	for page := 0; ; page++ {
		if page > 0 && between != nil {
			between(page)
		}
		ts, next, err := c.ListTenantsPage(context.Background(), f, cursor, n)
		if err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		if len(ts) > n {
			t.Fatalf("page %d has %d rows, limit %d", page, len(ts), n)
		}
		for _, tn := range ts {
			slugs = append(slugs, tn.Slug)
		}
		if next == "" {
			return slugs
		}
		if len(ts) != n {
			t.Fatalf("page %d has %d rows and a next cursor", page, len(ts))
		}
		cursor = next
		if page > 1000 {
			t.Fatal("pagination does not end")
		}
	}
}

// checkOnce fails unless every slug in want appears exactly once in got and
// nothing in got appears twice.
func checkOnce(t *testing.T, got, want []string) {
	t.Helper()
	seen := map[string]int{}
	for _, s := range got {
		seen[s]++
		if seen[s] == 2 {
			t.Errorf("%s listed twice", s)
		}
	}
	for _, s := range want {
		if seen[s] != 1 {
			t.Errorf("%s listed %d times, want once", s, seen[s])
		}
	}
}

// TestTreePages walks the listings page by page with tenants created and
// deleted between pages: no row repeats, none is skipped, and the orders are
// the documented ones.
func TestTreePages(t *testing.T) {
	e := newTreeEnv(t)
	ctx := context.Background()
	// root -> m00..m09, each with children m00_c0..m00_c2; plus other roots.
	root := e.mustInsert("root", "")
	var all, under []string
	all = append(all, "root")
	for i := range 10 {
		m := e.mustInsert(fmt.Sprintf("m%02d", i), "root")
		all, under = append(all, m.Slug), append(under, m.Slug)
		for j := range 3 {
			c := e.mustInsert(fmt.Sprintf("%s_c%d", m.Slug, j), m.Slug)
			all, under = append(all, c.Slug), append(under, c.Slug)
		}
	}
	for i := range 5 {
		all = append(all, e.mustInsert(fmt.Sprintf("other%d", i), "").Slug)
	}

	t.Run("all, in path order", func(t *testing.T) {
		got := walkPages(t, e.c, catalog.TenantFilter{}, 7, nil)
		checkOnce(t, got, all)
		if len(got) != len(all) {
			t.Errorf("listed %d, want %d", len(got), len(all))
		}
		var paths []string
		for _, s := range got {
			paths = append(paths, e.get(s).Path)
		}
		if !slices.IsSortedFunc(paths, func(a, b string) int { return strings.Compare(a, b) }) {
			t.Errorf("not in path order: %v", got)
		}
	})

	t.Run("inserts and deletes between pages", func(t *testing.T) {
		var added []string
		deleted := map[string]bool{}
		got := walkPages(t, e.c, catalog.TenantFilter{Within: root.ID}, 5, func(page int) {
			// New tenants land anywhere in path order (random short ids).
			for k := range 2 {
				s := fmt.Sprintf("new_%d_%d", page, k)
				e.mustInsert(s, fmt.Sprintf("m%02d", page%10))
				added = append(added, s)
			}
			// Delete a leaf created by this walk, wherever it sorts.
			if page > 2 {
				victim := added[len(added)-3]
				tn := e.get(victim)
				if err := e.c.DeleteTenant(ctx, tn.ID); err != nil {
					t.Fatal(err)
				}
				deleted[victim] = true
			}
		})
		want := append([]string{"root"}, under...)
		checkOnce(t, got, want)
		for _, s := range got {
			if strings.HasPrefix(s, "other") {
				t.Errorf("%s is outside root but was listed", s)
			}
		}
		for _, s := range added {
			if !deleted[s] {
				if err := e.c.DeleteTenant(ctx, e.get(s).ID); err != nil {
					t.Fatal(err)
				}
			}
		}
	})

	t.Run("children by slug", func(t *testing.T) {
		var want []string
		for i := range 10 {
			want = append(want, fmt.Sprintf("m%02d", i))
		}
		var added []string
		got := walkPages(t, e.c, catalog.TenantFilter{ChildrenOf: root.ID}, 3, func(page int) {
			// One sorts before every child, one between, one after.
			for _, s := range []string{fmt.Sprintf("a_%d", page), fmt.Sprintf("m%02d_x", page), fmt.Sprintf("z_%d", page)} {
				e.mustInsert(s, "root")
				added = append(added, s)
			}
		})
		checkOnce(t, got, want)
		if !slices.IsSorted(got) {
			t.Errorf("children not in slug order: %v", got)
		}
		for _, s := range got {
			if strings.HasPrefix(s, "a_") {
				t.Errorf("%s sorts before the cursor but was listed", s)
			}
		}
		for _, s := range added {
			if err := e.c.DeleteTenant(ctx, e.get(s).ID); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("descendants exclude the tenant", func(t *testing.T) {
		m := e.get("m03")
		got := walkPages(t, e.c, catalog.TenantFilter{DescendantsOf: m.ID}, 2, nil)
		if !slices.Equal(slices.Sorted(slices.Values(got)), []string{"m03_c0", "m03_c1", "m03_c2"}) {
			t.Errorf("descendants of m03: %v", got)
		}
		got = walkPages(t, e.c, catalog.TenantFilter{DescendantsOf: root.ID}, 500, nil)
		checkOnce(t, got, under)
		if len(got) != len(under) {
			t.Errorf("descendants of root: %d, want %d", len(got), len(under))
		}
	})

	t.Run("the cursor row deleted", func(t *testing.T) {
		p := e.mustInsert("gone_parent", "")
		for i := range 3 {
			e.mustInsert(fmt.Sprintf("gone_%d", i), "gone_parent")
		}
		for _, f := range []catalog.TenantFilter{{ChildrenOf: p.ID}, {DescendantsOf: p.ID}} {
			first, cursor, err := e.c.ListTenantsPage(ctx, f, "", 1)
			if err != nil || len(first) != 1 || cursor == "" {
				t.Fatalf("%+v: first page %v %q %v", f, first, cursor, err)
			}
			if err := e.c.DeleteTenant(ctx, first[0].ID); err != nil {
				t.Fatal(err)
			}
			rest, next, err := e.c.ListTenantsPage(ctx, f, cursor, 10)
			if err != nil || next != "" || len(rest) != 2 {
				t.Fatalf("%+v: after deleting the cursor row: %d rows, %q, %v", f, len(rest), next, err)
			}
			e.mustInsert(first[0].Slug, "gone_parent")
		}
		ts, _, err := e.c.ListTenantsPage(ctx, catalog.TenantFilter{Within: p.ID}, "", 10)
		if err != nil {
			t.Fatal(err)
		}
		for i := len(ts) - 1; i >= 0; i-- {
			if err := e.c.DeleteTenant(ctx, ts[i].ID); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("ancestors", func(t *testing.T) {
		deep := e.mustInsert("deep", "m05_c1")
		anc, err := e.c.ListAncestors(ctx, deep.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		var slugs []string
		for _, a := range anc {
			slugs = append(slugs, a.Slug)
		}
		if !slices.Equal(slugs, []string{"root", "m05", "m05_c1"}) {
			t.Errorf("ancestors %v", slugs)
		}
		anc, err = e.c.ListAncestors(ctx, deep.ID, e.get("m05").ID)
		if err != nil || len(anc) != 2 || anc[0].Slug != "m05" {
			t.Errorf("ancestors from m05: %v %v", anc, err)
		}
		if anc, err := e.c.ListAncestors(ctx, root.ID, ""); err != nil || len(anc) != 0 {
			t.Errorf("ancestors of a root: %v %v", anc, err)
		}
		if err := e.c.DeleteTenant(ctx, deep.ID); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		_, childCursor, err := e.c.ListTenantsPage(ctx, catalog.TenantFilter{ChildrenOf: root.ID}, "", 1)
		if err != nil || childCursor == "" {
			t.Fatalf("children page: %q %v", childCursor, err)
		}
		_, pathCursor, err := e.c.ListTenantsPage(ctx, catalog.TenantFilter{}, "", 1)
		if err != nil || pathCursor == "" {
			t.Fatalf("list page: %q %v", pathCursor, err)
		}
		raw, _ := json.Marshal(map[string]string{"p": "x'; DROP TABLE tenants; --"})
		forged := base64.RawURLEncoding.EncodeToString(raw)
		for _, tc := range []struct {
			name   string
			f      catalog.TenantFilter
			cursor string
			limit  int
			want   error
		}{
			{"garbage cursor", catalog.TenantFilter{}, "!!!", 10, catalog.ErrBadCursor},
			{"not json", catalog.TenantFilter{}, "aGVsbG8", 10, catalog.ErrBadCursor},
			{"forged path", catalog.TenantFilter{}, forged, 10, catalog.ErrBadCursor},
			{"children cursor on the list", catalog.TenantFilter{}, childCursor, 10, catalog.ErrBadCursor},
			{"list cursor on children", catalog.TenantFilter{ChildrenOf: root.ID}, pathCursor, 10, catalog.ErrBadCursor},
			{"zero limit", catalog.TenantFilter{}, "", 0, catalog.ErrInvalid},
			{"huge limit", catalog.TenantFilter{}, "", catalog.MaxPageSize + 1, catalog.ErrInvalid},
			{"bad id", catalog.TenantFilter{Within: "root"}, "", 10, catalog.ErrInvalid},
		} {
			if _, _, err := e.c.ListTenantsPage(ctx, tc.f, tc.cursor, tc.limit); !errors.Is(err, tc.want) {
				t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
			}
		}
		ts, next, err := e.c.ListTenantsPage(ctx, catalog.TenantFilter{Within: "00000000-0000-4000-8000-000000000000"}, "", 10)
		if err != nil || len(ts) != 0 || next != "" {
			t.Errorf("unknown tenant: %v %q %v", ts, next, err)
		}
	})
}
