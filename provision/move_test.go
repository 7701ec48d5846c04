package provision

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stratum-hq/stratum-proxy/catalog"
)

// TestCaptureFunctionRunsAsTheWriter: the capture function (plain, fence,
// no-op, moved fence and a move back's kept-copy fence) is never SECURITY DEFINER and pins its search_path; the
// end-to-end proof is e2e/moves TestHostileCastRunsOnlyAsTheTenant.
func TestCaptureFunctionRunsAsTheWriter(t *testing.T) {
	for _, sql := range []string{captureFunctionSQL("stratum.f", "stratum.l", false),
		captureFunctionSQL("stratum.f", "stratum.l", true), noopCaptureSQL("stratum.f"), movedFenceSQL("stratum.f"),
		keptFenceSQL("stratum.f", 4242, "00000000-0000-4000-8000-000000000000")} {
		if strings.Contains(strings.ToUpper(sql), "SECURITY DEFINER") {
			t.Errorf("capture function is SECURITY DEFINER:\n%s", sql)
		}
		if !strings.Contains(sql, "SET search_path = pg_catalog") {
			t.Errorf("capture function without a pinned search_path:\n%s", sql)
		}
	}
}

// TestMovableErr: tables the app does not have are named, then tables
// without a primary key; both wrap ErrInvalidMove.
func TestMovableErr(t *testing.T) {
	src := &catalog.Tenant{Slug: "x"}
	app := map[string]*relInfo{"orders": {pk: []string{"id"}}, "logs": {}}
	if err := movableErr(src, app, map[string]*relInfo{"orders": {pk: []string{"id"}}}); err != nil {
		t.Errorf("app tables only: %v", err)
	}
	err := movableErr(src, app, map[string]*relInfo{"orders": {pk: []string{"id"}}, "zz_mine": {}, "a_mine": {}})
	if !errors.Is(err, ErrInvalidMove) || !strings.Contains(err.Error(), "a_mine, zz_mine") {
		t.Errorf("own tables: %v", err)
	}
	err = movableErr(src, app, map[string]*relInfo{"logs": {}})
	if !errors.Is(err, ErrInvalidMove) || !strings.Contains(err.Error(), "logs") {
		t.Errorf("table without a primary key: %v", err)
	}
}

// TestTouchRemembersKeysAfterTheVerificationPoint: applyLog's changes are
// remembered only from the verification point on, by key without
// tenant_id (the last row per key); a TRUNCATE marks its table.
func TestTouchRemembersKeysAfterTheVerificationPoint(t *testing.T) {
	r := &moveRun{}
	orders := &moveTable{name: "orders", pk: []string{"tenant_id", "id"}}
	if err := r.touch(orders, "U", []byte(`{"id": 1, "tenant_id": "a"}`)); err != nil || r.touched != nil {
		t.Fatalf("before the verification point: %v %v", r.touched, err)
	}
	r.touched, r.truncated = map[string]map[string][]byte{}, map[string]bool{}
	for _, row := range []string{`{"id": 1, "tenant_id": "a", "q": 1}`, `{"id": 2, "tenant_id": "a"}`, `{"tenant_id": "b", "id": 1, "q": 2}`} {
		if err := r.touch(orders, "U", []byte(row)); err != nil {
			t.Fatal(err)
		}
	}
	if got := r.touched["orders"]; len(got) != 2 || string(got["[1]"]) != `{"tenant_id": "b", "id": 1, "q": 2}` {
		t.Errorf("touched: %q", got)
	}
	if err := r.touch(orders, "T", nil); err != nil || !r.truncated["orders"] {
		t.Errorf("a truncate: %v %v", r.truncated, err)
	}
	if err := r.touch(orders, "U", []byte(`not json`)); err == nil {
		t.Error("a change that is no JSON object was remembered")
	}
}

// TestRowCounterKeepsTheCopyRate: with a rate, rowCounter hands out rows
// no faster than it (a lower bound only: how fast an unlimited copy goes is
// the bench's business); without one it does not wait.
func TestRowCounterKeepsTheCopyRate(t *testing.T) {
	rows := strings.Repeat("1\tx\n", 600)
	for _, rate := range []int64{0, 2000} {
		var seen int64
		rc := &rowCounter{rd: strings.NewReader(rows), rate: rate, ctx: context.Background(), onRows: func(n int64) { seen += n }}
		start := time.Now()
		buf := make([]byte, 64) // 16 rows a read
		for {
			_, err := rc.Read(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		took := time.Since(start)
		if seen != 600 {
			t.Fatalf("rate %d: counted %d rows, want 600", rate, seen)
		}
		// 600 rows at 2000/s: the last read starts after 584 rows are due,
		// 0.29 s in.
		if rate > 0 && took < 280*time.Millisecond {
			t.Errorf("rate %d: 600 rows in %v, faster than the rate allows", rate, took)
		}
	}
}
