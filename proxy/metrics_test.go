package proxy

import (
	"fmt"
	"testing"
)

// TestTenantLabelsFollowActivity checks that the per-tenant series go to the
// most active tenants once ranked, and that the rest fold into "other".
func TestTenantLabelsFollowActivity(t *testing.T) {
	m := NewMetrics(nil)
	// Before any ranking the first tenants seen get labels of their own.
	for i := 0; i < maxTenantLabels+5; i++ {
		slug := fmt.Sprintf("t%03d", i)
		c := m.forTenant(slug)
		// Tenants seen later are busier.
		for q := 0; q <= i; q++ {
			c.countQuery()
		}
	}
	if got := m.tenantLabel("t000"); got != "t000" {
		t.Fatalf("first tenant before ranking: %q", got)
	}
	if got := m.tenantLabel(fmt.Sprintf("t%03d", maxTenantLabels+2)); got != "other" {
		t.Fatalf("tenant beyond the budget before ranking: %q", got)
	}
	m.rerank()
	// The 5 least active (t000..t004) fold; the busiest have their own.
	for i, want := range map[int]string{0: "other", 4: "other", 5: "t005", maxTenantLabels + 4: fmt.Sprintf("t%03d", maxTenantLabels+4)} {
		if got := m.tenantLabel(fmt.Sprintf("t%03d", i)); got != want {
			t.Errorf("t%03d after ranking: %q, want %q", i, got, want)
		}
	}
	// A period without activity forgets everyone: nobody has a label until
	// there is activity again.
	m.rerank()
	if got := m.tenantLabel("t050"); got != "other" {
		t.Errorf("idle tenant after an idle period: %q, want other", got)
	}
}
