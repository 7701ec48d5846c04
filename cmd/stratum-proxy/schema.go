package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/stratum-hq/stratum-proxy/provision"
	"github.com/stratum-hq/stratum-proxy/server"
)

// runSchemaApply applies an app DDL file everywhere and prints a line per
// placement. Against a dev data directory the dev command must be running.
func runSchemaApply(args []string, stdout io.Writer) error {
	fs := newFlagSet("schema apply", "schema apply [--config FILE | --data-dir DIR] FILE.sql")
	cfgPath := fs.String("config", "", "configuration file (YAML) of a serve deployment")
	dataDir := fs.String("data-dir", "./.stratum-dev", "dev data directory, used when --config is not given")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError("usage: stratum-proxy schema apply [--config FILE | --data-dir DIR] FILE.sql")
	}
	ddl, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	var cfg server.Config
	if *cfgPath != "" {
		fc, err := loadConfig(*cfgPath)
		if err != nil {
			return err
		}
		cfg = fc.Server
	} else if cfg, err = server.DevConfig(*dataDir); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cat, r, p, err := server.OpenRouter(ctx, &cfg)
	if err != nil {
		return err
	}
	defer cat.Close()
	defer r.Close()
	rep, err := p.ApplySchema(ctx, string(ddl))
	if err != nil {
		return err
	}
	printApplyReport(stdout, rep)
	if n := rep.Failed(); n > 0 {
		return fmt.Errorf("%d placements failed; fix the cause and run the command again", n)
	}
	return nil
}

func printApplyReport(w io.Writer, rep *provision.ApplyReport) {
	state := "recorded as new"
	if !rep.New {
		state = "already recorded"
	}
	fmt.Fprintf(w, "schema version %d (%s)\n", rep.Version, state)
	for _, p := range rep.Placements {
		switch {
		case p.Error != "":
			fmt.Fprintf(w, "  %-24s FAILED: %s\n", p.Placement, p.Error)
		case len(p.Applied) == 0:
			fmt.Fprintf(w, "  %-24s up to date\n", p.Placement)
		default:
			vs := make([]string, len(p.Applied))
			for i, v := range p.Applied {
				vs[i] = fmt.Sprint(v)
			}
			fmt.Fprintf(w, "  %-24s applied %s\n", p.Placement, strings.Join(vs, ", "))
		}
	}
}
