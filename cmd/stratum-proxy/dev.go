package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/pgcluster"
	"github.com/stratum-hq/stratum-proxy/provision"
)

const catalogDatabase = "stratum_catalog"

// demoSchema is the app schema the dev command applies to every placement.
const demoSchema = `CREATE TABLE orders (
    id         bigserial PRIMARY KEY,
    tenant_id  uuid NOT NULL,
    item       text NOT NULL,
    quantity   int NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now()
);`

// demoTree is the seeded tenant tree, parents first.
var demoTree = []provision.TenantSpec{
	{Slug: "acmesec", Name: "AcmeSec", Isolation: "shared"},
	{Slug: "northstar_msp", Name: "Northstar MSP", Parent: "acmesec", Isolation: "shared"},
	{Slug: "client_alpha", Name: "Client Alpha", Parent: "northstar_msp", Isolation: "shared"},
	{Slug: "client_beta", Name: "Client Beta", Parent: "northstar_msp", Isolation: "schema"},
	{Slug: "apex_partners", Name: "Apex Partners", Parent: "acmesec", Isolation: "shared"},
	{Slug: "client_gamma", Name: "Client Gamma", Parent: "apex_partners", Isolation: "database"},
}

func runDev(args []string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "./.stratum-dev", "where the private PostgreSQL and the dev state live")
	listen := fs.String("listen", "127.0.0.1:6432", "address for PostgreSQL clients")
	adminListen := fs.String("admin-listen", "127.0.0.1:8080", "address for the admin HTTP API")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	poolMode := fs.String("pool-mode", "session", "session or transaction")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		return err
	}
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	log, err := newLogger("console", *logLevel)
	if err != nil {
		return err
	}
	defer log.Sync()

	cluster, sc, err := startDevCluster(ctx, dir, log)
	if err != nil {
		return err
	}
	defer cluster.Stop()
	sc.Listen, sc.AdminListen = *listen, *adminListen
	if *poolMode != "session" && *poolMode != "transaction" {
		return fmt.Errorf("--pool-mode %q: use session or transaction", *poolMode)
	}
	sc.PoolMode = *poolMode
	st, err := startStack(ctx, sc, log)
	if err != nil {
		return err
	}
	defer st.stop()
	if err := seedDemo(ctx, st.prov, log); err != nil {
		return fmt.Errorf("seeding demo tenants: %w", err)
	}
	printDevBanner(sc)
	select {
	case <-ctx.Done():
		log.Info("stopping")
	case err := <-st.errs:
		return err
	}
	return nil
}

// startDevCluster starts (or restarts) the private PostgreSQL in dir and returns
// the stack configuration that uses it.
func startDevCluster(ctx context.Context, dir string, log *zap.Logger) (*pgcluster.Cluster, *stackConfig, error) {
	state, err := loadDevState(dir)
	if err != nil {
		return nil, nil, err
	}
	log.Info("starting private postgresql", zap.String("data_dir", filepath.Join(dir, "pg")))
	cluster, err := pgcluster.Start(ctx, pgcluster.Config{
		DataDir: filepath.Join(dir, "pg"), Port: state.PGPort, Password: state.SuperPassword,
	})
	if err != nil {
		return nil, nil, err
	}
	if state.PGPort != cluster.Port() {
		state.PGPort = cluster.Port()
		if err := state.save(dir); err != nil {
			cluster.Stop()
			return nil, nil, err
		}
	}
	if err := ensureCatalogDatabase(ctx, cluster); err != nil {
		cluster.Stop()
		return nil, nil, err
	}
	cert, key, err := ensureDevCert(dir)
	if err != nil {
		cluster.Stop()
		return nil, nil, fmt.Errorf("making dev tls certificate: %w", err)
	}
	bootstrap := os.Getenv("STRATUM_BOOTSTRAP_ADMIN_KEY")
	if bootstrap == "" {
		bootstrap = state.AdminKey
	}
	sc := state.stackConfig(cluster.Host(), cluster.Port(), cluster.SuperUser())
	sc.BootstrapKey, sc.TLSCert, sc.TLSKey = bootstrap, cert, key
	return cluster, sc, nil
}

// ensureCatalogDatabase creates the catalog database, closed to every role but
// its owner, and closes the maintenance database to tenant roles as well.
func ensureCatalogDatabase(ctx context.Context, cluster *pgcluster.Cluster) error {
	conn, err := pgx.Connect(ctx, cluster.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, catalogDatabase).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+catalogDatabase); err != nil {
			return fmt.Errorf("creating catalog database: %w", err)
		}
	}
	for _, db := range []string{catalogDatabase, "postgres", "template1"} {
		if _, err := conn.Exec(ctx, "REVOKE CONNECT, TEMPORARY ON DATABASE "+db+" FROM PUBLIC"); err != nil {
			return fmt.Errorf("closing database %s: %w", db, err)
		}
	}
	return nil
}

// seedDemo creates the demo tree, schema and user on first run; later runs
// find them and leave them alone.
func seedDemo(ctx context.Context, p *provision.Provisioner, log *zap.Logger) error {
	rep, err := p.ApplySchema(ctx, demoSchema)
	if err != nil {
		return err
	}
	if rep.Failed() > 0 {
		return fmt.Errorf("applying the demo schema failed in %d placements: %+v", rep.Failed(), rep.Placements)
	}
	cat := p.Catalog()
	for _, spec := range demoTree {
		if _, err := cat.GetTenant(ctx, spec.Slug); err == nil {
			continue
		} else if !errors.Is(err, catalog.ErrNotFound) {
			return err
		}
		t, err := p.CreateTenant(ctx, spec)
		if err != nil {
			return err
		}
		log.Info("created demo tenant", zap.String("tenant", t.Slug), zap.String("isolation", t.Isolation))
	}
	if _, err := cat.GetUser(ctx, "demo"); errors.Is(err, catalog.ErrNotFound) {
		if _, err := cat.CreateUser(ctx, "demo", "demo", "acmesec", true); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	return nil
}

func printDevBanner(sc *stackConfig) {
	fmt.Println()
	fmt.Println("stratum-proxy dev is ready.")
	fmt.Printf("  proxy:      %s (user demo, password demo, may switch tenants under acmesec)\n", sc.Listen)
	fmt.Printf("  admin API:  http://%s  (Authorization: Bearer %s)\n", sc.AdminListen, sc.BootstrapKey)
	fmt.Printf("  catalog:    %s\n", sc.CatalogURL)
	fmt.Println("  operator CLI (finds the admin key here): ./bin/stratum-proxy tenant list")
	fmt.Println()
	fmt.Println("Connect as a tenant:")
	for _, t := range demoTree {
		u := url.URL{Scheme: "postgres", User: url.UserPassword("demo", "demo"), Host: sc.Listen, Path: "/app",
			RawQuery: "options=-c%20stratum.tenant%3D" + t.Slug}
		fmt.Printf("  %-14s psql %q\n", t.Slug, u.String())
	}
	fmt.Println()
	fmt.Println("Ctrl-C stops everything.")
}
