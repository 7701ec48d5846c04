package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/stratum-hq/stratum-proxy/admin"
	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/secrets"
	"github.com/stratum-hq/stratum-proxy/provision"
	"github.com/stratum-hq/stratum-proxy/proxy"
	"github.com/stratum-hq/stratum-proxy/router"
)

// Stack is a running catalog + router + proxy + admin API. Start makes one;
// Stop (or Shutdown then Close) ends it.
type Stack struct {
	// Catalog, Router, Provisioner and Proxy are the running parts, for
	// tools and tests.
	Catalog     *catalog.Catalog
	Router      *router.Router
	Provisioner *provision.Provisioner
	Proxy       *proxy.Server

	log      *zap.Logger
	admin    *http.Server
	proxyLn  net.Listener
	adminLn  net.Listener
	errs     chan error
	shutdown time.Duration
}

// ProxyAddr is the address the proxy listens on (the real port when the
// configured one was 0).
func (st *Stack) ProxyAddr() string { return st.proxyLn.Addr().String() }

// AdminAddr is the address the admin API listens on.
func (st *Stack) AdminAddr() string { return st.adminLn.Addr().String() }

// Errs delivers the error of a listener that stopped serving on its own.
func (st *Stack) Errs() <-chan error { return st.errs }

// OpenCatalog opens and migrates the catalog named by cfg. It returns how
// many migrations it applied. The caller closes the catalog.
func OpenCatalog(ctx context.Context, cfg *Config) (*catalog.Catalog, int, error) {
	keys, err := secrets.Parse(cfg.SecretKeys)
	if err != nil {
		return nil, 0, fmt.Errorf("reading secret keys: %w", err)
	}
	cat, err := catalog.Open(ctx, catalog.Config{URL: cfg.CatalogURL, Keys: keys})
	if err != nil {
		return nil, 0, err
	}
	applied, err := cat.Migrate(ctx)
	if err != nil {
		cat.Close()
		return nil, 0, err
	}
	return cat, applied, nil
}

// The router's idle connections to a dropped tenant are closed by the
// provisioner.
var _ provision.Pools = (*router.Router)(nil)

// OpenRouter opens the catalog (migrated), a router and a provisioner over
// it (on the same backends), with the shared database prepared. The caller
// closes the router, then the catalog.
func OpenRouter(ctx context.Context, cfg *Config) (*catalog.Catalog, *router.Router, *provision.Provisioner, error) {
	cat, _, err := OpenCatalog(ctx, cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	r, err := router.New(ctx, cfg.Router, cat)
	if err != nil {
		cat.Close()
		return nil, nil, nil, err
	}
	fail := func(err error) (*catalog.Catalog, *router.Router, *provision.Provisioner, error) {
		r.Close()
		cat.Close()
		return nil, nil, nil, err
	}
	p, err := provision.New(ctx, provision.Config{Set: cfg.Router.Set, Pools: r, MoveDrainTimeout: cfg.Moves.DrainTimeout,
		MoveMaxLag: cfg.Moves.MaxLag, MoveRetention: cfg.Moves.Retention, MoveCopyRowsPerSecond: cfg.Moves.CopyRowsPerSecond}, cat)
	if err != nil {
		return fail(err)
	}
	if err := p.PrepareShared(ctx); err != nil {
		return fail(err)
	}
	return cat, r, p, nil
}

// mockAuthLabel names the keyring sub-key of the proxy's mock SCRAM
// credentials for unknown users (proxy.Config.MockAuthKey).
const mockAuthLabel = "stratum-proxy mock SCRAM credentials v1"

// Start opens everything and starts listening. The caller keeps log and
// stops the stack with Stop.
func Start(ctx context.Context, cfg Config, log *zap.Logger) (*Stack, error) {
	cat, r, p, err := OpenRouter(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	p.SetLogger(log.Named("provision"))
	st := &Stack{Catalog: cat, Router: r, Provisioner: p, log: log, errs: make(chan error, 2), shutdown: cfg.Proxy.ShutdownGrace}
	if st.shutdown <= 0 {
		st.shutdown = 10 * time.Second
	}
	pcfg := cfg.Proxy
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("loading tls certificate: %w", err)
		}
		pcfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	} else if pcfg.RequireTLS {
		st.Close()
		return nil, errors.New("tls.require is set but no tls.cert_file is configured")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		poolCollector{r})
	pcfg.Metrics = proxy.NewMetrics(reg)
	if len(pcfg.MockAuthKey) == 0 {
		keys, err := secrets.Parse(cfg.SecretKeys) // OpenCatalog read it already
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("reading secret keys: %w", err)
		}
		pcfg.MockAuthKey = keys.Derive(mockAuthLabel)
	}
	// Moves a proxy left unfinished when it died are failed and cleaned up
	// (their tenants serve from their sources); a sweep keeps doing that.
	if err := p.RecoverMoves(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("recovering placement moves: %w", err)
	}
	st.Proxy = proxy.New(pcfg, r, log.Named("proxy"))
	p.SetPauseBarrier(st.Proxy.PauseBarrier)
	if st.proxyLn, err = net.Listen("tcp", cfg.Listen); err != nil {
		st.Close()
		return nil, fmt.Errorf("listening for clients: %w", err)
	}
	if st.adminLn, err = net.Listen("tcp", cfg.AdminListen); err != nil {
		st.proxyLn.Close()
		st.Close()
		return nil, fmt.Errorf("listening for the admin api: %w", err)
	}
	acfg := cfg.Admin
	if acfg.PlatformMaxConns == 0 {
		acfg.PlatformMaxConns = r.Config().MaxConnsPerTenant
	}
	acfg.Logger = log.Named("admin")
	acfg.Metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	st.admin = &http.Server{Handler: admin.New(acfg, p), ReadHeaderTimeout: 10 * time.Second}
	if cfg.PprofListen != "" {
		// Profiling for operators chasing a performance question; off unless asked.
		go func() {
			mux := http.NewServeMux()
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			log.Info("pprof listening", zap.String("addr", cfg.PprofListen), zap.Error(http.ListenAndServe(cfg.PprofListen, mux)))
		}()
	}
	go func() { st.errs <- st.Proxy.Serve(st.proxyLn) }()
	go func() {
		if err := st.admin.Serve(st.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			st.errs <- err
		}
	}()
	log.Info("listening", zap.String("proxy", st.ProxyAddr()), zap.String("admin", st.AdminAddr()),
		zap.Bool("tls", pcfg.TLS != nil), zap.String("pool_mode", pcfg.PoolMode))
	return st, nil
}

// Shutdown stops taking clients and API requests: sessions get the proxy's
// shutdown grace, then are ended. The catalog and router stay open (Close).
func (st *Stack) Shutdown(ctx context.Context) {
	if st.admin != nil {
		st.admin.Shutdown(ctx)
	}
	if st.Proxy != nil {
		st.Proxy.Shutdown(ctx)
	}
}

// Close stops the placement moves this proxy runs (each is cleaned up, its
// tenant stays on its source), then closes the router and the catalog. Call
// it after Shutdown.
func (st *Stack) Close() {
	st.Provisioner.Close()
	st.Router.Close()
	st.Catalog.Close()
}

// Stop is Shutdown (bounded by the shutdown grace) followed by Close.
func (st *Stack) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), st.shutdown+5*time.Second)
	defer cancel()
	st.Shutdown(ctx)
	st.Close()
}
