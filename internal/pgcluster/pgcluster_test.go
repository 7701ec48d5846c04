package pgcluster

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// testDir returns a fresh directory that the postgres user can reach when
// the test runs as root (t.TempDir's parents are private to us), removed
// when the test ends.
func testDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgcluster-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func start(t *testing.T, cfg Config) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	return c
}

func connect(t *testing.T, c *Cluster) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), c.URL("postgres"))
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestStartStopReuseRemove(t *testing.T) {
	dataDir := filepath.Join(testDir(t), "nested", "data")
	// A password that needs escaping in a URL.
	cfg := Config{DataDir: dataDir, Password: "p@ss:w/rd%?#", SuperUser: "boss"}
	ctx := context.Background()

	// First run: initdb, then a table to look for in the second run.
	c := start(t, cfg)
	if c.Host() != "127.0.0.1" || c.Port() == 0 || c.SuperUser() != "boss" || c.Password() != cfg.Password {
		t.Fatalf("accessors: host %q port %d user %q password %q", c.Host(), c.Port(), c.SuperUser(), c.Password())
	}
	conn := connect(t, c)
	var one int
	if err := conn.QueryRow(ctx, "select 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("select 1: %v, %d", err, one)
	}
	var fsync string
	if err := conn.QueryRow(ctx, "show fsync").Scan(&fsync); err != nil || fsync != "off" {
		t.Fatalf("show fsync: %v, %q", err, fsync)
	}
	if _, err := conn.Exec(ctx, "create table survivor (v text); insert into survivor values ('run 1')"); err != nil {
		t.Fatalf("creating table: %v", err)
	}
	conn.Close(ctx)

	// A second server on the same data directory is refused clearly.
	if _, err := Start(ctx, cfg); err == nil || !strings.Contains(err.Error(), "in use by a running postgres") {
		t.Fatalf("second Start on a live data directory: got %v", err)
	}

	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "postmaster.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("postmaster.pid after Stop: %v", err)
	}

	// A stale postmaster.pid, as a killed server leaves, naming a dead pid.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := strconv.Itoa(dead.Process.Pid) + "\n" + dataDir + "\n"
	if err := os.WriteFile(filepath.Join(dataDir, "postmaster.pid"), []byte(stale), 0o600); err != nil {
		t.Fatal(err)
	}

	// Second run on the same data directory, with a setting: no initdb.
	cfg.Settings = map[string]string{"work_mem": "8MB"}
	c2 := start(t, cfg)
	conn = connect(t, c2)
	var v string
	if err := conn.QueryRow(ctx, "select v from survivor").Scan(&v); err != nil || v != "run 1" {
		t.Fatalf("table from run 1: %v, %q", err, v)
	}
	var workMem string
	if err := conn.QueryRow(ctx, "show work_mem").Scan(&workMem); err != nil || workMem != "8MB" {
		t.Fatalf("show work_mem: %v, %q", err, workMem)
	}
	conn.Close(ctx)

	if err := c2.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	for _, path := range []string{dataDir, dataDir + ".log"} {
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after Remove: %v", path, err)
		}
	}
}

func TestWrongPassword(t *testing.T) {
	cfg := Config{DataDir: filepath.Join(testDir(t), "data"), Password: "right"}
	c := start(t, cfg)
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	cfg.Password = "wrong"
	_, err := Start(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "another superuser or password") {
		t.Fatalf("Start with the wrong password: got %v", err)
	}
}

func TestURL(t *testing.T) {
	c := &Cluster{port: 5433, user: "a b", password: "p@ss:w/rd%"}
	raw := c.URL("my/db")
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("parsing %s: %v", raw, err)
	}
	pw, _ := u.User.Password()
	if u.User.Username() != "a b" || pw != "p@ss:w/rd%" || u.Host != "127.0.0.1:5433" ||
		u.Path != "/my/db" || u.Query().Get("sslmode") != "disable" {
		t.Fatalf("URL %s parsed as %#v", raw, u)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Password: "x"}, "DataDir is required"},
		{Config{DataDir: "d"}, "Password is required"},
		{Config{DataDir: "d", Password: "x", Settings: map[string]string{"port": "1"}}, "set by pgcluster"},
		{Config{DataDir: "d", Password: "x", BinDir: "/nonexistent"}, "no initdb"},
	} {
		if _, err := Start(context.Background(), tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Start(%+v): got %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"15", "14", 1},
		{"9.6", "10", -1},
		{"15", "15", 0},
		{"9.6", "9.5", 1},
	} {
		if got := compareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestPortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg := Config{
		DataDir:  filepath.Join(testDir(t), "data"),
		Password: "x",
		Port:     l.Addr().(*net.TCPAddr).Port,
	}
	_, err = Start(context.Background(), cfg)
	if !errors.Is(err, errPortTaken) || !strings.Contains(err.Error(), "could not bind") {
		t.Fatalf("Start on a taken port: got %v", err)
	}
}

func TestUnreachableDataDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root hands the server to the postgres user")
	}
	dir := testDir(t)
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := Start(context.Background(), Config{DataDir: filepath.Join(dir, "data"), Password: "x"})
	if err == nil || !strings.Contains(err.Error(), "not searchable by the postgres user") {
		t.Fatalf("Start under a private directory: got %v", err)
	}
}
