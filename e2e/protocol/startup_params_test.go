package protocol

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
)

// TestStartupParamsAllowList: a tenant user without switch rights, on real
// PostgreSQL through pgx and psql, in both pool modes. Every startup setting
// off the allow-list (or with a refused value) ends the connection with a
// FATAL error naming it, whether sent as a startup parameter or inside
// options; the allowed ones take effect on the backend and stay in effect
// over transactions (transaction pooling replays them on each backend).
func TestStartupParamsAllowList(t *testing.T) {
	stacktest.PoolModes(t, func(t *testing.T, ts *stacktest.Stack) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if _, err := ts.Catalog.CreateUser(ctx, "startup_app", "startup_pw", "client_alpha", false); err != nil {
			t.Fatal(err)
		}
		// optionsURL names the tenant and the extra words in options.
		optionsURL := func(words string) string {
			// %20, not +, for spaces: pgx reads the URL query with '+' as itself.
			return ts.URL("startup_app", "startup_pw", "", "options="+
				strings.ReplaceAll(url.QueryEscape("-c stratum.tenant=client_alpha "+words), "+", "%20"))
		}
		connect := func(rawURL string, runtime map[string]string) (*pgx.Conn, error) {
			cfg, err := pgx.ParseConfig(rawURL)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range runtime {
				cfg.RuntimeParams[k] = v
			}
			cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			return pgx.ConnectConfig(cctx, cfg)
		}
		wantRefused := func(t *testing.T, c *pgx.Conn, err error, code, name string) {
			t.Helper()
			if err == nil {
				c.Close(ctx)
				t.Fatalf("connected, want FATAL %s naming %q", code, name)
			}
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != code || pe.Severity != "FATAL" || !strings.Contains(pe.Message, `"`+name+`"`) {
				t.Errorf("%v, want FATAL %s naming %q", err, code, name)
			}
		}

		for _, tc := range []struct{ name, value, code string }{
			{"role", "postgres", "42501"},
			{"session_authorization", "postgres", "42501"},
			{"stratum.config.plan", "gold", "42501"},
			{"stratum.tenant_override", "x", "42501"},
			{"maintenance_work_mem", "1GB", "42704"},
			{"no_such_setting", "1", "42704"},
			{"client_encoding", "BIG5", "0A000"},
			{"client_encoding", "WINDOWS-932", "0A000"},
			{"standard_conforming_strings", "off", "0A000"},
		} {
			t.Run("startup parameter "+tc.name+"="+tc.value, func(t *testing.T) {
				c, err := connect(ts.URL("startup_app", "startup_pw", "client_alpha", ""), map[string]string{tc.name: tc.value})
				wantRefused(t, c, err, tc.code, tc.name)
			})
			t.Run("options -c "+tc.name+"="+tc.value, func(t *testing.T) {
				c, err := connect(optionsURL("-c "+tc.name+"="+tc.value), nil)
				wantRefused(t, c, err, tc.code, tc.name)
			})
			dashed := strings.ReplaceAll(tc.name, "_", "-")
			t.Run("options --"+dashed+"="+tc.value, func(t *testing.T) {
				c, err := connect(optionsURL("--"+dashed+"="+tc.value), nil)
				wantRefused(t, c, err, tc.code, dashed)
			})
		}
		t.Run("options: a postgres switch", func(t *testing.T) {
			c, err := connect(optionsURL("-d 5"), nil)
			wantRefused(t, c, err, "0A000", "-d")
		})

		t.Run("allowed settings take effect", func(t *testing.T) {
			c, err := connect(optionsURL("-c DateStyle=SQL,DMY --extra-float-digits=1 -cIntervalStyle=iso_8601 -c bytea_output=escape"),
				map[string]string{"application_name": "startup-e2e", "TimeZone": "Asia/Tokyo", "client_encoding": "UTF8",
					"client_min_messages": "error"})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			for i := range 4 {
				tx, err := c.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for name, want := range map[string]string{"application_name": "startup-e2e", "TimeZone": "Asia/Tokyo",
					"DateStyle": "SQL, DMY", "extra_float_digits": "1", "IntervalStyle": "iso_8601",
					"client_encoding": "UTF8", "standard_conforming_strings": "on", "stratum.tenant": "client_alpha",
					"client_min_messages": "error", "bytea_output": "escape"} {
					var got string
					if err := tx.QueryRow(ctx, "SHOW "+name).Scan(&got); err != nil || got != want {
						t.Errorf("transaction %d: SHOW %s = %q %v, want %q", i, name, got, err, want)
					}
				}
				if err := tx.Commit(ctx); err != nil {
					t.Fatal(err)
				}
			}
		})

		psql, err := exec.LookPath("psql")
		if err != nil {
			t.Fatal("psql is not installed: run make deps")
		}
		home := t.TempDir()
		runPsql := func(env []string, rawURL, sql string) (string, string, error) {
			cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(cctx, psql, rawURL, "-X", "-w", "-A", "-t", "-c", sql)
			// psql's own defaults: no PG* variables (PGOPTIONS included)
			// from the environment.
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "PG") && !strings.HasPrefix(kv, "HOME=") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			cmd.Env = append(append(cmd.Env, "HOME="+home, "PGCONNECT_TIMEOUT=10"), env...)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			return strings.TrimSpace(out.String()), errb.String(), err
		}
		t.Run("psql with its defaults", func(t *testing.T) {
			// libpq sends fallback_application_name=psql as application_name.
			out, stderr, err := runPsql(nil, ts.URL("startup_app", "startup_pw", "client_alpha", ""),
				"SHOW application_name")
			if err != nil || out != "psql" {
				t.Errorf("psql SHOW application_name: %v\nstdout: %s\nstderr: %s", err, out, stderr)
			}
			out, stderr, err = runPsql([]string{"PGAPPNAME=from-env", "PGCLIENTENCODING=UTF8", "PGTZ=UTC", "PGDATESTYLE=ISO"},
				ts.URL("startup_app", "startup_pw", "client_alpha", ""), "SHOW application_name; SHOW TimeZone")
			if err != nil || out != "from-env\nUTC" {
				t.Errorf("psql with PGAPPNAME, PGCLIENTENCODING, PGTZ, PGDATESTYLE: %v\nstdout: %s\nstderr: %s", err, out, stderr)
			}
		})
		t.Run("psql with PGOPTIONS naming a refused setting", func(t *testing.T) {
			out, stderr, err := runPsql([]string{"PGOPTIONS=-c stratum.tenant=client_alpha -c role=postgres"},
				ts.URL("startup_app", "startup_pw", "", ""), "SELECT 1")
			var ee *exec.ExitError
			if !errors.As(err, &ee) || !strings.Contains(stderr, `setting "role" in options`) {
				t.Errorf("psql: %v\nstdout: %s\nstderr: %s", err, out, stderr)
			}
		})
	})
}
