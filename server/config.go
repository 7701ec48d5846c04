package server

import (
	"time"

	"github.com/stratum-hq/stratum-proxy/admin"
	"github.com/stratum-hq/stratum-proxy/proxy"
	"github.com/stratum-hq/stratum-proxy/router"
)

// Config is everything a running stratum-proxy needs, however it was
// configured (a YAML file for serve, the data directory's state for dev).
// Each part's own Config fills its defaults; the fields here are what no
// single part owns.
type Config struct {
	// Listen is the address for PostgreSQL clients, e.g. 0.0.0.0:6432.
	Listen string
	// AdminListen is the address of the admin HTTP API, e.g. 0.0.0.0:8080.
	AdminListen string
	// CatalogURL is a connection URL of the catalog database, whose role may
	// create tables in it (migrations run at start).
	CatalogURL string
	// SecretKeys is the keyring text (secrets.Parse) that seals sensitive
	// config values and backend credentials in the catalog.
	SecretKeys string
	// TLSCertFile and TLSKeyFile, when set, are the certificate offered to
	// clients that ask for TLS; Proxy.TLS is built from them.
	TLSCertFile, TLSKeyFile string
	// PprofListen, when set, serves net/http/pprof there (off by default).
	PprofListen string
	// Proxy configures the client side. Start fills TLS (from the files
	// above) and Metrics.
	Proxy proxy.Config
	// Router configures backends, placements and pools.
	Router router.Config
	// Admin configures the admin API. Start fills Logger and Metrics.
	Admin admin.Config
	// Moves configures placement moves (provision.Config's Move* fields;
	// zero fields get provision's defaults).
	Moves MoveConfig
}

// MoveConfig is the placement moves' part of the config file.
type MoveConfig struct {
	// DrainTimeout is how long a move's cut-over waits, with the tenant
	// paused, for its transactions under way to end before it tries again
	// (provision default 10s).
	DrainTimeout time.Duration
	// MaxLag is the number of captured changes not yet applied at which a
	// move cuts over (provision default 100).
	MaxLag int64
	// Retention is how long a switched move keeps the source copy before
	// it is finalized by itself; 0 keeps it until finalize.
	Retention time.Duration
	// CopyRowsPerSecond limits a move's copy (0: no limit).
	CopyRowsPerSecond int64
}
