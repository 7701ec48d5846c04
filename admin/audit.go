package admin

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/stratum-hq/stratum-proxy/catalog"
)

// Audit listing page sizes.
const (
	auditDefaultLimit = 50
	auditMaxLimit     = 500
)

// auditActionPattern is an action filter: a dotted action name, optionally
// ending in ".*" for every action under that prefix.
var auditActionPattern = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?$`)

// auditRoutes: read the audit log and verify its hash chain.
func (a *API) auditRoutes(mux *http.ServeMux) {
	a.route(mux, "/v1/audit", methods{http.MethodGet: a.authed(scopesRead, a.listAudit)})
	a.route(mux, "/v1/audit/verify", methods{http.MethodGet: a.authed(scopesAdmin, a.verifyAudit)})
}

// auditPage is the body of GET /v1/audit.
type auditPage struct {
	Events     []*catalog.AuditRecord `json:"events"`
	NextCursor *string                `json:"next_cursor"`
}

// listAudit answers audit rows, newest first, filtered by ?tenant= (with
// ?subtree=true its descendants too), ?action= (exact, or a prefix ending in
// ".*"), ?actor= (key id), ?since= (inclusive) and ?until= (exclusive, both
// RFC 3339), paged by ?limit= and ?cursor=. A bound key sees only rows of
// tenants inside its subtree.
func (a *API) listAudit(w http.ResponseWriter, r *http.Request) error {
	q, err := a.auditQuery(r)
	if err != nil {
		return err
	}
	rows, more, err := a.cat.ListAudit(r.Context(), q)
	if err != nil {
		return err
	}
	page := auditPage{Events: rows}
	if more && len(rows) > 0 {
		c := encodeAuditCursor(rows[len(rows)-1].Seq)
		page.NextCursor = &c
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// auditQuery reads GET /v1/audit's parameters. Malformed ones are 400s; a
// tenant the caller cannot reach is a 404.
func (a *API) auditQuery(r *http.Request) (catalog.AuditQuery, error) {
	v, err := knownParamsOnly(r, "tenant", "subtree", "action", "actor", "since", "until", "limit", "cursor")
	if err != nil {
		return catalog.AuditQuery{}, err
	}
	for name, vals := range v {
		if len(vals) > 1 {
			return catalog.AuditQuery{}, badRequest(fmt.Sprintf("query parameter %q is given %d times; give it once", name, len(vals)),
				map[string]any{"parameter": name})
		}
	}
	bad := func(param, msg string) (catalog.AuditQuery, error) {
		return catalog.AuditQuery{}, badRequest(msg, map[string]any{"parameter": param, "value": v.Get(param)})
	}
	q := catalog.AuditQuery{Limit: auditDefaultLimit}
	p := principalFrom(r.Context())
	if id := p.tenantID(); id != nil {
		q.Within = *id
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > auditMaxLimit {
			return bad("limit", fmt.Sprintf("limit must be a whole number from 1 to %d", auditMaxLimit))
		}
		q.Limit = n
	}
	if s := v.Get("cursor"); s != "" {
		seq, ok := decodeAuditCursor(s)
		if !ok {
			return bad("cursor", "the cursor is not one this listing handed out; start again without it")
		}
		q.BeforeSeq = seq
	}
	if s, ok := v["subtree"]; ok {
		b, err := strconv.ParseBool(s[0])
		if err != nil {
			return bad("subtree", "subtree must be true or false")
		}
		if !v.Has("tenant") {
			return bad("subtree", "subtree needs tenant: name the tenant whose subtree to show")
		}
		q.Subtree = b
	}
	if v.Has("tenant") {
		ref := v.Get("tenant")
		if ref == "" {
			return bad("tenant", "tenant must be a tenant slug or id")
		}
		t, err := a.cat.GetTenant(r.Context(), ref)
		switch {
		case err == nil && p.reaches(t):
			q.TenantID = t.ID
		case err == nil || errors.Is(err, catalog.ErrNotFound) && p.Root != nil:
			return catalog.AuditQuery{}, tenantNotFound(ref)
		case errors.Is(err, catalog.ErrNotFound) && catalog.IsUUID(ref):
			// An unbound caller may still read the rows of a tenant that
			// no longer exists, by its id.
			q.TenantID = strings.ToLower(ref)
		case errors.Is(err, catalog.ErrNotFound):
			return catalog.AuditQuery{}, tenantNotFound(ref)
		default:
			return catalog.AuditQuery{}, err
		}
	}
	if s := v.Get("action"); v.Has("action") {
		if len(s) > 200 || !auditActionPattern.MatchString(s) {
			return bad("action", `action must be an action name such as "tenant.create", or a prefix ending in ".*" such as "config.*"`)
		}
		if prefix, ok := strings.CutSuffix(s, "*"); ok {
			q.ActionPrefix = prefix
		} else {
			q.Action = s
		}
	}
	if s := v.Get("actor"); v.Has("actor") {
		if s == "" || len(s) > 200 || strings.ContainsFunc(s, func(c rune) bool { return c < ' ' || c == 0x7f }) {
			return bad("actor", `actor must be an api key id (or "bootstrap" or "system")`)
		}
		q.ActorKeyID = s
	}
	for _, param := range []string{"since", "until"} {
		if !v.Has(param) {
			continue
		}
		ts, ok := parseAuditTime(v.Get(param))
		if !ok {
			return bad(param, param+" must be an RFC 3339 time such as 2025-01-31T12:00:00Z")
		}
		if param == "since" {
			q.Since = ts
		} else {
			q.Until = ts
		}
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && q.Until.Before(q.Since) {
		return bad("until", "until is before since")
	}
	return q, nil
}

// parseAuditTime reads an RFC 3339 time. A "+" of the offset that arrived
// unescaped in the query string was decoded as a space; take it back.
func parseAuditTime(s string) (time.Time, bool) {
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil && strings.Contains(s, " ") {
		ts, err = time.Parse(time.RFC3339Nano, strings.ReplaceAll(s, " ", "+"))
	}
	if err != nil || ts.Year() < 1 || ts.Year() > 9999 {
		return time.Time{}, false
	}
	return ts, true
}

// auditCursorPrefix marks an audit cursor, so another listing's cursor is
// refused rather than misread.
const auditCursorPrefix = "audit:"

// encodeAuditCursor makes the opaque cursor of the page after seq.
func encodeAuditCursor(seq int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(auditCursorPrefix + strconv.FormatInt(seq, 10)))
}

func decodeAuditCursor(s string) (int64, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return 0, false
	}
	n, ok := strings.CutPrefix(string(raw), auditCursorPrefix)
	if !ok {
		return 0, false
	}
	seq, err := strconv.ParseInt(n, 10, 64)
	if err != nil || seq < 1 {
		return 0, false
	}
	return seq, true
}

// verifyAudit recomputes the audit hash chain and answers whether it holds
// and where it first breaks. It needs an unbound admin key: the chain spans
// every tenant's rows.
func (a *API) verifyAudit(w http.ResponseWriter, r *http.Request) error {
	if _, err := knownParamsOnly(r); err != nil {
		return err
	}
	if p := principalFrom(r.Context()); p.Root != nil {
		return &Error{Status: http.StatusForbidden, Code: CodeForbidden,
			Message: "verifying the audit log needs a key bound to no tenant: the chain spans every tenant's rows",
			Details: map[string]any{"key_id": p.KeyID}}
	}
	v, err := a.cat.VerifyAudit(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}
