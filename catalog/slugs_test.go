package catalog_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stratum-hq/stratum-proxy/catalog"
)

// TestSlugHistory: a renamed tenant's old slug resolves to it (TenantByOldSlug)
// and nobody else may take it; the tenant may take it back; a deleted
// tenant's slug stays reserved, unless the tenant never left provisioning
// (a failed create), whose slug is free again.
func TestSlugHistory(t *testing.T) {
	e := newTreeEnv(t)
	ctx := context.Background()
	a := e.mustInsert("acme", "")
	if err := e.c.SetTenantStatus(ctx, a.ID, catalog.StatusActive); err != nil {
		t.Fatal(err)
	}
	slug := func(s string) *string { return &s }
	if _, err := e.c.UpdateTenant(ctx, "acme", catalog.TenantUpdate{Slug: slug("acme_corp")}); err != nil {
		t.Fatal(err)
	}
	if id, cur, err := e.c.TenantByOldSlug(ctx, "acme"); err != nil || id != a.ID || cur != "acme_corp" {
		t.Errorf("old slug: %s %s %v, want %s acme_corp", id, cur, err, a.ID)
	}
	if _, err := e.insert("acme", ""); !errors.Is(err, catalog.ErrConflict) {
		t.Errorf("creating a tenant with another's old slug: %v, want ErrConflict", err)
	}
	b := e.mustInsert("other", "")
	if _, err := e.c.UpdateTenant(ctx, b.ID, catalog.TenantUpdate{Slug: slug("acme")}); !errors.Is(err, catalog.ErrConflict) {
		t.Errorf("renaming a tenant to another's old slug: %v, want ErrConflict", err)
	}
	if _, err := e.c.UpdateTenant(ctx, a.ID, catalog.TenantUpdate{Slug: slug("acme")}); err != nil {
		t.Errorf("taking back its own old slug: %v", err)
	}
	if _, _, err := e.c.TenantByOldSlug(ctx, "acme"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("the current slug is no old slug: %v", err)
	}
	// b never left provisioning: deleting it frees its slug.
	if err := e.c.DeleteTenant(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	e.mustInsert("other", "")
	// a was active: its slugs stay reserved after deletion.
	if err := e.c.DeleteTenant(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"acme", "acme_corp"} {
		if _, err := e.insert(s, ""); !errors.Is(err, catalog.ErrConflict) {
			t.Errorf("creating a tenant with a deleted tenant's slug %q: %v, want ErrConflict", s, err)
		}
		if _, _, err := e.c.TenantByOldSlug(ctx, s); !errors.Is(err, catalog.ErrNotFound) {
			t.Errorf("a deleted tenant's slug %q resolves: %v", s, err)
		}
	}
}
