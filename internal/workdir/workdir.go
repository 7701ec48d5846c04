package workdir

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/internal/pgcluster"
)

// Cleanups are what a run started, to be stopped when it ends.
type Cleanups []func()

// Add records f, to be called by Run before everything added earlier.
func (c *Cleanups) Add(f func()) { *c = append(*c, f) }

// Run calls the cleanups in reverse order of adding, then removes dir (when
// not empty) unless keep is set, in which case it prints where it is.
func (c *Cleanups) Run(dir string, keep bool) {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
	*c = nil
	if dir == "" {
		return
	}
	if keep {
		fmt.Println("kept", dir)
		return
	}
	os.RemoveAll(dir)
}

// Step prints a progress line with the time of day.
func Step(format string, args ...any) {
	fmt.Printf("[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// Token is a random secret (32 random bytes) safe to write in URLs,
// connection strings, YAML and PgBouncer's userlist.txt.
func Token() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// StartPostgres starts a private PostgreSQL in dataDir (internal/pgcluster,
// with a random superuser password and settings), records its stop in c,
// creates databases and returns the cluster and its server_version.
func (c *Cleanups) StartPostgres(ctx context.Context, dataDir string, settings map[string]string, databases ...string) (*pgcluster.Cluster, string, error) {
	cluster, err := pgcluster.Start(ctx, pgcluster.Config{DataDir: dataDir, Password: Token(), Settings: settings})
	if err != nil {
		return nil, "", err
	}
	c.Add(func() {
		if err := cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping postgres:", err)
		}
	})
	su, err := pgx.Connect(ctx, cluster.URL("postgres"))
	if err != nil {
		return nil, "", err
	}
	defer su.Close(context.Background())
	var version string
	if err := su.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil {
		return nil, "", err
	}
	for _, db := range databases {
		if _, err := su.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
			return nil, "", fmt.Errorf("creating database %s: %w", db, err)
		}
	}
	return cluster, version, nil
}
