package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/stratum-hq/stratum-proxy/internal/backends"
	"github.com/stratum-hq/stratum-proxy/proxy"
	"github.com/stratum-hq/stratum-proxy/router"
	"github.com/stratum-hq/stratum-proxy/server"
)

// fileConfig is the YAML configuration of `stratum-proxy serve`. Every key is
// documented in config.example.yaml. Secrets are never in the file: keys ending
// in _env name the environment variable that holds them.
type fileConfig struct {
	Listen      string `yaml:"listen"`
	AdminListen string `yaml:"admin_listen"`
	Catalog     struct {
		URLEnv string `yaml:"url_env"`
	} `yaml:"catalog"`
	Secrets struct {
		KeysEnv string `yaml:"keys_env"`
	} `yaml:"secrets"`
	BootstrapAdminKeyEnv string `yaml:"bootstrap_admin_key_env"`
	Admin                struct {
		RateLimit int `yaml:"rate_limit"`
	} `yaml:"admin"`
	TLS struct {
		CertFile string `yaml:"cert_file"`
		KeyFile  string `yaml:"key_file"`
		Require  bool   `yaml:"require"`
	} `yaml:"tls"`
	Backends map[string]struct {
		backends.Backend `yaml:",inline"`
		AdminPasswordEnv string `yaml:"admin_password_env"`
	} `yaml:"backends"`
	Shared struct {
		Backend  string `yaml:"backend"`
		Database string `yaml:"database"`
	} `yaml:"shared"`
	DefaultBackend  string `yaml:"default_backend"`
	ClientDatabases struct {
		Names    []string `yaml:"names"`
		AllowAny bool     `yaml:"allow_any"`
	} `yaml:"client_databases"`
	Pool struct {
		Mode           string        `yaml:"mode"`
		MaxPerTenant   int           `yaml:"max_per_tenant"`
		QueueTimeout   time.Duration `yaml:"queue_timeout"`
		IdleTimeout    time.Duration `yaml:"idle_timeout"`
		ServerLifetime time.Duration `yaml:"server_lifetime"`
		Spare          *int          `yaml:"spare_connections"`
	} `yaml:"pool"`
	Limits struct {
		MaxMessageSize       int           `yaml:"max_message_size"`
		StartupTimeout       time.Duration `yaml:"startup_timeout"`
		MaxClientConnections int           `yaml:"max_client_connections"`
		MaxTenantConnections int           `yaml:"max_tenant_connections"`
		AuthFailureThreshold int           `yaml:"auth_failure_threshold"`
		AuthSourceFailures   int           `yaml:"auth_source_failure_threshold"`
		AuthFailureWindow    time.Duration `yaml:"auth_failure_window"`
		AuthLockout          time.Duration `yaml:"auth_lockout"`
	} `yaml:"limits"`
	Moves struct {
		DrainTimeout time.Duration `yaml:"drain_timeout"`
		MaxLag       int64         `yaml:"max_lag"`
		Retention    time.Duration `yaml:"retention"`
		CopyRate     int64         `yaml:"copy_rows_per_second"`
	} `yaml:"moves"`
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	Log           struct {
		Level  string `yaml:"level"`
		Format string `yaml:"format"`
	} `yaml:"log"`
}

// fileSettings is what a config file configures: the stack, and the logger
// that cmd builds before starting it.
type fileSettings struct {
	Server              server.Config
	LogFormat, LogLevel string
}

// loadConfig reads and checks a config file, filling defaults and reading the
// secrets it names from the environment.
func loadConfig(path string) (*fileSettings, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	var fc fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true) // a misspelt key is an error, not a silent default
	if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parsing config %s: %w", path, err)
	}
	env := func(name, what string, required bool) (string, error) {
		if name == "" {
			if required {
				return "", fmt.Errorf("config %s: %s: name the environment variable that holds it", path, what)
			}
			return "", nil
		}
		v := os.Getenv(name)
		if v == "" && required {
			return "", fmt.Errorf("config %s: %s: environment variable %s is empty", path, what, name)
		}
		return v, nil
	}
	fs := &fileSettings{LogFormat: or(fc.Log.Format, "json"), LogLevel: or(fc.Log.Level, "info")}
	sc := &fs.Server
	sc.Listen, sc.AdminListen = or(fc.Listen, "0.0.0.0:6432"), or(fc.AdminListen, "0.0.0.0:8080")
	sc.TLSCertFile, sc.TLSKeyFile = fc.TLS.CertFile, fc.TLS.KeyFile
	sc.PprofListen = os.Getenv("STRATUM_PPROF_LISTEN")
	sc.Proxy = proxy.Config{
		PoolMode: or(fc.Pool.Mode, proxy.PoolSession), RequireTLS: fc.TLS.Require,
		ShutdownGrace: fc.ShutdownGrace, MaxMessageSize: fc.Limits.MaxMessageSize, StartupTimeout: fc.Limits.StartupTimeout,
		MaxClientConnections: fc.Limits.MaxClientConnections, MaxTenantConnections: fc.Limits.MaxTenantConnections,
		AuthFailureThreshold: fc.Limits.AuthFailureThreshold, AuthFailureWindow: fc.Limits.AuthFailureWindow,
		AuthLockout: fc.Limits.AuthLockout, AuthSourceFailureThreshold: fc.Limits.AuthSourceFailures,
		DatabaseNames: fc.ClientDatabases.Names, AllowAnyDatabase: fc.ClientDatabases.AllowAny,
	}
	sc.Admin.RateLimit = fc.Admin.RateLimit
	if fc.Moves.DrainTimeout < 0 || fc.Moves.MaxLag < 0 || fc.Moves.Retention < 0 || fc.Moves.CopyRate < 0 {
		return nil, fmt.Errorf("config %s: moves: drain_timeout, max_lag, retention and copy_rows_per_second must not be negative", path)
	}
	sc.Moves = server.MoveConfig{DrainTimeout: fc.Moves.DrainTimeout, MaxLag: fc.Moves.MaxLag, Retention: fc.Moves.Retention,
		CopyRowsPerSecond: fc.Moves.CopyRate}
	if m := sc.Proxy.PoolMode; m != proxy.PoolSession && m != proxy.PoolTransaction {
		return nil, fmt.Errorf("config %s: pool.mode %q: use session or transaction", path, m)
	}
	if sc.CatalogURL, err = env(or(fc.Catalog.URLEnv, "STRATUM_CATALOG_URL"), "catalog.url_env", true); err != nil {
		return nil, err
	}
	if sc.SecretKeys, err = env(or(fc.Secrets.KeysEnv, "STRATUM_SECRET_KEYS"), "secrets.keys_env", true); err != nil {
		return nil, err
	}
	if sc.Admin.BootstrapKey, err = env(or(fc.BootstrapAdminKeyEnv, "STRATUM_BOOTSTRAP_ADMIN_KEY"), "bootstrap key", false); err != nil {
		return nil, err
	}
	sc.Router = router.Config{
		Set: backends.Set{Backends: map[string]backends.Backend{}, SharedBackend: fc.Shared.Backend,
			SharedDatabase: fc.Shared.Database, DefaultBackend: fc.DefaultBackend},
		MaxConnsPerTenant: fc.Pool.MaxPerTenant, QueueTimeout: fc.Pool.QueueTimeout, IdleTimeout: fc.Pool.IdleTimeout,
		ServerLifetime: fc.Pool.ServerLifetime, MaxMessageSize: fc.Limits.MaxMessageSize,
	}
	if sp := fc.Pool.Spare; sp != nil {
		if *sp < 0 {
			return nil, fmt.Errorf("pool.spare_connections: %d is negative", *sp)
		}
		sc.Router.SpareConns = *sp
		if *sp == 0 {
			sc.Router.SpareConns = -1 // router.Config: none
		}
	}
	for name, b := range fc.Backends {
		pw, err := env(b.AdminPasswordEnv, "backends."+name+".admin_password_env", true)
		if err != nil {
			return nil, err
		}
		be := b.Backend
		be.AdminPassword = pw
		sc.Router.Backends[name] = be
	}
	if len(sc.Router.Backends) == 0 {
		return nil, fmt.Errorf("config %s: no backends: configure at least one under backends:", path)
	}
	return fs, nil
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
