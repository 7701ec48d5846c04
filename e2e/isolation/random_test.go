package isolation

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
	"github.com/stratum-hq/stratum-proxy/server"
)

// rndTenants are the demo tenants the randomized workers move between.
var rndTenants = []string{"client_alpha", "client_beta", "client_gamma", "northstar_msp", "apex_partners"}

const (
	rndWorkers = 12
	rndSteps   = 40
)

// rndLedger is what the workers did, for the final check: the rows each
// tenant must hold, the rows that must never appear, and rows whose fate an
// error left unknown (already reported as failures).
type rndLedger struct {
	mu         sync.Mutex
	committed  map[string]map[string]bool // tenant -> items
	rolledBack map[string]string          // item -> tenant
	unknown    map[string]bool            // items
}

func (l *rndLedger) commit(tenant string, items ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.committed[tenant] == nil {
		l.committed[tenant] = map[string]bool{}
	}
	for _, it := range items {
		l.committed[tenant][it] = true
	}
}

func (l *rndLedger) rollback(tenant string, items ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, it := range items {
		l.rolledBack[it] = tenant
	}
}

func (l *rndLedger) lost(items ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, it := range items {
		l.unknown[it] = true
	}
}

func (l *rndLedger) wasRolledBack(item string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.rolledBack[item]
	return ok
}

// rndItemTenant returns the tenant an item says it was written in.
func rndItemTenant(item string) (string, bool) {
	parts := strings.Split(item, "|")
	if len(parts) != 5 || parts[0] != "rnd" {
		return "", false
	}
	return parts[2], true
}

// TestRandomizedIsolation runs workers that connect, switch tenants, insert,
// read, commit, roll back and disconnect at random, in both pool modes, and
// checks no row ever shows up in another tenant, rolled-back rows never show
// up, and in the end every tenant holds exactly its committed rows.
// STRATUM_TEST_SEED=<n> replays a run's choices (not its interleaving).
func TestRandomizedIsolation(t *testing.T) {
	seed := time.Now().UnixNano()
	if s := os.Getenv("STRATUM_TEST_SEED"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("STRATUM_TEST_SEED=%q: %v", s, err)
		}
		seed = n
	}
	t.Logf("seed %d (rerun with STRATUM_TEST_SEED=%d)", seed, seed)
	for _, mode := range []string{"session", "transaction"} {
		t.Run(mode, func(t *testing.T) {
			ts := stacktest.Start(t, func(sc *server.Config) {
				sc.Proxy.PoolMode = mode
				if mode == "transaction" {
					sc.Router.MaxConnsPerTenant = 3
				}
				sc.Router.QueueTimeout = 10 * time.Second
			})
			rndRun(t, ts, seed)
		})
	}
}

func rndRun(t *testing.T, ts *stacktest.Stack, seed int64) {
	start := time.Now()
	led := &rndLedger{committed: map[string]map[string]bool{}, rolledBack: map[string]string{}, unknown: map[string]bool{}}
	var wg sync.WaitGroup
	var statsMu sync.Mutex
	stats := map[string]int{}
	for w := range rndWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			counts := rndWorker(t, ts, seed, w, led)
			statsMu.Lock()
			for k, v := range counts {
				stats[k] += v
			}
			statsMu.Unlock()
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		t.Fatalf("seed %d: workers still running after 90s (hang)", seed)
	}
	t.Logf("seed %d: %d workers × %d steps in %v: %v", seed, rndWorkers, rndSteps, time.Since(start).Round(time.Millisecond), stats)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tenant := range rndTenants {
		c, err := pgx.Connect(ctx, ts.URL("demo", "demo", tenant, ""))
		if err != nil {
			t.Errorf("seed %d: final check of %s: %v", seed, tenant, err)
			continue
		}
		rows, err := c.Query(ctx, `SELECT item FROM orders`)
		var items []string
		if err == nil {
			items, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		c.Close(ctx)
		if err != nil {
			t.Errorf("seed %d: final check of %s: %v", seed, tenant, err)
			continue
		}
		led.mu.Lock()
		want := led.committed[tenant]
		seen := map[string]bool{}
		for _, it := range items {
			seen[it] = true
			switch {
			case want[it]:
			case led.unknown[it]:
			case led.rolledBack[it] != "":
				t.Errorf("seed %d: final: tenant %s holds rolled-back row %q", seed, tenant, it)
			default:
				t.Errorf("seed %d: final: tenant %s holds row %q it never committed", seed, tenant, it)
			}
		}
		var missing []string
		for it := range want {
			if !seen[it] {
				missing = append(missing, it)
			}
		}
		led.mu.Unlock()
		sort.Strings(missing)
		if len(missing) > 0 {
			t.Errorf("seed %d: final: tenant %s lacks %d committed rows: %v", seed, tenant, len(missing), missing)
		}
		if len(items) != len(seen) {
			t.Errorf("seed %d: final: tenant %s holds duplicate rows", seed, tenant)
		}
		t.Logf("tenant %s: %d rows, as committed", tenant, len(want))
	}
}

// rndWorker runs one worker's random steps and returns how often it did what.
func rndWorker(t *testing.T, ts *stacktest.Stack, seed int64, id int, led *rndLedger) map[string]int {
	r := rand.New(rand.NewPCG(uint64(seed), uint64(id)))
	counts := map[string]int{}
	var c *pgx.Conn
	var tenant, initial string // what the worker believes; the tenant named at connect
	mine := map[string]map[string]bool{}
	step := 0
	fail := func(format string, args ...any) {
		t.Errorf("seed %d worker %d step %d (tenant %s): %s", seed, id, step, tenant, fmt.Sprintf(format, args...))
	}
	closeConn := func() {
		if c != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			c.Close(ctx)
			cancel()
			c = nil
		}
	}
	defer closeConn()
	connectTo := func(to string) bool {
		closeConn()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		nc, err := pgx.Connect(ctx, ts.URL("demo", "demo", to, ""))
		if err != nil {
			fail("connecting to %s: %v", to, err)
			return false
		}
		c, tenant, initial = nc, to, to
		return true
	}
	execMode := func() (pgx.QueryExecMode, string) {
		if r.IntN(2) == 0 {
			return pgx.QueryExecModeSimpleProtocol, "simple"
		}
		return pgx.QueryExecModeCacheStatement, "prepared"
	}
	n := 0
	newItem := func() string {
		n++
		return fmt.Sprintf("rnd|w%02d|%s|s%03d|n%d", id, tenant, step, n)
	}
	// read checks every row the session sees belongs to its tenant, none was
	// rolled back, and the worker's own committed rows (and pending, in a
	// transaction) are there.
	read := func(ctx context.Context, pending []string) {
		mode, proto := execMode()
		rows, err := c.Query(ctx, `SELECT item FROM orders`, mode)
		var items []string
		if err == nil {
			items, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		if err != nil {
			fail("read (%s): %v", proto, err)
			return
		}
		seen := map[string]bool{}
		for _, it := range items {
			seen[it] = true
			owner, ok := rndItemTenant(it)
			switch {
			case !ok:
				fail("read (%s): foreign row %q", proto, it)
			case owner != tenant:
				fail("read (%s): LEAK: session of %s sees row %q written in %s", proto, tenant, it, owner)
			case led.wasRolledBack(it):
				fail("read (%s): sees rolled-back row %q", proto, it)
			}
		}
		for it := range mine[tenant] {
			if !seen[it] {
				fail("read (%s): own committed row %q missing", proto, it)
			}
		}
		for _, it := range pending {
			if !seen[it] {
				fail("read (%s): own row %q of the open transaction missing", proto, it)
			}
		}
	}
	committed := func(items ...string) {
		led.commit(tenant, items...)
		if mine[tenant] == nil {
			mine[tenant] = map[string]bool{}
		}
		for _, it := range items {
			mine[tenant][it] = true
		}
	}

	for step = 0; step < rndSteps; step++ {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		if c == nil {
			counts["connect"]++
			connectTo(rndTenants[r.IntN(len(rndTenants))])
			cancel()
			continue
		}
		switch x := r.IntN(100); {
		case x < 8:
			counts["reconnect"]++
			connectTo(rndTenants[r.IntN(len(rndTenants))])
		case x < 22:
			counts["switch"]++
			to := rndTenants[r.IntN(len(rndTenants))]
			if _, err := c.Exec(ctx, fmt.Sprintf("SET stratum.tenant = '%s'", to)); err != nil {
				fail("SET stratum.tenant = %s: %v", to, err)
				closeConn()
			} else {
				tenant = to
			}
		case x < 25:
			counts["reset"]++
			if _, err := c.Exec(ctx, "RESET stratum.tenant"); err != nil {
				fail("RESET stratum.tenant: %v", err)
				closeConn()
			} else {
				tenant = initial
			}
		case x < 28:
			counts["show"]++
			var shown string
			if err := c.QueryRow(ctx, "SHOW stratum.tenant", pgx.QueryExecModeSimpleProtocol).Scan(&shown); err != nil {
				fail("SHOW stratum.tenant: %v", err)
			} else if shown != tenant {
				fail("SHOW stratum.tenant = %q, want %q", shown, tenant)
			}
		case x < 45:
			counts["insert"]++
			item := newItem()
			mode, proto := execMode()
			if _, err := c.Exec(ctx, `INSERT INTO orders (item) VALUES ($1)`, mode, item); err != nil {
				fail("insert (%s): %v", proto, err)
				led.lost(item)
				closeConn()
			} else {
				committed(item)
			}
		case x < 70:
			rollback := x >= 60
			if rollback {
				counts["tx-rollback"]++
			} else {
				counts["tx-commit"]++
			}
			var items []string
			ok := true
			if _, err := c.Exec(ctx, "BEGIN"); err != nil {
				fail("BEGIN: %v", err)
				ok = false
			}
			for k := r.IntN(3); ok && k >= 0; k-- {
				item := newItem()
				mode, proto := execMode()
				if _, err := c.Exec(ctx, `INSERT INTO orders (item) VALUES ($1)`, mode, item); err != nil {
					fail("insert in a transaction (%s): %v", proto, err)
					ok = false
				}
				items = append(items, item)
			}
			if ok && r.IntN(2) == 0 {
				read(ctx, items)
			}
			end := "COMMIT"
			if rollback {
				end = "ROLLBACK"
			}
			if ok {
				if _, err := c.Exec(ctx, end); err != nil {
					fail("%s: %v", end, err)
					ok = false
				}
			}
			switch {
			case !ok:
				led.lost(items...)
				closeConn()
			case rollback:
				led.rollback(tenant, items...)
			default:
				committed(items...)
			}
		case x < 88:
			counts["read"]++
			read(ctx, nil)
		case x < 93:
			counts["disconnect"]++
			closeConn()
		default:
			// The client vanishes in the middle of a transaction: its rows
			// must never appear.
			counts["vanish-in-tx"]++
			item := newItem()
			if _, err := c.Exec(ctx, "BEGIN"); err != nil {
				fail("BEGIN: %v", err)
			} else if _, err := c.Exec(ctx, `INSERT INTO orders (item) VALUES ($1)`, item); err != nil {
				fail("insert before vanishing: %v", err)
			}
			led.rollback(tenant, item)
			c.PgConn().Conn().Close()
			closeConn()
		}
		cancel()
	}
	return counts
}
