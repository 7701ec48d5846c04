package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stratum-hq/stratum-proxy/internal/backends"
	"github.com/stratum-hq/stratum-proxy/internal/pgcluster"
)

// Private is a PostgreSQL cluster of one test's own, which the test may stop
// and start again (same data directory, port and password), unlike the
// package's shared server (Get), which must never be restarted: a backend
// server that fails under the proxy.
type Private struct {
	dir      string
	dataDir  string
	password string
	port     int

	mu sync.Mutex
	c  *pgcluster.Cluster // nil while stopped
}

// StartPrivate starts a cluster in a new temporary directory (clusterDir) and removes it
// when the test ends.
func StartPrivate(t testing.TB) *Private {
	t.Helper()
	dir, err := clusterDir("stratum-private-")
	if err != nil {
		t.Fatal(err)
	}
	// When root, the server runs as the postgres user, who must reach the
	// data directory inside (as Main does it).
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	pw := make([]byte, 16)
	rand.Read(pw)
	p := &Private{dir: dir, dataDir: filepath.Join(dir, "data"), password: hex.EncodeToString(pw)}
	t.Cleanup(func() {
		p.mu.Lock()
		c := p.c
		p.c = nil
		p.mu.Unlock()
		if c != nil {
			if err := c.Remove(); err != nil {
				t.Errorf("removing the private cluster: %v", err)
			}
		}
		os.RemoveAll(dir)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := pgcluster.Start(ctx, pgcluster.Config{DataDir: p.dataDir, Password: p.password})
	if err != nil {
		t.Fatalf("starting a private cluster: %v", err)
	}
	p.c, p.port = c, c.Port()
	return p
}

// Stop shuts the cluster down (fast shutdown: sessions are ended).
func (p *Private) Stop(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	c := p.c
	p.c = nil
	p.mu.Unlock()
	if c == nil {
		return
	}
	if err := c.Stop(); err != nil {
		t.Errorf("stopping the private cluster: %v", err)
	}
}

// Start starts the stopped cluster again on the same port and data directory.
func (p *Private) Start(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.c != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgcluster.Start(ctx, pgcluster.Config{DataDir: p.dataDir, Port: p.port, Password: p.password})
	if err != nil {
		t.Fatalf("restarting the private cluster on port %d: %v", p.port, err)
	}
	p.c = c
}

// URL is the superuser's URL for database on the cluster, valid while
// stopped too.
func (p *Private) URL(database string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword("postgres", p.password),
		Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)), Path: "/" + database, RawQuery: "sslmode=disable"}
	return u.String()
}

// Backend is the cluster as a backend server of the proxy, reached as its
// superuser.
func (p *Private) Backend() backends.Backend {
	return backends.Backend{Host: "127.0.0.1", Port: p.port, AdminUser: "postgres", AdminPassword: p.password, SSLMode: "disable"}
}
