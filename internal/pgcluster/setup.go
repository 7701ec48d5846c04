package pgcluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// pgHBA is the pg_hba.conf every new cluster gets: passwords everywhere.
const pgHBA = `# Written by stratum-proxy's pgcluster.
local all all               scram-sha-256
host  all all 127.0.0.1/32  scram-sha-256
host  all all ::1/128       scram-sha-256
`

// withDefaults validates cfg and fills in its defaults.
func withDefaults(ctx context.Context, cfg Config) (Config, error) {
	if cfg.DataDir == "" {
		return cfg, errors.New("config: DataDir is required")
	}
	if cfg.Password == "" {
		return cfg, errors.New("config: Password is required")
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return cfg, fmt.Errorf("config: bad port %d", cfg.Port)
	}
	for _, name := range []string{"port", "listen_addresses", "unix_socket_directories"} {
		if _, ok := cfg.Settings[name]; ok {
			return cfg, fmt.Errorf("config: setting %s is set by pgcluster", name)
		}
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return cfg, fmt.Errorf("resolving data directory: %w", err)
	}
	cfg.DataDir = dir
	if cfg.SuperUser == "" {
		cfg.SuperUser = "postgres"
	}
	if cfg.LogFile == "" {
		cfg.LogFile = cfg.DataDir + ".log"
	}
	if cfg.LogFile, err = filepath.Abs(cfg.LogFile); err != nil {
		return cfg, fmt.Errorf("resolving log file: %w", err)
	}
	if cfg.BinDir == "" {
		if cfg.BinDir, err = findBinDir(ctx); err != nil {
			return cfg, err
		}
	} else if !hasServer(cfg.BinDir) {
		return cfg, fmt.Errorf("config: BinDir %s has no initdb and postgres", cfg.BinDir)
	}
	return cfg, nil
}

// findBinDir finds the directory of the installed server binaries.
func findBinDir(ctx context.Context) (string, error) {
	if out, err := exec.CommandContext(ctx, "pg_config", "--bindir").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); hasServer(dir) {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// Newest version first: 15 before 9.6, 15 before 14.
	slices.SortFunc(dirs, func(a, b string) int {
		return -compareVersions(filepath.Base(filepath.Dir(a)), filepath.Base(filepath.Dir(b)))
	})
	for _, dir := range dirs {
		if hasServer(dir) {
			return dir, nil
		}
	}
	if path, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(path); err == nil {
			path = real
		}
		if dir := filepath.Dir(path); hasServer(dir) {
			return dir, nil
		}
	}
	return "", errors.New("finding postgresql server binaries: none found (install postgresql or set BinDir)")
}

// compareVersions compares dotted version numbers numerically.
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) || i < len(bs); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if c := cmp.Compare(x, y); c != 0 {
			return c
		}
	}
	return 0
}

// hasServer reports whether dir holds initdb and postgres.
func hasServer(dir string) bool {
	for _, name := range []string{"initdb", "postgres"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
			return false
		}
	}
	return true
}

// owner is the OS user the server runs as when we are root, since
// PostgreSQL refuses to run as root. A nil *owner means "ourselves".
type owner struct {
	uid, gid int
	groups   []uint32
}

// lookupOwner returns the postgres OS user when we are root, else nil.
func lookupOwner() (*owner, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("looking up the postgres user (needed when running as root): %w", err)
	}
	o := &owner{}
	if o.uid, err = strconv.Atoi(u.Uid); err != nil {
		return nil, fmt.Errorf("parsing uid of postgres: %w", err)
	}
	if o.gid, err = strconv.Atoi(u.Gid); err != nil {
		return nil, fmt.Errorf("parsing gid of postgres: %w", err)
	}
	gids, _ := u.GroupIds()
	for _, g := range gids {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			o.groups = append(o.groups, uint32(n))
		}
	}
	return o, nil
}

// sysProcAttr returns attributes that run a child as the owner.
func (o *owner) sysProcAttr() *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{}
	if o != nil {
		attr.Credential = &syscall.Credential{Uid: uint32(o.uid), Gid: uint32(o.gid), Groups: o.groups}
	}
	return attr
}

// chown gives path to the owner.
func (o *owner) chown(path string) error {
	if o == nil {
		return nil
	}
	if err := os.Chown(path, o.uid, o.gid); err != nil {
		return fmt.Errorf("handing %s to the postgres user: %w", path, err)
	}
	return nil
}

// mkdirAll is os.MkdirAll that gives each directory it creates to the owner;
// dir itself gets perm, its new parents 0755.
func (o *owner) mkdirAll(dir string, perm fs.FileMode) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := o.mkdirAll(parent, 0o755); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, perm); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return o.chown(dir)
}

// checkSearchable reports an error when dir or a directory above it cannot
// be searched by the owner, which initdb and postgres would fail on with a
// less helpful message.
func (o *owner) checkSearchable(dir string) error {
	if o == nil {
		return nil
	}
	for ; ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && !o.canSearch(fi.Mode().Perm(), st.Uid, st.Gid) {
			return fmt.Errorf("directory %s is not searchable by the postgres user (chmod o+x it)", dir)
		}
		if dir == filepath.Dir(dir) {
			return nil
		}
	}
}

// canSearch reports whether the owner may search a directory with the
// given permissions and ownership.
func (o *owner) canSearch(perm fs.FileMode, uid, gid uint32) bool {
	switch {
	case int(uid) == o.uid:
		return perm&0o100 != 0
	case int(gid) == o.gid || slices.Contains(o.groups, gid):
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}

// prepareDataDir makes cfg.DataDir ready for a server: initdb'd, and free of
// a stale postmaster.pid.
func prepareDataDir(ctx context.Context, cfg Config, own *owner) error {
	if err := own.mkdirAll(filepath.Dir(cfg.DataDir), 0o755); err != nil {
		return fmt.Errorf("creating data directory: %w", err)
	}
	// The password file and the socket directory go in os.TempDir().
	for _, dir := range []string{filepath.Dir(cfg.DataDir), os.TempDir()} {
		if err := own.checkSearchable(dir); err != nil {
			return err
		}
	}
	_, err := os.Stat(filepath.Join(cfg.DataDir, "PG_VERSION"))
	switch {
	case err == nil:
		return removeStalePID(cfg.DataDir)
	case errors.Is(err, fs.ErrNotExist):
		return initDataDir(ctx, cfg, own)
	default:
		return fmt.Errorf("inspecting data directory: %w", err)
	}
}

// initDataDir runs initdb on cfg.DataDir and writes its pg_hba.conf.
func initDataDir(ctx context.Context, cfg Config, own *owner) error {
	if err := own.mkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating data directory: %w", err)
	}
	// An existing empty directory may be ours (root's): initdb wants it.
	if err := own.chown(cfg.DataDir); err != nil {
		return err
	}

	pwFile, err := os.CreateTemp("", "stpgpw")
	if err != nil {
		return fmt.Errorf("writing password file: %w", err)
	}
	defer os.Remove(pwFile.Name())
	_, err = pwFile.WriteString(cfg.Password + "\n")
	if cerr := pwFile.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing password file: %w", err)
	}
	if err := own.chown(pwFile.Name()); err != nil {
		return err
	}

	cmd := exec.CommandContext(ctx, filepath.Join(cfg.BinDir, "initdb"),
		"-D", cfg.DataDir,
		"-U", cfg.SuperUser,
		"--pwfile="+pwFile.Name(),
		"--auth-local=scram-sha-256",
		"--auth-host=scram-sha-256",
		"-E", "UTF8",
		"--no-locale",
		"--no-sync",
	)
	cmd.Dir = "/"
	cmd.SysProcAttr = own.sysProcAttr()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("running initdb: %w; output ends:\n%s", err, lastLines(string(out), logTailLines))
	}

	hba := filepath.Join(cfg.DataDir, "pg_hba.conf")
	if err := os.WriteFile(hba, []byte(pgHBA), 0o600); err != nil {
		return fmt.Errorf("writing pg_hba.conf: %w", err)
	}
	return own.chown(hba)
}

// removeStalePID removes the postmaster.pid a server that died without
// shutting down left behind, and refuses a data directory that a live
// postgres is using.
func removeStalePID(dataDir string) error {
	path := filepath.Join(dataDir, "postmaster.pid")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("reading postmaster.pid: %w", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	// A standalone backend writes its pid negated.
	if pid, err := strconv.Atoi(strings.TrimSpace(first)); err == nil && pid != 0 && isPostgres(max(pid, -pid)) {
		return fmt.Errorf("data directory %s is in use by a running postgres (pid %d)", dataDir, max(pid, -pid))
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("removing stale postmaster.pid: %w", err)
	}
	return nil
}

// isPostgres reports whether pid is a live postgres process.
func isPostgres(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return true // alive, and no /proc to tell what it is: assume the worst
	}
	name := strings.TrimSpace(string(comm))
	return name == "postgres" || name == "postmaster"
}

// openLog opens the log file for appending, creating it for the owner.
func openLog(path string, own *owner) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating log directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("opening log file: %w", err)
	}
	if err := own.chown(path); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
