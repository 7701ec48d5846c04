package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// proxyConnConfig is a pgx configuration for user bench on the proxy, naming
// the tenant with the stratum.tenant startup parameter, simple protocol.
func proxyConnConfig(host string, port int, user, password, tenant string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=app sslmode=disable connect_timeout=30",
		host, port, user, password))
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["stratum.tenant"] = tenant
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	return cfg, nil
}

// queryTimeout bounds one query of the Go load.
const queryTimeout = 10 * time.Second

// loadSpec is a Go-driven select-only load.
type loadSpec struct {
	clients        int
	tenants        []string // client i, round k uses tenants[(i + k*clients) % len]
	aidMax         int
	reconnectEvery int
	duration       time.Duration
	// config returns the connection configuration for a tenant.
	config func(tenant string) (*pgx.ConnConfig, error)
}

// runLoad runs spec: each client connects to its tenant, runs reconnectEvery
// select-only transactions, disconnects and moves on to its next tenant,
// until the duration is over. TPS counts every transaction over the whole
// wall time (reconnections included); latency is per transaction (the query
// round trip, connecting excluded).
func runLoad(ctx context.Context, spec loadSpec) result {
	r := result{protocol: "simple", clients: spec.clients, tool: "go"}
	const query = "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
	var (
		wg        sync.WaitGroup
		txns      atomic.Int64
		connects  atomic.Int64
		errCount  atomic.Int64
		errMu     sync.Mutex
		errKinds  = map[string]int{}
		lats      = make([][]int32, spec.clients)
		sumMicros atomic.Int64
		touched   sync.Map
	)
	noteErr := func(err error) {
		errCount.Add(1)
		msg := err.Error()
		if len(msg) > 120 {
			msg = msg[:120]
		}
		errMu.Lock()
		errKinds[msg]++
		errMu.Unlock()
	}
	start := time.Now()
	deadline := start.Add(spec.duration)
	for i := range spec.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), uint64(start.UnixNano())))
			local := make([]int32, 0, 1<<14)
			var sum int64
			defer func() {
				lats[i] = local
				sumMicros.Add(sum)
			}()
			for round := 0; time.Now().Before(deadline) && ctx.Err() == nil; round++ {
				tenant := spec.tenants[(i+round*spec.clients)%len(spec.tenants)]
				cfg, err := spec.config(tenant)
				if err != nil {
					noteErr(err)
					return
				}
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				conn, err := pgx.ConnectConfig(cctx, cfg)
				cancel()
				if err != nil {
					noteErr(err)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				connects.Add(1)
				touched.Store(tenant, true)
				for n := 0; n < spec.reconnectEvery && time.Now().Before(deadline); n++ {
					aid := rng.IntN(spec.aidMax) + 1
					t0 := time.Now()
					var abalance int32
					// A query whose answer never comes counts as an error
					// after queryTimeout.
					qctx, cancel := context.WithTimeout(ctx, queryTimeout)
					err := conn.QueryRow(qctx, query, aid).Scan(&abalance)
					cancel()
					el := time.Since(t0)
					if err != nil {
						if ctx.Err() != nil {
							break
						}
						if n == 0 {
							// Tells a session that never got going from one that broke.
							err = fmt.Errorf("first query on a new connection: %w", err)
						}
						noteErr(err)
						if conn.IsClosed() {
							break
						}
						continue
					}
					us := el.Microseconds()
					local = append(local, int32(us))
					sum += us
					txns.Add(1)
				}
				closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				conn.Close(closeCtx)
				cancel()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		r.note = "interrupted"
		return r
	}
	var all []int32
	for _, l := range lats {
		all = append(all, l...)
	}
	n := txns.Load()
	nTouched := 0
	touched.Range(func(any, any) bool { nTouched++; return true })
	var notes []string
	notes = append(notes, fmt.Sprintf("Go/pgx, reconnect every %d txns: %d connections, %d tenants touched, ran %.1fs",
		spec.reconnectEvery, connects.Load(), nTouched, elapsed.Seconds()))
	if e := errCount.Load(); e > 0 {
		kinds := make([]string, 0, len(errKinds))
		for k, c := range errKinds {
			kinds = append(kinds, fmt.Sprintf("%d× %s", c, k))
		}
		sort.Strings(kinds)
		if len(kinds) > 3 {
			kinds = kinds[:3]
		}
		notes = append(notes, fmt.Sprintf("%d errors (%s)", e, strings.Join(kinds, "; ")))
		r.errors = true
	}
	r.note = strings.Join(notes, "; ")
	if n == 0 {
		r.note = "failed: no transaction completed; " + r.note
		return r
	}
	r.ok = true
	r.txns = n
	r.tps = float64(n) / elapsed.Seconds()
	r.avgMs = float64(sumMicros.Load()) / float64(n) / 1000
	r.p99Ms = float64(percentile(all, 0.99)) / 1000
	return r
}

// idleResult is the memory-per-idle-client measurement.
type idleResult struct {
	wanted, opened int
	beforeKiB      int64
	afterKiB       int64
	firstErr       string
	backends       int // backend connections PostgreSQL had with the clients open
}

func (ir idleResult) perConnKiB() float64 {
	if ir.opened == 0 {
		return 0
	}
	return float64(ir.afterKiB-ir.beforeKiB) / float64(ir.opened)
}

// measureIdle opens up to want idle connections through the proxy (tenant
// bench_shared), concurrently but at most 16 at a time, stopping at the first
// refusal, and measures the proxy's RSS before and after.
func measureIdle(ctx context.Context, pid int, want int, cfg *pgx.ConnConfig, countBackends func() int) (idleResult, error) {
	ir := idleResult{wanted: want}
	// Warm up: the first sessions load caches (tenant, user, pools) and grow
	// the runtime; that is not per-connection memory.
	for range 4 {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		c, err := pgx.ConnectConfig(cctx, cfg)
		cancel()
		if err != nil {
			return ir, fmt.Errorf("warm-up connection: %w", err)
		}
		c.Close(ctx)
	}
	time.Sleep(time.Second)
	var err error
	if ir.beforeKiB, err = rssKiB(pid); err != nil {
		return ir, err
	}
	var (
		mu     sync.Mutex
		conns  []*pgx.Conn
		failed atomic.Bool
		wg     sync.WaitGroup
		sem    = make(chan struct{}, 16)
	)
	defer func() {
		for _, c := range conns {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c.Close(cctx)
			cancel()
		}
	}()
	for i := 0; i < want && !failed.Load() && ctx.Err() == nil; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			c, err := pgx.ConnectConfig(cctx, cfg)
			cancel()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if !failed.Swap(true) {
					ir.firstErr = err.Error()
				}
				return
			}
			conns = append(conns, c)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ir, ctx.Err()
	}
	ir.opened = len(conns)
	if ir.opened == 0 {
		return ir, errors.New("no idle connection could be opened: " + ir.firstErr)
	}
	time.Sleep(2 * time.Second)
	if ir.afterKiB, err = rssKiB(pid); err != nil {
		return ir, err
	}
	ir.backends = countBackends()
	return ir, nil
}
