package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/router"
)

// TestConnectionChurn opens, uses and closes many short sessions at once across
// tenants: every first query on a new connection must be answered.
func TestConnectionChurn(t *testing.T) {
	poolModes(t, func(t *testing.T, ts *testStack) {
		var failures atomic.Int32
		var wg sync.WaitGroup
		for w := 0; w < 24; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 40; i++ {
					slug := demoSlugs[(w+i)%len(demoSlugs)]
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					cfg, _ := pgx.ParseConfig(ts.url("demo", "demo", slug, ""))
					cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
					c, err := pgx.ConnectConfig(ctx, cfg)
					if err != nil {
						cancel()
						if failures.Add(1) < 5 {
							t.Errorf("worker %d step %d: connect to %s: %v", w, i, slug, err)
						}
						continue
					}
					var n int
					if err := c.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
						if failures.Add(1) < 5 {
							t.Errorf("worker %d step %d (%s): first query: %v", w, i, slug, err)
						}
					}
					c.Close(context.Background())
					cancel()
				}
			}()
		}
		wg.Wait()
		if n := failures.Load(); n > 0 {
			t.Errorf("%d failures", n)
		}
	})
}

// TestConnectionChurnManyTenants does the same over more tenants than the
// backend has connections for, so connections are evicted and queued.
func TestConnectionChurnManyTenants(t *testing.T) {
	ts := startTestStack(t, func(sc *stackConfig) {
		sc.PoolMode = "transaction"
		b := sc.Router.Backends["main"]
		b.MaxConnections = 10
		sc.Router.Backends["main"] = b
	})
	ctx := context.Background()
	var slugs []string
	for i := 0; i < 40; i++ {
		slug := fmt.Sprintf("churn_%02d", i)
		if _, err := ts.router.CreateTenant(ctx, router.TenantSpec{Slug: slug, Parent: "acmesec", Isolation: "shared"}); err != nil {
			t.Fatal(err)
		}
		slugs = append(slugs, slug)
	}
	var failures atomic.Int32
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 15; i++ {
				slug := slugs[(w*7+i)%len(slugs)]
				ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
				cfg, _ := pgx.ParseConfig(ts.url("demo", "demo", slug, ""))
				cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
				c, err := pgx.ConnectConfig(ctx, cfg)
				if err != nil {
					cancel()
					if failures.Add(1) < 5 {
						t.Errorf("worker %d step %d: connect to %s: %v", w, i, slug, err)
					}
					continue
				}
				for q := 0; q < 5; q++ {
					var n int
					if err := c.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
						if failures.Add(1) < 5 {
							t.Errorf("worker %d step %d (%s): query %d: %v", w, i, slug, q, err)
						}
						break
					}
				}
				c.Close(context.Background())
				cancel()
			}
		}()
	}
	wg.Wait()
	t.Logf("16 workers x 15 sessions x 5 queries over 40 tenants, 10 backend connections: %v", time.Since(start))
	if n := failures.Load(); n > 0 {
		t.Errorf("%d failures", n)
	}
}
