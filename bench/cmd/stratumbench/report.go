package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// find returns the valid result of target with proto and clients.
func (b *bench) find(target, proto string, clients int) (result, bool) {
	for _, r := range b.results {
		if r.target == target && r.protocol == proto && r.clients == clients && r.ok {
			return r, true
		}
	}
	return result{}, false
}

func ratio(r result, base result, ok bool) string {
	if !r.ok || !ok || base.tps == 0 || r.tool != base.tool {
		return "—"
	}
	return fmt.Sprintf("%.2f×", r.tps/base.tps)
}

// row is one line of the results table.
type row struct {
	target, protocol, clients, tps, avg, p99, vsDirect, vsPgb, note string
}

func (b *bench) rows() []row {
	var out []row
	for _, r := range b.results {
		direct, dok := b.find("direct", r.protocol, r.clients)
		if r.tool == "go" {
			direct, dok = b.find("go-direct", r.protocol, r.clients)
		}
		pgb, pok := b.find("pgbouncer", r.protocol, r.clients)
		rw := row{target: r.label, protocol: r.protocol, clients: fmt.Sprint(r.clients), note: r.note,
			tps: "—", avg: "—", p99: "—", vsDirect: "—", vsPgb: "—"}
		if r.ok {
			rw.tps = fmt.Sprintf("%.0f", r.tps)
			rw.avg = fmt.Sprintf("%.3f", r.avgMs)
			rw.p99 = fmt.Sprintf("%.3f", r.p99Ms)
			if r.target != "direct" && r.target != "go-direct" {
				rw.vsDirect = ratio(r, direct, dok)
			}
			if r.target != "pgbouncer" {
				rw.vsPgb = ratio(r, pgb, pok)
			}
		}
		out = append(out, rw)
	}
	return out
}

// target is one line of the goals, PASS or MISS.
type target struct {
	goal, measured, verdict string
}

func verdict(ok, measurable bool) string {
	switch {
	case !measurable:
		return "n/a"
	case ok:
		return "PASS"
	default:
		return "MISS"
	}
}

// check fills t from a comparison of r with base: r.tps ≥ factor × base.tps.
// A comparison involving a run that had errors is a MISS whatever the ratio.
func check(t target, r result, rok bool, base result, bok bool, factor float64) target {
	if !rok || !bok {
		t.measured, t.verdict = "not measured", "n/a"
		return t
	}
	t.measured = fmt.Sprintf("%.2f× (%.0f vs %.0f tps)", r.tps/base.tps, r.tps, base.tps)
	t.verdict = verdict(r.tps >= factor*base.tps, true)
	if r.errors || base.errors {
		t.measured += ", but the runs had errors: not a valid comparison"
		t.verdict = "MISS"
	}
	return t
}

func (b *bench) targets() []target {
	var ts []target
	stratum := []struct{ target, label string }{{"stratum-shared", "shared tenant"}, {"stratum-schema", "schema tenant"}}
	for _, s := range stratum {
		for _, c := range []int{16, 64} {
			r, rok := b.find(s.target, "simple", c)
			p, pok := b.find("pgbouncer", "simple", c)
			t := target{goal: fmt.Sprintf("%s, simple, %d clients: TPS ≥ 1.0× PgBouncer", s.label, c)}
			ts = append(ts, check(t, r, rok, p, pok, 1.0))
		}
	}
	for _, s := range stratum {
		for _, c := range b.opt.clients {
			r, rok := b.find(s.target, "prepared", c)
			d, dok := b.find("direct", "prepared", c)
			t := target{goal: fmt.Sprintf("%s, prepared, %d clients: TPS ≥ 0.8× direct (through %s pooling)", s.label, c, b.poolMode)}
			ts = append(ts, check(t, r, rok, d, dok, 0.8))
		}
	}
	m, mok := b.find("go-multi", "simple", 64)
	s, sok := b.find("go-single", "simple", 64)
	t := target{goal: fmt.Sprintf("%d tenants, 64 clients: TPS ≥ 0.7× single tenant (same Go load)", b.opt.mtTenants)}
	ts = append(ts, check(t, m, mok, s, sok, 0.7))
	t = target{goal: "memory per idle client connection ≤ 16 KiB"}
	switch {
	case b.idleErr != nil:
		t.measured = fmt.Sprintf("not measured (%v)", b.idleErr)
		t.verdict = "n/a"
	case b.idle == nil:
		t.measured, t.verdict = "not measured", "n/a"
	default:
		per := b.idle.perConnKiB()
		t.measured = fmt.Sprintf("%.1f KiB (%d idle connections)", per, b.idle.opened)
		t.verdict = verdict(per <= 16, true)
	}
	return append(ts, t)
}

func cmdOut(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

// report prints the table and the targets and writes them as markdown.
func (b *bench) report() error {
	rows := b.rows()
	ts := b.targets()

	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tprotocol\tclients\tTPS\tavg ms\tp99 ms\tvs direct\tvs PgBouncer\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.target, r.protocol, r.clients, r.tps, r.avg, r.p99, r.vsDirect, r.vsPgb)
	}
	tw.Flush()
	for _, r := range rows {
		if r.note != "" {
			fmt.Printf("  %s %s %s: %s\n", r.target, r.protocol, r.clients, r.note)
		}
	}
	fmt.Println()
	fmt.Println("Targets:")
	for _, t := range ts {
		fmt.Printf("  %-4s  %s: %s\n", t.verdict, t.goal, t.measured)
	}
	if b.idle != nil && b.idleErr == nil {
		fmt.Println()
		fmt.Println(b.idleText())
	}
	if b.moves != nil {
		b.moves.printMoves()
	}

	md := b.markdown(rows, ts)
	if err := os.MkdirAll(b.opt.outDir, 0o755); err != nil {
		return err
	}
	name := filepath.Join(b.opt.outDir, b.started.Format("20060102T150405Z")+".md")
	if err := os.WriteFile(name, []byte(md), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(b.opt.outDir, "latest.md"), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Println()
	fmt.Println("wrote", name, "and", filepath.Join(b.opt.outDir, "latest.md"))
	return nil
}

func (b *bench) idleText() string {
	ir := b.idle
	s := fmt.Sprintf("Memory: opened %d of %d idle client connections (pgx, tenant bench_shared); "+
		"proxy VmRSS %d KiB before, %d KiB after: (after − before) / %d = %.1f KiB per idle client; "+
		"PostgreSQL then had %d client backends in database %s.",
		ir.opened, ir.wanted, ir.beforeKiB, ir.afterKiB, ir.opened, ir.perConnKiB(), ir.backends, sharedDB)
	if ir.opened < ir.wanted {
		s += fmt.Sprintf(" Stopped at the first refusal: %s.", ir.firstErr)
	}
	if b.poolMode == "session" {
		s += " In session pooling every idle client holds a backend connection, so PostgreSQL's " +
			"max_connections (300) caps how many can be open."
	}
	return s
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func (b *bench) markdown(rows []row, ts []target) string {
	var sb strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&sb, format, args...) }
	dirty := ""
	if cmdOut("git", "status", "--porcelain", "--untracked-files=no") != "" {
		dirty = " (with uncommitted changes)"
	}
	p("# stratum-proxy benchmark, %s\n\n", b.started.Format(time.RFC3339))
	p("Commit %s%s. %s, %d CPUs (%s). PostgreSQL %s, %s, pgbench %s.\n\n",
		cmdOut("git", "rev-parse", "--short", "HEAD"), dirty, runtime.Version(), runtime.NumCPU(),
		cmdOut("uname", "-sr"), b.pgVersion, b.pgbVersion, strings.TrimPrefix(cmdOut(b.pgbench, "--version"), "pgbench (PostgreSQL) "))
	p("Load average %s before the measurements, %s after (the benchmark shares the machine with anything else running).\n\n",
		b.loadBefore, b.loadAfter)
	p("Each run: %v, select-only (`bench/select_only.sql`: one `SELECT abalance FROM pgbench_accounts WHERE aid = :aid`), ",
		b.opt.duration)
	p("`pgbench -n -f … -M simple|prepared -c N -j min(2,N) -T …`, everything on one machine. ")
	slices.Sort(b.poolKeys)
	p("Pool size %d everywhere one applies: PgBouncer `default_pool_size`, the proxy's `pool` (%s). ",
		b.opt.poolSize, strings.Join(b.poolKeys, ", "))
	if b.poolMode == "session" {
		p("The proxy ran in **session pooling** (a backend per client session; `pool.mode` is not in config.example.yaml yet), ")
		p("PgBouncer in transaction pooling.\n\n")
	} else {
		p("The proxy ran with `pool.mode: %s`, PgBouncer in transaction pooling.\n\n", b.poolMode)
	}

	p("| target | protocol | clients | TPS | avg ms | p99 ms | vs direct | vs PgBouncer | notes |\n")
	p("|---|---|--:|--:|--:|--:|--:|--:|---|\n")
	for _, r := range rows {
		p("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.target, r.protocol, r.clients, r.tps, r.avg, r.p99,
			r.vsDirect, r.vsPgb, mdEscape(r.note))
	}
	p("\n## Targets\n\n| | goal | measured |\n|---|---|---|\n")
	for _, t := range ts {
		p("| %s | %s | %s |\n", t.verdict, mdEscape(t.goal), mdEscape(t.measured))
	}
	if b.idle != nil && b.idleErr == nil {
		p("\n%s\n", b.idleText())
	}
	if b.moves != nil {
		b.movesMarkdown(&sb)
	}
	p("\n## How it was measured\n\n")
	p("- **direct PostgreSQL**: a private cluster (pgcluster; max_connections=300, shared_buffers=256MB, fsync off), ")
	p("database `%s` filled by `pgbench -i -s %d`, as the superuser.\n", directDB, b.opt.scale)
	p("- **PgBouncer**: transaction mode in front of the same database, SCRAM with a userlist.")
	if !b.pgbPrepared {
		p(" Its prepared runs are n/a: PgBouncer < 1.21 cannot keep prepared statements in transaction mode.")
	}
	p("\n- **stratum shared tenant**: tenant `bench_shared` (shared isolation) over the app table `pgbench_accounts` ")
	p("(pgbench's accounts plus `tenant_id`, applied with `stratum-proxy schema apply`, so under row-level security), ")
	p("%d rows loaded through the proxy with INSERT … SELECT; the shared table also holds the mt_* tenants' rows.\n", b.opt.sharedRows)
	p("- **stratum schema tenant**: tenant `bench_schema` (schema isolation), `pgbench -i -s %d` run through the proxy.\n", b.opt.scale)
	p("- Proxy runs connect as proxy user `bench` with `PGOPTIONS=-c stratum.tenant=<slug>`; the proxy is restarted ")
	p("(empty pools) after loading, after any proxy run with errors, and before each Go phase and the memory measurement. ")
	p("A pgbench run not finished %v after its end is killed and reported as hung; a Go query unanswered for %v is an error.\n",
		hangGrace, queryTimeout)
	p("- **p99** comes from pgbench's per-transaction log (`-l`, latency column), nearest rank; **avg** is pgbench's ")
	p("`latency average`; **TPS** is pgbench's `tps … (without initial connection time)`.\n")
	p("- **Go rows** (%d clients): pgbench cannot vary startup parameters per client, so a Go/pgx generator ", 64)
	p("(simple protocol) runs the same select; each client reconnects every %d transactions, client i in round k ", b.opt.reconnect)
	p("using tenant (i + 64·k) mod n, so all %d tenants are touched. The single-tenant row is the same generator with ", b.opt.mtTenants)
	p("every client on `bench_shared`. TPS counts reconnection time; avg and p99 are per query round trip. ")
	p("Their \"vs direct\" is against the same generator on direct PostgreSQL (superuser, `%s`); ", directDB)
	p("they have no PgBouncer ratio.\n")
	p("- **Memory**: after a fresh proxy start and 4 warm-up sessions, %d idle pgx connections to `bench_shared` ", b.opt.idleConns)
	p("are opened (16 at a time, stopping at the first refusal); per-client memory is the growth of the proxy's ")
	p("VmRSS (/proc/<pid>/status) divided by the connections opened.\n")
	return sb.String()
}
