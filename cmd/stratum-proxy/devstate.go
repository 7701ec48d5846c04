package main

import (
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

	"github.com/stratum-hq/stratum-proxy/internal/backends"
	"github.com/stratum-hq/stratum-proxy/internal/secrets"
	"github.com/stratum-hq/stratum-proxy/router"
)

// devState is what a dev data directory remembers between runs (state.json,
// mode 0600): the private cluster's superuser password and port, the secret
// keyring and the admin key.
type devState struct {
	SuperPassword string `json:"superuser_password"`
	PGPort        int    `json:"pg_port"`
	SecretKeys    string `json:"secret_keys"`
	AdminKey      string `json:"admin_key"`
}

// stackConfig is the configuration of a dev deployment whose private cluster
// listens on host:port with the given superuser.
func (st *devState) stackConfig(host string, port int, superuser string) *stackConfig {
	catalogURL := (&url.URL{Scheme: "postgres", User: url.UserPassword(superuser, st.SuperPassword),
		Host: net.JoinHostPort(host, strconv.Itoa(port)), Path: "/" + catalogDatabase, RawQuery: "sslmode=disable"}).String()
	return &stackConfig{
		CatalogURL: catalogURL, SecretKeys: st.SecretKeys, LogFormat: "console", LogLevel: "info",
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

// loadDevState reads dir/state.json, creating it with fresh secrets when absent.
func loadDevState(dir string) (*devState, error) {
	path := filepath.Join(dir, "state.json")
	b, err := os.ReadFile(path)
	if err == nil {
		var st devState
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
	st := &devState{SuperPassword: randomToken(18), SecretKeys: keys, AdminKey: "stk_dev_" + randomToken(18)}
	return st, st.save(dir)
}

func (st *devState) save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	return os.WriteFile(filepath.Join(dir, "state.json"), b, 0o600)
}

// ensureDevCert makes a self-signed certificate for localhost in dir, once, so
// that clients can use sslmode=require against the dev proxy.
func ensureDevCert(dir string) (certFile, keyFile string, err error) {
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
