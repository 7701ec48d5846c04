package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/stratum-hq/stratum-proxy/catalog"
)

// Scopes an API key can hold. admin includes write, and write includes read;
// secrets:read stands alone (it unmasks sensitive config values).
const (
	ScopeRead        = "read"
	ScopeWrite       = "write"
	ScopeAdmin       = "admin"
	ScopeSecretsRead = "secrets:read"
)

// AllScopes lists every scope, in the order they are shown.
var AllScopes = []string{ScopeRead, ScopeWrite, ScopeAdmin, ScopeSecretsRead}

// Scope sets a route accepts: a key needs at least one of them.
var (
	scopesRead  = []string{ScopeRead, ScopeWrite, ScopeAdmin}
	scopesWrite = []string{ScopeWrite, ScopeAdmin}
	scopesAdmin = []string{ScopeAdmin}
)

// principal is the caller of an authenticated request: its key and what the
// key may reach.
type principal struct {
	KeyID  string
	Name   string
	Scopes []string
	// Root is the tenant the key is bound to: the key sees and changes only
	// that tenant's subtree. nil for a key bound to no tenant.
	Root *catalog.Tenant
	// RateLimit is the key's own limit in requests per minute; 0: the default.
	RateLimit int
}

// has reports whether p holds scope, counting admin ⊇ write ⊇ read.
func (p *principal) has(scope string) bool {
	for _, s := range p.Scopes {
		if s == scope || s == ScopeAdmin && (scope == ScopeWrite || scope == ScopeRead) ||
			s == ScopeWrite && scope == ScopeRead {
			return true
		}
	}
	return false
}

// reaches reports whether t is inside p's subtree.
func (p *principal) reaches(t *catalog.Tenant) bool {
	return p.Root == nil || t.Within(p.Root)
}

// tenantID is the id of the tenant p acts as, nil for the platform.
func (p *principal) tenantID() *string {
	if p.Root == nil {
		return nil
	}
	return &p.Root.ID
}

type principalKey struct{}

// principalFrom returns the caller of an authenticated request.
func principalFrom(ctx context.Context) *principal {
	p, _ := ctx.Value(principalKey{}).(*principal)
	if p == nil {
		return &principal{} // unreachable behind authed; a caller with no rights
	}
	return p
}

// authed wraps h so it runs only for a request that carries an accepted key
// holding one of the scopes in anyOf. The request's context then carries the
// principal (principalFrom) and the audit actor (catalog.WithActor).
//
// Accepted keys: Config.BootstrapKey (every scope, no tenant binding), or a
// live catalog API key. A key bound to a tenant reaches only that tenant's
// subtree; handlers check that with tenantFor.
func (a *API) authed(anyOf []string, h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		secret, ok := bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="stratum-admin"`)
			return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
				Message: "missing credentials: send Authorization: Bearer <admin api key>"}
		}
		p, err := a.principal(r.Context(), secret)
		if err != nil {
			return err
		}
		if p == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="stratum-admin", error="invalid_token"`)
			return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
				Message: "the api key is not valid (unknown or revoked)"}
		}
		if err := a.limit(w, p); err != nil {
			return err
		}
		if !slices.ContainsFunc(anyOf, p.has) {
			return &Error{Status: http.StatusForbidden, Code: CodeForbidden,
				Message: "the api key lacks the scope for " + r.Method + " " + r.URL.Path + ": it needs one of " + strings.Join(anyOf, ", "),
				Details: map[string]any{"key_id": p.KeyID, "required_any_of": anyOf, "scopes": p.Scopes}}
		}
		ctx := context.WithValue(r.Context(), principalKey{}, p)
		ctx = catalog.WithActor(ctx, catalog.Actor{KeyID: p.KeyID, Name: p.Name, TenantID: p.tenantID(),
			RequestID: w.Header().Get(RequestIDHeader), SourceIP: sourceIP(r)})
		return h(w, r.WithContext(ctx))
	}
}

// principal finds the key whose secret is given; nil when there is none.
func (a *API) principal(ctx context.Context, secret string) (*principal, error) {
	if a.cfg.BootstrapKey != "" && equalSecrets(secret, a.cfg.BootstrapKey) {
		return &principal{KeyID: "bootstrap", Name: "bootstrap", Scopes: AllScopes}, nil
	}
	key, err := a.cat.LookupAPIKey(ctx, secret)
	if errors.Is(err, catalog.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	p := &principal{KeyID: key.ID, Name: key.Name, Scopes: key.Scopes, RateLimit: key.RateLimit}
	if key.TenantID != nil {
		root, err := a.cat.GetTenant(ctx, *key.TenantID)
		if errors.Is(err, catalog.ErrNotFound) {
			return nil, nil // its tenant is gone, and the key with it
		}
		if err != nil {
			return nil, err
		}
		p.Root = root
	}
	return p, nil
}

// tenantFor returns the tenant named by ref (slug or id) when the caller may
// reach it. A tenant outside the caller's subtree is reported exactly like a
// missing one (404), so a bound key learns nothing about other tenants.
func (a *API) tenantFor(r *http.Request, ref string) (*catalog.Tenant, error) {
	t, err := a.cat.GetTenant(r.Context(), ref)
	if errors.Is(err, catalog.ErrNotFound) || err == nil && !principalFrom(r.Context()).reaches(t) {
		return nil, tenantNotFound(ref)
	}
	return t, err
}

// tenantAndKey returns the tenant named by the path's {ref}, when the caller
// may reach it, and the path's {key}, refused by valid when malformed.
func (a *API) tenantAndKey(r *http.Request, valid func(string) error) (*catalog.Tenant, string, error) {
	t, err := a.tenantFor(r, r.PathValue("ref"))
	if err != nil {
		return nil, "", err
	}
	key := r.PathValue("key")
	if err := valid(key); err != nil {
		return nil, "", err
	}
	return t, key, nil
}

// needScope refuses the request unless the caller holds scope.
func needScope(r *http.Request, scope string) error {
	p := principalFrom(r.Context())
	if p.has(scope) {
		return nil
	}
	return &Error{Status: http.StatusForbidden, Code: CodeForbidden,
		Message: "the api key lacks the " + scope + " scope for " + r.Method + " " + r.URL.Path,
		Details: map[string]any{"key_id": p.KeyID, "required": scope, "scopes": p.Scopes}}
}

// sourceIP is the request's peer address without the port.
func sourceIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
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
