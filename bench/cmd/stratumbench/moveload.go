package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// The loads of the move run: a writer and a reader on the moved tenant and a
// read+write load on a bystander tenant, all pgx through the proxy on
// persistent connections (reconnecting when one breaks).

// moveTxnTimeout bounds one transaction of the move run's loads: longer
// than the cut-over's drain timeout, so that a tenant held by a cut-over
// shows as a long write pause, not as a failure.
const moveTxnTimeout = 30 * time.Second

// phaseNow names what the move run is doing ("baseline", "shared→schema
// copying"…), to say when an error or the longest pause happened.
type phaseNow struct{ v atomic.Value }

func (p *phaseNow) set(s string) { p.v.Store(s) }
func (p *phaseNow) get() string {
	s, _ := p.v.Load().(string)
	return s
}

// txnStats counts one load's transactions and failures.
type txnStats struct {
	mu        sync.Mutex
	ok        int64
	failed    int64
	firstErrs []string // the first few failures, with the phase they happened in
	lats      []int32  // µs per committed transaction
	maxTxn    time.Duration
	maxTxnAt  string // the longest transaction (failed ones too): its phase and outcome
}

const keepErrs = 5

func (s *txnStats) done(lat time.Duration, phase string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ok++
	s.lats = append(s.lats, int32(min(lat.Microseconds(), 1<<31-1)))
	s.longest(lat, phase, "committed")
}

func (s *txnStats) fail(err error, lat time.Duration, phase string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failed++
	if len(s.firstErrs) < keepErrs {
		s.firstErrs = append(s.firstErrs, fmt.Sprintf("[%s] after %v: %v", phase, lat.Round(time.Millisecond), err))
	}
	s.longest(lat, phase, "failed")
}

func (s *txnStats) longest(lat time.Duration, phase, outcome string) {
	if lat > s.maxTxn {
		s.maxTxn, s.maxTxnAt = lat, outcome+", ended in "+phase
	}
}

// takeMaxTxn returns the longest transaction since the last call and
// starts afresh.
func (s *txnStats) takeMaxTxn() (time.Duration, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, at := s.maxTxn, s.maxTxnAt
	s.maxTxn, s.maxTxnAt = 0, ""
	return d, at
}

func (s *txnStats) counts() (ok, failed int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ok, s.failed
}

func (s *txnStats) p99Ms() float64 {
	s.mu.Lock()
	lats := slices.Clone(s.lats)
	s.mu.Unlock()
	if len(lats) == 0 {
		return 0
	}
	return float64(percentile(lats, 0.99)) / 1000
}

// client is one persistent proxy connection of a load, reopened when it
// breaks.
type client struct {
	cfg  *pgx.ConnConfig
	conn *pgx.Conn
}

func (c *client) get(ctx context.Context) (*pgx.Conn, error) {
	if c.conn != nil && !c.conn.IsClosed() {
		return c.conn, nil
	}
	cctx, cancel := context.WithTimeout(ctx, moveTxnTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, c.cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting: %w", err)
	}
	c.conn = conn
	return conn, nil
}

func (c *client) close() {
	if c.conn != nil {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c.conn.Close(cctx)
		cancel()
	}
}

// loop runs txn every interval (0: back to back) until ctx ends; a failure
// is counted in stats (unless ctx ended) and, when the connection broke,
// it is reopened after a short sleep.
func (c *client) loop(ctx context.Context, interval time.Duration, stats *txnStats, phase *phaseNow,
	txn func(ctx context.Context, conn *pgx.Conn) error) {
	defer c.close()
	for ctx.Err() == nil {
		t0 := time.Now()
		err := c.once(ctx, txn)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			stats.fail(err, time.Since(t0), phase.get())
			time.Sleep(20 * time.Millisecond)
		} else {
			stats.done(time.Since(t0), phase.get())
		}
		if wait := interval - time.Since(t0); wait > 0 {
			time.Sleep(wait)
		}
	}
}

func (c *client) once(ctx context.Context, txn func(ctx context.Context, conn *pgx.Conn) error) error {
	conn, err := c.get(ctx)
	if err != nil {
		return err
	}
	tctx, cancel := context.WithTimeout(ctx, moveTxnTimeout)
	defer cancel()
	return txn(tctx, conn)
}

// bystanderTxn reads one row and updates another of the bystander's orders.
func bystanderTxn(rows int) func(ctx context.Context, conn *pgx.Conn) error {
	return func(ctx context.Context, conn *pgx.Conn) error {
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			var amount int64
			if err := tx.QueryRow(ctx, "SELECT amount FROM orders WHERE id = $1", rand.IntN(rows)+1).Scan(&amount); err != nil {
				return err
			}
			return updateOne(ctx, tx, int64(rand.IntN(rows)+1))
		})
	}
}

// updateOne adds 1 to the amount of order id, which must exist.
func updateOne(ctx context.Context, tx pgx.Tx, id int64) error {
	tag, err := tx.Exec(ctx, "UPDATE orders SET amount = amount + 1 WHERE id = $1", id)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("UPDATE of existing order %d changed %d rows", id, tag.RowsAffected())
	}
	return nil
}

// moverWriter is the writer on the moved tenant: each transaction inserts
// an order with a key of its own, remembered once committed, and updates an
// existing one. It keeps the longest gap between successive commits (of
// all its goroutines). The key check holds it (gate) while it looks.
type moverWriter struct {
	rows    int // the preloaded orders are 1…rows
	writers int
	stats   txnStats
	phase   *phaseNow

	gate sync.RWMutex // a transaction holds it shared; the key check exclusively

	mu         sync.Mutex
	committed  []int64
	uncertain  []int64 // COMMIT failed: it may or may not have happened
	lastCommit time.Time
	lastPhase  string // the phase of the last commit
	maxGap     time.Duration
	maxGapAt   string // the phases the longest gap began and ended in, and when it ended
}

func (w *moverWriter) run(ctx context.Context, g int, c *client) {
	next := int64(w.rows + 1 + g)
	c.loop(ctx, 10*time.Millisecond, &w.stats, w.phase, func(ctx context.Context, conn *pgx.Conn) error {
		key := next
		next += int64(w.writers)
		w.gate.RLock()
		defer w.gate.RUnlock()
		return w.txn(ctx, conn, key)
	})
}

// errUncertain marks a failed COMMIT: the transaction may have committed.
var errUncertain = errors.New("COMMIT failed")

func (w *moverWriter) txn(ctx context.Context, conn *pgx.Conn, key int64) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("BEGIN: %w", err)
	}
	_, err = tx.Exec(ctx, "INSERT INTO orders (id, amount, note) VALUES ($1, 1, 'written during the move')", key)
	if err != nil {
		err = fmt.Errorf("INSERT: %w", err)
	} else if err = updateOne(ctx, tx, int64(rand.IntN(w.rows)+1)); err != nil {
		err = fmt.Errorf("UPDATE: %w", err)
	}
	if err != nil {
		tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		w.mu.Lock()
		w.uncertain = append(w.uncertain, key)
		w.mu.Unlock()
		return fmt.Errorf("%w (key %d): %w", errUncertain, key, err)
	}
	w.committedKey(key)
	return nil
}

func (w *moverWriter) committedKey(key int64) {
	now, phase := time.Now(), w.phase.get()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.committed = append(w.committed, key)
	if !w.lastCommit.IsZero() {
		if gap := now.Sub(w.lastCommit); gap > w.maxGap {
			w.maxGap, w.maxGapAt = gap, phase
			if w.lastPhase != phase {
				w.maxGapAt = w.lastPhase + " … " + phase
			}
			// When it ended, to find it in the proxy's and the server's logs.
			w.maxGapAt += ", ended " + now.UTC().Format("15:04:05.000")
		}
	}
	w.lastCommit, w.lastPhase = now, phase
}

// takeMaxGap returns the longest commit gap since the last call and starts
// afresh.
func (w *moverWriter) takeMaxGap() (time.Duration, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	g, at := w.maxGap, w.maxGapAt
	w.maxGap, w.maxGapAt = 0, ""
	return g, at
}

// hold stops the writer (its transactions under way end first) and returns
// the keys committed and those whose COMMIT failed; release lets it go on
// without counting the hold as a write pause.
func (w *moverWriter) hold() (committed, uncertain []int64) {
	w.gate.Lock()
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.committed), slices.Clone(w.uncertain)
}

func (w *moverWriter) release() {
	w.mu.Lock()
	w.lastCommit, w.lastPhase = time.Now(), w.phase.get()
	w.mu.Unlock()
	w.gate.Unlock()
}

// randomKey is a committed key half the time, a preloaded one otherwise.
func (w *moverWriter) randomKey() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := len(w.committed); n > 0 && rand.IntN(2) == 0 {
		return w.committed[rand.IntN(n)]
	}
	return int64(rand.IntN(w.rows) + 1)
}

// readerTxn selects an order the writer committed (or a preloaded one) by
// key; not finding it is a failure.
func (w *moverWriter) readerTxn(ctx context.Context, conn *pgx.Conn) error {
	key := w.randomKey()
	var amount int64
	err := conn.QueryRow(ctx, "SELECT amount FROM orders WHERE id = $1", key).Scan(&amount)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("order %d, committed earlier, not found", key)
	}
	return err
}
