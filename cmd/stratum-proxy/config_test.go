package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestExampleConfigLoads reads config.example.yaml itself, so the documented
// file stays loadable, with the secrets it names set in the environment.
func TestExampleConfigLoads(t *testing.T) {
	t.Setenv("STRATUM_CATALOG_URL", "postgres://cat@db/stratum_catalog")
	t.Setenv("STRATUM_SECRET_KEYS", "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	t.Setenv("STRATUM_BACKEND_MAIN_PASSWORD", "s3cret")
	t.Setenv("STRATUM_BOOTSTRAP_ADMIN_KEY", "boot")
	fs, err := loadConfig("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sc := &fs.Server
	b := sc.Router.Backends["main"]
	if sc.Listen != "0.0.0.0:6432" || sc.AdminListen != "0.0.0.0:8080" || sc.CatalogURL != "postgres://cat@db/stratum_catalog" ||
		b.AdminPassword != "s3cret" || b.Port != 5432 || b.SSLMode != "prefer" || sc.Admin.BootstrapKey != "boot" ||
		sc.Router.SharedDatabase != "app" || sc.Router.IdleTimeout != 5*time.Minute || sc.Proxy.ShutdownGrace != 10*time.Second ||
		fs.LogFormat != "json" || sc.Proxy.MaxMessageSize != 64<<20 || sc.Admin.RateLimit != 600 ||
		len(sc.Proxy.DatabaseNames) != 1 || sc.Proxy.DatabaseNames[0] != "app" || sc.Proxy.AllowAnyDatabase ||
		sc.Moves.DrainTimeout != 10*time.Second || sc.Moves.MaxLag != 100 || sc.Moves.Retention != 0 ||
		sc.Router.SpareConns != 1 {
		t.Errorf("loaded %+v / backend %+v", sc, b)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Setenv("STRATUM_CATALOG_URL", "postgres://x")
	t.Setenv("STRATUM_SECRET_KEYS", "k1:AAAA")
	for _, tc := range []struct{ name, yaml, want string }{
		{"bad yaml", "listen: [", "parsing config"},
		{"misspelt key", "listne: 127.0.0.1:1\n", "field listne not found"},
		{"no backends", "listen: 127.0.0.1:1\n", "no backends"},
		{"missing password env", "backends:\n  main:\n    host: h\n    port: 1\n    admin_user: u\n", "admin_password_env"},
		{"empty password env", "backends:\n  main:\n    host: h\n    port: 1\n    admin_user: u\n    admin_password_env: STRATUM_TEST_UNSET_VAR\n", "is empty"},
		{"unset catalog", "catalog:\n  url_env: STRATUM_TEST_UNSET_VAR\n", "STRATUM_TEST_UNSET_VAR is empty"},
		{"negative move lag", "moves:\n  max_lag: -1\n", "must not be negative"},
		{"negative copy rate", "moves:\n  copy_rows_per_second: -5\n", "must not be negative"},
		{"negative spare connections", "pool:\n  spare_connections: -1\n", "spare_connections: -1 is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(writeConfig(t, tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestConfigSpareConnections: unset keeps the router's default, 0 turns
// spares off (the router's -1), n keeps n.
func TestConfigSpareConnections(t *testing.T) {
	t.Setenv("STRATUM_CATALOG_URL", "postgres://x")
	t.Setenv("STRATUM_SECRET_KEYS", "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	t.Setenv("STRATUM_TEST_PW", "pw")
	base := "backends:\n  main:\n    host: h\n    port: 1\n    admin_user: u\n    admin_password_env: STRATUM_TEST_PW\n"
	for _, tc := range []struct {
		pool string
		want int
	}{{"", 0}, {"pool:\n  spare_connections: 0\n", -1}, {"pool:\n  spare_connections: 3\n", 3}} {
		fs, err := loadConfig(writeConfig(t, base+tc.pool))
		if err != nil {
			t.Fatal(err)
		}
		if got := fs.Server.Router.SpareConns; got != tc.want {
			t.Errorf("%q: SpareConns %d, want %d", tc.pool, got, tc.want)
		}
	}
}
