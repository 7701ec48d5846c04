package router

import (
	"fmt"
	"regexp"
	"time"
)

// Backend is one PostgreSQL server that tenant data can live on.
type Backend struct {
	// Host and Port of the server.
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
	// AdminUser and AdminPassword name a role that may create roles and
	// databases (a superuser in practice); used only for provisioning.
	AdminUser     string `yaml:"admin_user"`
	AdminPassword string `yaml:"-"`
	// AdminDatabase is where the admin connects for cluster-wide work; default "postgres".
	AdminDatabase string `yaml:"admin_database"`
	// SSLMode for connections to this server: disable, prefer or require; default prefer.
	SSLMode string `yaml:"sslmode"`
	// MaxConnections caps the connections the proxy opens to this server,
	// across all tenants; default 80 (keep it below the server's max_connections).
	MaxConnections int `yaml:"max_connections"`
}

// Config shapes a Router. Zero fields get the defaults noted.
type Config struct {
	// Backends by name. At least one is required.
	Backends map[string]Backend
	// SharedBackend names the backend holding the shared database; default: the
	// only backend, or "main".
	SharedBackend string
	// SharedDatabase is the database of shared and schema tenants; default "app".
	SharedDatabase string
	// DefaultBackend is where database-isolated tenants go when none is named;
	// default SharedBackend.
	DefaultBackend string
	// MaxConnsPerTenant caps a tenant's backend connections (idle or in use);
	// default 20. A placement may carry its own limit.
	MaxConnsPerTenant int
	// QueueTimeout bounds how long a session waits for a backend connection
	// when its tenant or backend is at its limit; default 30s.
	QueueTimeout time.Duration
	// HealthCheckAfter: an idle connection unused for longer is checked (one
	// non-blocking peek) for a closed socket or unread data before it is
	// handed out; default 0, every time. A restarted server's goodbye can
	// arrive at any moment, so only raise it for speed over certainty.
	HealthCheckAfter time.Duration
	// IdleTimeout closes idle backend connections older than this; default 5m.
	IdleTimeout time.Duration
	// ServerLifetime closes backend connections older than this on release; default 1h.
	ServerLifetime time.Duration
	// DialTimeout bounds connecting and authenticating to a backend; default 10s.
	DialTimeout time.Duration
	// CacheSize bounds the placement cache; default 10000.
	CacheSize int
	// MaxMessageSize bounds a backend message; default wire.DefaultMaxMessageSize.
	MaxMessageSize int
}

var identPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func (c *Config) fillDefaults() error {
	if len(c.Backends) == 0 {
		return fmt.Errorf("router config: no backends")
	}
	for name, b := range c.Backends {
		if b.AdminDatabase == "" {
			b.AdminDatabase = "postgres"
		}
		if b.MaxConnections <= 0 {
			b.MaxConnections = 80
		}
		if b.SSLMode == "" {
			b.SSLMode = "prefer"
		}
		switch b.SSLMode {
		case "disable", "prefer", "require":
		default:
			return fmt.Errorf("backend %q: sslmode %q: use disable, prefer or require", name, b.SSLMode)
		}
		if b.Host == "" || b.Port == 0 || b.AdminUser == "" {
			return fmt.Errorf("backend %q: host, port and admin_user are required", name)
		}
		c.Backends[name] = b
	}
	if c.SharedBackend == "" {
		if len(c.Backends) == 1 {
			for name := range c.Backends {
				c.SharedBackend = name
			}
		} else {
			c.SharedBackend = "main"
		}
	}
	if _, ok := c.Backends[c.SharedBackend]; !ok {
		return fmt.Errorf("router config: shared backend %q is not configured", c.SharedBackend)
	}
	if c.SharedDatabase == "" {
		c.SharedDatabase = "app"
	}
	if !identPattern.MatchString(c.SharedDatabase) {
		return fmt.Errorf("router config: shared database %q: use lower-case letters, digits and underscores", c.SharedDatabase)
	}
	if c.DefaultBackend == "" {
		c.DefaultBackend = c.SharedBackend
	}
	if _, ok := c.Backends[c.DefaultBackend]; !ok {
		return fmt.Errorf("router config: default backend %q is not configured", c.DefaultBackend)
	}
	if c.MaxConnsPerTenant <= 0 {
		c.MaxConnsPerTenant = 20
	}
	if c.QueueTimeout <= 0 {
		c.QueueTimeout = 30 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 5 * time.Minute
	}
	if c.ServerLifetime <= 0 {
		c.ServerLifetime = time.Hour
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 10 * time.Second
	}
	if c.CacheSize <= 0 {
		c.CacheSize = 10000
	}
	return nil
}
