package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/stratum-hq/stratum-proxy/catalog"
)

// Scopes an API key can hold.
const (
	ScopeRead  = "read"
	ScopeWrite = "write"
	ScopeAdmin = "admin"
)

// Scope sets a route accepts: a key needs at least one of them.
var (
	scopesRead  = []string{ScopeRead, ScopeWrite, ScopeAdmin}
	scopesWrite = []string{ScopeWrite, ScopeAdmin}
)

// authed wraps h so it runs only for a request that carries an accepted key
// holding one of the scopes in anyOf.
//
// Accepted keys: Config.BootstrapKey (every scope), or a live catalog API key
// not bound to a tenant. Tenant-bound keys are refused until tenant scoping
// exists, so that no such key can reach another tenant.
func (a *API) authed(anyOf []string, h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		secret, ok := bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="stratum-admin"`)
			return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
				Message: "missing credentials: send Authorization: Bearer <admin api key>"}
		}
		if a.cfg.BootstrapKey != "" && equalSecrets(secret, a.cfg.BootstrapKey) {
			return h(w, r)
		}
		key, err := a.cat.LookupAPIKey(r.Context(), secret)
		if errors.Is(err, catalog.ErrNotFound) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="stratum-admin", error="invalid_token"`)
			return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
				Message: "the api key is not valid (unknown or revoked)"}
		}
		if err != nil {
			return err
		}
		if key.TenantID != nil {
			return &Error{Status: http.StatusForbidden, Code: CodeForbidden,
				Message: "tenant-bound api keys cannot use this route yet",
				Details: map[string]any{"key_id": key.ID}}
		}
		if !slices.ContainsFunc(key.Scopes, func(s string) bool { return slices.Contains(anyOf, s) }) {
			return &Error{Status: http.StatusForbidden, Code: CodeForbidden,
				Message: "the api key lacks the scope for " + r.Method + " " + r.URL.Path + ": it needs one of " + strings.Join(anyOf, ", "),
				Details: map[string]any{"key_id": key.ID, "required_any_of": anyOf, "scopes": key.Scopes}}
		}
		return h(w, r)
	}
}

// bearer returns the token of an "Authorization: Bearer <token>" header. The
// scheme is case-insensitive (RFC 7235).
func bearer(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// equalSecrets compares in constant time; hashing first hides the lengths too.
func equalSecrets(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}
