package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/stratum-hq/stratum-proxy/proxy"
	"github.com/stratum-hq/stratum-proxy/server"
)

func runDev(args []string, stdout io.Writer) error {
	fs := newFlagSet("dev", "dev [flags]")
	dataDir := fs.String("data-dir", "./.stratum-dev", "where the private PostgreSQL and the dev state live")
	listen := fs.String("listen", "127.0.0.1:6432", "address for PostgreSQL clients")
	adminListen := fs.String("admin-listen", "127.0.0.1:8080", "address for the admin HTTP API")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	poolMode := fs.String("pool-mode", proxy.PoolSession, "session or transaction")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *poolMode != proxy.PoolSession && *poolMode != proxy.PoolTransaction {
		return usageError(fmt.Sprintf("--pool-mode %q: use session or transaction", *poolMode))
	}
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		return err
	}
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	log, err := server.NewLogger("console", *logLevel)
	if err != nil {
		return usageError("--log-level: " + err.Error())
	}
	defer log.Sync()

	cluster, cfg, state, err := server.StartDev(ctx, dir, log)
	if err != nil {
		return err
	}
	defer cluster.Stop()
	cfg.Listen, cfg.AdminListen = *listen, *adminListen
	cfg.Proxy.PoolMode = *poolMode
	cfg.PprofListen = os.Getenv("STRATUM_PPROF_LISTEN")
	st, err := server.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Stop()
	// The operator CLI and schema apply find this deployment through the
	// state file, wherever it listens.
	state.AdminURL, state.ProxyAddr = "http://"+st.AdminAddr(), st.ProxyAddr()
	if err := state.Save(dir); err != nil {
		return err
	}
	if err := server.SeedDemo(ctx, st.Provisioner, log); err != nil {
		return fmt.Errorf("seeding demo tenants: %w", err)
	}
	printDevBanner(stdout, st, cfg, dir)
	select {
	case <-ctx.Done():
		log.Info("stopping")
	case err := <-st.Errs():
		return err
	}
	return nil
}

func printDevBanner(w io.Writer, st *server.Stack, cfg server.Config, dir string) {
	cliHint := "./bin/stratum-proxy tenant list"
	if rel, err := filepath.Rel(".", dir); err != nil || rel != ".stratum-dev" {
		cliHint += " --data-dir " + dir
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "stratum-proxy dev is ready.")
	fmt.Fprintf(w, "  proxy:      %s (user %s, password %s, may switch tenants under acmesec)\n", st.ProxyAddr(), server.DemoUser, server.DemoPassword)
	fmt.Fprintf(w, "  admin API:  http://%s  (Authorization: Bearer %s)\n", st.AdminAddr(), cfg.Admin.BootstrapKey)
	fmt.Fprintf(w, "  catalog:    %s\n", cfg.CatalogURL)
	fmt.Fprintf(w, "  pool mode:  %s\n", cfg.Proxy.PoolMode)
	fmt.Fprintf(w, "  operator CLI (finds the admin URL and key in the data dir): %s\n", cliHint)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Connect as a tenant:")
	for _, t := range server.DemoTree {
		u := url.URL{Scheme: "postgres", User: url.UserPassword(server.DemoUser, server.DemoPassword), Host: st.ProxyAddr(), Path: "/app",
			RawQuery: "options=-c%20stratum.tenant%3D" + t.Slug}
		fmt.Fprintf(w, "  %-14s psql %q\n", t.Slug, u.String())
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Ctrl-C stops everything.")
}
