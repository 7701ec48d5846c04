package server

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/stratum-hq/stratum-proxy/internal/pgtest"
	"github.com/stratum-hq/stratum-proxy/internal/secrets"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestOpenCatalogReportsMigrations: a fresh catalog gets every migration and
// says how many; opening it again applies none (what `migrate` prints).
func TestOpenCatalogReportsMigrations(t *testing.T) {
	srv := pgtest.Get(t)
	keys, err := secrets.NewKeyText("k1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{CatalogURL: srv.URL(srv.NewDatabase(t, "cat")), SecretKeys: keys}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, want := range []func(int) bool{func(n int) bool { return n > 0 }, func(n int) bool { return n == 0 }} {
		cat, applied, err := OpenCatalog(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		cat.Close()
		if !want(applied) {
			t.Errorf("open %d applied %d migrations", i+1, applied)
		}
	}
	if _, _, err := OpenCatalog(ctx, &Config{CatalogURL: cfg.CatalogURL, SecretKeys: "garbage"}); err == nil || !strings.Contains(err.Error(), "secret keys") {
		t.Errorf("a bad keyring: %v, want an error naming the secret keys", err)
	}
}

// TestConsoleLogColours: the console encoding colours levels for a terminal
// only; a log written to a pipe or file has no escape codes.
func TestConsoleLogColours(t *testing.T) {
	for _, tty := range []bool{false, true} {
		var buf bytes.Buffer
		core := zapcore.NewCore(zapcore.NewConsoleEncoder(consoleEncoderConfig(tty)), zapcore.AddSync(&buf), zapcore.InfoLevel)
		zap.New(core).Info("hello")
		if got := strings.Contains(buf.String(), "\x1b["); got != tty {
			t.Errorf("tty=%v: escape codes %v in %q", tty, got, buf.String())
		}
	}
	if _, err := NewLogger("xml", "info"); err == nil {
		t.Error("log format xml accepted")
	}
	if _, err := NewLogger("json", "loud"); err == nil {
		t.Error("log level loud accepted")
	}
}
