package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stratum-hq/stratum-proxy/internal/childproc"
)

const (
	host = "127.0.0.1"

	readyTimeout = 30 * time.Second
	readyPoll    = 50 * time.Millisecond
	stopTimeout  = 30 * time.Second

	// portRetries is how many more free ports Start tries when the one it
	// picked was taken before the server could bind it.
	portRetries = 3
	// logTailLines is how many lines of the server log go into an error.
	logTailLines = 20
)

// Config says how to start a cluster.
type Config struct {
	// DataDir is the cluster's data directory; required, and made absolute.
	// It is initialised with initdb when it holds no PG_VERSION file (missing
	// parent directories are created) and reused as it is otherwise.
	DataDir string

	// Port is the TCP port the server listens on at 127.0.0.1. Zero picks a
	// free port, and another one (up to 3 more times) when that one is taken
	// before the server binds it.
	Port int

	// SuperUser is the superuser role that initdb creates; default "postgres".
	SuperUser string

	// Password is the superuser's password; required. initdb sets it; a
	// reused data directory must have been initialised with the same one.
	Password string

	// BinDir is the directory holding initdb and postgres. Default: the
	// output of `pg_config --bindir` if initdb is there, else the newest
	// /usr/lib/postgresql/*/bin, else the directory of initdb on PATH.
	BinDir string

	// Settings are extra server settings, passed as -c name=value on the
	// postgres command line. They override pgcluster's defaults (fsync=off,
	// synchronous_commit=off, full_page_writes=off, max_connections=300,
	// shared_buffers=64MB, lc_messages=C). port, listen_addresses and
	// unix_socket_directories are pgcluster's to set and are refused.
	Settings map[string]string

	// LogFile receives the server's stdout and stderr, appended across runs.
	// Default: DataDir + ".log", beside the data directory.
	LogFile string
}

// Cluster is a running server started by Start. Its methods are safe for
// concurrent use.
type Cluster struct {
	dataDir  string
	logFile  string
	sockDir  string
	port     int
	user     string
	password string
	proc     *childproc.Process

	stopOnce sync.Once
	stopErr  error
}

// errPortTaken marks a start that failed because the port was in use.
var errPortTaken = errors.New("port already in use")

// Start starts a cluster as cfg says, running initdb first when the data
// directory is new, and returns once the server accepts connections. ctx
// bounds the start only: cancelling it later does not stop the server.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	cfg, err := withDefaults(ctx, cfg)
	if err != nil {
		return nil, err
	}
	own, err := lookupOwner()
	if err != nil {
		return nil, err
	}
	if err := prepareDataDir(ctx, cfg, own); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		port := cfg.Port
		if port == 0 {
			if port, err = freePort(); err != nil {
				return nil, err
			}
		}
		c, err := launch(ctx, cfg, own, port)
		if err == nil {
			return c, nil
		}
		if cfg.Port != 0 || attempt == portRetries || !errors.Is(err, errPortTaken) {
			return nil, err
		}
	}
}

// Host returns the address the server listens on, "127.0.0.1".
func (c *Cluster) Host() string { return host }

// Port returns the TCP port the server listens on.
func (c *Cluster) Port() int { return c.port }

// SuperUser returns the superuser's name.
func (c *Cluster) SuperUser() string { return c.user }

// Password returns the superuser's password.
func (c *Cluster) Password() string { return c.password }

// URL returns a connection URL for the superuser to database, with
// sslmode=disable.
func (c *Cluster) URL(database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(c.user, c.password),
		Host:     net.JoinHostPort(host, strconv.Itoa(c.port)),
		Path:     "/" + database,
		RawPath:  "/" + url.PathEscape(database),
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Stop shuts the server down (a fast shutdown: open sessions are ended) and
// waits for it to exit, killing it after 30 seconds. It reports an error if
// the server had already died, or did not stop in time. Calls after the first
// return the first call's result.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() { c.stopErr = c.stop() })
	return c.stopErr
}

func (c *Cluster) stop() error {
	defer os.RemoveAll(c.sockDir)
	select {
	case <-c.proc.Done:
		if c.proc.Err != nil {
			return fmt.Errorf("postgres exited early: %w", c.proc.Err)
		}
		return nil
	default:
	}
	// SIGINT to the postmaster alone is a fast shutdown; it ends its children.
	if err := syscall.Kill(c.proc.Pid, syscall.SIGINT); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signalling postgres: %w", err)
	}
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-c.proc.Done:
		if c.proc.Err != nil {
			return fmt.Errorf("stopping postgres: %w", c.proc.Err)
		}
		return nil
	case <-timer.C:
		// Its children notice the postmaster is gone and exit.
		_ = syscall.Kill(c.proc.Pid, syscall.SIGKILL)
		<-c.proc.Done
		return fmt.Errorf("stopping postgres: no exit within %v, killed it", stopTimeout)
	}
}

// Remove stops the server and deletes its data directory and log file.
func (c *Cluster) Remove() error {
	err := c.Stop()
	if rmErr := os.RemoveAll(c.dataDir); rmErr != nil {
		err = errors.Join(err, fmt.Errorf("removing data directory: %w", rmErr))
	}
	if rmErr := os.Remove(c.logFile); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
		err = errors.Join(err, fmt.Errorf("removing log file: %w", rmErr))
	}
	return err
}

// launch starts the postmaster on port and waits until it is ready.
func launch(ctx context.Context, cfg Config, own *owner, port int) (*Cluster, error) {
	sockDir, err := os.MkdirTemp("", "stpg")
	if err != nil {
		return nil, fmt.Errorf("creating socket directory: %w", err)
	}
	if err := own.chown(sockDir); err != nil {
		os.RemoveAll(sockDir)
		return nil, err
	}
	log, err := openLog(cfg.LogFile, own)
	if err != nil {
		os.RemoveAll(sockDir)
		return nil, err
	}
	logStart, err := log.Seek(0, io.SeekEnd)
	if err != nil {
		log.Close()
		os.RemoveAll(sockDir)
		return nil, fmt.Errorf("reading log file: %w", err)
	}

	cmd := exec.Command(filepath.Join(cfg.BinDir, "postgres"), serverArgs(cfg, port, sockDir)...)
	cmd.Dir = "/"
	cmd.Stdout = log
	cmd.Stderr = log
	// Own process group, so a Ctrl-C at the owner's terminal reaches the
	// owner only; the owner decides how postgres stops.
	cmd.SysProcAttr = own.sysProcAttr()
	cmd.SysProcAttr.Setpgid = true
	setParentDeathSignal(cmd.SysProcAttr)
	proc, err := childproc.Start(cmd)
	log.Close() // the child has its own descriptor
	if err != nil {
		os.RemoveAll(sockDir)
		return nil, fmt.Errorf("starting postgres: %w", err)
	}

	c := &Cluster{
		dataDir:  cfg.DataDir,
		logFile:  cfg.LogFile,
		sockDir:  sockDir,
		port:     port,
		user:     cfg.SuperUser,
		password: cfg.Password,
		proc:     proc,
	}
	if err := c.waitReady(ctx, logStart); err != nil {
		_ = c.Stop()
		return nil, err
	}
	return c, nil
}

// serverArgs returns the postgres command line arguments.
func serverArgs(cfg Config, port int, sockDir string) []string {
	settings := map[string]string{
		"fsync":              "off",
		"synchronous_commit": "off",
		"full_page_writes":   "off",
		"max_connections":    "300",
		"shared_buffers":     "64MB",
		// English messages, which startup errors are matched against.
		"lc_messages": "C",
	}
	maps.Copy(settings, cfg.Settings)
	settings["listen_addresses"] = host
	settings["unix_socket_directories"] = sockDir

	args := []string{"-D", cfg.DataDir, "-p", strconv.Itoa(port)}
	for _, name := range slices.Sorted(maps.Keys(settings)) {
		args = append(args, "-c", name+"="+settings[name])
	}
	return args
}

// waitReady waits until the server accepts a connection, it exits, or the
// time runs out. logStart is where this run's output begins in the log.
func (c *Cluster) waitReady(ctx context.Context, logStart int64) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	// A connection attempt can hang on whatever holds the port when the
	// server could not bind it: give up on it once the server has exited.
	go func() {
		select {
		case <-c.proc.Done:
			cancel()
		case <-ctx.Done():
		}
	}()
	ticker := time.NewTicker(readyPoll)
	defer ticker.Stop()
	dsn := c.URL("postgres")
	for {
		conn, err := pgconn.Connect(ctx, dsn)
		if err == nil {
			_ = conn.Close(ctx)
			return nil
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "28") {
			// invalid_authorization_specification or invalid_password: a
			// reused data directory made with another user or password.
			return fmt.Errorf("connecting to postgres as %s: %w (was %s initialised with another superuser or password?)",
				c.user, err, c.dataDir)
		}
		select {
		case <-c.proc.Done:
			return c.exitError(logStart)
		default:
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for postgres: %w (last error: %v); log %s ends:\n%s",
				ctx.Err(), err, c.logFile, logTail(c.logFile))
		case <-ticker.C:
		}
	}
}

// exitError describes a server that exited while starting.
func (c *Cluster) exitError(logStart int64) error {
	if out := c.logSince(logStart); strings.Contains(out, "could not bind") || strings.Contains(out, "Address already in use") {
		return fmt.Errorf("starting postgres on port %d: %w; log %s ends:\n%s",
			c.port, errPortTaken, c.logFile, logTail(c.logFile))
	}
	return fmt.Errorf("starting postgres: server exited (%v); log %s ends:\n%s",
		c.proc.Err, c.logFile, logTail(c.logFile))
}

// logSince returns the log written from offset on.
func (c *Cluster) logSince(offset int64) string {
	f, err := os.Open(c.logFile)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.NewSectionReader(f, offset, 1<<20))
	return string(b)
}

// logTail returns the last lines of the log file at path.
func logTail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	defer f.Close()
	// The log of a long-lived cluster grows across runs: read its end only.
	const window = 64 << 10
	start := int64(0)
	if fi, err := f.Stat(); err == nil && fi.Size() > window {
		start = fi.Size() - window
	}
	b, err := io.ReadAll(io.NewSectionReader(f, start, window))
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	return lastLines(string(b), logTailLines)
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("picking a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
