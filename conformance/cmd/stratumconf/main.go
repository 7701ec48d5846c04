package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/stratum-hq/stratum-proxy/internal/backends"
	"github.com/stratum-hq/stratum-proxy/internal/pgcluster"
	"github.com/stratum-hq/stratum-proxy/internal/secrets"
	"github.com/stratum-hq/stratum-proxy/internal/workdir"
	"github.com/stratum-hq/stratum-proxy/provision"
	"github.com/stratum-hq/stratum-proxy/router"
	"github.com/stratum-hq/stratum-proxy/server"
)

// The modes a suite runs in: directly against PostgreSQL, and through the
// proxy in each pool mode.
const (
	modeDirect      = "direct"
	modeSession     = "session"
	modeTransaction = "transaction"
)

var allModes = []string{modeDirect, modeSession, modeTransaction}

// options are the command line flags.
type options struct {
	suites       []string
	modes        []string
	timeout      time.Duration
	psycopgSrc   string
	nodePGSrc    string
	refusals     string
	outDir       string
	keep         bool
	pytestFilter string
}

// The proxy user and the tenants the runs use.
const (
	confUser     = "conf"
	confPassword = "conf-password"
	parentTenant = "conf"
)

// tenantSlug is the tenant a mode's runs use: each mode has a database of its
// own, provisioned the same way, so one run's leftovers cannot change another.
func tenantSlug(mode string) string { return "conf_" + mode }

// target is where a suite connects in one mode.
type target struct {
	mode     string
	host     string
	port     int
	user     string
	password string
	database string
}

// url is the target as a PostgreSQL URL (pgx, libpq).
func (t target) url() string {
	return fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", t.user, t.password, t.host, t.port, t.database)
}

// keywords is the target as a libpq keyword/value string (psycopg).
func (t target) keywords() string {
	return fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=disable", t.host, t.port, t.user, t.password, t.database)
}

// run is one conformance run and everything it started.
type run struct {
	opt      options
	tmp      string
	started  time.Time
	commit   string // the checkout the proxy was compiled from (commitNote)
	cleanups workdir.Cleanups

	cluster   *pgcluster.Cluster
	pgVersion string
	cfg       server.Config
	log       *zap.Logger
	// tenants maps a mode to its tenant's database, and direct to the role
	// and password of conf_direct's backend role as well.
	databases                  map[string]string
	directRole, directPassword string

	suites   []suite
	refusals []refusal
	results  map[string]map[string]*suiteResult // suite, mode
}

func main() {
	if err := mainErr(); err != nil {
		fmt.Fprintln(os.Stderr, "stratumconf:", err)
		os.Exit(1)
	}
}

func mainErr() error {
	var opt options
	suites := strings.Join(allSuites, ",")
	modes := strings.Join(allModes, ",")
	flag.StringVar(&suites, "suites", suites, "which suites to run (a subset, for a quick look)")
	flag.StringVar(&modes, "modes", modes, "which modes to run them in")
	flag.DurationVar(&opt.timeout, "timeout", 25*time.Minute, "time limit of one suite in one mode")
	flag.StringVar(&opt.psycopgSrc, "psycopg-src", os.Getenv("PSYCOPG_SRC"),
		"a git repository of psycopg (github.com/psycopg/psycopg, a clone or a bare mirror) holding the tag of the installed psycopg; env PSYCOPG_SRC")
	flag.StringVar(&opt.nodePGSrc, "node-pg-src", os.Getenv("NODE_PG_SRC"),
		"a git repository of node-postgres (github.com/brianc/node-postgres) holding pg@<version> tags; env NODE_PG_SRC")
	flag.StringVar(&opt.pytestFilter, "pytest-k", "", "a pytest -k expression to run part of the psycopg suite (for development)")
	flag.StringVar(&opt.refusals, "refusals", "conformance/refusals.md", "the reviewed table of deliberate refusals")
	flag.StringVar(&opt.outDir, "out", "conformance/results", "where the markdown report goes")
	flag.BoolVar(&opt.keep, "keep", false, "keep the temporary directory (logs, test output) after the run")
	flag.Parse()
	var err error
	if opt.suites, err = pickList("-suites", suites, allSuites); err != nil {
		return err
	}
	if opt.modes, err = pickList("-modes", modes, allModes); err != nil {
		return err
	}
	if b, err := os.ReadFile("go.mod"); err != nil || !bytes.Contains(b, []byte("module github.com/stratum-hq/stratum-proxy")) {
		return errors.New("run stratumconf from the stratum-proxy repository root (make conformance does)")
	}
	refusals, err := readRefusals(opt.refusals)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		signal.Stop(sigs)
		fmt.Fprintf(os.Stderr, "\nstratumconf: %v: stopping everything it started…\n", s)
		cancel()
	}()

	r := &run{opt: opt, started: time.Now().UTC(), commit: commitNote(), refusals: refusals,
		results: map[string]map[string]*suiteResult{}}
	defer r.cleanup()
	if r.tmp, err = os.MkdirTemp("", "stratumconf-"); err != nil {
		return err
	}
	// PostgreSQL runs as the postgres OS user when we are root: it must
	// reach its directory inside.
	if err := os.Chmod(r.tmp, 0o755); err != nil {
		return err
	}
	// The suites are prepared first: a missing tool or source fails the run
	// before any cluster starts.
	for _, name := range opt.suites {
		s, err := newSuite(name, opt, filepath.Join(r.tmp, name))
		if err != nil {
			return err
		}
		step("preparing %s", name)
		if err := s.prepare(ctx); err != nil {
			return fmt.Errorf("preparing %s: %w", name, err)
		}
		r.suites = append(r.suites, s)
	}
	if err := r.setup(ctx); err != nil {
		return err
	}
	for _, mode := range opt.modes {
		if err := r.runMode(ctx, mode); err != nil {
			return err
		}
	}
	return r.report(refusals)
}

// pickList parses a comma-separated subset of all.
func pickList(flagName, s string, all []string) ([]string, error) {
	var out []string
	for _, v := range strings.Split(s, ",") {
		v = strings.TrimSpace(v)
		if !slices.Contains(all, v) {
			return nil, fmt.Errorf("%s: unknown value %q (have %s)", flagName, v, strings.Join(all, ", "))
		}
		out = append(out, v)
	}
	return out, nil
}

func (r *run) onCleanup(f func()) { r.cleanups.Add(f) }

// cleanup stops everything in reverse order of starting and removes the
// temporary directory.
func (r *run) cleanup() { r.cleanups.Run(r.tmp, r.opt.keep) }

var step = workdir.Step

// setup starts PostgreSQL, opens the catalog and provisions the parent tenant,
// one database tenant per mode and the proxy user.
func (r *run) setup(ctx context.Context) error {
	step("starting PostgreSQL in %s", r.tmp)
	var err error
	r.cluster, r.pgVersion, err = r.cleanups.StartPostgres(ctx, filepath.Join(r.tmp, "pg"), nil, server.CatalogDatabase)
	if err != nil {
		return err
	}
	keys, err := secrets.NewKeyText("conf1")
	if err != nil {
		return err
	}
	r.cfg = server.Config{
		Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0",
		CatalogURL: r.cluster.URL(server.CatalogDatabase), SecretKeys: keys,
		Router: router.Config{Set: backends.Set{
			Backends: map[string]backends.Backend{"main": {
				Host: r.cluster.Host(), Port: r.cluster.Port(), AdminUser: r.cluster.SuperUser(),
				AdminPassword: r.cluster.Password(), SSLMode: "disable",
			}},
			SharedDatabase: "app",
		}},
	}
	r.cfg.Admin.BootstrapKey = workdir.Token()
	r.cfg.Proxy.ShutdownGrace = time.Second
	logFile := filepath.Join(r.tmp, "proxy.log")
	lc := zap.NewProductionConfig()
	lc.OutputPaths, lc.ErrorOutputPaths = []string{logFile}, []string{logFile}
	if r.log, err = lc.Build(); err != nil {
		return err
	}

	step("provisioning the tenants")
	cfg := r.cfg
	cat, rt, p, err := server.OpenRouter(ctx, &cfg)
	if err != nil {
		return err
	}
	defer func() {
		rt.Close()
		cat.Close()
	}()
	if _, err := p.CreateTenant(ctx, provision.TenantSpec{Slug: parentTenant, Isolation: "shared"}); err != nil {
		return err
	}
	r.databases = map[string]string{}
	for _, mode := range allModes {
		t, err := p.CreateTenant(ctx, provision.TenantSpec{Slug: tenantSlug(mode), Parent: parentTenant, Isolation: "database"})
		if err != nil {
			return err
		}
		r.databases[mode] = t.Database
		if mode != modeDirect {
			// Clients of the proxy may name only the app database or a
			// mapped name (README "Refusals"); map the tenant's own
			// database name to it, so current_database() is what the
			// suite connected with, as directly.
			if err := cat.MapDatabase(ctx, t.Database, t.ID); err != nil {
				return fmt.Errorf("mapping %s: %w", t.Database, err)
			}
		}
		if mode == modeDirect {
			r.directRole = t.RoleName
			if r.directPassword, err = cat.BackendPassword(ctx, t.ID); err != nil {
				return err
			}
		}
	}
	if _, err := cat.CreateUser(ctx, confUser, confPassword, parentTenant, false); err != nil {
		return err
	}
	return nil
}

// runMode runs every suite in one mode: for the proxy modes, it starts the
// proxy with that pool mode first and stops it after.
func (r *run) runMode(ctx context.Context, mode string) error {
	t := target{mode: mode, host: r.cluster.Host(), database: r.databases[mode]}
	if mode == modeDirect {
		t.port, t.user, t.password = r.cluster.Port(), r.directRole, r.directPassword
	} else {
		cfg := r.cfg
		cfg.Proxy.PoolMode = mode
		step("starting the proxy in %s pooling", mode)
		st, err := server.Start(ctx, cfg, r.log.With(zap.String("conformance_mode", mode)))
		if err != nil {
			return fmt.Errorf("starting the proxy: %w", err)
		}
		defer st.Stop()
		host, port, err := splitHostPort(st.ProxyAddr())
		if err != nil {
			return err
		}
		// The tenant is named in the user name (user.tenant): every
		// driver's connection settings carry a user, not all carry
		// startup parameters.
		t.host, t.port = host, port
		t.user, t.password = confUser+"."+tenantSlug(mode), confPassword
	}
	for _, s := range r.suites {
		step("running %s %s", s.name(), mode)
		start := time.Now()
		sctx, cancel := context.WithTimeout(ctx, r.opt.timeout)
		res, err := s.run(sctx, t)
		timedOut := sctx.Err() != nil
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			return fmt.Errorf("running %s %s: %w", s.name(), mode, err)
		}
		res.elapsed = time.Since(start)
		if timedOut {
			res.note = fmt.Sprintf("stopped by the time limit (%v)", r.opt.timeout)
		}
		if r.results[s.name()] == nil {
			r.results[s.name()] = map[string]*suiteResult{}
		}
		r.results[s.name()][mode] = res
		p, f, sk := res.counts()
		step("%s %s: %d passed, %d failed, %d skipped in %s", s.name(), mode, p, f, sk, res.elapsed.Round(time.Second))
		if mode != modeDirect {
			if err := r.rerunLost(ctx, s, t, res); err != nil {
				return err
			}
		}
	}
	return nil
}

// rerunLost runs the tests res lost with no documented refusal again by
// themselves through the same proxy, rerunTries times, and records how they
// did in res.reruns (see rerunner). It does nothing for a suite that cannot
// run tests by id, without a direct run, or with more than rerunMax such
// losses.
func (r *run) rerunLost(ctx context.Context, s suite, t target, res *suiteResult) error {
	rr, ok := s.(rerunner)
	direct := r.results[s.name()][modeDirect]
	if !ok || direct == nil {
		return nil
	}
	var ids []string
	for _, l := range compare(s.name(), t.mode, direct, res, r.refusals).lost {
		if l.refusal == "" {
			ids = append(ids, l.id)
		}
	}
	if len(ids) == 0 || len(ids) > rerunMax {
		return nil
	}
	res.reruns = map[string]rerunRecord{}
	for try := 1; try <= rerunTries; try++ {
		step("running %d lost %s tests again by themselves (%d of %d)", len(ids), s.name(), try, rerunTries)
		sctx, cancel := context.WithTimeout(ctx, r.opt.timeout)
		again, err := rr.rerun(sctx, t, ids)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			return fmt.Errorf("running lost %s tests again: %w", s.name(), err)
		}
		for _, id := range ids {
			rec := res.reruns[id]
			rec.tries++
			if again.tests[id].status == statusPass {
				rec.passed++
			}
			res.reruns[id] = rec
		}
	}
	return nil
}
