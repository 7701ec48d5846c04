package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/catalog"
)

// The placement-move run: tenant mover (orders with -move-rows rows) is
// moved shared → schema → database through the admin API while a writer and
// a reader work on it and a bystander tenant runs its own load; see
// bench/README.md.

const (
	moverTenant     = "mover"
	bystanderTenant = "bystander"
	bystanderRows   = 10000
	bystanderConns  = 4
	moverReaders    = 2
	movePoll        = 100 * time.Millisecond
	moveMaxTime     = 30 * time.Minute
)

// moveBench is the move run's state and results.
type moveBench struct {
	rows   int
	phase  phaseNow
	writer *moverWriter
	reader txnStats
	bystd  txnStats

	aloneTPS, loadedTPS float64 // the bystander's baselines: alone, and with mover's load
	moves               []moveResult
	checks              []keyCheck
	failure             string // a move that failed or did not end, or a load that could not start
	loadBefore          string
	loadAfter           string
}

// moveResult is one placement move, as observed by polling it.
type moveResult struct {
	from, to    string
	id          string
	reverts     string // a move back: the id of the switched move it reverts
	phases      []phaseSpan
	final       catalog.Move
	rows        int64 // rows copied in phase copying (the snapshot)
	copyTime    time.Duration
	total       time.Duration // POST until switched
	finalize    time.Duration
	bystTPS     float64 // bystander throughput from POST until finalized
	maxGap      time.Duration
	maxGapAt    string
	maxTxn      time.Duration // the writers' longest transaction, failed ones too
	maxTxnAt    string
	failedW     int64 // writer, reader and bystander failures during this move
	failedR     int64
	failedB     int64
	errText     string
	finalizeErr string
}

// phaseSpan is when a phase was first seen by the poller.
type phaseSpan struct {
	name string
	at   time.Time
}

// setupMoves creates mover and bystander (shared, under bench_root) and
// loads their orders as the superuser, straight into the shared table.
func (b *bench) setupMoves(ctx context.Context) error {
	step("creating tenants %s and %s; loading %d orders for %s and %d for %s", moverTenant, bystanderTenant,
		b.opt.moveRows, moverTenant, bystanderRows, bystanderTenant)
	app, err := pgx.Connect(ctx, b.cluster.URL(sharedDB))
	if err != nil {
		return err
	}
	defer app.Close(context.Background())
	for slug, rows := range map[string]int{moverTenant: b.opt.moveRows, bystanderTenant: bystanderRows} {
		var t struct {
			ID string `json:"id"`
		}
		err := b.api(ctx, http.MethodPost, "/v1/tenants", map[string]any{"slug": slug, "name": slug,
			"parent": "bench_root", "isolation": "shared"}, http.StatusCreated, &t)
		if err != nil {
			return err
		}
		_, err = app.Exec(ctx, `INSERT INTO public.orders (id, tenant_id, amount, note)
			SELECT g, $1, 0, 'order ' || g FROM generate_series(1, $2::bigint) g`, t.ID, rows)
		if err != nil {
			return fmt.Errorf("loading %s's orders: %w", slug, err)
		}
	}
	_, err = app.Exec(ctx, "VACUUM ANALYZE public.orders")
	return err
}

// measureMoves runs the move run on a freshly started proxy.
func (b *bench) measureMoves(ctx context.Context) error {
	if err := b.restartProxy(ctx); err != nil {
		return err
	}
	mb := &moveBench{rows: b.opt.moveRows, loadBefore: loadavg()}
	b.moves = mb
	defer func() { mb.loadAfter = loadavg() }()
	mb.writer = &moverWriter{rows: mb.rows, writers: b.opt.moveWrite, phase: &mb.phase}
	lctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	goLoad := func(tenant string, n int, f func(i int, c *client)) error {
		cfg, err := proxyConnConfig("127.0.0.1", b.proxyPort, benchUser, benchPassword, tenant)
		if err != nil {
			return err
		}
		for i := range n {
			wg.Add(1)
			go func() { defer wg.Done(); f(i, &client{cfg: cfg.Copy()}) }()
		}
		return nil
	}

	mb.phase.set("baseline, bystander alone")
	step("moves: %v baseline of bystander alone (%d clients)", b.opt.duration, bystanderConns)
	if err := goLoad(bystanderTenant, bystanderConns, func(_ int, c *client) {
		c.loop(lctx, 0, &mb.bystd, &mb.phase, bystanderTxn(bystanderRows))
	}); err != nil {
		return err
	}
	mb.aloneTPS = mb.window(ctx, b.opt.duration)

	mb.phase.set("baseline, with mover's load")
	step("moves: %v baseline with %d writers and %d readers on mover", b.opt.duration, b.opt.moveWrite, moverReaders)
	if err := goLoad(moverTenant, b.opt.moveWrite, func(i int, c *client) { mb.writer.run(lctx, i, c) }); err != nil {
		return err
	}
	if err := goLoad(moverTenant, moverReaders, func(_ int, c *client) {
		c.loop(lctx, 5*time.Millisecond, &mb.reader, &mb.phase, mb.writer.readerTxn)
	}); err != nil {
		return err
	}
	mb.loadedTPS = mb.window(ctx, b.opt.duration)
	mb.writer.takeMaxGap()
	mb.checks = append(mb.checks, b.checkKeys(ctx, mb, "before the moves"))

	// shared → schema (finalized), schema → database (kept), then the move
	// back of the latter to the schema it kept (finalized: the database goes).
	steps := []struct {
		to       string
		back     bool
		finalize bool
	}{{catalog.IsolationSchema, false, true}, {catalog.IsolationDatabase, false, false}, {catalog.IsolationSchema, true, true}}
	last := ""
	for _, st := range steps {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		revertOf := ""
		if st.back {
			revertOf = last
		}
		mr := b.moveOnce(ctx, mb, st.to, revertOf, st.finalize)
		last = mr.id
		mb.moves = append(mb.moves, mr)
		printMove(mr)
		if mr.errText != "" || mr.finalizeErr != "" {
			mb.failure = fmt.Sprintf("move %s → %s: %s%s", mr.from, mr.to, mr.errText, mr.finalizeErr)
			break
		}
		mb.checks = append(mb.checks, b.checkKeys(ctx, mb, fmt.Sprintf("after %s → %s", mr.from, mr.to)))
	}
	mb.phase.set("after the moves")
	return ctx.Err()
}

// window returns the bystander's committed transactions per second over d.
func (mb *moveBench) window(ctx context.Context, d time.Duration) float64 {
	ok0, _ := mb.bystd.counts()
	t0 := time.Now()
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	ok1, _ := mb.bystd.counts()
	return float64(ok1-ok0) / time.Since(t0).Seconds()
}

// failures returns the failed transactions of writer, reader and bystander
// so far.
func (mb *moveBench) failures() (w, r, by int64) {
	_, w = mb.writer.stats.counts()
	_, r = mb.reader.counts()
	_, by = mb.bystd.counts()
	return
}

// moveOnce moves mover to isolation `to` (with revertOf, moves the switched
// move revertOf back instead), waits for the switch, finalizes (when
// finalize) and measures what happened meanwhile.
func (b *bench) moveOnce(ctx context.Context, mb *moveBench, to, revertOf string, finalize bool) moveResult {
	var t struct {
		Isolation string `json:"isolation"`
	}
	mr := moveResult{to: to, reverts: revertOf}
	if err := b.api(ctx, http.MethodGet, "/v1/tenants/"+moverTenant, nil, http.StatusOK, &t); err != nil {
		mr.errText = err.Error()
		return mr
	}
	mr.from = t.Isolation
	step("moves: %s %s → %s", moverTenant, mr.from, to)
	w0, r0, b0 := mb.failures()
	okB0, _ := mb.bystd.counts()
	mb.writer.takeMaxGap()
	mb.writer.stats.takeMaxTxn()
	start := time.Now()
	b.followMove(ctx, mb, &mr, start)
	if mr.errText == "" && b.opt.moveFinalizeAfter > 0 {
		mb.phase.set(fmt.Sprintf("%s→%s switched", mr.from, mr.to))
		time.Sleep(b.opt.moveFinalizeAfter)
	}
	if mr.errText == "" && finalize {
		mb.phase.set(fmt.Sprintf("%s→%s finalizing", mr.from, mr.to))
		f0 := time.Now()
		if err := b.api(ctx, http.MethodPost, "/v1/moves/"+mr.id+"/finalize", nil, http.StatusOK, nil); err != nil {
			mr.finalizeErr = "finalize: " + err.Error()
		}
		mr.finalize = time.Since(f0)
	}
	okB1, _ := mb.bystd.counts()
	mr.bystTPS = float64(okB1-okB0) / time.Since(start).Seconds()
	mr.maxGap, mr.maxGapAt = mb.writer.takeMaxGap()
	mr.maxTxn, mr.maxTxnAt = mb.writer.stats.takeMaxTxn()
	w1, r1, b1 := mb.failures()
	mr.failedW, mr.failedR, mr.failedB = w1-w0, r1-r0, b1-b0
	mr.measureCopy()
	if revertOf != "" {
		mr.to += " (move back)"
	}
	return mr
}

// followMove starts the move and polls it every movePoll until it
// switched, failed, was cancelled or took longer than moveMaxTime.
func (b *bench) followMove(ctx context.Context, mb *moveBench, mr *moveResult, start time.Time) {
	var m catalog.Move
	var err error
	if mr.reverts != "" {
		err = b.api(ctx, http.MethodPost, "/v1/moves/"+mr.reverts+"/revert", nil, http.StatusAccepted, &m)
	} else {
		err = b.api(ctx, http.MethodPost, "/v1/tenants/"+moverTenant+"/placement", map[string]any{"isolation": mr.to},
			http.StatusAccepted, &m)
	}
	if err != nil {
		mr.errText = err.Error()
		return
	}
	mr.id = m.ID
	for {
		if len(mr.phases) == 0 || mr.phases[len(mr.phases)-1].name != m.Phase {
			if len(mr.phases) > 0 && mr.phases[len(mr.phases)-1].name == catalog.MoveCopying {
				mr.rows = copiedRows(&m) // the snapshot, before catch-up adds to it
			}
			mr.phases = append(mr.phases, phaseSpan{name: m.Phase, at: time.Now()})
			mb.phase.set(fmt.Sprintf("%s→%s %s", mr.from, mr.to, m.Phase))
		}
		mr.final = m
		switch m.Phase {
		case catalog.MoveSwitched, catalog.MoveFinalized:
			mr.total = time.Since(start)
			return
		case catalog.MoveFailed, catalog.MoveCancelled:
			mr.errText = fmt.Sprintf("the move ended %s: %s", m.Phase, m.Error)
			return
		}
		if time.Since(start) > moveMaxTime {
			mr.errText = fmt.Sprintf("not switched after %v (phase %s)", moveMaxTime, m.Phase)
			return
		}
		select {
		case <-time.After(movePoll):
		case <-ctx.Done():
			mr.errText = ctx.Err().Error()
			return
		}
		if err := b.api(ctx, http.MethodGet, "/v1/moves/"+mr.id, nil, http.StatusOK, &m); err != nil {
			mr.errText = "polling the move: " + err.Error()
			return
		}
	}
}

// phaseTime is how long phase lasted as the poller saw it (0 when it was
// not seen).
func (mr *moveResult) phaseTime(phase string) time.Duration {
	for i, p := range mr.phases {
		if p.name != phase {
			continue
		}
		if i+1 < len(mr.phases) {
			return mr.phases[i+1].at.Sub(p.at)
		}
		return 0
	}
	return 0
}

// copiedRows sums the rows m copied so far.
func copiedRows(m *catalog.Move) int64 {
	var n int64
	for _, t := range m.Tables {
		n += t.Copied
	}
	return n
}

// measureCopy takes the copying phase's time, and the rows copied when the
// poller missed the end of that phase.
func (mr *moveResult) measureCopy() {
	if mr.rows == 0 {
		mr.rows = copiedRows(&mr.final)
	}
	mr.copyTime = mr.phaseTime(catalog.MoveCopying)
}

func (mr *moveResult) copyRate() float64 {
	if mr.copyTime <= 0 {
		return 0
	}
	return float64(mr.rows) / mr.copyTime.Seconds()
}

func printMove(mr moveResult) {
	if mr.errText != "" {
		step("moves: %s → %s FAILED: %s", mr.from, mr.to, mr.errText)
	}
	step("moves: %s → %s: switched after %.1fs, finalized in %.1fs; %d rows copied in %.1fs (%.0f rows/s); "+
		"longest write pause %v (%s); longest writer transaction %v (%s); failed txns writer %d reader %d bystander %d; bystander %.0f tps",
		mr.from, mr.to, mr.total.Seconds(), mr.finalize.Seconds(), mr.rows, mr.copyTime.Seconds(), mr.copyRate(),
		mr.maxGap.Round(time.Millisecond), mr.maxGapAt, mr.maxTxn.Round(time.Millisecond), mr.maxTxnAt, mr.failedW, mr.failedR, mr.failedB, mr.bystTPS)
}
