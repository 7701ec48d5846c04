package router

import (
	"time"

	"github.com/stratum-hq/stratum-proxy/internal/backends"
)

// Config shapes a Router. Zero fields get the defaults noted.
type Config struct {
	// Set is the backend servers, with the shared and default ones; its
	// defaults are filled as backends.Set.FillDefaults says.
	backends.Set
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
	// SpareConns is how many idle backend connections a tenant's pool keeps
	// ready ahead of demand: when a session takes the last idle connection
	// of its kind, one more is dialed in the background, while the tenant is
	// under its limit and its backend has free capacity with nobody waiting.
	// A burst of concurrent transactions then finds a connection instead of
	// waiting for a dial (PgBouncer's min_pool_size serves the same end).
	// Default 1; -1 keeps none.
	SpareConns int
	// CacheSize bounds the placement cache; default 10000.
	CacheSize int
	// MaxMessageSize bounds a backend message; default wire.DefaultMaxMessageSize.
	MaxMessageSize int
}

func (c *Config) fillDefaults() error {
	if err := c.Set.FillDefaults(); err != nil {
		return err
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
	if c.SpareConns == 0 {
		c.SpareConns = 1
	}
	if c.CacheSize <= 0 {
		c.CacheSize = 10000
	}
	return nil
}

// spares is the number of spare connections a pool keeps (SpareConns, with
// -1 meaning none).
func (c *Config) spares() int {
	return max(c.SpareConns, 0)
}
