package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCommandLine runs the binary's commands as a user would type them:
// --help answers on stdout with exit 0, a wrong command line exits 2 with a
// hint, version prints one line.
func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args        []string
		code        int
		out, errOut string // substrings of stdout and stderr
	}{
		{[]string{"--help"}, 0, "Usage:", ""},
		{[]string{"help"}, 0, "stratum-proxy dev", ""},
		{[]string{"dev", "--help"}, 0, "-pool-mode", ""},
		{[]string{"serve", "--help"}, 0, "-config", ""},
		{[]string{"migrate", "-h"}, 0, "-config", ""},
		{[]string{"schema", "apply", "--help"}, 0, "-data-dir", ""},
		{[]string{"version"}, 0, "stratum-proxy ", ""},
		{[]string{"--version"}, 0, "stratum-proxy ", ""},
		{nil, 2, "", "Usage:"},
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"dev", "--no-such-flag"}, 2, "", "see --help"},
		{[]string{"dev", "--pool-mode", "statement"}, 2, "", `--pool-mode "statement"`},
		{[]string{"serve"}, 2, "", "serve needs --config FILE"},
		{[]string{"schema", "drop"}, 2, "", "schema apply"},
		{[]string{"schema", "apply"}, 2, "", "FILE.sql"},
		{[]string{"serve", "--config", filepath.Join(t.TempDir(), "missing.yaml")}, 1, "", "reading config"},
	} {
		t.Run(strings.Join(tc.args, "_"), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(tc.args, &out, &errOut)
			if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errOut.String(), tc.errOut) {
				t.Errorf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, tc.code, out.String(), errOut.String())
			}
			if tc.code == 0 && errOut.Len() > 0 {
				t.Errorf("stderr on success: %s", errOut.String())
			}
		})
	}
}

// TestContainerConfigLoads reads the image's default configuration: it must
// load, and must not point the backend at the container's own loopback.
func TestContainerConfigLoads(t *testing.T) {
	t.Setenv("STRATUM_CATALOG_URL", "postgres://cat@db/stratum_catalog")
	t.Setenv("STRATUM_SECRET_KEYS", "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	t.Setenv("STRATUM_BACKEND_MAIN_PASSWORD", "s3cret")
	fs, err := loadConfig("../../docker/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if h := fs.Server.Router.Backends["main"].Host; h == "127.0.0.1" || h == "localhost" {
		t.Errorf("the image's backend host is %q, the container itself", h)
	}
	if !strings.HasPrefix(fs.Server.Listen, "0.0.0.0:") || !strings.HasPrefix(fs.Server.AdminListen, "0.0.0.0:") {
		t.Errorf("listeners %q, %q: a container must bind every interface", fs.Server.Listen, fs.Server.AdminListen)
	}
	df, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(df), "COPY docker/config.yaml /etc/stratum/config.yaml") {
		t.Error("the Dockerfile does not install docker/config.yaml as the image's config")
	}
	// `COPY . .` must not carry the dev deployment's secrets into the image.
	ignore, err := os.ReadFile("../../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ignore), ".stratum-dev") {
		t.Error(".dockerignore does not exclude .stratum-dev (superuser password, admin key, keyring, TLS key)")
	}
}
