package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/stratum-hq/stratum-proxy/cli"
	"github.com/stratum-hq/stratum-proxy/server"
)

// version is set at build time (-ldflags "-X main.version=v1.2.3"); else the
// module's build information names the commit.
var version = ""

const usage = `stratum-proxy: a multi-tenant PostgreSQL proxy

Usage:
  stratum-proxy dev [--data-dir DIR] [--listen ADDR] [--admin-listen ADDR] [--pool-mode MODE] [--log-level LEVEL]
      Start a private PostgreSQL, seed demo tenants, run the proxy and admin API.
  stratum-proxy serve --config FILE
      Run the proxy and admin API from a configuration file (see config.example.yaml).
  stratum-proxy migrate --config FILE
      Apply the catalog migrations and exit.
  stratum-proxy schema apply [--config FILE | --data-dir DIR] FILE.sql
      Apply the app's DDL to the shared database, the template and every tenant.
  stratum-proxy tenant|config|perm|audit|key COMMAND [flags]
      Operate the control plane through the admin API: the tenant tree, config,
      permissions, the audit log and API keys. Tables by default, --json for the
      API's answers; "stratum-proxy tenant --help" lists a group's commands.
  stratum-proxy version
      Print the version and exit.

Each command takes --help.
`

func main() {
	if len(os.Args) > 1 && cli.IsGroup(os.Args[1]) {
		os.Exit(cli.Run(os.Args[1:], cli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Stdin: os.Stdin}))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs a server command and returns the exit status: 0, 1 for a
// failure, 2 for a wrong command line.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "dev":
		err = runDev(args[1:], stdout)
	case "serve":
		err = runServe(args[1:], stdout)
	case "migrate":
		err = runMigrate(args[1:], stdout)
	case "schema":
		if len(args) < 2 || args[1] != "apply" {
			fmt.Fprintln(stderr, "usage: stratum-proxy schema apply [--config FILE | --data-dir DIR] FILE.sql")
			return 2
		}
		err = runSchemaApply(args[2:], stdout)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "stratum-proxy", versionString())
		return 0
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprint(stderr, usage)
		fmt.Fprintf(stderr, "\nstratum-proxy: unknown command %q\n", args[0])
		return 2
	}
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "stratum-proxy:", err)
		return 2
	default:
		fmt.Fprintln(stderr, "stratum-proxy:", err)
		return 1
	}
}

// usageError is a wrong command line (exit status 2).
type usageError string

func (e usageError) Error() string { return string(e) }

// newFlagSet makes a command's flag set: usage errors and --help go to
// stderr/stdout as the flag package does, and the synopsis heads the help.
func newFlagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: stratum-proxy %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; --help prints the usage on stdout and returns
// flag.ErrHelp (exit 0), a bad flag returns a usageError (exit 2).
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		return flag.ErrHelp
	case err != nil:
		return usageError(err.Error() + " (see --help)")
	}
	return nil
}

func versionString() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := bi.Main.Version
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+dirty"
			}
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		v += " (" + rev + modified + ")"
	}
	return v + " " + bi.GoVersion
}

func runServe(args []string, stdout io.Writer) error {
	fs := newFlagSet("serve", "serve --config FILE")
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *cfgPath == "" {
		return usageError("serve needs --config FILE")
	}
	fc, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	log, err := server.NewLogger(fc.LogFormat, fc.LogLevel)
	if err != nil {
		return err
	}
	defer log.Sync()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	st, err := server.Start(ctx, fc.Server, log)
	if err != nil {
		return err
	}
	defer st.Stop()
	select {
	case <-ctx.Done():
		log.Info("stopping")
		return nil
	case err := <-st.Errs():
		return err
	}
}

func runMigrate(args []string, stdout io.Writer) error {
	fs := newFlagSet("migrate", "migrate --config FILE")
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *cfgPath == "" {
		return usageError("migrate needs --config FILE")
	}
	fc, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cat, applied, err := server.OpenCatalog(ctx, &fc.Server)
	if err != nil {
		return err
	}
	cat.Close()
	if applied == 0 {
		fmt.Fprintln(stdout, "catalog is up to date")
	} else {
		fmt.Fprintf(stdout, "applied %d migrations; the catalog is up to date\n", applied)
	}
	return nil
}
