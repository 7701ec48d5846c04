package admin_test

import (
	"context"
	"encoding/base64"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// auditSeqs returns the seq of each event of a GET /v1/audit answer.
func auditSeqs(t *testing.T, r response) []int64 {
	t.Helper()
	events, ok := r.body["events"].([]any)
	if !ok {
		t.Fatalf("no events in %s", r.raw)
	}
	seqs := []int64{}
	for _, e := range events {
		seqs = append(seqs, int64(e.(map[string]any)["seq"].(float64)))
	}
	return seqs
}

// auditSeqsSQL is the expected answer, straight from the catalog: the seqs
// of the rows where cond holds, newest first.
func auditSeqsSQL(t *testing.T, db *pgx.Conn, cond string, args ...any) []int64 {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT seq FROM audit_log WHERE `+cond+` ORDER BY seq DESC`, args...)
	if err != nil {
		t.Fatal(err)
	}
	seqs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	if seqs == nil {
		seqs = []int64{}
	}
	return seqs
}

// auditAll pages through path (which has a query) with limit, and returns
// every seq.
func auditAll(t *testing.T, s *stack, key, path string, limit int) []int64 {
	t.Helper()
	var all []int64
	cursor := ""
	for page := 0; ; page++ {
		p := path + "&limit=" + strconv.Itoa(limit)
		if cursor != "" {
			p += "&cursor=" + url.QueryEscape(cursor)
		}
		r := s.do(t, "GET", p, key, "")
		want(t, r, 200, "")
		seqs := auditSeqs(t, r)
		if len(seqs) > limit {
			t.Fatalf("page of %d rows, limit %d", len(seqs), limit)
		}
		all = append(all, seqs...)
		next, _ := r.body["next_cursor"].(string)
		if next == "" {
			if r.body["next_cursor"] != nil {
				t.Fatalf("next_cursor %v", r.body["next_cursor"])
			}
			return all
		}
		if page > 1000 {
			t.Fatal("paging does not end")
		}
		cursor = next
	}
}

func TestAuditLog(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	db := s.catalogConn(t)
	ids := map[string]string{}
	reqIDs := map[string]string{}
	for _, tn := range []struct{ slug, parent string }{
		{"acmesec", ""}, {"northstar_msp", "acmesec"}, {"client_alpha", "northstar_msp"},
		{"apex_partners", "acmesec"}, {"client_gamma", "apex_partners"},
	} {
		r := s.do(t, "POST", "/v1/tenants", bootstrapKey, jsonBody(t, map[string]string{"slug": tn.slug, "parent": tn.parent}))
		want(t, r, 201, "")
		ids[tn.slug] = r.body["id"].(string)
		reqIDs[tn.slug] = r.header.Get("X-Request-Id")
	}
	mkKey := func(key, body string) (id, secret string) {
		r := s.do(t, "POST", "/v1/keys", key, body)
		want(t, r, 201, "")
		return r.body["id"].(string), r.body["secret"].(string)
	}
	_, reader := mkKey(bootstrapKey, `{"name":"reader","scopes":["read"]}`)
	nadminID, nadmin := mkKey(bootstrapKey, `{"name":"north admin","scopes":["admin"],"tenant":"northstar_msp"}`)
	_, nreader := mkKey(nadmin, `{"name":"north reader","scopes":["read"]}`)
	mkKey(nadmin, `{"name":"alpha writer","scopes":["write"],"tenant":"client_alpha"}`)
	midway := time.Now()
	want(t, s.do(t, "POST", "/v1/users", nadmin, `{"name":"alpha_app","password":"secret-pw","tenant":"client_alpha"}`), 201, "")
	want(t, s.do(t, "POST", "/v1/users", bootstrapKey, `{"name":"gamma_app","password":"secret-pw","tenant":"client_gamma"}`), 201, "")

	north := `tenant_id IN (SELECT id FROM tenants WHERE path <@ (SELECT path FROM tenants WHERE slug = 'northstar_msp'))`

	t.Run("rows", func(t *testing.T) {
		r := s.do(t, "GET", "/v1/audit?action=tenant.create&tenant=client_alpha", reader, "")
		want(t, r, 200, "")
		events := r.body["events"].([]any)
		if len(events) != 1 {
			t.Fatalf("events %s", r.raw)
		}
		ev := events[0].(map[string]any)
		for _, f := range []string{"seq", "at", "actor", "action", "target", "tenant_id", "before", "after", "request_id", "source_ip", "hash", "prev_hash"} {
			if _, ok := ev[f]; !ok {
				t.Errorf("event lacks %q: %v", f, ev)
			}
		}
		actor := ev["actor"].(map[string]any)
		if actor["key_id"] != "bootstrap" || actor["name"] != "bootstrap" || ev["target"] != "tenant:client_alpha" ||
			ev["tenant_id"] != ids["client_alpha"] || ev["request_id"] != reqIDs["client_alpha"] || ev["source_ip"] != "127.0.0.1" ||
			ev["before"] != nil || ev["after"].(map[string]any)["slug"] != "client_alpha" || len(ev["hash"].(string)) != 64 || len(ev["prev_hash"].(string)) != 64 {
			t.Errorf("event %v", ev)
		}
		if _, err := time.Parse(time.RFC3339Nano, ev["at"].(string)); err != nil {
			t.Errorf("at: %v", err)
		}
		// Proxy user passwords never reach the log.
		all := s.do(t, "GET", "/v1/audit?limit=500", bootstrapKey, "")
		if strings.Contains(all.raw, "secret-pw") || strings.Contains(all.raw, "SCRAM") {
			t.Errorf("the audit log holds a password or verifier")
		}
	})

	t.Run("filters", func(t *testing.T) {
		tests := []struct {
			name, query string
			key         string
			cond        string
			args        []any
		}{
			{"everything", "", bootstrapKey, "true", nil},
			{"tenant", "tenant=northstar_msp", reader, "tenant_id = $1", []any{ids["northstar_msp"]}},
			{"tenant by id", "tenant=" + ids["northstar_msp"], reader, "tenant_id = $1", []any{ids["northstar_msp"]}},
			{"subtree", "tenant=northstar_msp&subtree=true", reader, north, nil},
			{"subtree false", "tenant=northstar_msp&subtree=false", reader, "tenant_id = $1", []any{ids["northstar_msp"]}},
			{"action", "action=user.create", reader, "action = 'user.create'", nil},
			{"action prefix", "action=key.*", reader, "action LIKE 'key.%'", nil},
			{"actor", "actor=" + nadminID, reader, "actor_key_id = $1", []any{nadminID}},
			{"since", "since=" + url.QueryEscape(midway.Format(time.RFC3339Nano)), reader, "at >= $1", []any{midway}},
			{"until", "until=" + url.QueryEscape(midway.Format(time.RFC3339Nano)), reader, "at < $1", []any{midway}},
			{"unescaped plus in the offset", "since=2020-01-01T01:00:00+01:00", reader, "true", nil},
			{"empty window", "since=2020-01-01T00:00:00Z&until=2020-01-01T00:00:00Z", reader, "false", nil},
			{"combined", "tenant=acmesec&subtree=true&action=tenant.*&actor=bootstrap", reader,
				"action LIKE 'tenant.%' AND actor_key_id = 'bootstrap' AND tenant_id IS NOT NULL", nil},
			{"bound key sees its subtree", "", nreader, north, nil},
			{"bound key, own tenant", "tenant=northstar_msp", nreader, "tenant_id = $1", []any{ids["northstar_msp"]}},
			{"bound key, inside tenant", "tenant=client_alpha&subtree=true", nreader, "tenant_id = $1", []any{ids["client_alpha"]}},
			{"bound key, action", "action=user.create", nreader, "action = 'user.create' AND " + north, nil},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				got := auditAll(t, s, tc.key, "/v1/audit?"+tc.query, 500)
				exp := auditSeqsSQL(t, db, tc.cond, tc.args...)
				if !slices.Equal(got, exp) {
					t.Errorf("seqs %v, want %v", got, exp)
				}
				if tc.cond != "false" && len(exp) == 0 {
					t.Errorf("the case selects nothing; it proves nothing")
				}
			})
		}
	})

	t.Run("pages", func(t *testing.T) {
		exp := auditSeqsSQL(t, db, "true")
		for _, limit := range []int{1, 2, 7} {
			if got := auditAll(t, s, reader, "/v1/audit?", limit); !slices.Equal(got, exp) {
				t.Errorf("limit %d: %v", limit, got)
			}
		}
		// Rows appended while paging neither repeat nor shift the pages.
		r := s.do(t, "GET", "/v1/audit?limit=3", reader, "")
		want(t, r, 200, "")
		first := auditSeqs(t, r)
		mkKey(bootstrapKey, `{"name":"late","scopes":["read"]}`)
		r2 := s.do(t, "GET", "/v1/audit?limit=500&cursor="+url.QueryEscape(r.body["next_cursor"].(string)), reader, "")
		want(t, r2, 200, "")
		if got := append(first, auditSeqs(t, r2)...); !slices.Equal(got, exp) {
			t.Errorf("paged across an append: %v, want %v", got, exp)
		}
		if r.body["next_cursor"] == nil {
			t.Errorf("first page has no next_cursor")
		}
	})

	t.Run("bad filters", func(t *testing.T) {
		foreign := base64.RawURLEncoding.EncodeToString([]byte("tenant:5"))
		tests := []struct{ name, query string }{
			{"limit zero", "limit=0"},
			{"limit too big", "limit=501"},
			{"limit not a number", "limit=ten"},
			{"cursor garbage", "cursor=%%%"},
			{"cursor not base64", "cursor=!!"},
			{"another listing's cursor", "cursor=" + foreign},
			{"since not a time", "since=yesterday"},
			{"until a date only", "until=2024-01-01"},
			{"until before since", "since=2024-01-02T00:00:00Z&until=2024-01-01T00:00:00Z"},
			{"subtree not a boolean", "tenant=acmesec&subtree=maybe"},
			{"subtree without tenant", "subtree=true"},
			{"action upper case", "action=Tenant.create"},
			{"action wildcard in the middle", "action=config.*.x"},
			{"action bare wildcard", "action=*"},
			{"empty actor", "actor="},
			{"empty tenant", "tenant="},
			{"unknown parameter", "tenant_id=" + ids["acmesec"]},
			{"repeated parameter", "action=a&action=b"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				want(t, s.do(t, "GET", "/v1/audit?"+tc.query, reader, ""), 400, "bad_request")
			})
		}
		want(t, s.do(t, "GET", "/v1/audit?tenant=nope", reader, ""), 404, "not_found")
		// Outside a bound key's subtree looks exactly like missing.
		for _, ref := range []string{"apex_partners", "client_gamma", "acmesec", ids["apex_partners"]} {
			r := s.do(t, "GET", "/v1/audit?tenant="+ref, nreader, "")
			want(t, r, 404, "not_found")
			if r.errMessage() != `tenant "`+ref+`" does not exist` {
				t.Errorf("message %q", r.errMessage())
			}
		}
	})

	t.Run("verify", func(t *testing.T) {
		want(t, s.do(t, "GET", "/v1/audit/verify", reader, ""), 403, "forbidden")
		want(t, s.do(t, "GET", "/v1/audit/verify", nadmin, ""), 403, "forbidden")
		want(t, s.do(t, "GET", "/v1/audit/verify?x=1", bootstrapKey, ""), 400, "bad_request")
		r := s.do(t, "GET", "/v1/audit/verify", bootstrapKey, "")
		want(t, r, 200, "")
		top := s.do(t, "GET", "/v1/audit?limit=1", bootstrapKey, "").body["events"].([]any)[0].(map[string]any)
		rows := countRows(t, db, `SELECT count(*) FROM audit_log`)
		head, _ := r.body["head"].(map[string]any)
		if r.body["ok"] != true || r.body["rows"] != float64(rows) || r.body["break"] != nil ||
			head["seq"] != top["seq"] || head["hash"] != top["hash"] {
			t.Fatalf("verify %s; top %v", r.raw, top)
		}
		edited := rows / 2
		if _, err := db.Exec(context.Background(), `SET session_replication_role = replica`); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(context.Background(), `UPDATE audit_log SET after = jsonb_set(coalesce(after, '{}'), '{forged}', 'true') WHERE seq = $1`, edited); err != nil {
			t.Fatal(err)
		}
		r = s.do(t, "GET", "/v1/audit/verify", bootstrapKey, "")
		want(t, r, 200, "")
		brk, _ := r.body["break"].(map[string]any)
		if r.body["ok"] != false || brk["seq"] != float64(edited) || brk["reason"] != "hash mismatch" {
			t.Fatalf("after a hand edit of seq %d: %s", edited, r.raw)
		}
		if _, err := db.Exec(context.Background(), `DELETE FROM audit_log WHERE seq = 2`); err != nil {
			t.Fatal(err)
		}
		r = s.do(t, "GET", "/v1/audit/verify", bootstrapKey, "")
		brk, _ = r.body["break"].(map[string]any)
		if r.body["ok"] != false || brk["seq"] != float64(3) || brk["reason"] != "gap" || r.body["rows"] != float64(rows-1) {
			t.Fatalf("after deleting seq 2: %s", r.raw)
		}
	})
}
