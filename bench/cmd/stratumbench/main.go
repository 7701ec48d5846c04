package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"gopkg.in/yaml.v3"

	"github.com/stratum-hq/stratum-proxy/internal/pgcluster"
	"github.com/stratum-hq/stratum-proxy/internal/secrets"
	"github.com/stratum-hq/stratum-proxy/internal/workdir"
)

// options are the command line flags.
type options struct {
	duration   time.Duration
	clients    []int
	poolSize   int
	scale      int
	mtTenants  int
	mtRows     int
	sharedRows int
	idleConns  int
	reconnect  int
	outDir     string
	keep       bool
	poolMode   string
	src        string
	phases     map[string]bool
	race       bool
	backendCap int
	moveRows   int
	// moveFinalizeAfter is how long a switched move waits before its
	// finalize (0: at once), to tell the switch's effects from finalize's.
	moveFinalizeAfter time.Duration
	// moveCopyRate is the proxy's moves.copy_rows_per_second (0: none).
	moveCopyRate int64
	moveWrite    int
}

// allPhases are the measured phases, in the order they run.
var allPhases = []string{"direct", "pgbouncer", "shared", "schema", "go", "memory", "moves"}

func (o options) want(phase string) bool { return o.phases[phase] }

// wantLoad reports whether a phase that reads the pgbench data (everything
// but the move run) is wanted.
func (o options) wantLoad() bool {
	for _, ph := range allPhases {
		if ph != "moves" && o.phases[ph] {
			return true
		}
	}
	return false
}

// bench is one benchmark run and everything it started.
type bench struct {
	opt      options
	tmp      string
	cleanups workdir.Cleanups

	pgbench, pgbouncer string

	cluster *pgcluster.Cluster

	proxyBin, proxyCfg string
	proxyEnv           []string
	proxy              *proc
	proxyPort          int
	adminPort          int
	adminKey           string
	poolKeys           []string // pool keys set in the generated config, "k=v"
	poolMode           string   // "session" unless the config knows pool.mode

	pgbPort     int
	pgbVersion  string
	pgbPrepared bool // PgBouncer ≥ 1.21: prepared statements in transaction mode

	pgVersion string
	results   []result
	idle      *idleResult
	moves     *moveBench
	idleErr   error
	started   time.Time
	// loadavg is /proc/loadavg before and after the measured phases: the
	// benchmark shares the machine with whatever else runs on it.
	loadBefore, loadAfter string
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

const (
	benchUser     = "bench"
	benchPassword = "bench"
	sharedDB      = "app"
	catalogDB     = "stratum_catalog"
	directDB      = "bench_direct"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "stratumbench:", err)
		os.Exit(1)
	}
}

func run() error {
	var opt options
	clients := "1,16,64"
	flag.DurationVar(&opt.duration, "duration", 10*time.Second, "length of each measured run (pgbench -T, whole seconds)")
	flag.StringVar(&clients, "clients", clients, "client counts for the pgbench runs")
	flag.IntVar(&opt.poolSize, "pool-size", 20, "pool size wherever one applies: PgBouncer default_pool_size, the proxy's pool")
	flag.IntVar(&opt.scale, "scale", 10, "pgbench -i scale for direct, PgBouncer and the schema tenant")
	flag.IntVar(&opt.mtTenants, "tenants", 200, "tenants of the multi-tenant run")
	flag.IntVar(&opt.mtRows, "tenant-rows", 10000, "pgbench_accounts rows per multi-tenant tenant")
	flag.IntVar(&opt.sharedRows, "shared-rows", 100000, "pgbench_accounts rows of the shared tenant")
	flag.IntVar(&opt.idleConns, "idle-conns", 1000, "idle client connections for the memory measurement")
	flag.IntVar(&opt.reconnect, "reconnect-every", 100, "transactions per connection in the Go load runs")
	flag.StringVar(&opt.poolMode, "pool-mode", "transaction", "the proxy's pool.mode, when its configuration has that key")
	flag.StringVar(&opt.src, "src", ".", "source tree of the proxy to build and read config.example.yaml from "+
		"(e.g. a `git archive` export of another commit)")
	flag.IntVar(&opt.backendCap, "backend-max-conns", 0, "the proxy's backends.main.max_connections, when its configuration has that key (0: its default)")
	flag.BoolVar(&opt.race, "race", false, "build the proxy with the race detector (to hunt bugs; the numbers then mean little)")
	flag.StringVar(&opt.outDir, "out", "bench/results", "where the markdown results go")
	flag.BoolVar(&opt.keep, "keep", false, "keep the temporary directory (logs, configs, data) after the run")
	phases := strings.Join(allPhases, ",")
	flag.StringVar(&phases, "phases", phases, "which phases to measure (a subset, for a quick look; -phases moves runs only the placement moves)")
	moves := true
	flag.BoolVar(&moves, "moves", moves, "run the placement-move benchmark (phase moves); -moves=false skips it")
	flag.IntVar(&opt.moveRows, "move-rows", 1000000, "rows of the moved tenant mover's orders table")
	flag.DurationVar(&opt.moveFinalizeAfter, "move-finalize-after", 0, "wait this long after a move's switch before finalizing it")
	flag.Int64Var(&opt.moveCopyRate, "move-copy-rate", 0, "the proxy's moves.copy_rows_per_second (0: no limit)")
	flag.IntVar(&opt.moveWrite, "move-writers", 3, "writer goroutines on mover during the moves")
	flag.Parse()
	opt.phases = map[string]bool{}
	for _, ph := range strings.Split(phases, ",") {
		ph = strings.TrimSpace(ph)
		if !slices.Contains(allPhases, ph) {
			return fmt.Errorf("-phases: unknown phase %q (have %s)", ph, strings.Join(allPhases, ", "))
		}
		opt.phases[ph] = true
	}
	if !moves {
		delete(opt.phases, "moves")
	}
	if opt.moveRows < 1 || opt.moveWrite < 1 {
		return errors.New("-move-rows and -move-writers must be at least 1")
	}
	for _, s := range strings.Split(clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-clients: %q is not a client count", s)
		}
		opt.clients = append(opt.clients, n)
	}
	if opt.duration < time.Second {
		return errors.New("-duration must be at least 1s")
	}
	if b, err := os.ReadFile("go.mod"); err != nil || !bytes.Contains(b, []byte("module github.com/stratum-hq/stratum-proxy")) {
		return errors.New("run stratumbench from the stratum-proxy repository root (make bench does)")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		// A second Ctrl-C kills us outright; the children have a
		// parent-death signal, so they go too.
		signal.Stop(sigs)
		fmt.Fprintf(os.Stderr, "\nstratumbench: %v: stopping everything it started…\n", s)
		cancel()
	}()

	b := &bench{opt: opt, started: time.Now().UTC()}
	defer b.cleanup()
	if err := b.setup(ctx); err != nil {
		return err
	}
	if err := b.measure(ctx); err != nil {
		return err
	}
	return b.report()
}

func (b *bench) onCleanup(f func()) { b.cleanups.Add(f) }

// cleanup stops everything in reverse order of starting and removes the
// temporary directory.
func (b *bench) cleanup() { b.cleanups.Run(b.tmp, b.opt.keep) }

var step = workdir.Step

// setup starts PostgreSQL and the proxy, creates the tenants and loads data.
func (b *bench) setup(ctx context.Context) error {
	var err error
	if b.pgbench, err = findTool("pgbench", "/usr/lib/postgresql/15/bin/pgbench"); err != nil {
		return err
	}
	if b.opt.want("pgbouncer") {
		if b.pgbouncer, err = findTool("pgbouncer", "/usr/sbin/pgbouncer"); err != nil {
			return fmt.Errorf("%w (bench/install-deps installs it)", err)
		}
	}
	if b.tmp, err = os.MkdirTemp("", "stratumbench-"); err != nil {
		return err
	}
	// PostgreSQL and PgBouncer run as the postgres OS user: they must reach
	// their directories inside.
	if err := os.Chmod(b.tmp, 0o755); err != nil {
		return err
	}

	step("building the proxy")
	b.proxyBin = filepath.Join(b.tmp, "stratum-proxy")
	goTool, err := findTool("go", "/usr/local/go/bin/go")
	if err != nil {
		return err
	}
	args := []string{"build", "-o", b.proxyBin}
	if b.opt.race {
		args = append(args, "-race")
	}
	build := exec.CommandContext(ctx, goTool, append(args, "./cmd/stratum-proxy")...)
	build.Dir = b.opt.src
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/stratum-proxy in %s: %w\n%s", b.opt.src, err, out)
	}

	step("starting PostgreSQL in %s", b.tmp)
	b.cluster, b.pgVersion, err = b.cleanups.StartPostgres(ctx, filepath.Join(b.tmp, "pg"),
		map[string]string{"max_connections": "300", "shared_buffers": "256MB"}, catalogDB, directDB)
	if err != nil {
		return err
	}

	if err := b.writeProxyConfig(); err != nil {
		return err
	}
	if err := b.startProxy(ctx); err != nil {
		return err
	}
	if err := b.createTenants(ctx); err != nil {
		return err
	}
	if b.opt.wantLoad() {
		if err := b.loadData(ctx); err != nil {
			return err
		}
	}
	if b.opt.want("moves") {
		return b.setupMoves(ctx)
	}
	return nil
}

func findTool(name, fallback string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if _, err := os.Stat(fallback); err == nil {
		return fallback, nil
	}
	return "", fmt.Errorf("%s not found on PATH nor at %s", name, fallback)
}

// writeProxyConfig writes the serve configuration and the environment that
// holds its secrets. Pool keys follow config.example.yaml: pool.mode is set to
// transaction only when the example documents it, and integer pool keys that
// are sizes get the common pool size.
func (b *bench) writeProxyConfig() error {
	var err error
	if b.proxyPort, err = freePort(); err != nil {
		return err
	}
	if b.adminPort, err = freePort(); err != nil {
		return err
	}
	keys, err := secrets.NewKeyText("bench1")
	if err != nil {
		return err
	}
	b.adminKey = "stk_bench_" + workdir.Token()
	b.proxyEnv = append(os.Environ(),
		"STRATUM_CATALOG_URL="+b.cluster.URL(catalogDB),
		"STRATUM_SECRET_KEYS="+keys,
		"STRATUM_BACKEND_MAIN_PASSWORD="+b.cluster.Password(),
		"STRATUM_BOOTSTRAP_ADMIN_KEY="+b.adminKey,
	)
	// The pool keys follow the example: the harness sets those it finds there
	// (the proxy refuses unknown keys).
	pool := map[string]any{}
	b.poolMode = "session"
	ex, err := examplePoolKeys(filepath.Join(b.opt.src, "config.example.yaml"))
	if err != nil {
		return fmt.Errorf("reading the pool keys of config.example.yaml: %w", err)
	}
	for k, v := range ex {
		switch {
		case k == "mode":
			pool[k] = b.opt.poolMode
			b.poolMode = b.opt.poolMode
		case isInt(v):
			// Every integer pool key is a connection count
			// (max_per_tenant, max_idle_per_tenant…): the pool size.
			pool[k] = b.opt.poolSize
		}
	}
	for k, v := range pool {
		b.poolKeys = append(b.poolKeys, fmt.Sprintf("%s=%v", k, v))
	}
	mainBackend := map[string]any{
		"host": b.cluster.Host(), "port": b.cluster.Port(), "admin_user": b.cluster.SuperUser(),
		"admin_password_env": "STRATUM_BACKEND_MAIN_PASSWORD", "admin_database": "postgres", "sslmode": "disable",
	}
	if b.opt.backendCap > 0 {
		if !exampleHasBackendKey(filepath.Join(b.opt.src, "config.example.yaml"), "max_connections") {
			return errors.New("-backend-max-conns: this tree's config.example.yaml has no backends.*.max_connections")
		}
		mainBackend["max_connections"] = b.opt.backendCap
		b.poolKeys = append(b.poolKeys, fmt.Sprintf("backends.main.max_connections=%d", b.opt.backendCap))
	}
	cfg := map[string]any{
		"listen":                  fmt.Sprintf("127.0.0.1:%d", b.proxyPort),
		"admin_listen":            fmt.Sprintf("127.0.0.1:%d", b.adminPort),
		"catalog":                 map[string]any{"url_env": "STRATUM_CATALOG_URL"},
		"secrets":                 map[string]any{"keys_env": "STRATUM_SECRET_KEYS"},
		"bootstrap_admin_key_env": "STRATUM_BOOTSTRAP_ADMIN_KEY",
		"backends":                map[string]any{"main": mainBackend},
		"shared":                  map[string]any{"backend": "main", "database": sharedDB},
		"pool":                    pool,
		"shutdown_grace":          "2s",
		"log":                     map[string]any{"level": "info", "format": "json"},
	}
	if b.opt.moveCopyRate > 0 {
		cfg["moves"] = map[string]any{"copy_rows_per_second": b.opt.moveCopyRate}
		b.poolKeys = append(b.poolKeys, fmt.Sprintf("moves.copy_rows_per_second=%d", b.opt.moveCopyRate))
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	b.proxyCfg = filepath.Join(b.tmp, "stratum-proxy.yaml")
	return os.WriteFile(b.proxyCfg, out, 0o600)
}

// examplePoolKeys returns the keys (and example values) of the pool section
// of config.example.yaml.
func examplePoolKeys(path string) (map[string]any, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Pool map[string]any `yaml:"pool"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	return doc.Pool, nil
}

// exampleHasBackendKey reports whether some backend of config.example.yaml
// has key.
func exampleHasBackendKey(path, key string) bool {
	raw, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	var doc struct {
		Backends map[string]map[string]any `yaml:"backends"`
	}
	if yaml.Unmarshal(raw, &doc) != nil {
		return false
	}
	for _, b := range doc.Backends {
		if _, ok := b[key]; ok {
			return true
		}
	}
	return false
}

func isInt(v any) bool {
	switch v.(type) {
	case int, int64, uint64:
		return true
	}
	return false
}

// startProxy starts `stratum-proxy serve` and waits for its /readyz.
func (b *bench) startProxy(ctx context.Context) error {
	step("starting stratum-proxy on 127.0.0.1:%d (admin %d, pool mode %s)", b.proxyPort, b.adminPort, b.poolMode)
	cmd := exec.Command(b.proxyBin, "serve", "--config", b.proxyCfg)
	cmd.Env = b.proxyEnv
	p, err := startProc("stratum-proxy", cmd, filepath.Join(b.tmp, "stratum-proxy.log"))
	if err != nil {
		return err
	}
	b.proxy = p
	b.onCleanup(func() { p.stop(15 * time.Second) })
	deadline := time.Now().Add(60 * time.Second)
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", b.adminPort)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if p.exited() {
			return fmt.Errorf("stratum-proxy exited (%v); log %s ends:\n%s", p.Err, p.log, logTail(p.log, 20))
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("stratum-proxy not ready after 60s; log ends:\n%s", logTail(p.log, 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// restartProxy stops and starts the proxy, so that a phase starts with empty
// backend pools (idle backends of earlier phases would count against
// max_connections) and a fresh process.
func (b *bench) restartProxy(ctx context.Context) error {
	if b.proxy != nil {
		b.proxy.stop(15 * time.Second)
		if b.proxy.Err != nil && !strings.Contains(b.proxy.Err.Error(), "signal") {
			step("note: stratum-proxy exited with %v", b.proxy.Err)
		}
	}
	return b.startProxy(ctx)
}

// api calls the admin API; want is the expected status.
func (b *bench) api(ctx context.Context, method, path string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, fmt.Sprintf("http://127.0.0.1:%d%s", b.adminPort, path), rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+b.adminKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(raw))
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

func mtSlug(i int) string { return fmt.Sprintf("mt_%03d", i) }

// createTenants makes the tenant tree through the admin API: bench_root
// (shared) with bench_shared, bench_schema and mt_000… under it, and the
// proxy user bench bound to bench_root. Then the app schema: a
// pgbench_accounts with tenant_id, applied with `stratum-proxy schema apply`.
func (b *bench) createTenants(ctx context.Context) error {
	step("applying the app schema (pgbench_accounts and orders, with tenant_id) with stratum-proxy schema apply")
	ddl := filepath.Join(b.tmp, "bench_schema.sql")
	if err := os.WriteFile(ddl, []byte(`CREATE TABLE pgbench_accounts (
    aid       int NOT NULL,
    tenant_id uuid NOT NULL,
    bid       int,
    abalance  int,
    filler    char(84),
    PRIMARY KEY (tenant_id, aid)
);
CREATE TABLE orders (
    id        bigint NOT NULL,
    tenant_id uuid NOT NULL,
    amount    bigint NOT NULL DEFAULT 0,
    note      text,
    PRIMARY KEY (tenant_id, id)
);
`), 0o644); err != nil {
		return err
	}
	apply := exec.CommandContext(ctx, b.proxyBin, "schema", "apply", "--config", b.proxyCfg, ddl)
	apply.Env = b.proxyEnv
	if out, err := apply.CombinedOutput(); err != nil {
		return fmt.Errorf("stratum-proxy schema apply: %w\n%s", err, out)
	}

	mt := b.opt.mtTenants
	if !b.opt.wantLoad() {
		mt = 0 // the move run needs none of them
	}
	step("creating tenants bench_root, bench_shared, bench_schema and %d tenants mt_* through the admin API", mt)
	type spec struct {
		Slug      string `json:"slug"`
		Name      string `json:"name"`
		Parent    string `json:"parent,omitempty"`
		Isolation string `json:"isolation"`
	}
	for _, s := range []spec{
		{Slug: "bench_root", Name: "bench root", Isolation: "shared"},
		{Slug: "bench_shared", Name: "bench shared", Parent: "bench_root", Isolation: "shared"},
		{Slug: "bench_schema", Name: "bench schema", Parent: "bench_root", Isolation: "schema"},
	} {
		if err := b.api(ctx, http.MethodPost, "/v1/tenants", s, http.StatusCreated, nil); err != nil {
			return err
		}
	}
	err := parallel(ctx, mt, 4, func(i int) error {
		return b.api(ctx, http.MethodPost, "/v1/tenants",
			spec{Slug: mtSlug(i), Name: mtSlug(i), Parent: "bench_root", Isolation: "shared"}, http.StatusCreated, nil)
	})
	if err != nil {
		return err
	}
	return b.api(ctx, http.MethodPost, "/v1/users", map[string]any{
		"name": benchUser, "password": benchPassword, "tenant": "bench_root", "can_switch": false,
	}, http.StatusCreated, nil)
}

// parallel runs f(0…n-1) on workers goroutines and returns the first error.
func parallel(ctx context.Context, n, workers int, f func(i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					cancel(err)
				}
			}
		}()
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx)
}

func (b *bench) directEndpoint() endpoint {
	return endpoint{host: b.cluster.Host(), port: b.cluster.Port(), user: b.cluster.SuperUser(),
		password: b.cluster.Password(), database: directDB}
}

func (b *bench) proxyEndpoint(tenant string) endpoint {
	return endpoint{host: "127.0.0.1", port: b.proxyPort, user: benchUser, password: benchPassword,
		database: sharedDB, options: "-c stratum.tenant=" + tenant}
}

func (b *bench) proxyConn(ctx context.Context, tenant string) (*pgx.Conn, error) {
	cfg, err := proxyConnConfig("127.0.0.1", b.proxyPort, benchUser, benchPassword, tenant)
	if err != nil {
		return nil, err
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// loadData fills every database the runs read: pgbench -i for direct (and so
// PgBouncer) and, through the proxy, for the schema tenant; INSERT … SELECT
// through each shared tenant's session for bench_shared and mt_*.
func (b *bench) loadData(ctx context.Context) error {
	step("pgbench -i -s %d into %s (direct PostgreSQL, also behind PgBouncer)", b.opt.scale, directDB)
	if err := pgbenchInit(ctx, b.pgbench, b.directEndpoint(), b.opt.scale); err != nil {
		return err
	}

	// The schema tenant got the app schema's pgbench_accounts, owned by the
	// provisioning role, when it was created; pgbench -i must drop and
	// recreate its tables, so remove that one first.
	var schemaTenant struct {
		Schema string `json:"schema"`
	}
	if err := b.api(ctx, http.MethodGet, "/v1/tenants/bench_schema", nil, http.StatusOK, &schemaTenant); err != nil {
		return err
	}
	app, err := pgx.Connect(ctx, b.cluster.URL(sharedDB))
	if err != nil {
		return err
	}
	defer app.Close(context.Background())
	if schemaTenant.Schema == "" || schemaTenant.Schema == "public" {
		return fmt.Errorf("bench_schema has schema %q, expected a schema of its own", schemaTenant.Schema)
	}
	if _, err := app.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{schemaTenant.Schema, "pgbench_accounts"}.Sanitize()); err != nil {
		return err
	}
	step("pgbench -i -s %d through the proxy as schema tenant bench_schema (schema %s)", b.opt.scale, schemaTenant.Schema)
	if err := pgbenchInit(ctx, b.pgbench, b.proxyEndpoint("bench_schema"), b.opt.scale); err != nil {
		return fmt.Errorf("through the proxy: %w", err)
	}

	insert := func(tenant string, rows int) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		conn, err := b.proxyConn(ctx, tenant)
		if err != nil {
			return fmt.Errorf("connecting as tenant %s: %w", tenant, err)
		}
		defer conn.Close(context.Background())
		_, err = conn.Exec(ctx, fmt.Sprintf(`INSERT INTO pgbench_accounts (aid, bid, abalance, filler)
			SELECT g, (g - 1) / 100000 + 1, 0, '' FROM generate_series(1, %d) g`, rows))
		if err != nil {
			return fmt.Errorf("loading tenant %s: %w", tenant, err)
		}
		return nil
	}
	step("loading %d rows for bench_shared and %d rows for each of %d mt_* tenants through the proxy",
		b.opt.sharedRows, b.opt.mtRows, b.opt.mtTenants)
	if err := insert("bench_shared", b.opt.sharedRows); err != nil {
		return err
	}
	if err := parallel(ctx, b.opt.mtTenants, 4, func(i int) error { return insert(mtSlug(i), b.opt.mtRows) }); err != nil {
		return err
	}
	if _, err := app.Exec(ctx, "VACUUM ANALYZE public.pgbench_accounts"); err != nil {
		return err
	}
	var n int64
	if err := app.QueryRow(ctx, "SELECT count(*) FROM public.pgbench_accounts").Scan(&n); err != nil {
		return err
	}
	if want := int64(b.opt.sharedRows + b.opt.mtRows*b.opt.mtTenants); n != want {
		return fmt.Errorf("shared pgbench_accounts holds %d rows, want %d", n, want)
	}
	return nil
}

// startPgBouncer writes pgbouncer.ini and userlist.txt and starts PgBouncer
// as the postgres OS user (it refuses root), in transaction mode.
func (b *bench) startPgBouncer(ctx context.Context) (*proc, error) {
	out, err := exec.CommandContext(ctx, b.pgbouncer, "--version").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("pgbouncer --version: %w", err)
	}
	b.pgbVersion = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	b.pgbPrepared = versionAtLeast(b.pgbVersion, 1, 21)
	dir := filepath.Join(b.tmp, "pgbouncer")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if b.pgbPort, err = freePort(); err != nil {
		return nil, err
	}
	prepared := ""
	if b.pgbPrepared {
		prepared = "max_prepared_statements = 100\n"
	}
	ini := fmt.Sprintf(`[databases]
%s = host=%s port=%d dbname=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir = %s
auth_type = scram-sha-256
auth_file = %s
pool_mode = transaction
default_pool_size = %d
max_client_conn = 1000
logfile = %s
pidfile = %s
ignore_startup_parameters = extra_float_digits
%s`, directDB, b.cluster.Host(), b.cluster.Port(), directDB, b.pgbPort, dir,
		filepath.Join(dir, "userlist.txt"), b.opt.poolSize, filepath.Join(dir, "pgbouncer.log"),
		filepath.Join(dir, "pgbouncer.pid"), prepared)
	userlist := fmt.Sprintf("%q %q\n", b.cluster.SuperUser(), b.cluster.Password())
	iniPath := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(iniPath, []byte(ini), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "userlist.txt"), []byte(userlist), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(b.pgbouncer, iniPath)
	if os.Geteuid() == 0 {
		// What `runuser -u postgres -- pgbouncer` does, minus the PAM
		// session: we keep PgBouncer's own pid to stop it.
		uid, gid, err := postgresIDs()
		if err != nil {
			return nil, err
		}
		for _, p := range []string{dir, iniPath, filepath.Join(dir, "userlist.txt")} {
			if err := os.Chown(p, uid, gid); err != nil {
				return nil, err
			}
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		cmd.Env = append(os.Environ(), "HOME="+dir)
	}
	step("starting %s on 127.0.0.1:%d (transaction mode, default_pool_size %d)", b.pgbVersion, b.pgbPort, b.opt.poolSize)
	p, err := startProc("pgbouncer", cmd, filepath.Join(b.tmp, "pgbouncer.out"))
	if err != nil {
		return nil, err
	}
	b.onCleanup(func() { p.stop(10 * time.Second) })
	if err := waitTCP(fmt.Sprintf("127.0.0.1:%d", b.pgbPort), p, 30*time.Second); err != nil {
		return nil, err
	}
	return p, nil
}

var versionRe = regexp.MustCompile(`(\d+)\.(\d+)`)

func versionAtLeast(s string, major, minor int) bool {
	m := versionRe.FindStringSubmatch(s)
	if m == nil {
		return false
	}
	ma, _ := strconv.Atoi(m[1])
	mi, _ := strconv.Atoi(m[2])
	return ma > major || ma == major && mi >= minor
}

// measure runs every measured phase.
func (b *bench) measure(ctx context.Context) error {
	b.loadBefore = loadavg()
	defer func() { b.loadAfter = loadavg() }()
	// The proxy's pools still hold a backend per tenant loaded; start clean.
	if err := b.restartProxy(ctx); err != nil {
		return err
	}
	script, err := filepath.Abs("bench/select_only.sql")
	if err != nil {
		return err
	}
	logDir := filepath.Join(b.tmp, "pgbench-logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	protocols := []string{"simple", "prepared"}
	runAll := func(target, label string, ep endpoint, skip func(proto string) string) error {
		for _, proto := range protocols {
			for _, c := range b.opt.clients {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				var r result
				if why := skip(proto); why != "" {
					r = result{protocol: proto, clients: c, note: why, tool: "pgbench"}
				} else {
					r = pgbenchRun(ctx, b.pgbench, script, logDir, ep, proto, c, b.opt.duration,
						fmt.Sprintf("%s_%s_%d", target, proto, c))
					if ctx.Err() != nil {
						return ctx.Err()
					}
					if strings.HasPrefix(target, "stratum") && (!r.ok || r.note != "") {
						// Whatever broke must not spill into the next run.
						if b.proxy.exited() {
							r.note += fmt.Sprintf("; stratum-proxy died (%v), log: %s", b.proxy.Err,
								lastLines(logTail(b.proxy.log, 3), 1))
						}
						step("restarting stratum-proxy after a run with errors")
						if err := b.restartProxy(ctx); err != nil {
							return err
						}
					}
				}
				r.target, r.label = target, label
				b.results = append(b.results, r)
				printResult(r)
			}
		}
		return nil
	}
	none := func(string) string { return "" }

	if b.opt.want("direct") {
		step("direct PostgreSQL")
		if err := runAll("direct", "direct PostgreSQL", b.directEndpoint(), none); err != nil {
			return err
		}
	}
	if b.opt.want("pgbouncer") {
		pgb, err := b.startPgBouncer(ctx)
		if err != nil {
			return err
		}
		pgbEP := b.directEndpoint()
		pgbEP.port = b.pgbPort
		err = runAll("pgbouncer", "PgBouncer (transaction)", pgbEP, func(proto string) string {
			if proto == "prepared" && !b.pgbPrepared {
				return "n/a (pgbouncer <1.21 lacks prepared statements in transaction mode)"
			}
			return ""
		})
		if err != nil {
			return err
		}
		// Its server connections would count against max_connections later.
		pgb.stop(10 * time.Second)
	}
	if b.opt.want("shared") {
		step("stratum-proxy, shared tenant bench_shared")
		if err := runAll("stratum-shared", "stratum shared tenant", b.proxyEndpoint("bench_shared"), none); err != nil {
			return err
		}
	}
	if b.opt.want("schema") {
		step("stratum-proxy, schema tenant bench_schema")
		if err := runAll("stratum-schema", "stratum schema tenant", b.proxyEndpoint("bench_schema"), none); err != nil {
			return err
		}
	}
	if b.opt.want("go") {
		if err := b.measureGo(ctx); err != nil {
			return err
		}
	}
	if b.opt.want("memory") {
		if err := b.measureMemory(ctx); err != nil {
			return err
		}
	}
	if b.opt.want("moves") {
		if err := b.measureMoves(ctx); err != nil {
			return err
		}
	}
	if b.proxy.exited() {
		return fmt.Errorf("stratum-proxy died during the run (%v); log ends:\n%s", b.proxy.Err, logTail(b.proxy.log, 20))
	}
	return nil
}

// measureGo runs the Go load generator against direct PostgreSQL (the
// baseline of the Go rows), then through the proxy on one tenant, then on the
// mt_* tenants, the proxy freshly started for each.
func (b *bench) measureGo(ctx context.Context) error {
	const goClients = 64
	run := func(target, label string, tenants []string, aidMax int, config func(string) (*pgx.ConnConfig, error)) {
		r := runLoad(ctx, loadSpec{clients: goClients, tenants: tenants, aidMax: aidMax,
			reconnectEvery: b.opt.reconnect, duration: b.opt.duration, config: config})
		r.target, r.label = target, label
		b.results = append(b.results, r)
		printResult(r)
	}
	proxyCfg := func(tenant string) (*pgx.ConnConfig, error) {
		return proxyConnConfig("127.0.0.1", b.proxyPort, benchUser, benchPassword, tenant)
	}

	step("Go load: %d clients on direct PostgreSQL", goClients)
	run("go-direct", "direct PostgreSQL (Go)", []string{directDB}, b.opt.sharedRows, func(string) (*pgx.ConnConfig, error) {
		cfg, err := pgx.ParseConfig(b.cluster.URL(directDB))
		if err != nil {
			return nil, err
		}
		cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
		return cfg, nil
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}

	if err := b.restartProxy(ctx); err != nil {
		return err
	}
	step("Go load: %d clients, all on bench_shared", goClients)
	run("go-single", "stratum 1 tenant (Go)", []string{"bench_shared"}, b.opt.sharedRows, proxyCfg)
	if ctx.Err() != nil {
		return ctx.Err()
	}

	if err := b.restartProxy(ctx); err != nil {
		return err
	}
	tenants := make([]string, b.opt.mtTenants)
	for i := range tenants {
		tenants[i] = mtSlug(i)
	}
	step("Go load: %d clients over %d tenants mt_*", goClients, len(tenants))
	run("go-multi", fmt.Sprintf("stratum %d tenants (Go)", len(tenants)), tenants, b.opt.mtRows, proxyCfg)
	return ctx.Err()
}

// measureMemory measures the proxy's memory per idle client connection, on a
// freshly started proxy.
func (b *bench) measureMemory(ctx context.Context) error {
	if err := b.restartProxy(ctx); err != nil {
		return err
	}
	step("memory: %d idle client connections to bench_shared", b.opt.idleConns)
	cfg, err := proxyConnConfig("127.0.0.1", b.proxyPort, benchUser, benchPassword, "bench_shared")
	if err != nil {
		return err
	}
	countBackends := func() int {
		conn, err := pgx.Connect(ctx, b.cluster.URL("postgres"))
		if err != nil {
			return -1
		}
		defer conn.Close(context.Background())
		var n int
		if conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'`, sharedDB).Scan(&n) != nil {
			return -1
		}
		return n
	}
	ir, err := measureIdle(ctx, b.proxy.Pid, b.opt.idleConns, cfg, countBackends)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	b.idle, b.idleErr = &ir, err
	if err != nil {
		step("memory measurement failed: %v", err)
	} else {
		step("memory: %d of %d idle connections open, RSS %d → %d KiB: %.1f KiB per connection (%d backends in %s)",
			ir.opened, ir.wanted, ir.beforeKiB, ir.afterKiB, ir.perConnKiB(), ir.backends, sharedDB)
	}
	return nil
}

func printResult(r result) {
	if !r.ok {
		fmt.Printf("    %-24s %-8s %3d clients: %s\n", r.label, r.protocol, r.clients, r.note)
		return
	}
	fmt.Printf("    %-24s %-8s %3d clients: %10.0f tps  avg %.3f ms  p99 %.3f ms", r.label, r.protocol, r.clients, r.tps, r.avgMs, r.p99Ms)
	if r.note != "" {
		fmt.Printf("  (%s)", r.note)
	}
	fmt.Println()
}
