package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"
)

// keepTarget is the acceptance target: through each pool mode, at least this
// share of the tests that pass directly pass through the proxy, and every
// loss is a documented refusal.
const keepTarget = 0.99

// lost is one test that passes directly but not through the proxy.
type lost struct {
	id, status, cause, refusal string
	// rerun says how the test did when run again by itself through the
	// proxy; flaky is true when it passed every time.
	rerun string
	flaky bool
}

// comparison is one suite in one proxy mode against the direct run.
type comparison struct {
	suite, mode    string
	direct         int // tests that passed directly
	kept           int // of those, passed through the proxy too
	gained         int // passed through the proxy but not directly
	lost           []lost
	undocumented   int
	flaky          int // lost in the full run, passed every time alone (not undocumented)
	directRun, run *suiteResult
}

func (c comparison) share() float64 {
	if c.direct == 0 {
		return 0
	}
	return float64(c.kept) / float64(c.direct)
}

func (c comparison) verdict() string {
	if c.direct == 0 {
		return "n/a"
	}
	if c.undocumented == 0 && c.share() >= keepTarget {
		return "PASS"
	}
	return "MISS"
}

// compare sets one mode's results against the direct ones, test by test.
func compare(suite, mode string, direct, through *suiteResult, rs []refusal) comparison {
	c := comparison{suite: suite, mode: mode, directRun: direct, run: through}
	for _, id := range direct.sortedIDs() {
		if direct.tests[id].status != statusPass {
			continue
		}
		c.direct++
		o, ok := through.tests[id]
		if ok && o.status == statusPass {
			c.kept++
			continue
		}
		l := lost{id: id, status: o.status, cause: o.message}
		if !ok {
			l.status, l.cause = "not run", "the test did not run through the proxy"
		}
		if o.status == statusSkip {
			l.cause = "skipped: " + l.cause
		}
		l.refusal = matchRefusal(rs, suite, id, l.cause)
		if rec, ok := through.reruns[id]; ok && l.refusal == "" {
			l.rerun = fmt.Sprintf("passed %d of %d times when run again by itself through the proxy", rec.passed, rec.tries)
			l.flaky = rec.tries > 0 && rec.passed == rec.tries
		}
		switch {
		case l.flaky:
			c.flaky++
		case l.refusal == "":
			c.undocumented++
		}
		c.lost = append(c.lost, l)
	}
	c.excuseParents()
	for id, o := range through.tests {
		if o.status == statusPass && direct.tests[id].status != statusPass {
			c.gained++
		}
	}
	return c
}

// excuseParents documents a lost test that failed with no output of its own
// (Go marks a test failed when a subtest fails) when it has lost subtests and
// every one of them is a documented refusal: it lost nothing of its own. A
// parent with an undocumented subtest, or with output of its own, stays as
// it was.
func (c *comparison) excuseParents() {
	for i := range c.lost {
		p := &c.lost[i]
		if p.refusal != "" || p.flaky || strings.TrimSpace(p.cause) != "" || p.status != statusFail {
			continue
		}
		var sections []string
		subtests, documented := 0, true
		for _, l := range c.lost {
			if !strings.HasPrefix(l.id, p.id+"/") {
				continue
			}
			subtests++
			if l.refusal == "" {
				documented = false
				break
			}
			if !slices.Contains(sections, l.refusal) {
				sections = append(sections, l.refusal)
			}
		}
		if subtests > 0 && documented {
			p.refusal = strings.Join(sections, "; ") + " (its subtests' refusal; the test lost nothing of its own)"
			c.undocumented--
		}
	}
}

// report compares the runs and writes them to latest.md in the output
// directory (conformance/results by default).
func (r *run) report(rs []refusal) error {
	var comps []comparison
	for _, s := range r.suites {
		modes := r.results[s.name()]
		direct := modes[modeDirect]
		if direct == nil {
			continue
		}
		for _, mode := range []string{modeSession, modeTransaction} {
			if through := modes[mode]; through != nil {
				comps = append(comps, compare(s.name(), mode, direct, through, rs))
			}
		}
	}
	fmt.Println()
	for _, c := range comps {
		fmt.Printf("%-14s %-12s direct %5d  kept %5d  lost %4d (flaky %d, undocumented %d)  %.2f%%  %s\n",
			c.suite, c.mode, c.direct, c.kept, len(c.lost), c.flaky, c.undocumented, 100*c.share(), c.verdict())
	}
	md := r.markdown(comps)
	if err := os.MkdirAll(r.opt.outDir, 0o755); err != nil {
		return err
	}
	latest := filepath.Join(r.opt.outDir, "latest.md")
	if err := os.WriteFile(latest, []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Println("\nwrote", latest)
	return nil
}

// commitNote names the checkout's commit, and says when it had uncommitted
// changes; it is taken when the run starts, since the proxy under test is
// compiled from the tree as it was then.
func commitNote() string {
	c := cmdOut("git", "rev-parse", "--short", "HEAD")
	if cmdOut("git", "status", "--porcelain", "--untracked-files=no") != "" {
		c += " (with uncommitted changes)"
	}
	return c
}

func cmdOut(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func (r *run) markdown(comps []comparison) string {
	var sb strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&sb, format, args...) }
	p("# stratum-proxy conformance, %s\n\n", r.started.Format(time.RFC3339))
	p("Commit %s. %s, %d CPUs (%s). PostgreSQL %s. The whole run took %s.\n\n",
		r.commit, runtime.Version(), runtime.NumCPU(),
		cmdOut("uname", "-sr"), r.pgVersion, time.Since(r.started).Round(time.Second))
	p("Suites: ")
	var vs []string
	for _, s := range r.suites {
		vs = append(vs, s.version())
	}
	p("%s. Generated by `make conformance` (conformance/cmd/stratumconf); see conformance/README.md.\n\n", strings.Join(vs, "; "))
	p("A test is **lost** when it passes directly and does not pass through the proxy. ")
	p("A loss is a **documented refusal** only when it matches a row of conformance/refusals.md, ")
	p("which cites the README section; no other loss is excused. Target: through each pool mode, ")
	p("≥ %.0f%% of the direct passes pass through, and no undocumented loss. ", 100*keepTarget)
	p("A loss with no refusal is run again by itself through the same proxy %d times (pgx, psycopg; up to %d tests): ", rerunTries, rerunMax)
	p("one that passes every time is **flaky** (a timing failure under the full run's load), listed with its first failure ")
	p("and still counted as lost in *kept*, but not as undocumented.\n\n")

	p("| suite | mode | passed directly | passed through | lost | documented refusals | flaky | undocumented | kept | target |\n")
	p("|---|---|--:|--:|--:|--:|--:|--:|--:|---|\n")
	for _, c := range comps {
		p("| %s | %s | %d | %d | %d | %d | %d | %d | %.2f%% | %s |\n", c.suite, c.mode, c.direct, c.kept, len(c.lost),
			len(c.lost)-c.undocumented-c.flaky, c.flaky, c.undocumented, 100*c.share(), c.verdict())
	}

	p("\n## Runs\n\n| suite | mode | passed | failed | skipped | time | notes |\n|---|---|--:|--:|--:|--:|---|\n")
	for _, s := range r.suites {
		for _, mode := range allModes {
			res := r.results[s.name()][mode]
			if res == nil {
				continue
			}
			pa, fa, sk := res.counts()
			note := res.note
			if res.extra != "" {
				note = strings.TrimPrefix(note+"; "+res.extra, "; ")
			}
			p("| %s | %s | %d | %d | %d | %s | %s |\n", s.name(), mode, pa, fa, sk, res.elapsed.Round(time.Second), mdEscape(note))
		}
	}
	for _, c := range comps {
		if c.gained > 0 {
			p("\n%s, %s: %d tests fail directly but pass through the proxy (not counted above).", c.suite, c.mode, c.gained)
		}
	}
	p("\n")

	for _, c := range comps {
		p("\n## %s, %s pooling: %d lost\n\n", c.suite, c.mode, len(c.lost))
		if len(c.lost) == 0 {
			p("None.\n")
			continue
		}
		for _, l := range c.lost {
			why := "**undocumented**"
			switch {
			case l.refusal != "":
				why = "documented refusal: " + l.refusal
			case l.flaky:
				why = "flaky: " + l.rerun
			case l.rerun != "":
				why += "; " + l.rerun
			}
			p("- `%s` (%s; %s)\n\n", l.id, l.status, why)
			cause := firstLines(l.cause, 8)
			if cause == "" {
				cause = "(no output of its own: see its subtests)"
			}
			p("  ```\n")
			for _, line := range strings.Split(cause, "\n") {
				p("  %s\n", strings.ReplaceAll(line, "```", "'''"))
			}
			p("  ```\n\n")
		}
	}

	p("\n## Failing directly\n\nTests that fail without the proxy, so are not compared (often for lack of a ")
	p("superuser or of a server feature), with the first lines of the failure.\n")
	for _, s := range r.suites {
		res := r.results[s.name()][modeDirect]
		if res == nil {
			continue
		}
		p("\n**%s**\n\n", s.name())
		n := 0
		for _, id := range res.sortedIDs() {
			if o := res.tests[id]; o.status == statusFail {
				p("- `%s`: %s\n", id, mdEscape(oneLine(firstLines(o.message, 3))))
				n++
			}
		}
		if n == 0 {
			p("None.\n")
		}
	}

	p("\n## Skipped tests\n\nBy reason, per run (a suite skips what its server or its role cannot do: ")
	p("the direct runs use a tenant's own backend role, not a superuser).\n")
	for _, s := range r.suites {
		for _, mode := range allModes {
			res := r.results[s.name()][mode]
			if res == nil {
				continue
			}
			reasons := map[string]int{}
			for _, o := range res.tests {
				if o.status == statusSkip {
					reasons[firstLines(o.message, 1)]++
				}
			}
			if len(reasons) == 0 {
				continue
			}
			p("\n**%s, %s**\n\n", s.name(), mode)
			keys := make([]string, 0, len(reasons))
			for k := range reasons {
				keys = append(keys, k)
			}
			sort.Slice(keys, func(i, j int) bool {
				if reasons[keys[i]] != reasons[keys[j]] {
					return reasons[keys[i]] > reasons[keys[j]]
				}
				return keys[i] < keys[j]
			})
			for _, k := range keys {
				if k == "" {
					k = "(no reason given)"
				}
				p("- %d× %s\n", reasons[k], mdEscape(k))
			}
		}
	}
	return sb.String()
}

// oneLine joins a few lines of a message into one, for a list item.
func oneLine(s string) string {
	fields := strings.Split(s, "\n")
	for i, f := range fields {
		fields[i] = strings.Join(strings.Fields(f), " ")
	}
	return strings.Join(fields, " ⏎ ")
}
