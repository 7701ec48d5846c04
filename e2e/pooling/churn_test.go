package pooling

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
	"github.com/stratum-hq/stratum-proxy/provision"
	"github.com/stratum-hq/stratum-proxy/server"
)

// churn runs workers that each open sessions one after another over slugs,
// run queries statements in each and close it, and fails the test for every
// connection or query that does not succeed within its deadline.
func churn(t *testing.T, ts *stacktest.Stack, slugs []string, workers, sessions, queries int) {
	t.Helper()
	var failures atomic.Int32
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < sessions; i++ {
				slug := slugs[(w*7+i)%len(slugs)]
				ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
				cfg, _ := pgx.ParseConfig(ts.URL("demo", "demo", slug, ""))
				cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
				c, err := pgx.ConnectConfig(ctx, cfg)
				if err != nil {
					cancel()
					if failures.Add(1) < 5 {
						t.Errorf("worker %d step %d: connect to %s: %v", w, i, slug, err)
					}
					continue
				}
				for q := 0; q < queries; q++ {
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
	if n := failures.Load(); n > 0 {
		t.Errorf("%d failures", n)
	}
}

// TestConnectionChurn opens, uses and closes many short sessions at once across
// tenants: every first query on a new connection must be answered.
func TestConnectionChurn(t *testing.T) {
	stacktest.PoolModes(t, func(t *testing.T, ts *stacktest.Stack) { churn(t, ts, stacktest.DemoSlugs, 24, 20, 1) })
}

// TestConnectionChurnManyTenants does the same over more tenants than the
// backend has connections for, so connections are evicted and queued.
func TestConnectionChurnManyTenants(t *testing.T) {
	ts := stacktest.Start(t, func(sc *server.Config) {
		sc.Proxy.PoolMode = "transaction"
		b := sc.Router.Backends["main"]
		b.MaxConnections = 10
		sc.Router.Backends["main"] = b
	})
	ctx := context.Background()
	var slugs []string
	for i := 0; i < 20; i++ { // twice the backend's connections
		slug := fmt.Sprintf("churn_%02d", i)
		if _, err := ts.Provisioner.CreateTenant(ctx, provision.TenantSpec{Slug: slug, Parent: "acmesec", Isolation: "shared"}); err != nil {
			t.Fatal(err)
		}
		slugs = append(slugs, slug)
	}
	start := time.Now()
	churn(t, ts, slugs, 16, 10, 5)
	t.Logf("16 workers x 10 sessions x 5 queries over 20 tenants, 10 backend connections: %v", time.Since(start))
}
