package catalog_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/pgtest"
)

// auditCatalog is a migrated catalog on a fresh database, and a superuser
// connection to that database for hand edits.
func auditCatalog(t *testing.T) (*catalog.Catalog, *pgx.Conn) {
	t.Helper()
	srv := pgtest.Get(t)
	dbURL := srv.URL(srv.NewDatabase(t, "cat"))
	c := open(t, dbURL)
	ctx := context.Background()
	if _, err := c.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return c, conn
}

func insertTenant(t *testing.T, c *catalog.Catalog, ctx context.Context, slug, parent string) *catalog.Tenant {
	t.Helper()
	id, short, err := catalog.NewID()
	if err != nil {
		t.Fatal(err)
	}
	tn, err := c.InsertTenant(ctx, catalog.NewTenant{ID: id, ShortID: short, Slug: slug, Name: slug, Parent: parent,
		Isolation: "shared", Backend: "main", Database: "app", Schema: "public", Role: "r_" + short,
		RolePassword: "pw-" + slug})
	if err != nil {
		t.Fatalf("inserting %s: %v", slug, err)
	}
	return tn
}

func auditCount(t *testing.T, conn *pgx.Conn) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM audit_log`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAPIKeyLifecycle(t *testing.T) {
	c, conn := auditCatalog(t)
	ctx := catalog.WithActor(context.Background(), catalog.Actor{KeyID: "bootstrap", Name: "bootstrap", RequestID: "r1", SourceIP: "127.0.0.1"})
	root := insertTenant(t, c, ctx, "kroot", "")
	child := insertTenant(t, c, ctx, "kchild", "kroot")
	other := insertTenant(t, c, ctx, "kother", "")

	k, secret, err := c.InsertAPIKey(ctx, catalog.NewAPIKey{Name: "ops", Scopes: []string{"read", "write"}, TenantID: &child.ID, RateLimit: 30})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, "stk_") || len(secret) < 36 || k.RateLimit != 30 || k.RevokedAt != nil || k.RotatedFrom != nil {
		t.Fatalf("key %+v secret %q", k, secret)
	}
	got, err := c.LookupAPIKey(ctx, secret)
	if err != nil || got.ID != k.ID || got.RateLimit != 30 || *got.TenantID != child.ID {
		t.Fatalf("lookup: %+v %v", got, err)
	}
	unbound, _, err := c.InsertAPIKey(ctx, catalog.NewAPIKey{Name: "platform", Scopes: []string{"admin"}})
	if err != nil {
		t.Fatal(err)
	}
	elsewhere, _, err := c.InsertAPIKey(ctx, catalog.NewAPIKey{Name: "other", Scopes: []string{"read"}, TenantID: &other.ID})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("refusals write nothing", func(t *testing.T) {
		before := auditCount(t, conn)
		for _, nk := range []catalog.NewAPIKey{
			{Name: "", Scopes: []string{"read"}},
			{Name: strings.Repeat("n", catalog.MaxAPIKeyNameLen+1), Scopes: []string{"read"}},
			{Name: "neg", Scopes: []string{"read"}, RateLimit: -1},
		} {
			if _, _, err := c.InsertAPIKey(ctx, nk); !errors.Is(err, catalog.ErrInvalid) {
				t.Errorf("%q: %v, want ErrInvalid", nk.Name, err)
			}
		}
		missing := "6b0c1d5e-0000-4000-8000-000000000000"
		if _, _, err := c.InsertAPIKey(ctx, catalog.NewAPIKey{Name: "ghost", Scopes: []string{"read"}, TenantID: &missing}); !errors.Is(err, catalog.ErrNotFound) {
			t.Errorf("unknown tenant: %v, want ErrNotFound", err)
		}
		if after := auditCount(t, conn); after != before {
			t.Errorf("audit rows went from %d to %d", before, after)
		}
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM api_keys`).Scan(&n); err != nil || n != 3 {
			t.Errorf("%d keys stored (%v), want 3", n, err)
		}
	})

	t.Run("list", func(t *testing.T) {
		all, err := c.ListAPIKeys(ctx, catalog.APIKeyFilter{})
		if err != nil || len(all) != 3 {
			t.Fatalf("all: %d %v", len(all), err)
		}
		within, err := c.ListAPIKeys(ctx, catalog.APIKeyFilter{Within: &root.ID})
		if err != nil || len(within) != 1 || within[0].ID != k.ID {
			t.Fatalf("within root: %v %v", within, err)
		}
		within, err = c.ListAPIKeys(ctx, catalog.APIKeyFilter{Within: &other.ID})
		if err != nil || len(within) != 1 || within[0].ID != elsewhere.ID {
			t.Fatalf("within other: %v %v", within, err)
		}
	})

	t.Run("revoke", func(t *testing.T) {
		before := auditCount(t, conn)
		r, err := c.RevokeAPIKey(ctx, unbound.ID)
		if err != nil || r.RevokedAt == nil {
			t.Fatalf("revoke: %+v %v", r, err)
		}
		again, err := c.RevokeAPIKey(ctx, unbound.ID)
		if err != nil || !again.RevokedAt.Equal(*r.RevokedAt) {
			t.Fatalf("second revoke: %+v %v", again, err)
		}
		if after := auditCount(t, conn); after != before+1 {
			t.Errorf("audit rows went from %d to %d, want one more", before, after)
		}
		live, _ := c.ListAPIKeys(ctx, catalog.APIKeyFilter{})
		withRevoked, _ := c.ListAPIKeys(ctx, catalog.APIKeyFilter{IncludeRevoked: true})
		if len(live) != 2 || len(withRevoked) != 3 {
			t.Errorf("live %d, with revoked %d", len(live), len(withRevoked))
		}
		if _, err := c.RevokeAPIKey(ctx, "not-a-uuid"); !errors.Is(err, catalog.ErrNotFound) {
			t.Errorf("bad id: %v", err)
		}
		if _, _, err := c.RotateAPIKey(ctx, unbound.ID); !errors.Is(err, catalog.ErrKeyRevoked) {
			t.Errorf("rotating a revoked key: %v, want ErrKeyRevoked", err)
		}
		if after := auditCount(t, conn); after != before+1 {
			t.Errorf("refusals wrote audit rows: %d, want %d", after, before+1)
		}
	})

	t.Run("rotate", func(t *testing.T) {
		nk, newSecret, err := c.RotateAPIKey(ctx, k.ID)
		if err != nil {
			t.Fatal(err)
		}
		if nk.ID == k.ID || newSecret == secret || nk.Name != k.Name || !slices.Equal(nk.Scopes, k.Scopes) ||
			*nk.TenantID != *k.TenantID || nk.RateLimit != k.RateLimit || nk.RotatedFrom == nil || *nk.RotatedFrom != k.ID {
			t.Fatalf("rotated %+v from %+v", nk, k)
		}
		if _, err := c.LookupAPIKey(ctx, secret); !errors.Is(err, catalog.ErrNotFound) {
			t.Errorf("old secret still works: %v", err)
		}
		if got, err := c.LookupAPIKey(ctx, newSecret); err != nil || got.ID != nk.ID {
			t.Errorf("new secret: %+v %v", got, err)
		}
		old, err := c.GetAPIKey(ctx, k.ID)
		if err != nil || old.RevokedAt == nil {
			t.Errorf("old key not revoked: %+v %v", old, err)
		}
		rows, _, err := c.ListAudit(ctx, catalog.AuditQuery{Action: "key.rotate"})
		if err != nil || len(rows) != 1 {
			t.Fatalf("rotate audit rows: %v %v", rows, err)
		}
		if rows[0].Target != "key:"+k.ID || rows[0].TenantID == nil || *rows[0].TenantID != child.ID ||
			rows[0].Actor.KeyID != "bootstrap" || rows[0].RequestID != "r1" || rows[0].SourceIP != "127.0.0.1" {
			t.Errorf("rotate row %+v", rows[0])
		}
		var after catalog.APIKey
		if err := json.Unmarshal(rows[0].After, &after); err != nil || after.ID != nk.ID {
			t.Errorf("rotate row after %s (%v)", rows[0].After, err)
		}
		// No secret or hash anywhere in the audit log.
		var leaks int
		for _, s := range []string{secret, newSecret, hex.EncodeToString(catalog.HashAPIKey(secret)), hex.EncodeToString(catalog.HashAPIKey(newSecret))} {
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE position($1 IN concat(before::text, after::text)) > 0`, s).Scan(&leaks); err != nil || leaks != 0 {
				t.Errorf("audit log holds a secret or hash in %d rows (%v)", leaks, err)
			}
		}
	})
}

func TestAuditListAndVerify(t *testing.T) {
	c, conn := auditCatalog(t)
	ctx := catalog.WithActor(context.Background(), catalog.Actor{KeyID: "k-1", Name: "alice", RequestID: "req", SourceIP: "10.0.0.1"})
	sys := context.Background()
	start := time.Now()
	a := insertTenant(t, c, ctx, "aroot", "")
	a1 := insertTenant(t, c, ctx, "achild", "aroot")
	b := insertTenant(t, c, sys, "broot", "")
	bound, _, err := c.InsertAPIKey(ctx, catalog.NewAPIKey{Name: "bound", Scopes: []string{"read"}, TenantID: &a1.ID})
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := c.InsertAPIKey(sys, catalog.NewAPIKey{Name: "k", Scopes: []string{"read"}})
	if err != nil {
		t.Fatal(err)
	}
	list := func(q catalog.AuditQuery) []*catalog.AuditRecord {
		t.Helper()
		rows, _, err := c.ListAudit(sys, q)
		if err != nil {
			t.Fatal(err)
		}
		return rows
	}
	actions := func(rows []*catalog.AuditRecord) []string {
		var out []string
		for _, r := range rows {
			out = append(out, r.Action+"@"+r.Target)
		}
		return out
	}

	all := list(catalog.AuditQuery{})
	if len(all) != 5 {
		t.Fatalf("rows %v", actions(all))
	}
	for i, r := range all { // newest first, gapless
		if r.Seq != int64(5-i) {
			t.Errorf("row %d has seq %d", i, r.Seq)
		}
		if i+1 < len(all) && r.PrevHash != all[i+1].Hash {
			t.Errorf("seq %d prev_hash %s, want %s", r.Seq, r.PrevHash, all[i+1].Hash)
		}
		if len(r.Hash) != 64 {
			t.Errorf("seq %d hash %q", r.Seq, r.Hash)
		}
	}
	if all[4].PrevHash != "" {
		t.Errorf("first row prev_hash %q", all[4].PrevHash)
	}
	if all[0].Actor.KeyID != "system" || all[1].Actor != (catalog.AuditActor{KeyID: "k-1", Name: "alice"}) || all[1].SourceIP != "10.0.0.1" {
		t.Errorf("actors %+v %+v", all[0], all[1])
	}

	aTree := []string{"key.create@key:" + bound.ID, "tenant.create@tenant:achild", "tenant.create@tenant:aroot"}
	tests := []struct {
		name string
		q    catalog.AuditQuery
		want []string
	}{
		{"tenant", catalog.AuditQuery{TenantID: a.ID}, []string{"tenant.create@tenant:aroot"}},
		{"subtree", catalog.AuditQuery{TenantID: a.ID, Subtree: true}, aTree},
		{"within", catalog.AuditQuery{Within: a.ID}, aTree},
		{"within and tenant", catalog.AuditQuery{Within: a.ID, TenantID: b.ID}, nil},
		{"action exact", catalog.AuditQuery{Action: "tenant.create"}, []string{"tenant.create@tenant:broot", "tenant.create@tenant:achild", "tenant.create@tenant:aroot"}},
		{"action prefix", catalog.AuditQuery{ActionPrefix: "key."}, []string{"key.create@key:" + key.ID, "key.create@key:" + bound.ID}},
		{"action prefix with underscore", catalog.AuditQuery{ActionPrefix: "tenant_"}, nil},
		{"actor", catalog.AuditQuery{ActorKeyID: "k-1"}, aTree},
		{"until the start", catalog.AuditQuery{Until: start}, nil},
		{"since the start", catalog.AuditQuery{Since: start, ActorKeyID: "system"}, []string{"key.create@key:" + key.ID, "tenant.create@tenant:broot"}},
		{"since the future", catalog.AuditQuery{Since: time.Now().Add(time.Hour)}, nil},
		{"before seq", catalog.AuditQuery{BeforeSeq: 3}, []string{"tenant.create@tenant:achild", "tenant.create@tenant:aroot"}},
		{"other tree", catalog.AuditQuery{TenantID: b.ID, Subtree: true}, []string{"tenant.create@tenant:broot"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := actions(list(tc.q))
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}

	t.Run("pages", func(t *testing.T) {
		var seqs []int64
		q := catalog.AuditQuery{Limit: 2}
		for range 10 {
			rows, more, err := c.ListAudit(sys, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				seqs = append(seqs, r.Seq)
			}
			if !more {
				break
			}
			q.BeforeSeq = rows[len(rows)-1].Seq
		}
		if !slices.Equal(seqs, []int64{5, 4, 3, 2, 1}) {
			t.Errorf("paged seqs %v", seqs)
		}
	})

	verify := func() *catalog.AuditVerification {
		t.Helper()
		v, err := c.VerifyAudit(sys)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	v := verify()
	if !v.OK || v.Rows != 5 || v.Head == nil || v.Head.Seq != 5 || v.Head.Hash != all[0].Hash || v.Break != nil {
		t.Fatalf("verify %+v", v)
	}

	// The append-only trigger refuses edits and deletes.
	if _, err := conn.Exec(sys, `UPDATE audit_log SET actor_name = 'mallory' WHERE seq = 2`); err == nil {
		t.Fatal("the audit log took an UPDATE")
	}
	if _, err := conn.Exec(sys, `DELETE FROM audit_log WHERE seq = 2`); err == nil {
		t.Fatal("the audit log took a DELETE")
	}
	// A superuser who skips triggers edits row 3: its hash no longer matches.
	if _, err := conn.Exec(sys, `SET session_replication_role = replica`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(sys, `UPDATE audit_log SET after = jsonb_set(after, '{name}', '"forged"') WHERE seq = 3`); err != nil {
		t.Fatal(err)
	}
	v = verify()
	if v.OK || v.Break == nil || *v.Break != (catalog.AuditBreak{Seq: 3, Reason: catalog.AuditHashMismatch}) || v.Rows != 5 {
		t.Fatalf("after an edit: %+v %+v", v, v.Break)
	}
	// Re-hashing the edited row moves the break to the next row's link.
	if _, err := conn.Exec(sys, `UPDATE audit_log SET hash = sha256(prev_hash || audit_canonical(seq, at, actor_key_id,
		actor_name, action, target, tenant_id, before, after, request_id, source_ip)) WHERE seq = 3`); err != nil {
		t.Fatal(err)
	}
	if v = verify(); v.Break == nil || *v.Break != (catalog.AuditBreak{Seq: 4, Reason: catalog.AuditBrokenLink}) {
		t.Fatalf("after a re-hash: %+v %+v", v, v.Break)
	}
	// Deleting a row leaves a gap.
	if _, err := conn.Exec(sys, `DELETE FROM audit_log WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	if v = verify(); v.OK || v.Rows != 4 || v.Break == nil || *v.Break != (catalog.AuditBreak{Seq: 3, Reason: catalog.AuditGap}) {
		t.Fatalf("after a delete: %+v %+v", v, v.Break)
	}
}

func TestAuditVerifyEmpty(t *testing.T) {
	c, _ := auditCatalog(t)
	v, err := c.VerifyAudit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK || v.Rows != 0 || v.Head != nil || v.Break != nil {
		t.Fatalf("empty log: %+v", v)
	}
}
