package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Placement moves: `tenant move-placement` starts one (and with --wait
// follows it with a progress line); `move list|show|cancel|finalize|revert`
// manage them.

// moveOrder is the field order of one move's view.
var moveOrder = []string{"id", "tenant", "phase", "reverts", "error", "from_isolation", "from_backend", "from_database", "from_schema",
	"to_isolation", "to_backend", "to_database", "to_schema", "lag", "tables", "created_by", "started_at", "updated_at",
	"finished_at", "finalized_at", "tenant_id"}

// movePollEvery is how often --wait reads the move.
var movePollEvery = 500 * time.Millisecond

// movePlacementCommand is `tenant move-placement`.
func movePlacementCommand() cliCommand {
	return cliCommand{name: "move-placement", args: "TENANT", min: 1, max: 1,
		help: "Move a tenant to another placement (shared, schema or database, on any backend) while its apps stay connected; --wait follows it to its switch and exits non-zero if it fails.",
		setup: func(fs *flag.FlagSet) func(*cliClient, []string) error {
			isolation := fs.String("isolation", "", "the target: shared, schema or database (required)")
			backend := fs.String("backend", "", "the target's backend server (database isolation; default: the tenant's, or the default backend)")
			wait := fs.Bool("wait", false, "follow the move with a progress line until it switches, fails or is cancelled")
			return func(c *cliClient, args []string) error {
				if *isolation == "" {
					return usageErrorf("--isolation is required: shared, schema or database")
				}
				body := map[string]string{"isolation": *isolation}
				if *backend != "" {
					body["backend"] = *backend
				}
				obj, raw, err := c.do(http.MethodPost, cliPath("v1", "tenants", args[0], "placement"), nil, body)
				if err != nil {
					return err
				}
				if !*wait {
					return c.show(raw, func(w io.Writer) { renderVertical(w, raw, moveOrder) })
				}
				return c.waitMove(cliStr(obj["id"]))
			}
		}}
}

// moveCommands is the `move` group.
func moveCommands() []cliCommand {
	step := func(name string) func(fs *flag.FlagSet) func(*cliClient, []string) error {
		return func(fs *flag.FlagSet) func(*cliClient, []string) error {
			return func(c *cliClient, args []string) error {
				_, raw, err := c.do(http.MethodPost, cliPath("v1", "moves", args[0], name), nil, nil)
				if err != nil {
					return err
				}
				return c.show(raw, func(w io.Writer) { renderVertical(w, raw, moveOrder) })
			}
		}
	}
	return []cliCommand{
		{name: "list", help: "List placement moves (that the key can see), newest first.",
			setup: func(fs *flag.FlagSet) func(*cliClient, []string) error {
				tenant := fs.String("tenant", "", "one tenant's moves (slug or id)")
				limit := fs.Int("limit", 0, "at most this many (1 to 500; default the API's, 100)")
				return func(c *cliClient, args []string) error {
					q := url.Values{}
					if *tenant != "" {
						q.Set("tenant", *tenant)
					}
					if *limit != 0 {
						q.Set("limit", strconv.Itoa(*limit))
					}
					obj, raw, err := c.do(http.MethodGet, "/v1/moves", q, nil)
					if err != nil {
						return err
					}
					return c.showPage(&cliPage{items: cliItems(obj, "moves"), raw: raw}, renderMoves)
				}
			}},
		{name: "show", args: "MOVE", min: 1, max: 1, help: "Show one move: phase, rows copied per table, lag, times, error.",
			setup: func(fs *flag.FlagSet) func(*cliClient, []string) error {
				wait := fs.Bool("wait", false, "follow the move with a progress line until it switches, fails or is cancelled")
				return func(c *cliClient, args []string) error {
					if *wait {
						return c.waitMove(args[0])
					}
					_, raw, err := c.do(http.MethodGet, cliPath("v1", "moves", args[0]), nil, nil)
					if err != nil {
						return err
					}
					return c.show(raw, func(w io.Writer) { renderVertical(w, raw, moveOrder) })
				}
			}},
		{name: "cancel", args: "MOVE", min: 1, max: 1,
			help: "Cancel a move before its switch: the tenant stays where it is, nothing lost, the half-built target is dropped.", setup: step("cancel")},
		{name: "finalize", args: "MOVE", min: 1, max: 1,
			help: "Finalize a switched move: drop the source copy kept for a fast move back.", setup: step("finalize")},
		{name: "revert", args: "MOVE", min: 1, max: 1,
			help: "Move the tenant of a switched move back to the source copy it kept (only the rows changed since are written); --wait follows it.",
			setup: func(fs *flag.FlagSet) func(*cliClient, []string) error {
				wait := fs.Bool("wait", false, "follow the move back with a progress line until it switches, fails or is cancelled")
				return func(c *cliClient, args []string) error {
					obj, raw, err := c.do(http.MethodPost, cliPath("v1", "moves", args[0], "revert"), nil, nil)
					if err != nil {
						return err
					}
					if !*wait {
						return c.show(raw, func(w io.Writer) { renderVertical(w, raw, moveOrder) })
					}
					return c.waitMove(cliStr(obj["id"]))
				}
			}},
	}
}

// waitMove follows a move until it switches (or is finalized), printing a
// progress line (phase, rows copied of the total, rate, lag) to stderr:
// rewritten in place on a terminal, a line per change otherwise. It ends
// with the move (as show prints it) and an error when the move failed or
// was cancelled.
func (c *cliClient) waitMove(id string) error {
	tty := cliIsTerminal(c.errw)
	var last string
	var first time.Time
	var firstRows int64
	for {
		obj, raw, err := c.do(http.MethodGet, cliPath("v1", "moves", id), nil, nil)
		if err != nil {
			return err
		}
		phase := cliStr(obj["phase"])
		copied, total := moveRows(obj)
		if first.IsZero() {
			first, firstRows = time.Now(), copied
		}
		line := fmt.Sprintf("%s %s %s", cliStr(obj["tenant"]), phase, progressBar(copied, total, 24))
		if el := time.Since(first).Seconds(); el >= 1 && copied > firstRows {
			line += fmt.Sprintf(" %.0f rows/s", float64(copied-firstRows)/el)
		}
		if lag := cliStr(obj["lag"]); lag != "" && lag != "0" {
			line += " lag " + lag
		}
		switch {
		case tty:
			fmt.Fprintf(c.errw, "\r\033[K%s", line)
		case line != last:
			fmt.Fprintln(c.errw, line)
		}
		last = line
		switch phase {
		case "switched", "finalized", "failed", "cancelled":
			if tty {
				fmt.Fprintln(c.errw)
			}
			if err := c.show(raw, func(w io.Writer) { renderVertical(w, raw, moveOrder) }); err != nil {
				return err
			}
			if phase == "failed" || phase == "cancelled" {
				msg := "the move " + phase
				if e := cliStr(obj["error"]); e != "" {
					msg += ": " + e
				}
				return &cliExitStatusError{msg: msg}
			}
			return nil
		}
		time.Sleep(movePollEvery)
	}
}

// moveRows sums a move's rows copied and rows to copy over its tables.
func moveRows(obj map[string]any) (copied, total int64) {
	list, _ := obj["tables"].([]any)
	for _, e := range list {
		m := cliObj(e)
		n, _ := m["rows_copied"].(json.Number)
		t, _ := m["rows_total"].(json.Number)
		a, _ := n.Int64()
		b, _ := t.Int64()
		copied += a
		total += b
	}
	return copied, total
}

// progressBar draws copied of total as [#####.....] 12,345/100,000 rows.
func progressBar(copied, total int64, width int) string {
	filled := width
	if total > 0 {
		filled = int(min(copied, total) * int64(width) / total)
	}
	return "[" + strings.Repeat("#", filled) + strings.Repeat(".", width-filled) + "] " +
		strconv.FormatInt(copied, 10) + "/" + strconv.FormatInt(total, 10) + " rows"
}

// cliIsTerminal reports whether w is a terminal (a character device).
func cliIsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// renderMoves prints a move list.
func renderMoves(w io.Writer, items []any) {
	if len(items) == 0 {
		fmt.Fprintln(w, "no placement moves")
		return
	}
	t := newCLITable(w, "ID", "TENANT", "FROM", "TO", "PHASE", "ROWS", "STARTED", "ERROR")
	for _, it := range items {
		m := cliObj(it)
		copied, total := moveRows(m)
		t.row(cliStr(m["id"]), cliStr(m["tenant"]), cliStr(m["from_isolation"])+"@"+cliStr(m["from_backend"]),
			cliStr(m["to_isolation"])+"@"+cliStr(m["to_backend"]), cliStr(m["phase"]),
			fmt.Sprintf("%d/%d", copied, total), cliTime(m["started_at"]), cliStr(m["error"]))
	}
	t.flush()
}
