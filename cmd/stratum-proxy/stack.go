package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/stratum-hq/stratum-proxy/admin"
	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/secrets"
	"github.com/stratum-hq/stratum-proxy/provision"
	"github.com/stratum-hq/stratum-proxy/proxy"
	"github.com/stratum-hq/stratum-proxy/router"
)

// stackConfig is everything a running stratum-proxy needs, however it was
// configured (a YAML file for serve, the data directory's state for dev).
type stackConfig struct {
	Listen, AdminListen string
	CatalogURL          string
	SecretKeys          string
	BootstrapKey        string
	TLSCert, TLSKey     string
	RequireTLS          bool
	Router              router.Config
	ShutdownGrace       time.Duration
	MaxMessageSize      int
	StartupTimeout      time.Duration
	LogFormat, LogLevel string
	PoolMode            string
	// Limits against hostile clients (proxy.Config).
	MaxClientConnections, MaxTenantConnections int
	AuthFailureThreshold                       int
	AuthFailureWindow, AuthLockout             time.Duration
	// AdminRateLimit is each API key's budget in requests per minute
	// (admin.Config.RateLimit: 0 the default, negative no default limit).
	AdminRateLimit int
}

// stack is a running catalog + router + provisioner + proxy + admin API.
type stack struct {
	log      *zap.Logger
	cat      *catalog.Catalog
	router   *router.Router
	prov     *provision.Provisioner
	proxy    *proxy.Server
	admin    *http.Server
	proxyLn  net.Listener
	adminLn  net.Listener
	errs     chan error
	shutdown time.Duration
}

func newLogger(format, level string) (*zap.Logger, error) {
	var cfg zap.Config
	if format == "console" {
		cfg = zap.NewDevelopmentConfig()
		cfg.EncoderConfig.EncodeLevel = zapcore.CapitalColorLevelEncoder
		cfg.DisableStacktrace = true
	} else {
		cfg = zap.NewProductionConfig()
	}
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	return cfg.Build()
}

// openCatalog opens and migrates the catalog.
func openCatalog(ctx context.Context, sc *stackConfig) (*catalog.Catalog, error) {
	keys, err := secrets.Parse(sc.SecretKeys)
	if err != nil {
		return nil, fmt.Errorf("secret keys: %w", err)
	}
	cat, err := catalog.Open(ctx, catalog.Config{URL: sc.CatalogURL, Keys: keys})
	if err != nil {
		return nil, err
	}
	if _, err := cat.Migrate(ctx); err != nil {
		cat.Close()
		return nil, err
	}
	return cat, nil
}

// The router's idle connections to a dropped tenant are closed by the
// provisioner.
var _ provision.Pools = (*router.Router)(nil)

// openRouter opens the catalog (migrated), a router and a provisioner over
// it (on the same backends), with the shared database prepared. Close the
// router, then the catalog.
func openRouter(ctx context.Context, sc *stackConfig) (*catalog.Catalog, *router.Router, *provision.Provisioner, error) {
	cat, err := openCatalog(ctx, sc)
	if err != nil {
		return nil, nil, nil, err
	}
	r, err := router.New(ctx, sc.Router, cat)
	if err != nil {
		cat.Close()
		return nil, nil, nil, err
	}
	p, err := provision.New(ctx, provision.Config{Set: sc.Router.Set, Pools: r}, cat)
	if err != nil {
		r.Close()
		cat.Close()
		return nil, nil, nil, err
	}
	if err := p.PrepareShared(ctx); err != nil {
		r.Close()
		cat.Close()
		return nil, nil, nil, err
	}
	return cat, r, p, nil
}

// startStack opens everything and starts listening. Stop it with stop.
func startStack(ctx context.Context, sc *stackConfig, log *zap.Logger) (*stack, error) {
	cat, r, p, err := openRouter(ctx, sc)
	if err != nil {
		return nil, err
	}
	st := &stack{log: log, cat: cat, router: r, prov: p, errs: make(chan error, 2), shutdown: sc.ShutdownGrace}
	pcfg := proxy.Config{PoolMode: sc.PoolMode, RequireTLS: sc.RequireTLS,
		MaxClientConnections: sc.MaxClientConnections, MaxTenantConnections: sc.MaxTenantConnections,
		AuthFailureThreshold: sc.AuthFailureThreshold, AuthFailureWindow: sc.AuthFailureWindow, AuthLockout: sc.AuthLockout, MaxMessageSize: sc.MaxMessageSize,
		StartupTimeout: sc.StartupTimeout, ShutdownGrace: sc.ShutdownGrace}
	if sc.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(sc.TLSCert, sc.TLSKey)
		if err != nil {
			st.close()
			return nil, fmt.Errorf("loading tls certificate: %w", err)
		}
		pcfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	} else if sc.RequireTLS {
		st.close()
		return nil, errors.New("tls.require is set but no tls.cert_file is configured")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		poolCollector{r})
	pcfg.Metrics = proxy.NewMetrics(reg)
	st.proxy = proxy.New(pcfg, r, log.Named("proxy"))
	if st.proxyLn, err = net.Listen("tcp", sc.Listen); err != nil {
		st.close()
		return nil, fmt.Errorf("listening for clients: %w", err)
	}
	if st.adminLn, err = net.Listen("tcp", sc.AdminListen); err != nil {
		st.proxyLn.Close()
		st.close()
		return nil, fmt.Errorf("listening for the admin api: %w", err)
	}
	st.admin = &http.Server{Handler: admin.New(admin.Config{BootstrapKey: sc.BootstrapKey, Logger: log.Named("admin"), RateLimit: sc.AdminRateLimit,
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}, p),
		ReadHeaderTimeout: 10 * time.Second}
	if addr := os.Getenv("STRATUM_PPROF_LISTEN"); addr != "" {
		// Profiling for operators chasing a performance question; off unless asked.
		go func() {
			mux := http.NewServeMux()
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			log.Info("pprof listening", zap.String("addr", addr), zap.Error(http.ListenAndServe(addr, mux)))
		}()
	}
	go func() { st.errs <- st.proxy.Serve(st.proxyLn) }()
	go func() {
		if err := st.admin.Serve(st.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			st.errs <- err
		}
	}()
	return st, nil
}

// stop shuts the stack down: no new clients, sessions get the shutdown grace.
func (st *stack) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), st.shutdown+5*time.Second)
	defer cancel()
	if st.admin != nil {
		st.admin.Shutdown(ctx)
	}
	if st.proxy != nil {
		st.proxy.Shutdown(ctx)
	}
	st.close()
}

func (st *stack) close() {
	st.router.Close()
	st.cat.Close()
}
