package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

const usage = `stratum-proxy: a multi-tenant PostgreSQL proxy

Usage:
  stratum-proxy dev [--data-dir DIR] [--listen ADDR] [--admin-listen ADDR]
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
`

func main() {
	if len(os.Args) > 1 && isCLIGroup(os.Args[1]) {
		os.Exit(runCLI(os.Args[1:], cliEnv{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}))
	}
	if err := run(os.Args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "stratum-proxy:", err)
		}
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "dev":
		return runDev(args[1:])
	case "serve":
		return runServe(args[1:])
	case "migrate":
		return runMigrate(args[1:])
	case "schema":
		if len(args) < 2 || args[1] != "apply" {
			return errors.New("usage: stratum-proxy schema apply [--config FILE | --data-dir DIR] FILE.sql")
		}
		return runSchemaApply(args[2:])
	case "help", "-h", "--help":
		fmt.Print(usage)
		return nil
	default:
		fmt.Fprint(os.Stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

func runServe(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cfgPath == "" {
		return errors.New("serve needs --config FILE")
	}
	sc, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	log, err := newLogger(sc.LogFormat, sc.LogLevel)
	if err != nil {
		return err
	}
	defer log.Sync()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	st, err := startStack(ctx, sc, log)
	if err != nil {
		return err
	}
	defer st.stop()
	log.Info("stratum-proxy serving")
	select {
	case <-ctx.Done():
		log.Info("stopping")
		return nil
	case err := <-st.errs:
		return err
	}
}

func runMigrate(args []string) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cfgPath == "" {
		return errors.New("migrate needs --config FILE")
	}
	sc, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cat, err := openCatalog(ctx, sc)
	if err != nil {
		return err
	}
	cat.Close()
	fmt.Println("catalog is up to date")
	return nil
}
