package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The operator commands (stratum-proxy tenant|config|perm|audit|key ...) call
// the admin API over HTTP, with net/http and encoding/json only: they share
// no code with the server beyond the wire format, so they work against any
// deployment that speaks it.

// Exit statuses of the operator commands.
const (
	cliExitOK    = 0
	cliExitError = 1 // the API refused, or could not be reached
	cliExitUsage = 2 // the command line is wrong
)

// Defaults of the common flags.
const (
	cliDefaultAdminURL = "http://127.0.0.1:8080"
	cliDefaultDataDir  = "./.stratum-dev"
	cliTimeout         = 60 * time.Second
	// cliPageSize is the page size used when a list command follows every
	// next_cursor (the API's maximum).
	cliPageSize = 500
)

// Env is what an operator command reads and writes; main passes the
// process's, tests their own.
type Env struct {
	// Stdout and Stderr receive the command's output and its errors.
	Stdout, Stderr io.Writer
	// Getenv reads the environment (os.Getenv in main).
	Getenv func(string) string
	// Client sends the requests; nil: a client with cliTimeout.
	Client *http.Client
	// Stdin is read by --password-stdin (os.Stdin in main); nil: empty.
	Stdin io.Reader
}

// cliCommand is one operator command, such as "tenant create".
type cliCommand struct {
	name string // "create"
	args string // positional synopsis, e.g. "SLUG"
	help string // what it does, one or two sentences
	// min and max bound the number of positional arguments.
	min, max int
	// setup registers the command's own flags on fs and returns the function
	// that runs it with the positional arguments once fs is parsed.
	setup func(fs *flag.FlagSet) func(c *cliClient, args []string) error
}

// cliGroup is a set of commands under one word: tenant, config, perm, audit, key.
type cliGroup struct {
	name, help string
	commands   []cliCommand
}

// IsGroup reports whether name is one of the operator command groups.
func IsGroup(name string) bool { return cliFindGroup(name) != nil }

func cliFindGroup(name string) *cliGroup {
	for _, g := range cliGroups() {
		if g.name == name {
			return &g
		}
	}
	return nil
}

// cliUsageError is a wrong command line: exit status 2 with the usage text.
type cliUsageError struct{ msg string }

func (e *cliUsageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &cliUsageError{msg: fmt.Sprintf(format, args...)}
}

// cliAPIError is an error answer of the admin API.
type cliAPIError struct {
	Status  int
	Code    string
	Message string
}

func (e *cliAPIError) Error() string {
	return fmt.Sprintf("%s (%s, HTTP %d)", e.Message, e.Code, e.Status)
}

// cliExitStatusError ends a command with a status and a message, when the
// API answered but the answer is bad news (a broken audit chain).
type cliExitStatusError struct{ msg string }

func (e *cliExitStatusError) Error() string { return e.msg }

// Run runs one operator command; args[0] is the group. It returns the
// process exit status: 0 success, 1 an API or connection error, 2 a usage
// error (with the usage text on stderr).
func Run(args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	g := cliFindGroup(args[0])
	if g == nil {
		fmt.Fprintf(env.Stderr, "error: unknown command %q\n", args[0])
		return cliExitUsage
	}
	if len(args) < 2 {
		fmt.Fprintf(env.Stderr, "error: %s needs a command\n\n", g.name)
		g.usage(env.Stderr)
		return cliExitUsage
	}
	switch args[1] {
	case "help", "-h", "-help", "--help":
		g.usage(env.Stdout)
		return cliExitOK
	}
	for _, cmd := range g.commands {
		if cmd.name == args[1] {
			return cmd.run(g, args[2:], env)
		}
	}
	fmt.Fprintf(env.Stderr, "error: unknown command %q\n\n", g.name+" "+args[1])
	g.usage(env.Stderr)
	return cliExitUsage
}

// usage lists the group's commands.
func (g *cliGroup) usage(w io.Writer) {
	fmt.Fprintf(w, "stratum-proxy %s: %s\n\nUsage:\n", g.name, g.help)
	for _, c := range g.commands {
		syn := g.name + " " + c.name
		if c.args != "" {
			syn += " " + c.args
		}
		fmt.Fprintf(w, "  stratum-proxy %s [flags]\n      %s\n", syn, c.help)
	}
	fmt.Fprintf(w, "\nCommon flags: --admin-url URL, --key KEY, --json, --data-dir DIR.\n"+
		"Run `stratum-proxy %s COMMAND --help` for a command's flags.\n", g.name)
}

// cliCommon holds the flags every command has.
type cliCommon struct {
	adminURL, key, dataDir string
	json                   bool
}

func (cmd *cliCommand) run(g *cliGroup, args []string, env Env) int {
	fs := flag.NewFlagSet(g.name+" "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors and usage are printed here, once
	var common cliCommon
	envURL := env.Getenv("STRATUM_ADMIN_URL")
	fs.StringVar(&common.adminURL, "admin-url", "", "admin API base URL (default $STRATUM_ADMIN_URL, then the dev deployment's in --data-dir, then "+cliDefaultAdminURL+")")
	fs.StringVar(&common.key, "key", "", "admin API key (default $STRATUM_ADMIN_KEY, then the dev deployment's key in --data-dir)")
	fs.StringVar(&common.dataDir, "data-dir", cliDefaultDataDir, "dev data directory whose state.json holds the dev admin key")
	fs.BoolVar(&common.json, "json", false, "print the API's JSON answer instead of a table")
	runFn := cmd.setup(fs)
	usage := func(w io.Writer) {
		syn := "stratum-proxy " + g.name + " " + cmd.name
		if cmd.args != "" {
			syn += " " + cmd.args
		}
		fmt.Fprintf(w, "Usage: %s [flags]\n\n%s\n\nFlags:\n", syn, cmd.help)
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	flagArgs, pos := cliSplitArgs(fs, args)
	if err := fs.Parse(flagArgs); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(env.Stdout)
			return cliExitOK
		}
		fmt.Fprintf(env.Stderr, "error: %v\n\n", err)
		usage(env.Stderr)
		return cliExitUsage
	}
	if common.adminURL == "" {
		common.adminURL = cliDefaultURL(envURL, common.dataDir)
	}
	if len(pos) < cmd.min || len(pos) > cmd.max {
		fmt.Fprintf(env.Stderr, "error: %s takes %s\n\n", g.name+" "+cmd.name, cliArgCount(cmd))
		usage(env.Stderr)
		return cliExitUsage
	}
	c, err := newCLIClient(common, env)
	if err == nil {
		err = runFn(c, pos)
	}
	var (
		ue  *cliUsageError
		ae  *cliAPIError
		ese *cliExitStatusError
	)
	switch {
	case err == nil:
		return cliExitOK
	case errors.As(err, &ue):
		fmt.Fprintf(env.Stderr, "error: %s\n\n", ue.msg)
		usage(env.Stderr)
		return cliExitUsage
	case errors.As(err, &ae):
		fmt.Fprintf(env.Stderr, "error: %s\n", ae.Error())
		if ae.Status == http.StatusUnauthorized && c != nil && c.key == "" {
			fmt.Fprintf(env.Stderr, "hint: pass --key, set STRATUM_ADMIN_KEY, or run `stratum-proxy dev` (its key is read from %s)\n",
				filepath.Join(common.dataDir, "state.json"))
		}
		return cliExitError
	case errors.As(err, &ese):
		fmt.Fprintf(env.Stderr, "error: %s\n", ese.msg)
		return cliExitError
	}
	fmt.Fprintf(env.Stderr, "error: %v\n", err)
	return cliExitError
}

func cliArgCount(cmd *cliCommand) string {
	switch {
	case cmd.max == 0:
		return "no arguments"
	case cmd.min == 1 && cmd.max == 1:
		return "1 argument: " + cmd.args
	case cmd.min == cmd.max:
		return fmt.Sprintf("%d arguments: %s", cmd.min, cmd.args)
	}
	return fmt.Sprintf("%d to %d arguments: %s", cmd.min, cmd.max, cmd.args)
}

// cliSplitArgs separates flags (with their values) from positional
// arguments, so flags may follow them ("tenant create foo --parent bar"), as
// the flag package alone does not allow. "--" ends the flags; a negative
// number is a positional argument, not a flag.
func cliSplitArgs(fs *flag.FlagSet, args []string) (flags, pos []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return flags, append(pos, args[i+1:]...)
		case len(a) > 1 && a[0] == '-' && !cliIsNumber(a):
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if strings.Contains(name, "=") {
				continue
			}
			if f := fs.Lookup(name); f != nil && !cliIsBoolFlag(f) && i+1 < len(args) {
				i++
				flags = append(flags, args[i])
			}
		default:
			pos = append(pos, a)
		}
	}
	return flags, pos
}

func cliIsNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

func cliIsBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// cliClient calls the admin API and prints answers.
type cliClient struct {
	base   *url.URL
	key    string
	json   bool
	out    io.Writer
	errw   io.Writer
	stdin  io.Reader
	client *http.Client
}

func newCLIClient(common cliCommon, env Env) (*cliClient, error) {
	raw := strings.TrimRight(common.adminURL, "/")
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw // "127.0.0.1:8080"
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageErrorf("--admin-url %q: give an http:// or https:// URL such as %s", common.adminURL, cliDefaultAdminURL)
	}
	c := &cliClient{base: u, json: common.json, out: env.Stdout, errw: env.Stderr, stdin: env.Stdin, client: env.Client}
	if c.client == nil {
		c.client = &http.Client{Timeout: cliTimeout}
	}
	c.key = common.key
	if c.key == "" {
		c.key = env.Getenv("STRATUM_ADMIN_KEY")
	}
	if c.key == "" {
		c.key = env.Getenv("STRATUM_BOOTSTRAP_ADMIN_KEY")
	}
	if c.key == "" && cliIsLoopback(u.Hostname()) {
		// The demo: `stratum-proxy dev` keeps its bootstrap key in its data
		// directory. It is only ever sent to a server on this machine.
		c.key = cliDevKey(common.dataDir)
	}
	return c, nil
}

// cliDevState is what the operator commands read of a dev deployment's
// state file (server.DevState writes it): its admin key and admin API URL.
type cliDevState struct {
	AdminKey string `json:"admin_key"`
	AdminURL string `json:"admin_url"`
}

// cliReadDevState reads dir/state.json; the zero value when there is none.
// It never creates the file.
func cliReadDevState(dir string) cliDevState {
	var st cliDevState
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err == nil {
		json.Unmarshal(b, &st)
	}
	return st
}

// cliDefaultURL is the admin API URL when --admin-url is not given:
// $STRATUM_ADMIN_URL, else where the dev deployment in dataDir last served
// (it may have been started with another --admin-listen), else the default.
func cliDefaultURL(envURL, dataDir string) string {
	if envURL != "" {
		return envURL
	}
	if u := cliReadDevState(dataDir).AdminURL; u != "" {
		return u
	}
	return cliDefaultAdminURL
}

// cliDevKey reads the admin key of a dev deployment from dir/state.json; ""
// when there is none.
func cliDevKey(dir string) string { return cliReadDevState(dir).AdminKey }

func cliIsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// do sends one request to path (already escaped: build it with cliPath). body
// (if not nil) is sent as JSON. It returns the
// answer's raw bytes and, for a JSON object, the object (numbers kept exact
// as json.Number). An error answer becomes a *cliAPIError.
func (c *cliClient) do(method, path string, query url.Values, body any) (map[string]any, []byte, error) {
	target := strings.TrimRight(c.base.String(), "/") + path
	if q := query.Encode(); q != "" {
		target += "?" + q
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, nil, fmt.Errorf("encoding the request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, nil, fmt.Errorf("building the request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "stratum-proxy-cli")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot reach the admin API at %s (is stratum-proxy running? set --admin-url or STRATUM_ADMIN_URL): %w",
			c.base.Redacted(), err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the answer of %s %s: %w", method, path, err)
	}
	obj, jsonErr := cliDecodeObject(raw)
	if resp.StatusCode >= 400 {
		if e, ok := obj["error"].(map[string]any); ok && jsonErr == nil {
			ae := &cliAPIError{Status: resp.StatusCode}
			ae.Code, _ = e["code"].(string)
			ae.Message, _ = e["message"].(string)
			if retry := resp.Header.Get("Retry-After"); retry != "" && resp.StatusCode == http.StatusTooManyRequests {
				ae.Message += "; retry after " + retry + "s"
			}
			return nil, raw, ae
		}
		return nil, raw, &cliAPIError{Status: resp.StatusCode, Code: "http_" + strconv.Itoa(resp.StatusCode),
			Message: "unexpected answer from the admin API: " + cliSnippet(raw)}
	}
	if jsonErr != nil {
		return nil, raw, fmt.Errorf("the answer of %s %s is not a JSON object (HTTP %d): %s", method, path, resp.StatusCode, cliSnippet(raw))
	}
	return obj, raw, nil
}

// cliPath joins segments into an API path, escaping each one (a tenant slug
// or key name never needs it, but a typo with "/" must not reach another
// route).
func cliPath(segments ...string) string {
	var b strings.Builder
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

func cliDecodeObject(raw []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, err
	}
	if obj == nil {
		return nil, errors.New("not a JSON object")
	}
	return obj, nil
}

func cliSnippet(raw []byte) string {
	s := strings.TrimSpace(string(raw))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	if s == "" {
		return "(empty body)"
	}
	return s
}

// show prints an answer: the JSON itself with --json, else render's output.
func (c *cliClient) show(raw []byte, render func(w io.Writer)) error {
	if c.json {
		return c.printJSON(raw)
	}
	render(c.out)
	return nil
}

// printJSON prints raw JSON indented.
func (c *cliClient) printJSON(raw []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(raw), "", "  "); err != nil {
		_, err = c.out.Write(raw)
		return err
	}
	buf.WriteByte('\n')
	_, err := c.out.Write(buf.Bytes())
	return err
}

// cliPage is a list answer: the items of one or all pages.
type cliPage struct {
	items []any
	// next is the cursor of the page after (one-page mode), "" at the end.
	next string
	// raw is the answer to print with --json: the page as the API sent it,
	// or, when every page was fetched, the envelope with all items.
	raw []byte
}

// list reads a paginated list at path. field names the envelope's array. With
// limit > 0 it reads one page of that size from cursor; otherwise it follows
// next_cursor until the end.
func (c *cliClient) list(path string, query url.Values, field string, limit int, cursor string) (*cliPage, error) {
	if query == nil {
		query = url.Values{}
	}
	if limit > 0 {
		query.Set("limit", strconv.Itoa(limit))
		if cursor != "" {
			query.Set("cursor", cursor)
		}
		obj, raw, err := c.do(http.MethodGet, path, query, nil)
		if err != nil {
			return nil, err
		}
		next, _ := obj["next_cursor"].(string)
		return &cliPage{items: cliItems(obj, field), next: next, raw: raw}, nil
	}
	query.Set("limit", strconv.Itoa(cliPageSize))
	if cursor != "" {
		query.Set("cursor", cursor)
	}
	var (
		all    []any
		allRaw []json.RawMessage // the items as sent, for --json
		name   = field
	)
	seen := map[string]bool{}
	for {
		obj, raw, err := c.do(http.MethodGet, path, query, nil)
		if err != nil {
			return nil, err
		}
		name = cliItemsField(obj, field)
		all = append(all, cliItems(obj, field)...)
		var env map[string]json.RawMessage
		if err := json.Unmarshal(raw, &env); err != nil {
			return nil, fmt.Errorf("reading the list at %s: %w", path, err)
		}
		var items []json.RawMessage
		if err := json.Unmarshal(env[name], &items); env[name] != nil && err != nil {
			return nil, fmt.Errorf("reading the list at %s: %w", path, err)
		}
		allRaw = append(allRaw, items...)
		next, _ := obj["next_cursor"].(string)
		if next == "" {
			break
		}
		if seen[next] {
			return nil, fmt.Errorf("the admin API answered the same cursor twice for %s; stopping", path)
		}
		seen[next] = true
		query.Set("cursor", next)
	}
	if allRaw == nil {
		allRaw = []json.RawMessage{}
	}
	raw, err := json.Marshal(map[string]any{name: allRaw, "next_cursor": nil})
	if err != nil {
		return nil, fmt.Errorf("encoding the list: %w", err)
	}
	return &cliPage{items: all, raw: raw}, nil
}

// cliItems returns the array named field of a list answer, or, when there is
// no such member, its first array member (by name).
func cliItems(obj map[string]any, field string) []any {
	v, _ := obj[cliItemsField(obj, field)].([]any)
	return v
}

// cliItemsField is the name of the member cliItems reads.
func cliItemsField(obj map[string]any, field string) string {
	if _, ok := obj[field].([]any); ok {
		return field
	}
	var keys []string
	for k, v := range obj {
		if _, ok := v.([]any); ok {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return field
	}
	slices.Sort(keys)
	return keys[0]
}

// showPage prints a list page: --json as the API sent it; else the table and,
// when more pages remain, how to fetch the next on stderr.
func (c *cliClient) showPage(p *cliPage, render func(w io.Writer, items []any)) error {
	if err := c.show(p.raw, func(w io.Writer) { render(w, p.items) }); err != nil {
		return err
	}
	if p.next != "" && !c.json {
		fmt.Fprintf(c.errw, "more: repeat with --cursor %s\n", p.next)
	}
	return nil
}

// tenantSlugs maps the tenant ids that keys are bound to onto slugs, for
// display. It is best effort: on any failure ids stay ids.
func (c *cliClient) tenantSlugs(keys []any) map[string]string {
	slugs := map[string]string{}
	for _, k := range keys {
		id := cliStr(cliObj(k)["tenant_id"])
		if id == "" || slugs[id] != "" {
			continue
		}
		if obj, _, err := c.do(http.MethodGet, cliPath("v1", "tenants", id), nil, nil); err == nil {
			slugs[id] = cliStr(obj["slug"])
		}
	}
	return slugs
}

// cliValue reads a VALUE argument: JSON when it parses as JSON, else the
// text itself as a JSON string.
func cliValue(s string) json.RawMessage {
	if json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	b, _ := json.Marshal(s) // a string always encodes
	return b
}

// cliPageFlags registers --limit and --cursor on fs.
func cliPageFlags(fs *flag.FlagSet) (limit *int, cursor *string) {
	limit = fs.Int("limit", 0, "read one page of this many rows (1-500) instead of every page")
	cursor = fs.String("cursor", "", "with --limit: start after this cursor (printed after a page)")
	return limit, cursor
}

func checkLimit(limit int, cursor string) error {
	if limit < 0 || limit > 500 {
		return usageErrorf("--limit %d: give 1 to 500 (or 0 for every page)", limit)
	}
	if cursor != "" && limit == 0 {
		return usageErrorf("--cursor needs --limit")
	}
	return nil
}

// cliGroups is the table of operator commands.
func cliGroups() []cliGroup {
	return []cliGroup{
		{name: "tenant", help: "manage the tenant tree", commands: append(tenantCommands(), movePlacementCommand())},
		{name: "move", help: "follow, cancel, finalize and revert placement moves", commands: moveCommands()},
		{name: "config", help: "read and change tenants' inherited config", commands: configCommands()},
		{name: "perm", help: "read, grant and revoke tenants' permission policies", commands: permCommands()},
		{name: "audit", help: "read and verify the audit log", commands: auditCommands()},
		{name: "key", help: "manage admin API keys", commands: keyCommands()},
		{name: "user", help: "manage proxy users (the logins clients connect as)", commands: userCommands()},
	}
}

func tenantCommands() []cliCommand {
	oneTenant := func(method, suffix string) func(fs *flag.FlagSet) func(*cliClient, []string) error {
		return func(fs *flag.FlagSet) func(*cliClient, []string) error {
			return func(c *cliClient, args []string) error {
				segs := []string{"v1", "tenants", args[0]}
				if suffix != "" {
					segs = append(segs, suffix)
				}
				_, raw, err := c.do(method, cliPath(segs...), nil, nil)
				if err != nil {
					return err
				}
				return c.show(raw, func(w io.Writer) { renderTenant(w, raw) })
			}
		}
	}
	tenantList := func(suffix string, paged bool) func(fs *flag.FlagSet) func(*cliClient, []string) error {
		return func(fs *flag.FlagSet) func(*cliClient, []string) error {
			var limit *int
			var cursor *string
			if paged {
				limit, cursor = cliPageFlags(fs)
			} else {
				limit, cursor = new(int), new(string)
			}
			return func(c *cliClient, args []string) error {
				if err := checkLimit(*limit, *cursor); err != nil {
					return err
				}
				path := "/v1/tenants"
				if suffix != "" {
					path = cliPath("v1", "tenants", args[0], suffix)
				}
				if !paged {
					obj, raw, err := c.do(http.MethodGet, path, nil, nil)
					if err != nil {
						return err
					}
					return c.showPage(&cliPage{items: cliItems(obj, "tenants"), raw: raw}, renderTenants)
				}
				p, err := c.list(path, nil, "tenants", *limit, *cursor)
				if err != nil {
					return err
				}
				return c.showPage(p, renderTenants)
			}
		}
	}
	return []cliCommand{
		{name: "list", help: "List every tenant (that the key can see) in tree order.", setup: tenantList("", true)},
		{name: "get", args: "TENANT", min: 1, max: 1, help: "Show one tenant (slug or id).", setup: oneTenant(http.MethodGet, "")},
		{name: "create", args: "SLUG", min: 1, max: 1,
			help: "Create a tenant (a root tenant unless --parent is given) and provision its placement.",
			setup: func(fs *flag.FlagSet) func(*cliClient, []string) error {
				name := fs.String("name", "", "display name (default: the API's)")
				parent := fs.String("parent", "", "slug or id of the parent tenant")
				isolation := fs.String("isolation", "", "shared (default), schema or database")
				backend := fs.String("backend", "", "backend server (database isolation)")
				poolMode := fs.String("pool-mode", "", "session or transaction (default: the proxy's)")
				return func(c *cliClient, args []string) error {
					body := map[string]string{"slug": args[0]}
					for k, v := range map[string]string{"name": *name, "parent": *parent, "isolation": *isolation,
						"backend": *backend, "pool_mode": *poolMode} {
						if v != "" {
							body[k] = v
						}
					}
					_, raw, err := c.do(http.MethodPost, "/v1/tenants", nil, body)
					if err != nil {
						return err
					}
					return c.show(raw, func(w io.Writer) { renderTenant(w, raw) })
				}
			}},
		{name: "move", args: "TENANT [NEW_PARENT]", min: 1, max: 2,
			help: "Move a tenant and its subtree under NEW_PARENT, or to the root with --root.",
			setup: func(fs *flag.FlagSet) func(*cliClient, []string) error {
				root := fs.Bool("root", false, "move the tenant to the root (no parent)")
				return func(c *cliClient, args []string) error {
					if *root == (len(args) == 2) {
						return usageErrorf("tenant move needs either NEW_PARENT or --root")
					}
					body := map[string]any{"parent": nil}
					if !*root {
						body["parent"] = args[1]
					}
					_, raw, err := c.do(http.MethodPost, cliPath("v1", "tenants", args[0], "move"), nil, body)
					if err != nil {
						return err
					}
					return c.show(raw, func(w io.Writer) { renderTenant(w, raw) })
				}
			}},
		{name: "rename", args: "TENANT [NEW_SLUG]", min: 1, max: 2,
			help: "Change a tenant's slug and/or (with --name) its display name; placements are keyed by id, so nothing breaks.",
			setup: func(fs *flag.FlagSet) func(*cliClient, []string) error {
				name := fs.String("name", "", "new display name")
				return func(c *cliClient, args []string) error {
					body := map[string]string{}
					if len(args) == 2 {
						body["slug"] = args[1]
					}
					if *name != "" {
						body["name"] = *name
					}
					if len(body) == 0 {
						return usageErrorf("tenant rename needs NEW_SLUG or --name")
					}
					_, raw, err := c.do(http.MethodPatch, cliPath("v1", "tenants", args[0]), nil, body)
					if err != nil {
						return err
					}
					return c.show(raw, func(w io.Writer) { renderTenant(w, raw) })
				}
			}},
		{name: "suspend", args: "TENANT", min: 1, max: 1,
			help:  "Suspend a tenant: new sessions are refused, open ones end at their next transaction boundary.",
			setup: oneTenant(http.MethodPost, "suspend")},
		{name: "resume", args: "TENANT", min: 1, max: 1, help: "Resume a suspended tenant.", setup: oneTenant(http.MethodPost, "resume")},
		{name: "archive", args: "TENANT", min: 1, max: 1, help: "Archive a tenant (final).", setup: oneTenant(http.MethodPost, "archive")},
		{name: "pause", args: "TENANT", min: 1, max: 1,
			help: "Pause a tenant and its subtree: their sessions start no new transaction (each waits in the proxy) until unpaused; running transactions finish.",
			setup: func(fs *flag.FlagSet) func(*cliClient, []string) error {
				reason := fs.String("reason", "paused by an operator", "why; sessions waiting on the pause log it")
				return func(c *cliClient, args []string) error {
					_, raw, err := c.do(http.MethodPost, cliPath("v1", "tenants", args[0], "pause"), nil, map[string]string{"reason": *reason})
					if err != nil {
						return err
					}
					return c.show(raw, func(w io.Writer) { renderVertical(w, raw, pauseOrder) })
				}
			}},
		{name: "unpause", args: "TENANT", min: 1, max: 1, help: "End a tenant's pause: its waiting sessions go on.",
			setup: func(fs *flag.FlagSet) func(*cliClient, []string) error {
				return func(c *cliClient, args []string) error {
					_, raw, err := c.do(http.MethodPost, cliPath("v1", "tenants", args[0], "unpause"), nil, nil)
					if err != nil {
						return err
					}
					return c.show(raw, func(w io.Writer) { renderVertical(w, raw, []string{"tenant", "unpaused"}) })
				}
			}},
		{name: "db-map", args: "TENANT DATABASE", min: 2, max: 2,
			help:  "Map a client database name to the tenant: connecting with that dbname names it. One tenant per name.",
			setup: dbMapping(http.MethodPut)},
		{name: "db-unmap", args: "TENANT DATABASE", min: 2, max: 2, help: "Remove a database name mapping of the tenant.",
			setup: dbMapping(http.MethodDelete)},
		{name: "children", args: "TENANT", min: 1, max: 1, help: "List a tenant's children.", setup: tenantList("children", true)},
		{name: "ancestors", args: "TENANT", min: 1, max: 1, help: "List a tenant's ancestors, root first.", setup: tenantList("ancestors", false)},
		{name: "descendants", args: "TENANT", min: 1, max: 1, help: "List a tenant's whole subtree (without the tenant) in tree order.",
			setup: tenantList("descendants", true)},
	}
}

func configCommands() []cliCommand {
	return []cliCommand{
		{name: "get", args: "TENANT [KEY]", min: 1, max: 2,
			help: "Show a tenant's resolved config (each key's value, source, inherited, locked), or one key.",
			setup: func(fs *flag.FlagSet) func(*cliClient, []string) error {
				return func(c *cliClient, args []string) error {
					if len(args) == 2 {
						_, raw, err := c.do(http.MethodGet, cliPath("v1", "tenants", args[0], "config", args[1]), nil, nil)
						if err != nil {
							return err
						}
						return c.show(raw, func(w io.Writer) { renderVertical(w, raw, configEntryOrder) })
					}
					obj, raw, err := c.do(http.MethodGet, cliPath("v1", "tenants", args[0], "config"), nil, nil)
					if err != nil {
						return err
					}
					return c.show(raw, func(w io.Writer) { renderConfig(w, cliItems(obj, "config")) })
				}
			}},
		{name: "set", args: "TENANT KEY VALUE", min: 3, max: 3,
			help: "Set the tenant's own value of KEY. VALUE is JSON if it parses as JSON (1000, true, \"x\", [1,2]), else a string. " +
				"Use -- before a VALUE that starts with a dash.",
			setup: func(fs *flag.FlagSet) func(*cliClient, []string) error {
				locked := fs.Bool("locked", false, "lock the value: no descendant may override it")
				sensitive := fs.Bool("sensitive", false, "encrypt the value at rest and mask it in reads")
				return func(c *cliClient, args []string) error {
					body := map[string]any{"value": cliValue(args[2]), "locked": *locked, "sensitive": *sensitive}
					_, raw, err := c.do(http.MethodPut, cliPath("v1", "tenants", args[0], "config", args[1]), nil, body)
					if err != nil {
						return err
					}
					return c.show(raw, func(w io.Writer) { renderVertical(w, raw, configEntryOrder) })
				}
			}},
		{name: "unset", args: "TENANT KEY", min: 2, max: 2,
			help: "Remove the tenant's own value of KEY, revealing the inherited one (if any).",
			setup: func(fs *flag.FlagSet) func(*cliClient, []string) error {
				return func(c *cliClient, args []string) error {
					_, raw, err := c.do(http.MethodDelete, cliPath("v1", "tenants", args[0], "config", args[1]), nil, nil)
					if err != nil {
						return err
					}
					return c.show(raw, func(w io.Writer) {
						fmt.Fprintf(w, "removed %s from %s\n", args[1], args[0])
						renderVertical(w, raw, configEntryOrder)
					})
				}
			}},
		{name: "diff", args: "TENANT_A TENANT_B", min: 2, max: 2,
			help: "Show the keys whose resolved values differ between two tenants.",
			setup: func(fs *flag.FlagSet) func(*cliClient, []string) error {
				return func(c *cliClient, args []string) error {
					obj, raw, err := c.do(http.MethodGet, "/v1/config/diff", url.Values{"a": {args[0]}, "b": {args[1]}}, nil)
					if err != nil {
						return err
					}
					return c.show(raw, func(w io.Writer) { renderDiff(w, obj, args[0], args[1]) })
				}
			}},
		{name: "rotate-keys", min: 0, max: 0,
			help: "Re-encrypt every sensitive value (and backend credential) under the active secret key (admin scope).",
			setup: func(fs *flag.FlagSet) func(*cliClient, []string) error {
				return func(c *cliClient, args []string) error {
					_, raw, err := c.do(http.MethodPost, "/v1/config/rotate-keys", nil, nil)
					if err != nil {
						return err
					}
					return c.show(raw, func(w io.Writer) { renderVertical(w, raw, nil) })
				}
			}},
	}
}

func permCommands() []cliCommand {
	return []cliCommand{
		{name: "get", args: "TENANT [KEY]", min: 1, max: 2,
			help: "Show a tenant's resolved permissions (value, mode, revocation, source), or one key.",
			setup: func(fs *flag.FlagSet) func(*cliClient, []string) error {
				return func(c *cliClient, args []string) error {
					if len(args) == 2 {
						_, raw, err := c.do(http.MethodGet, cliPath("v1", "tenants", args[0], "permissions", args[1]), nil, nil)
						if err != nil {
							return err
						}
						return c.show(raw, func(w io.Writer) { renderVertical(w, raw, permEntryOrder) })
					}
					obj, raw, err := c.do(http.MethodGet, cliPath("v1", "tenants", args[0], "permissions"), nil, nil)
					if err != nil {
						return err
					}
					return c.show(raw, func(w io.Writer) { renderPerms(w, cliItems(obj, "permissions")) })
				}
			}},
		{name: "set", args: "TENANT KEY VALUE", min: 3, max: 3,
			help: "Grant or change the tenant's own policy for KEY. VALUE is JSON if it parses as JSON, else a string.",
			setup: func(fs *flag.FlagSet) func(*cliClient, []string) error {
				mode := fs.String("mode", "", "LOCKED, INHERITED or DELEGATED (required)")
				revocation := fs.String("revocation", "", "CASCADE, SOFT or PERMANENT (required)")
				return func(c *cliClient, args []string) error {
					if *mode == "" || *revocation == "" {
						return usageErrorf("perm set needs --mode (LOCKED, INHERITED or DELEGATED) and --revocation (CASCADE, SOFT or PERMANENT)")
					}
					body := map[string]any{"value": cliValue(args[2]), "mode": strings.ToUpper(*mode),
						"revocation": strings.ToUpper(*revocation)}
					_, raw, err := c.do(http.MethodPut, cliPath("v1", "tenants", args[0], "permissions", args[1]), nil, body)
					if err != nil {
						return err
					}
					return c.show(raw, func(w io.Writer) { renderVertical(w, raw, permEntryOrder) })
				}
			}},
		{name: "revoke", args: "TENANT KEY", min: 2, max: 2,
			help: "Revoke the tenant's own policy for KEY (CASCADE, SOFT or PERMANENT as the policy says).",
			setup: func(fs *flag.FlagSet) func(*cliClient, []string) error {
				return func(c *cliClient, args []string) error {
					obj, raw, err := c.do(http.MethodDelete, cliPath("v1", "tenants", args[0], "permissions", args[1]), nil, nil)
					if err != nil {
						return err
					}
					return c.show(raw, func(w io.Writer) { renderRevoke(w, obj, args[0], args[1]) })
				}
			}},
	}
}

func auditCommands() []cliCommand {
	return []cliCommand{
		{name: "list", help: "List audit rows, newest first, with optional filters.",
			setup: func(fs *flag.FlagSet) func(*cliClient, []string) error {
				tenant := fs.String("tenant", "", "only rows of this tenant (slug or id)")
				subtree := fs.Bool("subtree", false, "with --tenant: its descendants' rows too")
				action := fs.String("action", "", "only this action (e.g. config.set), or a prefix such as config.*")
				actor := fs.String("actor", "", "only rows made by this API key id")
				since := fs.String("since", "", "only rows at or after this RFC 3339 time")
				until := fs.String("until", "", "only rows before this RFC 3339 time")
				limit, cursor := cliPageFlags(fs)
				return func(c *cliClient, args []string) error {
					if err := checkLimit(*limit, *cursor); err != nil {
						return err
					}
					if *subtree && *tenant == "" {
						return usageErrorf("--subtree needs --tenant")
					}
					q := url.Values{}
					for k, v := range map[string]string{"tenant": *tenant, "action": *action, "actor": *actor, "since": *since, "until": *until} {
						if v != "" {
							q.Set(k, v)
						}
					}
					if *subtree {
						q.Set("subtree", "true")
					}
					p, err := c.list("/v1/audit", q, "events", *limit, *cursor)
					if err != nil {
						return err
					}
					return c.showPage(p, renderAudit)
				}
			}},
		{name: "verify", help: "Check the audit log's hash chain; exits 1 when it is broken.",
			setup: func(fs *flag.FlagSet) func(*cliClient, []string) error {
				return func(c *cliClient, args []string) error {
					obj, raw, err := c.do(http.MethodGet, "/v1/audit/verify", nil, nil)
					if err != nil {
						return err
					}
					if err := c.show(raw, func(w io.Writer) { renderVerify(w, obj) }); err != nil {
						return err
					}
					if ok, _ := obj["ok"].(bool); !ok {
						return &cliExitStatusError{msg: "the audit chain is broken" + verifyWhere(obj)}
					}
					return nil
				}
			}},
	}
}

func keyCommands() []cliCommand {
	oneKey := func(method, suffix string) func(fs *flag.FlagSet) func(*cliClient, []string) error {
		return func(fs *flag.FlagSet) func(*cliClient, []string) error {
			return func(c *cliClient, args []string) error {
				segs := []string{"v1", "keys", args[0]}
				if suffix != "" {
					segs = append(segs, suffix)
				}
				obj, raw, err := c.do(method, cliPath(segs...), nil, nil)
				if err != nil {
					return err
				}
				return c.show(raw, func(w io.Writer) { renderKey(w, obj, raw) })
			}
		}
	}
	return []cliCommand{
		{name: "list", help: "List API keys (never their secrets).",
			setup: func(fs *flag.FlagSet) func(*cliClient, []string) error {
				revoked := fs.Bool("include-revoked", false, "also list revoked keys")
				return func(c *cliClient, args []string) error {
					q := url.Values{}
					if *revoked {
						q.Set("include_revoked", "true")
					}
					obj, raw, err := c.do(http.MethodGet, "/v1/keys", q, nil)
					if err != nil {
						return err
					}
					items := cliItems(obj, "keys")
					var slugs map[string]string
					if !c.json {
						slugs = c.tenantSlugs(items)
					}
					return c.show(raw, func(w io.Writer) { renderKeys(w, items, slugs) })
				}
			}},
		{name: "create", args: "NAME", min: 1, max: 1,
			help: "Create an API key; its secret is printed once. A key never gets more scope than the caller's.",
			setup: func(fs *flag.FlagSet) func(*cliClient, []string) error {
				scopes := fs.String("scopes", "", "comma-separated: read, write, admin, secrets:read (required)")
				tenant := fs.String("tenant", "", "bind the key to this tenant's subtree (slug or id)")
				rate := fs.Int("rate-limit", 0, "requests per minute (default: the server's)")
				return func(c *cliClient, args []string) error {
					var list []string
					for s := range strings.SplitSeq(*scopes, ",") {
						if s = strings.TrimSpace(s); s != "" {
							list = append(list, s)
						}
					}
					if len(list) == 0 {
						return usageErrorf("key create needs --scopes (read, write, admin, secrets:read)")
					}
					if *rate < 0 {
						return usageErrorf("--rate-limit %d: give a positive number", *rate)
					}
					body := map[string]any{"name": args[0], "scopes": list}
					if *tenant != "" {
						body["tenant"] = *tenant
					}
					if *rate > 0 {
						body["rate_limit"] = *rate
					}
					obj, raw, err := c.do(http.MethodPost, "/v1/keys", nil, body)
					if err != nil {
						return err
					}
					return c.show(raw, func(w io.Writer) { renderKey(w, obj, raw) })
				}
			}},
		{name: "revoke", args: "KEY_ID", min: 1, max: 1, help: "Revoke an API key.", setup: oneKey(http.MethodDelete, "")},
		{name: "rotate", args: "KEY_ID", min: 1, max: 1,
			help:  "Replace a key with a new one (same name, scopes, tenant, limit) and revoke the old; the new secret is printed once.",
			setup: oneKey(http.MethodPost, "rotate")},
	}
}

// cliPasswordFlags registers --password and --password-stdin; the returned
// function yields the password (one of the two is required).
func cliPasswordFlags(fs *flag.FlagSet) func(c *cliClient) (string, error) {
	pw := fs.String("password", "", "the password (visible in the process list; prefer --password-stdin)")
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of stdin")
	return func(c *cliClient) (string, error) {
		if *fromStdin == (*pw != "") {
			return "", usageErrorf("give exactly one of --password or --password-stdin")
		}
		if *pw != "" {
			return *pw, nil
		}
		if c.stdin == nil {
			return "", usageErrorf("--password-stdin: no stdin")
		}
		line, err := bufio.NewReader(c.stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("reading the password from stdin: %w", err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return "", usageErrorf("--password-stdin: stdin gave an empty password")
		}
		return line, nil
	}
}

func userCommands() []cliCommand {
	patch := func(c *cliClient, name string, body map[string]any) error {
		_, raw, err := c.do(http.MethodPatch, cliPath("v1", "users", name), nil, body)
		if err != nil {
			return err
		}
		return c.show(raw, func(w io.Writer) { renderVertical(w, raw, userOrder) })
	}
	return []cliCommand{
		{name: "list", help: "List proxy users (that the key can see); never their credentials.",
			setup: func(fs *flag.FlagSet) func(*cliClient, []string) error {
				return func(c *cliClient, args []string) error {
					obj, raw, err := c.do(http.MethodGet, "/v1/users", nil, nil)
					if err != nil {
						return err
					}
					items := cliItems(obj, "users")
					var slugs map[string]string
					if !c.json {
						slugs = c.tenantSlugs(items)
					}
					return c.show(raw, func(w io.Writer) { renderUsers(w, items, slugs) })
				}
			}},
		{name: "show", args: "NAME", min: 1, max: 1, help: "Show one proxy user.",
			setup: func(fs *flag.FlagSet) func(*cliClient, []string) error {
				return func(c *cliClient, args []string) error {
					_, raw, err := c.do(http.MethodGet, cliPath("v1", "users", args[0]), nil, nil)
					if err != nil {
						return err
					}
					return c.show(raw, func(w io.Writer) { renderVertical(w, raw, userOrder) })
				}
			}},
		{name: "create", args: "NAME", min: 1, max: 1,
			help: "Create a proxy user bound to --tenant's subtree. Names: no '.', unique ignoring case, not reserved (postgres, pg_*, stratum*...).",
			setup: func(fs *flag.FlagSet) func(*cliClient, []string) error {
				tenant := fs.String("tenant", "", "the tenant the user is bound to, slug or id (required)")
				canSwitch := fs.Bool("can-switch", false, "the user may switch to tenants of its tenant's subtree")
				password := cliPasswordFlags(fs)
				return func(c *cliClient, args []string) error {
					if *tenant == "" {
						return usageErrorf("user create needs --tenant")
					}
					pw, err := password(c)
					if err != nil {
						return err
					}
					_, raw, err := c.do(http.MethodPost, "/v1/users", nil,
						map[string]any{"name": args[0], "password": pw, "tenant": *tenant, "can_switch": *canSwitch})
					if err != nil {
						return err
					}
					return c.show(raw, func(w io.Writer) { renderVertical(w, raw, userOrder) })
				}
			}},
		{name: "passwd", args: "NAME", min: 1, max: 1, help: "Change a proxy user's password; new logins need the new one at once.",
			setup: func(fs *flag.FlagSet) func(*cliClient, []string) error {
				password := cliPasswordFlags(fs)
				return func(c *cliClient, args []string) error {
					pw, err := password(c)
					if err != nil {
						return err
					}
					return patch(c, args[0], map[string]any{"password": pw})
				}
			}},
		{name: "rebind", args: "NAME TENANT", min: 2, max: 2,
			help: "Bind a proxy user to another tenant (slug or id); --can-switch=true|false changes its switch right.",
			setup: func(fs *flag.FlagSet) func(*cliClient, []string) error {
				canSwitch := fs.String("can-switch", "", "true or false (default: unchanged)")
				return func(c *cliClient, args []string) error {
					body := map[string]any{"tenant": args[1]}
					if *canSwitch != "" {
						b, err := strconv.ParseBool(*canSwitch)
						if err != nil {
							return usageErrorf("--can-switch %q: give true or false", *canSwitch)
						}
						body["can_switch"] = b
					}
					return patch(c, args[0], body)
				}
			}},
		{name: "delete", args: "NAME", min: 1, max: 1, help: "Delete a proxy user; new logins as it fail at once.",
			setup: func(fs *flag.FlagSet) func(*cliClient, []string) error {
				return func(c *cliClient, args []string) error {
					_, raw, err := c.do(http.MethodDelete, cliPath("v1", "users", args[0]), nil, nil)
					if err != nil {
						return err
					}
					return c.show(raw, func(w io.Writer) { renderVertical(w, raw, userOrder) })
				}
			}},
	}
}

// dbMapping is tenant db-map (PUT) or db-unmap (DELETE): it shows the tenant
// with its mappings.
func dbMapping(method string) func(fs *flag.FlagSet) func(*cliClient, []string) error {
	return func(fs *flag.FlagSet) func(*cliClient, []string) error {
		return func(c *cliClient, args []string) error {
			_, raw, err := c.do(method, cliPath("v1", "tenants", args[0], "databases", args[1]), nil, nil)
			if err != nil {
				return err
			}
			return c.show(raw, func(w io.Writer) { renderTenant(w, raw) })
		}
	}
}
