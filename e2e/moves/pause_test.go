package moves

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
)

// counted is what a count query run in the background returned.
type counted struct {
	n   int
	err error
}

// countAsync runs a count query on c in the background. c must not be used
// until its result has been received.
func countAsync(c *pgx.Conn, sql string) <-chan counted {
	ch := make(chan counted, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var n int
		err := c.QueryRow(ctx, sql).Scan(&n)
		ch <- counted{n, err}
	}()
	return ch
}

// stillPending fails when ch delivers within a short while: the query ran
// while its tenant was paused. (A bounded look, not a timing assertion: a
// query the pause does not hold returns at once.)
func stillPending(t *testing.T, ch <-chan counted, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s returned (%d, %v) while its tenant was paused", what, r.n, r.err)
	case <-time.After(200 * time.Millisecond):
	}
}

// result waits for ch's result and fails on an error or a count other than want.
func result(t *testing.T, ch <-chan counted, what string, want int) {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil || r.n != want {
			t.Fatalf("%s after the pause: (%d, %v), want %d", what, r.n, r.err, want)
		}
	case <-time.After(time.Minute):
		t.Fatalf("%s did not return after the pause ended", what)
	}
}

// pausedSessions reads stratum_sessions_paused from the stack's /metrics.
func pausedSessions(t *testing.T, ts *stacktest.Stack) int {
	t.Helper()
	resp, err := http.Get(ts.AdminURL + "/metrics")
	if err != nil {
		t.Fatalf("reading /metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "stratum_sessions_paused "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("stratum_sessions_paused %q: %v", v, err)
			}
			return int(f)
		}
	}
	t.Fatal("no stratum_sessions_paused in /metrics")
	return 0
}

// waitPausedSessions polls /metrics until n sessions wait on a pause.
func waitPausedSessions(t *testing.T, ts *stacktest.Stack, n int) {
	t.Helper()
	got := -1
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got = pausedSessions(t, ts); got == n {
			return
		}
	}
	t.Fatalf("%d sessions wait on a pause, want %d", got, n)
}

// TestPauseHoldsNewTransactions: while client_alpha is paused, a query on an
// open session of it, and one on a session that connected during the pause,
// wait (neither refused nor run); a transaction of client_alpha begun
// before the pause runs statements and commits; client_beta is untouched.
// When the pause ends, the held queries run, after that commit (they count
// its row). Both pool modes.
func TestPauseHoldsNewTransactions(t *testing.T) {
	stacktest.PoolModes(t, func(t *testing.T, ts *stacktest.Stack) {
		ctx := context.Background()
		alphaURL := ts.URL("demo", "demo", "client_alpha", "")
		held := stacktest.Connect(t, alphaURL)
		inTx := stacktest.Connect(t, alphaURL)
		beta := stacktest.Connect(t, ts.URL("demo", "demo", "client_beta", ""))
		const count = "SELECT count(*) FROM orders"
		base := stacktest.Count(t, held, count)
		betaBase := stacktest.Count(t, beta, count)

		tx, err := inTx.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO orders (item) VALUES ('before the pause')"); err != nil {
			t.Fatal(err)
		}

		gen := ts.Router.Gen()
		if _, err := ts.Catalog.PauseTenant(ctx, "client_alpha", "e2e pause", "e2e"); err != nil {
			t.Fatal(err)
		}
		// The pause reaches the proxy by NOTIFY: from then on (the
		// router's generation moved) it holds new transactions.
		for deadline := time.Now().Add(30 * time.Second); ts.Router.Gen() == gen; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the proxy did not see the pause")
			}
		}
		// Registered after the connections: runs before they close, so
		// that a failed test leaves no query waiting.
		t.Cleanup(func() { ts.Catalog.UnpauseTenant(context.Background(), "client_alpha", "") })

		heldResult := countAsync(held, count)
		waitPausedSessions(t, ts, 1)
		late := stacktest.Connect(t, alphaURL)
		lateResult := countAsync(late, count)
		waitPausedSessions(t, ts, 2)
		stillPending(t, heldResult, "the open session's query")
		stillPending(t, lateResult, "the query of the session that connected during the pause")

		if n := stacktest.Count(t, beta, count); n != betaBase {
			t.Fatalf("client_beta counts %d orders during client_alpha's pause, want %d", n, betaBase)
		}
		if _, err := beta.Exec(ctx, "INSERT INTO orders (item) VALUES ('beta during the pause')"); err != nil {
			t.Fatalf("client_beta during client_alpha's pause: %v", err)
		}

		if _, err := tx.Exec(ctx, "INSERT INTO orders (item) VALUES ('during the pause')"); err != nil {
			t.Fatalf("the transaction begun before the pause: %v", err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatalf("committing the transaction begun before the pause: %v", err)
		}
		stillPending(t, heldResult, "the open session's query")

		if ok, err := ts.Catalog.UnpauseTenant(ctx, "client_alpha", "e2e"); err != nil || !ok {
			t.Fatalf("unpausing: %v %v", ok, err)
		}
		result(t, heldResult, "the open session's query", base+2)
		result(t, lateResult, "the late session's query", base+2)
		waitPausedSessions(t, ts, 0)
		if n := stacktest.Count(t, held, count); n != base+2 {
			t.Fatalf("after the pause client_alpha counts %d orders, want %d", n, base+2)
		}
	})
}
