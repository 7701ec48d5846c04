package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stratum-hq/stratum-proxy/provision"
)

// runSchemaApply applies an app DDL file everywhere and prints a line per
// placement. Against a dev data directory the dev command must be running.
func runSchemaApply(args []string) error {
	fs := flag.NewFlagSet("schema apply", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "configuration file (YAML) of a serve deployment")
	dataDir := fs.String("data-dir", "./.stratum-dev", "dev data directory, used when --config is not given")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: stratum-proxy schema apply [--config FILE | --data-dir DIR] FILE.sql")
	}
	ddl, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	var sc *stackConfig
	if *cfgPath != "" {
		if sc, err = loadConfig(*cfgPath); err != nil {
			return err
		}
	} else if sc, err = devStackConfig(*dataDir); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cat, r, p, err := openRouter(ctx, sc)
	if err != nil {
		return err
	}
	defer cat.Close()
	defer r.Close()
	rep, err := p.ApplySchema(ctx, string(ddl))
	if err != nil {
		return err
	}
	printApplyReport(rep)
	if n := rep.Failed(); n > 0 {
		return fmt.Errorf("%d placements failed; fix the cause and run the command again", n)
	}
	return nil
}

func printApplyReport(rep *provision.ApplyReport) {
	state := "recorded as new"
	if !rep.New {
		state = "already recorded"
	}
	fmt.Printf("schema version %d (%s)\n", rep.Version, state)
	for _, p := range rep.Placements {
		switch {
		case p.Error != "":
			fmt.Printf("  %-24s FAILED: %s\n", p.Placement, p.Error)
		case len(p.Applied) == 0:
			fmt.Printf("  %-24s up to date\n", p.Placement)
		default:
			vs := make([]string, len(p.Applied))
			for i, v := range p.Applied {
				vs[i] = fmt.Sprint(v)
			}
			fmt.Printf("  %-24s applied %s\n", p.Placement, strings.Join(vs, ", "))
		}
	}
}

// devStackConfig reads a running dev deployment's settings from its data dir.
func devStackConfig(dataDir string) (*stackConfig, error) {
	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "state.json")); err != nil {
		return nil, fmt.Errorf("no dev deployment in %s (start one with `stratum-proxy dev`, or pass --config): %w", dir, err)
	}
	st, err := loadDevState(dir)
	if err != nil {
		return nil, err
	}
	return st.stackConfig("127.0.0.1", st.PGPort, "postgres"), nil
}
