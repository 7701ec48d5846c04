package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"

	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/stratum-hq/stratum-proxy/internal/childproc"
)

// proc is a child process the benchmark started and must stop.
type proc struct {
	*childproc.Process
	name string
	log  string // where its output goes
}

// startProc starts cmd in its own process group (a Ctrl-C at the terminal
// reaches the benchmark only, which then stops its children in order), with
// a parent-death signal so that nothing outlives a killed benchmark. Output
// goes to logPath.
func startProc(name string, cmd *exec.Cmd, logPath string) (*proc, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	cp, err := childproc.Start(cmd)
	lf.Close()
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{Process: cp, name: name, log: logPath}
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.Done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace, then kills.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	_ = syscall.Kill(p.Pid, syscall.SIGTERM)
	select {
	case <-p.Done:
	case <-time.After(grace):
		_ = syscall.Kill(p.Pid, syscall.SIGKILL)
		<-p.Done
	}
}

// rssKiB reads VmRSS of the process from /proc.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// logTail returns the last n lines of a file.
func logTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	const window = 32 << 10
	var start int64
	if fi, err := f.Stat(); err == nil && fi.Size() > window {
		start = fi.Size() - window
	}
	b, _ := io.ReadAll(io.NewSectionReader(f, start, window))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// postgresIDs returns the uid and gid of the postgres OS user, which PgBouncer
// runs as when we are root (it refuses to run as root).
func postgresIDs() (uid, gid int, err error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return 0, 0, fmt.Errorf("pgbouncer refuses to run as root and there is no postgres user to run it as: %w", err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, nil
}

// waitTCP waits until something accepts connections on addr, the process
// exits, or the timeout passes.
func waitTCP(addr string, p *proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited (%v); log %s ends:\n%s", p.name, p.Err, p.log, logTail(p.log, 20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %v", addr, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
