package main

import (
	"fmt"
	"strings"
	"time"
)

// The "Placement moves" section of the report.

// moveTargets are the move run's goals (issue 12), measured.
func (mb *moveBench) moveTargets() []target {
	var ts []target
	w, r, by := mb.failures()
	t := target{goal: "failed transactions during the move run (writer, reader, bystander): 0"}
	t.measured = fmt.Sprintf("%d (writer %d, reader %d, bystander %d)", w+r+by, w, r, by)
	t.verdict = verdict(w+r+by == 0, true)
	ts = append(ts, t)

	t = target{goal: "rows lost / duplicated after each move (by key, through the proxy): 0 / 0, count = N + inserts"}
	lost, dup, bad := 0, 0, 0
	for _, k := range mb.checks {
		lost, dup = lost+k.lost, dup+k.dup
		if !k.ok() {
			bad++
		}
	}
	t.measured = fmt.Sprintf("%d lost, %d duplicated; %d of %d checks wrong", lost, dup, bad, len(mb.checks))
	t.verdict = verdict(bad == 0 && len(mb.checks) == len(mb.moves)+1, len(mb.checks) > 0)
	ts = append(ts, t)

	var gap, txn time.Duration
	for _, m := range mb.moves {
		gap, txn = max(gap, m.maxGap), max(txn, m.maxTxn)
	}
	t = target{goal: "the tenant's longest write pause during a move: < 1 s"}
	t.measured = fmt.Sprintf("%v (longest gap between commits %v, longest single writer transaction %v; "+
		"writer p99 commit latency %.1f ms over the whole run)", max(gap, txn).Round(time.Millisecond),
		gap.Round(time.Millisecond), txn.Round(time.Millisecond), mb.writer.stats.p99Ms())
	t.verdict = verdict(max(gap, txn) < time.Second, len(mb.moves) > 0)
	ts = append(ts, t)

	for _, m := range mb.moves {
		what := "copy rate"
		if m.reverts != "" {
			what = "reconcile rate (rows compared with the kept copy)"
		}
		ts = append(ts, target{goal: fmt.Sprintf("%s, %s → %s (no threshold set)", what, m.from, m.to),
			measured: fmt.Sprintf("%.0f rows/s (%d rows in %.1f s)", m.copyRate(), m.rows, m.copyTime.Seconds()),
			verdict:  "info"})
	}
	for _, m := range mb.moves {
		t = target{goal: fmt.Sprintf("bystander throughput during %s → %s: ≥ 0.9× baseline", m.from, m.to)}
		if mb.loadedTPS > 0 {
			t.measured = fmt.Sprintf("%.2f× (%.0f vs %.0f tps)", m.bystTPS/mb.loadedTPS, m.bystTPS, mb.loadedTPS)
		}
		t.verdict = verdict(m.bystTPS >= 0.9*mb.loadedTPS, mb.loadedTPS > 0)
		ts = append(ts, t)
	}
	if mb.failure != "" {
		ts = append(ts, target{goal: "every move switches (and finalizes)", measured: mb.failure, verdict: "MISS"})
	}
	return ts
}

// printMoves prints the move run's goals.
func (mb *moveBench) printMoves() {
	fmt.Println()
	fmt.Println("Placement moves:")
	for _, t := range mb.moveTargets() {
		fmt.Printf("  %-4s  %s: %s\n", t.verdict, t.goal, t.measured)
	}
	for _, s := range mb.errorLines() {
		fmt.Println("  " + s)
	}
}

// errorLines are the first failures of each load.
func (mb *moveBench) errorLines() []string {
	var out []string
	for _, l := range []struct {
		name string
		s    *txnStats
	}{{"writer", &mb.writer.stats}, {"reader", &mb.reader}, {"bystander", &mb.bystd}} {
		l.s.mu.Lock()
		for _, e := range l.s.firstErrs {
			out = append(out, fmt.Sprintf("%s: %s", l.name, e))
		}
		l.s.mu.Unlock()
	}
	return out
}

// movesMarkdown is the "Placement moves" section.
func (b *bench) movesMarkdown(sb *strings.Builder) {
	mb := b.moves
	p := func(format string, args ...any) { fmt.Fprintf(sb, format, args...) }
	p("\n## Placement moves\n\n")
	p("Tenant `%s` (orders: %d rows, loaded as the superuser) moved shared → schema → database and back to the schema ",
		moverTenant, mb.rows)
	p("through the admin API (`POST /v1/tenants/%s/placement`, then `POST /v1/moves/{id}/revert` for the move back to the ",
		moverTenant)
	p("schema the second move kept; polled with `GET /v1/moves/{id}` every %v; `POST /v1/moves/{id}/finalize` after the first ", movePoll)
	p("move and the move back), ")
	p("while %d writers (each transaction: INSERT of a new key + UPDATE of a preloaded row, every 10 ms) and %d readers ",
		b.opt.moveWrite, moverReaders)
	p("(SELECT by key, every 5 ms) work on it and %d bystander clients run read+write transactions back to back on tenant `%s` ",
		bystanderConns, bystanderTenant)
	p("(%d orders), all pgx through the proxy. Load average %s before the move run, %s after; ", bystanderRows,
		mb.loadBefore, mb.loadAfter)
	p("everything shares one machine (and whatever else runs on it), so throughput figures are only indicative.\n\n")
	p("| | goal | measured |\n|---|---|---|\n")
	for _, t := range mb.moveTargets() {
		p("| %s | %s | %s |\n", t.verdict, mdEscape(t.goal), mdEscape(t.measured))
	}
	p("\nBystander baselines (%v each): %.0f tps alone, %.0f tps with mover's writer and reader running; ",
		b.opt.duration, mb.aloneTPS, mb.loadedTPS)
	p("the ratio goal compares with the latter, so it measures what the move costs other tenants.\n\n")
	b.movesTable(p)
	p("\nKey checks (the writer held while the tenant's orders are read through the proxy):\n\n")
	for _, k := range mb.checks {
		p("- %s (%v)\n", mdEscape(k.String()), k.took.Round(time.Millisecond))
	}
	if errs := mb.errorLines(); len(errs) > 0 {
		p("\nFirst failed transactions (the first %d of each load; [what was running]):\n\n", keepErrs)
		for _, e := range errs {
			p("- `%s`\n", strings.ReplaceAll(e, "`", "'"))
		}
	}
}

// movesTable is one line per move: phases as the poller saw them.
func (b *bench) movesTable(p func(string, ...any)) {
	p("| move | provisioning s | copying (move back: reconcile) s | catching up s | cutting over s | to switched s | switch pause ms | finalize s | rows copied | rows/s | longest gap between commits | longest writer transaction | failed (w/r/b) | bystander tps | error |\n")
	p("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|---|--:|---|\n")
	for _, m := range b.moves.moves {
		sec := func(ph string) string { return fmt.Sprintf("%.2f", m.phaseTime(ph).Seconds()) }
		p("| %s → %s | %s | %s | %s | %s | %.2f | %d | %.2f | %d | %.0f | %v (%s) | %v (%s) | %d/%d/%d | %.0f | %s |\n",
			m.from, m.to, sec("provisioning"), sec("copying"), sec("catching_up"), sec("cutting_over"),
			m.total.Seconds(), m.final.PauseMS, m.finalize.Seconds(), m.rows, m.copyRate(), m.maxGap.Round(time.Millisecond),
			mdEscape(m.maxGapAt), m.maxTxn.Round(time.Millisecond), mdEscape(m.maxTxnAt), m.failedW, m.failedR, m.failedB, m.bystTPS, mdEscape(m.errText+m.finalizeErr))
	}
	p("\nPhase times are between the poller's first sightings (±%v); \"to switched\" runs from the POST; ", movePoll)
	p("the switch pause is the move's own record (pause_ms: from pausing the tenant for the switch to the catalog's switch). ")
	p("The longest gap between commits is between two successive commits of the writers (any goroutine), ")
	p("with the phases it began and ended in; the longest writer transaction counts failed ones too (from BEGIN to ")
	p("the failure; a transaction that waits %v is cancelled and fails). The write pause goal takes the larger.\n", moveTxnTimeout)
}
