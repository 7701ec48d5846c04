package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/stratum-hq/stratum-proxy/catalog"
)

// maxKeyRateLimit bounds a key's own rate limit (requests per minute).
const maxKeyRateLimit = 1_000_000

// createKeyRequest is the body of POST /v1/keys.
type createKeyRequest struct {
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"`
	// Tenant is absent (a bound caller's own tenant, else unbound), null
	// (unbound) or the slug or id of the tenant to bind the key to.
	Tenant json.RawMessage `json:"tenant"`
	// RateLimit in requests per minute; absent or null: the server's default.
	RateLimit *int `json:"rate_limit"`
}

// keyWithSecret is a key as answered once, at creation or rotation.
type keyWithSecret struct {
	*catalog.APIKey
	Secret string `json:"secret"`
}

// keyRoutes: create, list, read, revoke and rotate admin API keys. Every
// route needs the admin scope; a bound caller sees and changes only keys
// bound inside its subtree.
func (a *API) keyRoutes(mux *http.ServeMux) {
	a.route(mux, "/v1/keys", methods{
		http.MethodGet:  a.authed(scopesAdmin, a.listKeys),
		http.MethodPost: a.authed(scopesAdmin, a.createKey),
	})
	a.route(mux, "/v1/keys/{id}", methods{
		http.MethodGet:    a.authed(scopesAdmin, a.getKey),
		http.MethodDelete: a.authed(scopesAdmin, a.revokeKey),
	})
	a.route(mux, "/v1/keys/{id}/rotate", methods{http.MethodPost: a.authed(scopesAdmin, a.rotateKey)})
}

// createKey makes a key; 201 with the key and its secret (shown once).
func (a *API) createKey(w http.ResponseWriter, r *http.Request) error {
	var req createKeyRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	p := principalFrom(r.Context())
	if req.Name == "" || len(req.Name) > catalog.MaxAPIKeyNameLen || !utf8.ValidString(req.Name) {
		return invalidKeyField("name", fmt.Sprintf("field \"name\" is required: 1 to %d bytes of text", catalog.MaxAPIKeyNameLen))
	}
	if err := noNUL(map[string]string{"name": req.Name}); err != nil {
		return err
	}
	scopes, err := checkKeyScopes(req.Scopes)
	if err != nil {
		return err
	}
	rateLimit := 0
	if req.RateLimit != nil {
		if *req.RateLimit < 1 || *req.RateLimit > maxKeyRateLimit {
			return invalidKeyField("rate_limit", fmt.Sprintf("field \"rate_limit\" must be 1 to %d requests per minute, or null for the server's default", maxKeyRateLimit))
		}
		rateLimit = *req.RateLimit
	}
	for _, s := range scopes {
		if !p.has(s) {
			return &Error{Status: http.StatusForbidden, Code: CodeForbidden,
				Message: fmt.Sprintf("the api key cannot grant the %s scope, which it does not hold", s),
				Details: map[string]any{"key_id": p.KeyID, "scope": s, "scopes": p.Scopes}}
		}
	}
	tenantID, err := a.keyTenant(r, req.Tenant)
	if err != nil {
		return err
	}
	k, secret, err := a.cat.InsertAPIKey(r.Context(), catalog.NewAPIKey{Name: req.Name, Scopes: scopes,
		TenantID: tenantID, RateLimit: rateLimit})
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/keys/"+url.PathEscape(k.ID))
	writeJSON(w, http.StatusCreated, keyWithSecret{APIKey: k, Secret: secret})
	return nil
}

// keyTenant resolves the tenant a new key is bound to (nil: unbound) from the
// raw "tenant" member. A bound caller binds inside its subtree only, by
// default to its own tenant.
func (a *API) keyTenant(r *http.Request, raw json.RawMessage) (*string, error) {
	p := principalFrom(r.Context())
	switch string(raw) {
	case "":
		return p.tenantID(), nil
	case "null":
		if p.Root != nil {
			return nil, &Error{Status: http.StatusForbidden, Code: CodeForbidden,
				Message: "a key bound to a tenant cannot create an unbound key; name a tenant inside its subtree or leave \"tenant\" out",
				Details: map[string]any{"key_id": p.KeyID, "tenant": p.Root.Slug}}
		}
		return nil, nil
	}
	var ref string
	if err := json.Unmarshal(raw, &ref); err != nil {
		return nil, badRequest(`field "tenant" must be a JSON string (a tenant slug or id) or null`, map[string]any{"field": "tenant"})
	}
	if err := noNUL(map[string]string{"tenant": ref}); err != nil {
		return nil, err
	}
	t, err := a.tenantFor(r, ref)
	if err != nil {
		return nil, err
	}
	return &t.ID, nil
}

// checkKeyScopes validates requested scopes and returns them without repeats,
// in AllScopes order.
func checkKeyScopes(scopes []string) ([]string, error) {
	if len(scopes) == 0 {
		return nil, invalidKeyField("scopes", fmt.Sprintf("field \"scopes\" is required: a non-empty list of %q", AllScopes))
	}
	var out []string
	for _, s := range scopes {
		if !slices.Contains(AllScopes, s) {
			return nil, &Error{Status: http.StatusUnprocessableEntity, Code: CodeInvalid,
				Message: fmt.Sprintf("unknown scope %q: use %q", s, AllScopes),
				Details: map[string]any{"field": "scopes", "scope": s, "known": AllScopes}}
		}
	}
	for _, s := range AllScopes {
		if slices.Contains(scopes, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

func invalidKeyField(field, msg string) *Error {
	return &Error{Status: http.StatusUnprocessableEntity, Code: CodeInvalid, Message: msg,
		Details: map[string]any{"field": field}}
}

// listKeys answers the keys the caller may see (live ones unless
// ?include_revoked=true), oldest first, never their secrets or hashes.
func (a *API) listKeys(w http.ResponseWriter, r *http.Request) error {
	q, err := knownParamsOnly(r, "include_revoked")
	if err != nil {
		return err
	}
	var f catalog.APIKeyFilter
	if v, ok := q["include_revoked"]; ok {
		b, err := strconv.ParseBool(v[0])
		if err != nil || len(v) > 1 {
			return badRequest("include_revoked must be true or false", map[string]any{"parameter": "include_revoked"})
		}
		f.IncludeRevoked = b
	}
	f.Within = principalFrom(r.Context()).tenantID()
	keys, err := a.cat.ListAPIKeys(r.Context(), f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": keys})
	return nil
}

// keyFor returns the key named by the path's {id} when the caller may reach
// it: a bound caller reaches only keys bound inside its subtree. Any other
// key is reported exactly like a missing one.
func (a *API) keyFor(r *http.Request) (*catalog.APIKey, error) {
	id := r.PathValue("id")
	notFound := &Error{Status: http.StatusNotFound, Code: CodeNotFound,
		Message: fmt.Sprintf("api key %q does not exist", id), Details: map[string]any{"id": id}}
	k, err := a.cat.GetAPIKey(r.Context(), id)
	if errors.Is(err, catalog.ErrNotFound) {
		return nil, notFound
	}
	if err != nil {
		return nil, err
	}
	if principalFrom(r.Context()).Root != nil && k.TenantID == nil {
		return nil, notFound // a platform key, outside every subtree
	}
	if k.TenantID != nil {
		if err := a.reachable(r, *k.TenantID, notFound); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// reachable returns nil when the caller may see what is bound to the tenant
// id (a platform key sees everything), and notFound, the same answer as for
// something that does not exist, when the tenant is gone or outside the
// caller's subtree.
func (a *API) reachable(r *http.Request, tenantID string, notFound error) error {
	p := principalFrom(r.Context())
	if p.Root == nil {
		return nil
	}
	t, err := a.cat.GetTenant(r.Context(), tenantID)
	if errors.Is(err, catalog.ErrNotFound) || err == nil && !p.reaches(t) {
		return notFound
	}
	return err
}

// getKey answers one key, live or revoked.
func (a *API) getKey(w http.ResponseWriter, r *http.Request) error {
	k, err := a.keyFor(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, k)
	return nil
}

// revokeKey revokes a key; 200 with it. Revoking a revoked key answers the
// same and changes nothing.
func (a *API) revokeKey(w http.ResponseWriter, r *http.Request) error {
	k, err := a.keyFor(r)
	if err != nil {
		return err
	}
	k, err = a.cat.RevokeAPIKey(r.Context(), k.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, k)
	return nil
}

// rotateKey replaces a live key by a new one (same name, scopes, tenant and
// limit) and revokes the old; 201 with the new key and its secret. The caller
// must hold every scope of the key it rotates: rotating hands out a secret.
func (a *API) rotateKey(w http.ResponseWriter, r *http.Request) error {
	k, err := a.keyFor(r)
	if err != nil {
		return err
	}
	p := principalFrom(r.Context())
	for _, s := range k.Scopes {
		if !p.has(s) {
			return &Error{Status: http.StatusForbidden, Code: CodeForbidden,
				Message: fmt.Sprintf("the api key cannot rotate a key holding the %s scope, which it does not hold", s),
				Details: map[string]any{"key_id": p.KeyID, "scope": s, "scopes": p.Scopes}}
		}
	}
	nk, secret, err := a.cat.RotateAPIKey(r.Context(), k.ID)
	if errors.Is(err, catalog.ErrKeyRevoked) {
		return &Error{Status: http.StatusConflict, Code: CodeConflict,
			Message: fmt.Sprintf("api key %s is revoked; only a live key can be rotated (create a new key instead)", k.ID),
			Details: map[string]any{"id": k.ID}}
	}
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/keys/"+url.PathEscape(nk.ID))
	writeJSON(w, http.StatusCreated, keyWithSecret{APIKey: nk, Secret: secret})
	return nil
}

// knownParamsOnly returns r's query parameters. It refuses a malformed
// query string (invalid UTF-8 included), parameters other than known, so a
// misspelt filter is an error rather than silently ignored, and a parameter
// given more than once.
func knownParamsOnly(r *http.Request, known ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest("malformed query string: "+err.Error(), nil)
	}
	for name, vals := range q {
		if !utf8.ValidString(name) || slices.ContainsFunc(vals, func(v string) bool { return !utf8.ValidString(v) }) {
			return nil, badRequest("malformed query string: a parameter is not valid UTF-8 once decoded", nil)
		}
		if len(vals) > 1 && slices.Contains(known, name) {
			return nil, badRequest(fmt.Sprintf("query parameter %q is given %d times; give it once", name, len(vals)),
				map[string]any{"parameter": name})
		}
	}
	for name := range q {
		if !slices.Contains(known, name) {
			if len(known) == 0 {
				return nil, badRequest(fmt.Sprintf("unknown query parameter %q; this route takes none", name),
					map[string]any{"parameter": name})
			}
			return nil, badRequest(fmt.Sprintf("unknown query parameter %q; this route takes %q", name, known),
				map[string]any{"parameter": name, "known": known})
		}
	}
	return q, nil
}
