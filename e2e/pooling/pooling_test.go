package pooling

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
	"github.com/stratum-hq/stratum-proxy/provision"
	"github.com/stratum-hq/stratum-proxy/router"
	"github.com/stratum-hq/stratum-proxy/server"
)

// poolingSeedEnv overrides the seed of the pooling tests' randomness.
const poolingSeedEnv = "STRATUM_POOLING_SEED"

// poolingSeed returns the seed for a test's randomness (fixed unless
// STRATUM_POOLING_SEED is set) and prints it when the test fails.
func poolingSeed(t *testing.T) int64 {
	seed := int64(20250101)
	if s := os.Getenv(poolingSeedEnv); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", poolingSeedEnv, s, err)
		}
		seed = n
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("random seed %d (rerun with %s=%d)", seed, poolingSeedEnv, seed)
		}
	})
	return seed
}

// poolingDial connects to url without failing the test, so that it can be
// called from client goroutines. simple selects the simple query protocol for
// every query (pgx QueryExecModeSimpleProtocol); otherwise pgx's default,
// QueryExecModeCacheStatement: protocol-level named prepared statements.
func poolingDial(ctx context.Context, url string, simple bool) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	if simple {
		cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// poolingSampler samples the router's pool counts every interval and keeps
// the maxima per tenant.
type poolingSampler struct {
	stop chan struct{}
	done chan struct{}

	mu         sync.Mutex
	maxOpen    map[string]int // by tenant id
	maxWaiting map[string]int
	maxTotal   int // sum of Open over all tenants
	samples    int
}

func startPoolingSampler(r *router.Router, every time.Duration) *poolingSampler {
	s := &poolingSampler{stop: make(chan struct{}), done: make(chan struct{}),
		maxOpen: map[string]int{}, maxWaiting: map[string]int{}}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			s.sample(r)
			select {
			case <-s.stop:
				s.sample(r)
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *poolingSampler) sample(r *router.Router) {
	stats := r.Stats()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples++
	total := 0
	for _, st := range stats {
		total += st.Open
		s.maxOpen[st.TenantID] = max(s.maxOpen[st.TenantID], st.Open)
		s.maxWaiting[st.TenantID] = max(s.maxWaiting[st.TenantID], st.Waiting)
	}
	s.maxTotal = max(s.maxTotal, total)
}

// Stop ends sampling (after one last sample) and waits for the sampler.
func (s *poolingSampler) Stop() {
	close(s.stop)
	<-s.done
}

// poolingP99 is the 99th percentile of d (nearest rank).
func poolingP99(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*99+99)/100 - 1
	return s[min(max(i, 0), len(s)-1)]
}

// poolingClient is one client of TestPoolingKeepsTenantsApart. Its goroutine
// owns it until the load ends.
type poolingClient struct {
	tenant   *catalog.Tenant
	idx      int  // within the tenant
	gi       int  // across all clients; makes its settings unique
	simple   bool // simple query protocol (else pgx's cached named statements)
	inserted int  // rows it knows committed
	txs      int  // transactions committed
	pids     map[int]bool
}

const poolingCheckQuery = `SELECT count(*) FILTER (WHERE NOT starts_with(item, $1)), count(*) FILTER (WHERE starts_with(item, $2)), pg_backend_pid() FROM orders`

// run is the client's loop: its own settings once, then per iteration an
// INSERT, a check that it sees no other tenant's rows and all of its own,
// that its settings are its own, SQL PREPARE/EXECUTE for simple-protocol
// clients (from the middle of the run: the first half exercises transaction
// pooling, the second half a pinned session), and now and then a
// multi-statement transaction.
func (pc *poolingClient) run(ctx context.Context, c *pgx.Conn, iters int, rng *rand.Rand) error {
	slug := pc.tenant.Slug
	app := fmt.Sprintf("%s-%d", slug, pc.idx)
	ms := 30001 + pc.gi // never a whole second, so SHOW prints it in ms
	wantTimeout := fmt.Sprintf("%dms", ms)
	if _, err := c.Exec(ctx, "SET application_name = '"+app+"'"); err != nil {
		return fmt.Errorf("SET application_name: %w", err)
	}
	if _, err := c.Exec(ctx, fmt.Sprintf("SET statement_timeout = '%d ms'", ms)); err != nil {
		return fmt.Errorf("SET statement_timeout: %w", err)
	}
	tenantPrefix := slug + ":"
	own := fmt.Sprintf("%s:%d:", slug, pc.idx)
	stmt := fmt.Sprintf("s_%d", pc.gi)
	prepared := false

	check := func(q interface {
		QueryRow(context.Context, string, ...any) pgx.Row
	}, where string, want int) error {
		var foreign, mine, pid int
		if err := q.QueryRow(ctx, poolingCheckQuery, tenantPrefix, own).Scan(&foreign, &mine, &pid); err != nil {
			return fmt.Errorf("%s: counting: %w", where, err)
		}
		pc.pids[pid] = true
		if foreign != 0 {
			return fmt.Errorf("%s: sees %d rows of other tenants (backend pid %d)", where, foreign, pid)
		}
		if mine != want {
			return fmt.Errorf("%s: sees %d of its own rows, want %d (backend pid %d)", where, mine, want, pid)
		}
		var got string
		if err := q.QueryRow(ctx, "SHOW application_name").Scan(&got); err != nil {
			return fmt.Errorf("%s: SHOW application_name: %w", where, err)
		}
		if got != app {
			return fmt.Errorf("%s: application_name is %q, want %q (backend pid %d)", where, got, app, pid)
		}
		if err := q.QueryRow(ctx, "SHOW statement_timeout").Scan(&got); err != nil {
			return fmt.Errorf("%s: SHOW statement_timeout: %w", where, err)
		}
		if got != wantTimeout {
			return fmt.Errorf("%s: statement_timeout is %q, want %q (backend pid %d)", where, got, wantTimeout, pid)
		}
		return nil
	}

	for i := range iters {
		where := fmt.Sprintf("iteration %d", i)
		// Arguments: bound parameters for the extended-protocol clients,
		// interpolated by pgx into a simple Query for the others.
		if _, err := c.Exec(ctx, "INSERT INTO orders (item) VALUES ($1)", fmt.Sprintf("%s%d", own, i)); err != nil {
			return fmt.Errorf("%s: insert: %w", where, err)
		}
		pc.inserted++
		if err := check(c, where, pc.inserted); err != nil {
			return err
		}
		if pc.simple {
			if i == iters/2 {
				if _, err := c.Exec(ctx, "PREPARE "+stmt+" (text) AS SELECT count(*) FROM orders WHERE starts_with(item, $1)"); err != nil {
					return fmt.Errorf("%s: PREPARE: %w", where, err)
				}
				prepared = true
			}
			if prepared {
				var n int
				if err := c.QueryRow(ctx, "EXECUTE "+stmt+"($1)", own).Scan(&n); err != nil {
					return fmt.Errorf("%s: EXECUTE %s: %w", where, stmt, err)
				}
				if n != pc.inserted {
					return fmt.Errorf("%s: EXECUTE %s counted %d of its own rows, want %d", where, stmt, n, pc.inserted)
				}
			}
		}
		if rng.Intn(5) != 0 {
			continue
		}
		item := fmt.Sprintf("%stx%d", own, i)
		where += " (transaction)"
		if pc.simple && rng.Intn(2) == 0 {
			// The whole transaction in one simple Query message.
			sql := "BEGIN; INSERT INTO orders (item) VALUES ('" + item + "'); " +
				"SELECT count(*) FILTER (WHERE NOT starts_with(item, '" + tenantPrefix + "')), count(*) FILTER (WHERE starts_with(item, '" + own + "')), current_setting('application_name') FROM orders; COMMIT"
			res, err := c.PgConn().Exec(ctx, sql).ReadAll()
			if err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			if len(res) != 4 || len(res[2].Rows) != 1 {
				return fmt.Errorf("%s: %d results", where, len(res))
			}
			row := res[2].Rows[0]
			if got, want := string(row[0])+"/"+string(row[1])+"/"+string(row[2]), fmt.Sprintf("0/%d/%s", pc.inserted+1, app); got != want {
				return fmt.Errorf("%s: foreign/own/application_name = %s, want %s", where, got, want)
			}
			pc.inserted++
			pc.txs++
			continue
		}
		tx, err := c.Begin(ctx)
		if err != nil {
			return fmt.Errorf("%s: BEGIN: %w", where, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO orders (item) VALUES ($1)", item); err != nil {
			tx.Rollback(ctx)
			return fmt.Errorf("%s: insert: %w", where, err)
		}
		if err := check(tx, where, pc.inserted+1); err != nil {
			tx.Rollback(ctx)
			return err
		}
		if rng.Intn(4) == 0 {
			if err := tx.Rollback(ctx); err != nil {
				return fmt.Errorf("%s: ROLLBACK: %w", where, err)
			}
			continue
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("%s: COMMIT: %w", where, err)
		}
		pc.inserted++
		pc.txs++
	}
	return check(c, "at the end", pc.inserted)
}

// TestPoolingKeepsTenantsApart runs 50 concurrent clients of 10 tenants
// through transaction pooling with 2 backend connections per tenant.
func TestPoolingKeepsTenantsApart(t *testing.T) {
	testPoolingKeepsTenantsApart(t, "transaction", 2)
}

// TestPoolingKeepsTenantsApartSessionMode is the same load in session pooling,
// with a backend connection per client.
func TestPoolingKeepsTenantsApartSessionMode(t *testing.T) {
	testPoolingKeepsTenantsApart(t, "session", 5)
}

func testPoolingKeepsTenantsApart(t *testing.T, mode string, perTenant int) {
	const (
		nTenants         = 10
		clientsPerTenant = 5
		iters            = 30
	)
	seed := poolingSeed(t)
	ts := stacktest.Start(t, func(sc *server.Config) {
		sc.Proxy.PoolMode = mode
		sc.Router.MaxConnsPerTenant = perTenant
		sc.Router.QueueTimeout = 20 * time.Second
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// 6 shared, 2 schema, 2 database tenants.
	isolations := []string{
		catalog.IsolationShared, catalog.IsolationSchema, catalog.IsolationShared, catalog.IsolationDatabase,
		catalog.IsolationShared, catalog.IsolationShared, catalog.IsolationSchema, catalog.IsolationShared,
		catalog.IsolationDatabase, catalog.IsolationShared,
	}
	created := time.Now()
	tenants := make([]*catalog.Tenant, nTenants)
	byID := map[string]*catalog.Tenant{}
	for i := range tenants {
		tn, err := ts.Provisioner.CreateTenant(ctx, provision.TenantSpec{Slug: fmt.Sprintf("pt_%02d", i), Parent: "acmesec", Isolation: isolations[i]})
		if err != nil {
			t.Fatalf("creating tenant %d: %v", i, err)
		}
		tenants[i] = tn
		byID[tn.ID] = tn
	}
	t.Logf("created %d tenants in %v", nTenants, time.Since(created).Round(time.Millisecond))

	// 50 clients, connected first, then let loose together. Half use the
	// extended protocol, half the simple one; each tenant gets both kinds.
	clients := make([]*poolingClient, 0, nTenants*clientsPerTenant)
	for i, tn := range tenants {
		for j := range clientsPerTenant {
			gi := i*clientsPerTenant + j
			clients = append(clients, &poolingClient{tenant: tn, idx: j, gi: gi, simple: gi%2 == 1, pids: map[int]bool{}})
		}
	}
	conns := make([]*pgx.Conn, len(clients))
	var wg sync.WaitGroup
	for k, pc := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := poolingDial(ctx, ts.URL("demo", "demo", pc.tenant.Slug, ""), pc.simple)
			if err != nil {
				t.Errorf("%s client %d: connecting: %v", pc.tenant.Slug, pc.idx, err)
				return
			}
			conns[k] = c
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close(context.Background())
			}
		}
	}()
	if t.Failed() {
		t.FailNow()
	}

	sampler := startPoolingSampler(ts.Router, 10*time.Millisecond)
	start := time.Now()
	for k, pc := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed + int64(pc.gi)))
			kind := "extended"
			if pc.simple {
				kind = "simple"
			}
			if err := pc.run(ctx, conns[k], iters, rng); err != nil {
				t.Errorf("%s (%s) client %d, %s protocol: %v", pc.tenant.Slug, pc.tenant.Isolation, pc.idx, kind, err)
			}
			// Session pooling gives the backend back when the session ends.
			conns[k].Close(context.Background())
		}()
	}
	wg.Wait()
	sampler.Stop()
	t.Logf("%s pooling: %d clients x %d iterations in %v", mode, len(clients), iters, time.Since(start).Round(time.Millisecond))

	// Backend connections used: per tenant, the most open at once (sampled
	// every 10ms) and the distinct backend processes its clients saw.
	pidsByTenant := map[string]map[int]bool{}
	for _, pc := range clients {
		m := pidsByTenant[pc.tenant.ID]
		if m == nil {
			m = map[int]bool{}
			pidsByTenant[pc.tenant.ID] = m
		}
		for p := range pc.pids {
			m[p] = true
		}
	}
	totalPIDs := 0
	var lines []string
	for _, tn := range tenants {
		totalPIDs += len(pidsByTenant[tn.ID])
		lines = append(lines, fmt.Sprintf("%s(%s): max open %d, max waiting %d, backends seen %d",
			tn.Slug, tn.Isolation, sampler.maxOpen[tn.ID], sampler.maxWaiting[tn.ID], len(pidsByTenant[tn.ID])))
	}
	t.Logf("backend connections: at most %d open at once over all tenants (%d samples), %d distinct backend processes seen by the clients\n  %s",
		sampler.maxTotal, sampler.samples, totalPIDs, strings.Join(lines, "\n  "))
	for id, n := range sampler.maxOpen {
		if n > perTenant {
			name := id
			if tn := byID[id]; tn != nil {
				name = tn.Slug
			}
			t.Errorf("tenant %s had %d backend connections open at once, limit %d", name, n, perTenant)
		}
	}
	if len(sampler.maxOpen) == 0 || sampler.samples < 2 {
		t.Errorf("the sampler saw no pools (%d samples)", sampler.samples)
	}

	t.Run("named prepared statements stay in their session", func(t *testing.T) {
		a := stacktest.Connect(t, ts.URL("demo", "demo", tenants[0].Slug, ""))
		if _, err := a.Prepare(ctx, "mine", "SELECT item FROM orders"); err != nil {
			t.Fatalf("preparing: %v", err)
		}
		runMine := func() {
			t.Helper()
			res := a.PgConn().ExecPrepared(ctx, "mine", nil, nil, nil).Read()
			if res.Err != nil {
				t.Fatalf("%s executing its own statement: %v", tenants[0].Slug, res.Err)
			}
			for _, r := range res.Rows {
				if !strings.HasPrefix(string(r[0]), tenants[0].Slug+":") {
					t.Fatalf("%s's statement returned %q", tenants[0].Slug, r[0])
				}
			}
			if len(res.Rows) == 0 {
				t.Fatalf("%s's statement returned no rows", tenants[0].Slug)
			}
		}
		runMine()
		// tenants[2] shares the database (shared), tenants[1] is a schema
		// tenant in it, tenants[3] has a database of its own; tenants[0]
		// itself in another session must not see it either.
		for _, other := range []*catalog.Tenant{tenants[2], tenants[1], tenants[3], tenants[0]} {
			b := stacktest.Connect(t, ts.URL("demo", "demo", other.Slug, ""))
			for range 2 { // the second time on a backend that has served a's transactions
				res := b.PgConn().ExecPrepared(ctx, "mine", nil, nil, nil).Read()
				if stacktest.SQLState(res.Err) != "26000" {
					t.Errorf("%s executing %s's statement \"mine\": rows %q, err %v; want SQLSTATE 26000", other.Slug, tenants[0].Slug, res.Rows, res.Err)
				}
				runMine()
			}
			if n := stacktest.Count(t, b, `SELECT count(*) FROM orders WHERE NOT starts_with(item, $1)`, other.Slug+":"); n != 0 {
				t.Errorf("%s sees %d rows of other tenants", other.Slug, n)
			}
		}
	})

	// As the superuser, on every placement: each row belongs to the tenant
	// whose placement holds it, and each client's rows are all there.
	all, err := ts.Catalog.ListTenants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	shared := ts.Router.Config().SharedDatabase
	sdb := ts.SrvConn(t, shared)
	perClient := map[string]int{} // "slug:idx" -> rows
	checkItems := func(tn *catalog.Tenant, items []string) {
		for _, item := range items {
			parts := strings.SplitN(item, ":", 3)
			if len(parts) != 3 || parts[0] != tn.Slug {
				t.Errorf("%s's placement (%s) holds a row %q", tn.Slug, tn.Isolation, item)
				continue
			}
			perClient[parts[0]+":"+parts[1]]++
		}
	}
	queryItems := func(c *pgx.Conn, sql string, args ...any) []string {
		rows, err := c.Query(ctx, sql, args...)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		items, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return items
	}
	sharedIDs := []string{}
	for _, tn := range all {
		switch tn.Isolation {
		case catalog.IsolationShared:
			sharedIDs = append(sharedIDs, tn.ID)
			checkItems(tn, queryItems(sdb, `SELECT item FROM public.orders WHERE tenant_id = $1`, tn.ID))
		case catalog.IsolationSchema:
			checkItems(tn, queryItems(sdb, `SELECT item FROM `+pgx.Identifier{tn.Schema, "orders"}.Sanitize()))
		case catalog.IsolationDatabase:
			checkItems(tn, queryItems(ts.SrvConn(t, tn.Database), `SELECT item FROM public.orders`))
		}
	}
	if stray := queryItems(sdb, `SELECT item FROM public.orders WHERE tenant_id::text <> ALL($1::text[])`, sharedIDs); len(stray) > 0 {
		t.Errorf("shared table rows of no shared tenant: %q", stray)
	}
	for _, pc := range clients {
		key := fmt.Sprintf("%s:%d", pc.tenant.Slug, pc.idx)
		if got, want := perClient[key], iters+pc.txs; got != want || pc.inserted != want {
			t.Errorf("%s client %d: %d rows in its placement, want %d (%d inserts + %d transactions; it counted %d)",
				pc.tenant.Slug, pc.idx, got, want, iters, pc.txs, pc.inserted)
		}
		delete(perClient, key)
	}
	for key, n := range perClient {
		t.Errorf("%d rows of no client: %s", n, key)
	}
}

// TestPoolingFairness checks that a tenant flooding the proxy with slow
// queries (100 clients, limit 4 connections) does not slow another tenant
// down: the backend's 8 connections leave 4 for client_beta.
func TestPoolingFairness(t *testing.T) {
	ts := stacktest.Start(t, func(sc *server.Config) {
		sc.Proxy.PoolMode = "transaction"
		sc.Router.MaxConnsPerTenant = 4
		sc.Router.QueueTimeout = 20 * time.Second
		b := sc.Router.Backends["main"]
		b.MaxConnections = 8
		sc.Router.Backends["main"] = b
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alphaT, err := ts.Catalog.GetTenant(ctx, "client_alpha")
	if err != nil {
		t.Fatal(err)
	}
	betaT, err := ts.Catalog.GetTenant(ctx, "client_beta")
	if err != nil {
		t.Fatal(err)
	}

	beta := make([]*pgx.Conn, 4)
	for i := range beta {
		beta[i] = stacktest.Connect(t, ts.URL("demo", "demo", "client_beta", ""))
		for range 20 { // warm up: backends, pgx's statement cache
			stacktest.Count(t, beta[i], "SELECT 1")
		}
	}
	// measure runs client_beta's SELECT 1 loops for d and returns every
	// query's latency and the failures.
	measure := func(d time.Duration) ([]time.Duration, []error) {
		var mu sync.Mutex
		var lat []time.Duration
		var errs []error
		var wg sync.WaitGroup
		end := time.Now().Add(d)
		for _, c := range beta {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []time.Duration
				for time.Now().Before(end) {
					var n int
					q := time.Now()
					err := c.QueryRow(ctx, "SELECT 1").Scan(&n)
					mine = append(mine, time.Since(q))
					if err != nil || n != 1 {
						mu.Lock()
						errs = append(errs, fmt.Errorf("SELECT 1 = %d: %w", n, err))
						mu.Unlock()
						if err != nil && c.IsClosed() {
							return
						}
					}
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		return lat, errs
	}
	alone, errs := measure(3 * time.Second)
	for _, err := range errs {
		t.Errorf("client_beta alone: %v", err)
	}

	// The flood: 100 client_alpha sessions, connected before it starts.
	alpha := make([]*pgx.Conn, 100)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 20)
	for i := range alpha {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := poolingDial(ctx, ts.URL("demo", "demo", "client_alpha", ""), false)
			if err != nil {
				t.Errorf("client_alpha %d: connecting: %v", i, err)
				return
			}
			alpha[i] = c
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range alpha {
			if c != nil {
				c.Close(context.Background())
			}
		}
	}()
	if t.Failed() {
		t.FailNow()
	}
	sampler := startPoolingSampler(ts.Router, 10*time.Millisecond)
	stop := make(chan struct{})
	var alphaOK, alphaQueueTimeouts atomic.Int64
	var alphaErrMu sync.Mutex
	var alphaErrs []error
	for _, c := range alpha {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := c.Exec(ctx, "SELECT pg_sleep(0.02)"); err != nil {
					if stacktest.SQLState(err) == "53300" {
						alphaQueueTimeouts.Add(1)
					}
					alphaErrMu.Lock()
					alphaErrs = append(alphaErrs, err)
					alphaErrMu.Unlock()
					if c.IsClosed() {
						return
					}
					continue
				}
				alphaOK.Add(1)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond) // let client_alpha's queue fill
	flooded, errs := measure(3 * time.Second)
	close(stop)
	wg.Wait()
	sampler.Stop()
	for _, err := range errs {
		t.Errorf("client_beta under the flood: %v", err)
	}

	pAlone, pFlood := poolingP99(alone), poolingP99(flooded)
	// Were client_beta's queries queued behind client_alpha's (one queue for
	// the backend), each would wait for about 100 sessions x 20ms over 8
	// connections = 250ms. The bound is twice the p99 alone, with a floor of
	// 100ms: far below that wait, and above what CPU contention alone adds
	// on a loaded 2-core machine (up to ~60ms seen while other test binaries
	// ran), so the test fails on unfairness, not on a busy machine.
	bound := max(2*pAlone, 100*time.Millisecond)
	t.Logf("client_beta SELECT 1 p99: alone %v (%d queries), under client_alpha's flood %v (%d queries); bound %v",
		pAlone, len(alone), pFlood, len(flooded), bound)
	t.Logf("client_alpha: %d pg_sleep(0.02) queries done by 100 clients in ~3.3s, %d failed (%d with 53300); pools: client_alpha max open %d, max waiting %d; client_beta max open %d; all tenants max open %d",
		alphaOK.Load(), len(alphaErrs), alphaQueueTimeouts.Load(), sampler.maxOpen[alphaT.ID], sampler.maxWaiting[alphaT.ID],
		sampler.maxOpen[betaT.ID], sampler.maxTotal)
	if pFlood > bound {
		t.Errorf("client_beta's p99 under the flood is %v, more than %v (max(2 x p99 alone %v, 100ms))", pFlood, bound, pAlone)
	}
	// The mechanism itself: client_beta's sessions never wait for a backend
	// while client_alpha's queue is full.
	if n := sampler.maxWaiting[betaT.ID]; n > 0 {
		t.Errorf("client_beta had %d sessions waiting for a backend under client_alpha's flood, want none", n)
	}
	for i, err := range alphaErrs {
		if i == 5 {
			t.Errorf("... and %d more client_alpha failures", len(alphaErrs)-5)
			break
		}
		t.Errorf("client_alpha query failed (SQLSTATE %q): %v", stacktest.SQLState(err), err)
	}
	if alphaOK.Load() == 0 {
		t.Errorf("client_alpha's flood ran no query")
	}
	if n := sampler.maxOpen[alphaT.ID]; n > 4 {
		t.Errorf("client_alpha had %d backend connections open at once, limit 4", n)
	}
	if sampler.maxWaiting[alphaT.ID] == 0 {
		t.Errorf("client_alpha's sessions beyond its limit never queued")
	}
	if sampler.maxTotal > 8 {
		t.Errorf("%d backend connections open at once, backend cap 8", sampler.maxTotal)
	}
}

// TestPoolingQueueTimeout checks that a session waiting longer than the queue
// timeout for its tenant's only connection gets SQLSTATE 53300 naming the
// tenant, and that the tenant works again once the connection is free.
func TestPoolingQueueTimeout(t *testing.T) {
	ts := stacktest.Start(t, func(sc *server.Config) {
		sc.Proxy.PoolMode = "transaction"
		sc.Router.MaxConnsPerTenant = 1
		sc.Router.QueueTimeout = 500 * time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url := ts.URL("demo", "demo", "client_alpha", "")
	// Connect the waiter first: connecting takes the tenant's connection
	// for a moment too.
	second := stacktest.Connect(t, url)
	first := stacktest.Connect(t, url)
	tx, err := first.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	queries := []struct {
		name string
		run  func(c *pgx.Conn) error
	}{
		{"simple", func(c *pgx.Conn) error { _, err := c.Exec(ctx, "SELECT 1"); return err }},
		{"extended", func(c *pgx.Conn) error { var n int; return c.QueryRow(ctx, "SELECT $1::int", 1).Scan(&n) }},
	}
	for _, q := range queries {
		if second.IsClosed() {
			t.Logf("the refused session was ended; connecting again")
			second = stacktest.Connect(t, url)
		}
		start := time.Now()
		err := q.run(second)
		took := time.Since(start)
		t.Logf("%s query while the tenant's connection is held: %v after %v", q.name, err, took.Round(time.Millisecond))
		if stacktest.SQLState(err) != "53300" {
			t.Errorf("%s query: %v; want SQLSTATE 53300", q.name, err)
		}
		if err != nil && !strings.Contains(err.Error(), "client_alpha") {
			t.Errorf("%s query: the error does not name the tenant: %v", q.name, err)
		}
		if took < 400*time.Millisecond || took > 2*time.Second {
			t.Errorf("%s query refused after %v; want about the 500ms queue timeout", q.name, took)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if second.IsClosed() {
		t.Logf("the refused session was ended; connecting again")
		second = stacktest.Connect(t, url)
	}
	for _, q := range queries {
		if err := q.run(second); err != nil {
			t.Errorf("%s query after the holder committed: %v", q.name, err)
		}
	}
	if n := stacktest.Count(t, stacktest.Connect(t, url), "SELECT 1"); n != 1 {
		t.Errorf("a new session: SELECT 1 = %d", n)
	}
}

// TestPoolingPins checks the statements that pin a session to its backend in
// transaction pooling (LISTEN, temporary tables, session advisory locks): the
// state survives between transactions even when another session of the
// tenant would take a free backend, and none of it reaches the sessions that
// get the backend afterwards.
func TestPoolingPins(t *testing.T) {
	ts := stacktest.Start(t, func(sc *server.Config) {
		sc.Proxy.PoolMode = "transaction"
		sc.Router.MaxConnsPerTenant = 3
		sc.Router.QueueTimeout = 10 * time.Second
	})
	for _, slug := range []string{"client_alpha", "client_beta", "client_gamma"} {
		t.Run(slug, func(t *testing.T) { testPoolingPins(t, ts, slug) })
	}
}

func testPoolingPins(t *testing.T, ts *stacktest.Stack, slug string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tn, err := ts.Catalog.GetTenant(ctx, slug)
	if err != nil {
		t.Fatal(err)
	}
	url := ts.URL("demo", "demo", slug, "")
	// open connects without registering a close: the test closes these
	// clients itself, at the points that matter.
	open := func() *pgx.Conn {
		t.Helper()
		c, err := poolingDial(ctx, url, false)
		if err != nil {
			t.Fatalf("connecting: %v", err)
		}
		return c
	}
	closeConn := func(c *pgx.Conn) {
		if err := c.Close(ctx); err != nil {
			t.Errorf("closing: %v", err)
		}
	}
	exec := func(c *pgx.Conn, sql string) {
		t.Helper()
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	pid := func(c interface {
		QueryRow(context.Context, string, ...any) pgx.Row
	}) int {
		t.Helper()
		var p int
		if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	type sessionView struct {
		app, timeout string
		noTemp       bool
		listening    int
	}
	view := func(c interface {
		QueryRow(context.Context, string, ...any) pgx.Row
	}) (int, sessionView) {
		t.Helper()
		var p int
		var v sessionView
		if err := c.QueryRow(ctx, `SELECT pg_backend_pid(), current_setting('application_name'), current_setting('statement_timeout'),
			to_regclass('pg_temp.tt') IS NULL, (SELECT count(*) FROM pg_listening_channels())`).Scan(&p, &v.app, &v.timeout, &v.noTemp, &v.listening); err != nil {
			t.Fatal(err)
		}
		return p, v
	}
	base := open()
	_, baseline := view(base)
	closeConn(base)
	t.Logf("%s (%s): a fresh session sees %+v", slug, tn.Isolation, baseline)

	// Tenants sharing a database may not use notifications (their channels
	// span the database); database tenants may, and LISTEN pins the listener.
	if tn.Isolation != "database" {
		c := open()
		if _, err := c.Exec(ctx, "LISTEN jobs"); stacktest.SQLState(err) != "0A000" {
			t.Errorf("LISTEN by a %s tenant: %v, want 0A000", tn.Isolation, err)
		}
		closeConn(c)
		return
	}
	listener := open()
	exec(listener, "LISTEN jobs")
	notifier := open()
	exec(notifier, "SELECT 1") // a transaction or two between LISTEN and NOTIFY
	exec(notifier, "NOTIFY jobs, 'x'")
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	n, err := listener.WaitForNotification(wctx)
	wcancel()
	if err != nil {
		t.Errorf("waiting for the notification: %v", err)
	} else if n.Channel != "jobs" || n.Payload != "x" {
		t.Errorf("notification %+v", n)
	}
	closeConn(notifier)

	// A temporary table pins its session: another session's transaction
	// (which takes the most recently freed backend) cannot take it.
	tmp := open()
	exec(tmp, "SET application_name = 'pinned_client'")
	exec(tmp, "SET statement_timeout = '12345 ms'")
	exec(tmp, "CREATE TEMP TABLE tt (x int); INSERT INTO tt VALUES (1)")
	tmpPID := pid(tmp)
	helper := open()
	htx, err := helper.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p := pid(htx); p == tmpPID {
		t.Errorf("another session's transaction got the temp table's backend %d", p)
	}
	if n := stacktest.Count(t, tmp, "SELECT count(*) FROM tt"); n != 1 {
		t.Errorf("temp table tt has %d rows in a later transaction, want 1", n)
	}
	if p := pid(tmp); p != tmpPID {
		t.Errorf("the pinned session moved from backend %d to %d", tmpPID, p)
	}
	if err := htx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	closeConn(listener)

	// A session advisory lock pins too: the unlock runs where the lock is.
	locker := open()
	var ok bool
	if err := locker.QueryRow(ctx, "SELECT pg_advisory_lock(7) IS NOT NULL").Scan(&ok); err != nil {
		t.Fatal(err)
	}
	lockPID := pid(locker)
	htx, err = helper.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p := pid(htx); p == lockPID {
		t.Errorf("another session's transaction got the advisory lock's backend %d", p)
	}
	if err := locker.QueryRow(ctx, "SELECT pg_advisory_unlock(7)").Scan(&ok); err != nil {
		t.Fatal(err)
	} else if !ok {
		t.Errorf("pg_advisory_unlock(7) in a later transaction = false: the lock is on another backend")
	}
	if err := htx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// Lock it again and leave it to the session's end.
	if err := locker.QueryRow(ctx, "SELECT pg_advisory_lock(7) IS NOT NULL").Scan(&ok); err != nil {
		t.Fatal(err)
	}

	// The pinned sessions end; their backends are reset and go back to the
	// pool. Wait until every backend of the tenant is idle.
	closeConn(tmp)
	closeConn(locker)
	closeConn(helper)
	deadline := time.Now().Add(5 * time.Second)
	for {
		var st router.PoolStats
		for _, s := range ts.Router.Stats() {
			if s.TenantID == tn.ID {
				st = s
			}
		}
		if st.Open == st.Idle && st.Waiting == 0 {
			t.Logf("%s pool after the pinned sessions ended: %+v", slug, st)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's backends are not all idle 5s after its sessions ended: %+v", slug, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	sdb := ts.SrvConn(t, "postgres")
	var locks int
	if err := sdb.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 7`).Scan(&locks); err != nil {
		t.Fatal(err)
	}
	if locks != 0 {
		t.Errorf("advisory lock 7 is still held (%d) after its session ended", locks)
	}

	// Three fresh sessions, each in a transaction, hold the tenant's three
	// backends, one of which served the pinned sessions.
	fresh := make([]pgx.Tx, 3)
	seen := map[int]bool{}
	for i := range fresh {
		c := stacktest.Connect(t, url)
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		fresh[i] = tx
		p, v := view(tx)
		seen[p] = true
		if v != baseline {
			t.Errorf("fresh session on backend %d sees %+v, a fresh session saw %+v", p, v, baseline)
		}
	}
	t.Logf("fresh sessions on backends %v; the temp table's backend %d reused: %v; the lock's backend %d reused: %v",
		seen, tmpPID, seen[tmpPID], lockPID, seen[lockPID])
	for _, tx := range fresh {
		if err := tx.Commit(ctx); err != nil {
			t.Error(err)
		}
	}
}

// TestPoolingSettingsNotLeft checks session settings in transaction pooling at
// their edges: a SET the server rejected, a SET its transaction rolled back
// and set_config(..., false). The tenant has one backend connection, so every
// session below runs on the same one, one transaction after another.
func TestPoolingSettingsNotLeft(t *testing.T) {
	ts := stacktest.Start(t, func(sc *server.Config) {
		sc.Proxy.PoolMode = "transaction"
		sc.Router.MaxConnsPerTenant = 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url := ts.URL("demo", "demo", "client_alpha", "")
	exec := func(c *pgx.Conn, sql string) {
		t.Helper()
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	setting := func(c *pgx.Conn, name string) string {
		t.Helper()
		var s *string
		if err := c.QueryRow(ctx, "SELECT current_setting($1, true)", name).Scan(&s); err != nil {
			t.Fatal(err)
		}
		if s == nil {
			return "<unset>"
		}
		return *s
	}
	pid := func(c *pgx.Conn) int {
		t.Helper()
		var p int
		if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&p); err != nil {
			t.Fatal(err)
		}
		return p
	}

	t.Run("a rejected SET", func(t *testing.T) {
		x, y := stacktest.Connect(t, url), stacktest.Connect(t, url)
		exec(x, "SET application_name = 'x_app'")
		exec(y, "SET application_name = 'y_app'")
		if _, err := y.Exec(ctx, "SET statement_timeout = 'bogus'"); stacktest.SQLState(err) != "22023" {
			t.Fatalf("SET statement_timeout = 'bogus': %v, want SQLSTATE 22023", err)
		}
		if got := setting(x, "application_name"); got != "x_app" { // x's turn on the backend
			t.Errorf("x: application_name %q, want x_app", got)
		}
		if got := setting(y, "application_name"); got != "y_app" {
			t.Errorf("y, after its rejected SET, on the backend x used last (pid %d): application_name %q, want its own y_app", pid(y), got)
		}
		if got := setting(y, "statement_timeout"); got != "0" {
			t.Errorf("y: statement_timeout %q, want 0 (its SET was rejected)", got)
		}
	})
	t.Run("a SET rolled back", func(t *testing.T) {
		t.Skip("documented limitation (README, Pooling): in transaction pooling a SET later rolled back is still replayed")
		x, z := stacktest.Connect(t, url), stacktest.Connect(t, url)
		exec(z, "BEGIN; SET application_name = 'rolled_back'; ROLLBACK")
		if got := setting(z, "application_name"); got != "" {
			t.Errorf("z, right after the rollback: application_name %q, want empty", got)
		}
		exec(x, "SET application_name = 'x_app'") // x's turn on the backend
		if got := setting(z, "application_name"); got != "" {
			t.Errorf("z, after x used the backend: application_name %q, want empty (the SET was rolled back)", got)
		}
	})
	t.Run("set_config", func(t *testing.T) {
		u, v := stacktest.Connect(t, url), stacktest.Connect(t, url)
		if got := setting(u, "app.user_id"); got != "<unset>" && got != "" {
			t.Fatalf("u: app.user_id %q before anything", got)
		}
		// In transaction pooling set_config(…, false) lasts until the backend
		// changes hands (README); what matters is that it never reaches u.
		exec(v, "SELECT set_config('app.user_id', 'v_user', false), set_config('application_name', 'v_app', false)")
		if got, app := setting(u, "app.user_id"), setting(u, "application_name"); got == "v_user" || app == "v_app" {
			t.Errorf("u, a session that set nothing, sees v's set_config: app.user_id %q, application_name %q", got, app)
		}
	})
}

// TestPoolingNotificationsStayInTenant checks that tenants sharing a database
// (shared and schema tenants) cannot use LISTEN/NOTIFY, whose channels span a
// database, and that a database tenant hears its own notifications.
func TestPoolingNotificationsStayInTenant(t *testing.T) {
	ts := stacktest.Start(t, func(sc *server.Config) { sc.Proxy.PoolMode = "transaction" })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, slug := range []string{"apex_partners", "client_alpha", "client_beta"} {
		c := stacktest.Connect(t, ts.URL("demo", "demo", slug, ""))
		for _, q := range []string{"LISTEN jobs", "NOTIFY jobs, 'x'", "SELECT pg_notify('jobs', 'x')", "UNLISTEN *"} {
			if _, err := c.Exec(ctx, q); stacktest.SQLState(err) != "0A000" {
				t.Errorf("%s: %q: %v, want 0A000", slug, q, err)
			}
		}
	}
	listener := stacktest.Connect(t, ts.URL("demo", "demo", "client_gamma", ""))
	if _, err := listener.Exec(ctx, "LISTEN jobs"); err != nil {
		t.Fatal(err)
	}
	c := stacktest.Connect(t, ts.URL("demo", "demo", "client_gamma", ""))
	if _, err := c.Exec(ctx, "NOTIFY jobs, 'from client_gamma'"); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	n, err := listener.WaitForNotification(wctx)
	if err != nil || n.Payload != "from client_gamma" {
		t.Fatalf("client_gamma's notification: %+v %v", n, err)
	}
}

// TestPoolModePerTenant checks that a tenant's own pool mode overrides the
// proxy's: in a session-pooling proxy, a transaction-pooling tenant's clients
// share one backend connection, while a session tenant's clients hold one each.
func TestPoolModePerTenant(t *testing.T) {
	ts := stacktest.Start(t, func(sc *server.Config) { sc.Proxy.PoolMode = "session" })
	ctx := context.Background()
	if _, err := ts.Provisioner.CreateTenant(ctx, provision.TenantSpec{Slug: "pm_txn", Parent: "acmesec", Isolation: "shared", PoolMode: "transaction"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Provisioner.CreateTenant(ctx, provision.TenantSpec{Slug: "pm_bad", Parent: "acmesec", PoolMode: "statement"}); !errors.Is(err, provision.ErrInvalidSpec) {
		t.Fatalf("pool_mode statement: %v, want ErrInvalidSpec", err)
	}
	pids := func(slug string) map[uint32]bool {
		seen := map[uint32]bool{}
		for i := 0; i < 4; i++ {
			c := stacktest.Connect(t, ts.URL("demo", "demo", slug, ""))
			var pid uint32
			if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
				t.Fatal(err)
			}
			seen[pid] = true // c stays open until the test ends
		}
		return seen
	}
	if n := len(pids("pm_txn")); n != 1 {
		t.Errorf("transaction tenant: 4 idle clients used %d backends, want 1", n)
	}
	if n := len(pids("client_alpha")); n != 4 {
		t.Errorf("session tenant: 4 clients used %d backends, want 4", n)
	}
}
