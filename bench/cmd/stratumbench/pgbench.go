package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// endpoint is where a pgbench run connects, and as whom.
type endpoint struct {
	host     string
	port     int
	user     string
	password string
	database string
	options  string // PGOPTIONS, e.g. -c stratum.tenant=bench_schema
}

func (e endpoint) env() []string {
	env := []string{}
	for _, kv := range os.Environ() {
		// Our own settings win; nothing from the caller's libpq environment
		// may change what is measured.
		if strings.HasPrefix(kv, "PG") {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"PGHOST="+e.host, "PGPORT="+strconv.Itoa(e.port), "PGUSER="+e.user,
		"PGPASSWORD="+e.password, "PGDATABASE="+e.database, "PGSSLMODE=disable",
		"PGOPTIONS="+e.options, "PGCONNECT_TIMEOUT=30")
}

// result is one measured run.
type result struct {
	target   string // direct, pgbouncer, stratum-shared, …
	label    string // how the table names it
	protocol string // simple or prepared
	clients  int
	tps      float64
	avgMs    float64
	p99Ms    float64
	txns     int64
	note     string // errors, n/a reasons, how measured
	ok       bool   // numbers are valid
	errors   bool   // something failed during the run: the numbers are suspect
	tool     string // pgbench or go
}

// hangGrace is how long a run may overrun its duration before it counts as hung.
const hangGrace = 30 * time.Second

var (
	tpsRe    = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	latRe    = regexp.MustCompile(`latency average = ([0-9.]+) ms`)
	txnsRe   = regexp.MustCompile(`number of transactions actually processed: ([0-9]+)`)
	failedRe = regexp.MustCompile(`number of failed transactions: ([0-9]+)`)
)

// pgbenchInit runs pgbench -i at scale into the endpoint's database.
func pgbenchInit(ctx context.Context, pgbench string, ep endpoint, scale int) error {
	cmd := exec.CommandContext(ctx, pgbench, "-i", "-q", "-s", strconv.Itoa(scale))
	cmd.Env = ep.env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgbench -i: %w\n%s", err, lastLines(string(out), 15))
	}
	return nil
}

// pgbenchRun runs the select-only script against ep and parses the result;
// p99 comes from the per-transaction log (-l), column 3 (latency in µs).
func pgbenchRun(ctx context.Context, pgbench, script, logDir string, ep endpoint, proto string, clients int, dur time.Duration, name string) result {
	r := result{protocol: proto, clients: clients, tool: "pgbench"}
	prefix := filepath.Join(logDir, name)
	jobs := min(2, clients)
	args := []string{"-n", "-f", script, "-M", proto, "-c", strconv.Itoa(clients), "-j", strconv.Itoa(jobs),
		"-T", strconv.Itoa(int(math.Max(1, math.Round(dur.Seconds())))), "-l", "--log-prefix=" + prefix}
	// A client whose answer never comes keeps pgbench waiting past -T; give
	// up on it a while after the run should have ended.
	runCtx, cancel := context.WithTimeout(ctx, dur+hangGrace)
	defer cancel()
	cmd := exec.CommandContext(runCtx, pgbench, args...)
	cmd.Env = ep.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	out := stdout.String()
	defer removeLogs(prefix)
	if runCtx.Err() != nil && ctx.Err() == nil {
		_, n, _ := p99FromLogs(prefix)
		r.note = fmt.Sprintf("hung: pgbench had not finished %v after the end of the run and was killed "+
			"(%d transactions logged before)", hangGrace, n)
		return r
	}
	m := tpsRe.FindStringSubmatch(out)
	if m == nil {
		var parts []string
		if runErr != nil {
			parts = append(parts, runErr.Error())
		}
		if msg := firstErrorLine(stderr.String()); msg != "" {
			parts = append(parts, msg)
		}
		if tail := strings.TrimSpace(lastLines(out, 2)); tail != "" {
			parts = append(parts, "output ends: "+strings.ReplaceAll(tail, "\n", " / "))
		}
		r.note = "failed: " + strings.Join(parts, "; ")
		return r
	}
	r.tps, _ = strconv.ParseFloat(m[1], 64)
	if m := latRe.FindStringSubmatch(out); m != nil {
		r.avgMs, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := txnsRe.FindStringSubmatch(out); m != nil {
		r.txns, _ = strconv.ParseInt(m[1], 10, 64)
	}
	r.ok = true
	var notes []string
	if m := failedRe.FindStringSubmatch(out); m != nil && m[1] != "0" {
		notes = append(notes, m[1]+" failed transactions")
		r.errors = true
	}
	if runErr != nil {
		notes = append(notes, "pgbench: "+firstErrorLine(stderr.String()))
		r.errors = true
	}
	p99, n, err := p99FromLogs(prefix)
	if err != nil {
		notes = append(notes, "p99: "+err.Error())
	} else {
		r.p99Ms = p99
		if r.txns == 0 {
			r.txns = n
		}
	}
	r.note = strings.Join(notes, "; ")
	return r
}

// p99FromLogs reads every pgbench log file of the run (one per thread) and
// returns the 99th percentile latency in ms and the number of transactions.
func p99FromLogs(prefix string) (float64, int64, error) {
	files, _ := filepath.Glob(prefix + ".*")
	if len(files) == 0 {
		return 0, 0, fmt.Errorf("no pgbench log files at %s.*", prefix)
	}
	var lat []int32
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return 0, 0, err
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := bytes.Fields(sc.Bytes())
			if len(fields) < 3 {
				continue
			}
			us, err := strconv.ParseInt(string(fields[2]), 10, 64)
			if err != nil {
				continue // "failed" / "skipped" entries
			}
			lat = append(lat, int32(min(us, math.MaxInt32)))
		}
		fh.Close()
	}
	if len(lat) == 0 {
		return 0, 0, fmt.Errorf("empty pgbench logs")
	}
	return float64(percentile(lat, 0.99)) / 1000, int64(len(lat)), nil
}

// percentile sorts lat and returns its q-quantile (nearest rank).
func percentile(lat []int32, q float64) int32 {
	slices.Sort(lat)
	i := int(math.Ceil(q*float64(len(lat)))) - 1
	return lat[max(0, min(i, len(lat)-1))]
}

func removeLogs(prefix string) {
	files, _ := filepath.Glob(prefix + ".*")
	for _, f := range files {
		os.Remove(f)
	}
}

func firstErrorLine(s string) string {
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, "error") || strings.Contains(line, "FATAL") || strings.Contains(line, "aborted") {
			return strings.TrimSpace(line)
		}
	}
	return strings.TrimSpace(lastLines(s, 1))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
