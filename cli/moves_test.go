package cli

import (
	"strings"
	"testing"
)

// TestCLIMovePlacement moves a tenant from the shared tables to a schema of
// its own with --wait, as an operator would, then lists and shows the move,
// moves it back (move revert --wait) and finalizes the move back; a failing
// or refused move exits non-zero.
func TestCLIMovePlacement(t *testing.T) {
	s := newCLIStack(t)
	s.run(t, "tenant", "create", "mover_co").ok(t)

	if r := s.run(t, "tenant", "move-placement", "mover_co"); r.code != cliExitUsage || !strings.Contains(r.stderr, "--isolation is required") {
		t.Fatalf("without --isolation: exit %d, stderr %q; want usage error", r.code, r.stderr)
	}
	if r := s.run(t, "tenant", "move-placement", "mover_co", "--isolation", "shared"); r.code != cliExitError || !strings.Contains(r.stderr, "409") {
		t.Fatalf("to its own placement: exit %d, stderr %q; want the API's 409", r.code, r.stderr)
	}

	r := s.run(t, "tenant", "move-placement", "mover_co", "--isolation", "schema", "--wait").ok(t)
	if !strings.Contains(r.stderr, "mover_co switched [") || !strings.Contains(r.stdout, "phase:") || !strings.Contains(r.stdout, "switched") {
		t.Fatalf("--wait printed no progress or no switched move:\nstdout %s\nstderr %s", r.stdout, r.stderr)
	}
	tn, err := s.cat.GetTenant(t.Context(), "mover_co")
	if err != nil || tn.Isolation != "schema" {
		t.Fatalf("after the move the catalog says %+v, %v; want isolation schema", tn, err)
	}
	var id string
	for _, line := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "id:" {
			id = f[1]
		}
	}
	if id == "" {
		t.Fatalf("no move id in %q", r.stdout)
	}
	rows := tableRows(s.run(t, "move", "list", "--tenant", "mover_co").ok(t).stdout)
	if row := rowFor(rows, id); len(row) < 5 || row[1] != "mover_co" || row[4] != "switched" {
		t.Fatalf("move list: %v", rows)
	}
	if r := s.run(t, "move", "cancel", id); r.code != cliExitError {
		t.Fatalf("cancelling a switched move: exit %d; want 1", r.code)
	}
	// Back to the shared tables (the kept copy), followed with --wait; the
	// first move is then reverted and the move back is what gets finalized.
	r = s.run(t, "move", "revert", id, "--wait").ok(t)
	if !strings.Contains(r.stderr, "mover_co switched [") || !strings.Contains(r.stdout, "reverts:") || !strings.Contains(r.stdout, id) {
		t.Fatalf("move revert --wait printed no progress or no move back:\nstdout %s\nstderr %s", r.stdout, r.stderr)
	}
	if tn, err := s.cat.GetTenant(t.Context(), "mover_co"); err != nil || tn.Isolation != "shared" {
		t.Fatalf("after the move back the catalog says %+v, %v; want isolation shared", tn, err)
	}
	var back string
	for _, line := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "id:" {
			back = f[1]
		}
	}
	if out := s.run(t, "move", "show", id).ok(t).stdout; !strings.Contains(out, "reverted") {
		t.Fatalf("the first move after its move back: %s", out)
	}
	if r := s.run(t, "move", "revert", id); r.code != cliExitError || !strings.Contains(r.stderr, "409") {
		t.Fatalf("moving back a reverted move: exit %d, stderr %q; want the API's 409", r.code, r.stderr)
	}
	if out := s.run(t, "move", "finalize", back).ok(t).stdout; !strings.Contains(out, "finalized") {
		t.Fatalf("finalize: %s", out)
	}
	if r := s.run(t, "move", "show", "00000000-0000-4000-8000-000000000000"); r.code != cliExitError || !strings.Contains(r.stderr, "404") {
		t.Fatalf("show of an unknown move: exit %d, stderr %q", r.code, r.stderr)
	}
}
