package catalog_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stratum-hq/stratum-proxy/catalog"
)

// TestPauses: a pause covers the tenant's subtree (the topmost one wins),
// a second pause of the same tenant is refused, only who paused (or anyone
// with by "") ends it, and pausing and unpausing are audited.
func TestPauses(t *testing.T) {
	e := newTreeEnv(t)
	ctx := context.Background()
	root := e.mustInsert("p_root", "")
	mid := e.mustInsert("p_mid", "p_root")
	leaf := e.mustInsert("p_leaf", "p_mid")

	if p, err := e.c.PausingAncestor(ctx, leaf.ID); err != nil || p != nil {
		t.Fatalf("before any pause: %+v %v", p, err)
	}
	if _, err := e.c.PauseTenant(ctx, "p_mid", "maintenance", "key:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.PauseTenant(ctx, "p_mid", "again", "key:2"); !errors.Is(err, catalog.ErrConflict) {
		t.Errorf("second pause: %v, want ErrConflict", err)
	}
	if _, err := e.c.PauseTenant(ctx, "p_leaf", "", "key:1"); !errors.Is(err, catalog.ErrInvalid) {
		t.Errorf("pause without a reason: %v, want ErrInvalid", err)
	}
	for _, tc := range []struct {
		id, wantSlug string
	}{{leaf.ID, "p_mid"}, {mid.ID, "p_mid"}, {root.ID, ""}} {
		p, err := e.c.PausingAncestor(ctx, tc.id)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if p != nil {
			got = p.Slug
			if p.Reason != "maintenance" || p.By != "key:1" || p.PausedAt.IsZero() {
				t.Errorf("pause %+v", p)
			}
		}
		if got != tc.wantSlug {
			t.Errorf("pausing ancestor of %s = %q, want %q", tc.id, got, tc.wantSlug)
		}
	}
	if _, err := e.c.PauseTenant(ctx, "p_root", "outage", "key:3"); err != nil {
		t.Fatal(err)
	}
	if p, _ := e.c.PausingAncestor(ctx, leaf.ID); p == nil || p.Slug != "p_root" {
		t.Errorf("with root paused too, the topmost pause is %+v, want p_root's", p)
	}
	if ok, err := e.c.UnpauseTenant(ctx, "p_mid", "key:2"); err != nil || ok {
		t.Errorf("unpause by another: %v %v, want false", ok, err)
	}
	if ok, err := e.c.UnpauseTenant(ctx, "p_mid", "key:1"); err != nil || !ok {
		t.Errorf("unpause by who paused: %v %v, want true", ok, err)
	}
	if ok, err := e.c.UnpauseTenant(ctx, "p_root", ""); err != nil || !ok {
		t.Errorf("unpause by an operator: %v %v, want true", ok, err)
	}
	// A placement move's pause is the move's: an operator cannot end it.
	if _, err := e.c.PauseTenant(ctx, "p_leaf", "placement move", catalog.MovePauseBy+"m1"); err != nil {
		t.Fatal(err)
	}
	if ok, err := e.c.UnpauseTenant(ctx, "p_leaf", ""); ok || !errors.Is(err, catalog.ErrConflict) {
		t.Errorf("operator unpausing a move's pause: %v %v, want ErrConflict", ok, err)
	}
	if ok, err := e.c.UnpauseTenant(ctx, "p_leaf", catalog.MovePauseBy+"m1"); err != nil || !ok {
		t.Errorf("the move unpausing: %v %v, want true", ok, err)
	}
	if p, _ := e.c.PausingAncestor(ctx, leaf.ID); p != nil {
		t.Errorf("after both unpaused: %+v", p)
	}
	if n := e.auditCount("tenant.pause"); n != 3 {
		t.Errorf("%d tenant.pause audit rows, want 3", n)
	}
	if n := e.auditCount("tenant.unpause"); n != 3 {
		t.Errorf("%d tenant.unpause audit rows, want 3", n)
	}
}
