package server

import (
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
}
