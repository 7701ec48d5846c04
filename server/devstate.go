package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/stratum-hq/stratum-proxy/internal/backends"
	"github.com/stratum-hq/stratum-proxy/internal/pgcluster"
	"github.com/stratum-hq/stratum-proxy/internal/secrets"
	"github.com/stratum-hq/stratum-proxy/router"
)

// CatalogDatabase is the dev deployment's catalog database.
const CatalogDatabase = "stratum_catalog"

// DevStateFile is the name of the dev state file inside the data directory.
const DevStateFile = "state.json"

// DevState is what a dev data directory remembers between runs (state.json,
// mode 0600): the private cluster's superuser password and port, the secret
// keyring, the admin key, and where the last run listened, so that the
// operator CLI and `schema apply` find the deployment without flags.
type DevState struct {
	SuperPassword string `json:"superuser_password"`
	PGPort        int    `json:"pg_port"`
	SecretKeys    string `json:"secret_keys"`
	AdminKey      string `json:"admin_key"`
	// AdminURL and ProxyAddr are where the running (or last) dev deployment
	// serves; written at every start.
	AdminURL  string `json:"admin_url,omitempty"`
	ProxyAddr string `json:"proxy_addr,omitempty"`
}

// Config is the configuration of a dev deployment whose private cluster
// listens on host:port with the given superuser.
func (st *DevState) Config(host string, port int, superuser string) Config {
	catalogURL := (&url.URL{Scheme: "postgres", User: url.UserPassword(superuser, st.SuperPassword),
		Host: net.JoinHostPort(host, strconv.Itoa(port)), Path: "/" + CatalogDatabase, RawQuery: "sslmode=disable"}).String()
	return Config{
		CatalogURL: catalogURL, SecretKeys: st.SecretKeys,
		Router: router.Config{Set: backends.Set{
			Backends: map[string]backends.Backend{"main": {
				Host: host, Port: port, AdminUser: superuser, AdminPassword: st.SuperPassword, SSLMode: "disable",
			}},
			SharedDatabase: "app",
		}},
	}
}

func randomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// LoadDevState reads dir/state.json, creating it with fresh secrets when absent.
func LoadDevState(dir string) (*DevState, error) {
	path := filepath.Join(dir, DevStateFile)
	b, err := os.ReadFile(path)
	if err == nil {
		var st DevState
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		return &st, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	keys, err := secrets.NewKeyText("dev1")
	if err != nil {
		return nil, err
	}
	st := &DevState{SuperPassword: randomToken(18), SecretKeys: keys, AdminKey: "stk_dev_" + randomToken(18)}
	return st, st.Save(dir)
}

// Save writes the state to dir/state.json (mode 0600).
func (st *DevState) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	return os.WriteFile(filepath.Join(dir, DevStateFile), b, 0o600)
}

// DevConfig reads a dev deployment's settings from its data directory (for
// tools run beside `stratum-proxy dev`, such as schema apply).
func DevConfig(dataDir string) (Config, error) {
	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return Config{}, err
	}
	if _, err := os.Stat(filepath.Join(dir, DevStateFile)); err != nil {
		return Config{}, fmt.Errorf("no dev deployment in %s (start one with `stratum-proxy dev`, or pass --config): %w", dir, err)
	}
	st, err := LoadDevState(dir)
	if err != nil {
		return Config{}, err
	}
	return st.Config("127.0.0.1", st.PGPort, "postgres"), nil
}

// StartDev starts (or restarts) the private PostgreSQL in dir and returns it
// with the stack configuration that uses it (listen addresses left empty)
// and the state. The caller stops the cluster.
func StartDev(ctx context.Context, dir string, log *zap.Logger) (*pgcluster.Cluster, Config, *DevState, error) {
	state, err := LoadDevState(dir)
	if err != nil {
		return nil, Config{}, nil, err
	}
	log.Info("starting private postgresql", zap.String("data_dir", filepath.Join(dir, "pg")))
	cluster, err := pgcluster.Start(ctx, pgcluster.Config{
		DataDir: filepath.Join(dir, "pg"), Port: state.PGPort, Password: state.SuperPassword,
	})
	if err != nil {
		return nil, Config{}, nil, err
	}
	fail := func(err error) (*pgcluster.Cluster, Config, *DevState, error) {
		cluster.Stop()
		return nil, Config{}, nil, err
	}
	if state.PGPort != cluster.Port() {
		state.PGPort = cluster.Port()
		if err := state.Save(dir); err != nil {
			return fail(err)
		}
	}
	if err := ensureCatalogDatabase(ctx, cluster); err != nil {
		return fail(err)
	}
	cert, key, err := EnsureSelfSignedCert(dir)
	if err != nil {
		return fail(fmt.Errorf("making dev tls certificate: %w", err))
	}
	cfg := state.Config(cluster.Host(), cluster.Port(), cluster.SuperUser())
	cfg.Admin.BootstrapKey = os.Getenv("STRATUM_BOOTSTRAP_ADMIN_KEY")
	if cfg.Admin.BootstrapKey == "" {
		cfg.Admin.BootstrapKey = state.AdminKey
	}
	cfg.TLSCertFile, cfg.TLSKeyFile = cert, key
	return cluster, cfg, state, nil
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
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, CatalogDatabase).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+CatalogDatabase); err != nil {
			return fmt.Errorf("creating catalog database: %w", err)
		}
	}
	for _, db := range []string{CatalogDatabase, "postgres", "template1"} {
		if _, err := conn.Exec(ctx, "REVOKE CONNECT, TEMPORARY ON DATABASE "+db+" FROM PUBLIC"); err != nil {
			return fmt.Errorf("closing database %s: %w", db, err)
		}
	}
	return nil
}

// EnsureSelfSignedCert makes a self-signed certificate for localhost in dir,
// once, so that clients can use sslmode=require against a dev proxy.
func EnsureSelfSignedCert(dir string) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if _, err := os.Stat(certFile); err == nil {
		return certFile, keyFile, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "stratum-proxy dev"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(5, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}
