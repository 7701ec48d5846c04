package admin

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/provision"
)

// createTenantRequest is the body of POST /v1/tenants.
type createTenantRequest struct {
	Slug      string `json:"slug"`
	Name      string `json:"name"`
	Parent    string `json:"parent"`    // slug or id; empty for a root tenant
	Isolation string `json:"isolation"` // shared (default), schema or database
	Backend   string `json:"backend"`   // database isolation only
	PoolMode  string `json:"pool_mode"` // session or transaction; empty: the proxy's
}

// tenantRoutes: create, list and read tenants.
func (a *API) tenantRoutes(mux *http.ServeMux) {
	a.route(mux, "/v1/tenants", methods{
		http.MethodGet:  a.authed(scopesRead, a.listTenants),
		http.MethodPost: a.authed(scopesWrite, a.createTenant),
	})
	a.route(mux, "/v1/tenants/{ref}", methods{
		http.MethodGet:   a.authed(scopesRead, a.getTenant),
		http.MethodPatch: a.authed(scopesWrite, a.updateTenant), // in tree.go
	})
}

// createTenant records and provisions a tenant; 201 with the tenant.
func (a *API) createTenant(w http.ResponseWriter, r *http.Request) error {
	var req createTenantRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if err := noNUL(map[string]string{"slug": req.Slug, "name": req.Name, "parent": req.Parent,
		"isolation": req.Isolation, "backend": req.Backend, "pool_mode": req.PoolMode}); err != nil {
		return err
	}
	// A key bound to a tenant creates only inside its subtree.
	if p := principalFrom(r.Context()); p.Root != nil {
		if req.Parent == "" {
			return &Error{Status: http.StatusForbidden, Code: CodeForbidden,
				Message: "a key bound to a tenant cannot create a root tenant; name a parent inside its subtree",
				Details: map[string]any{"key_id": p.KeyID}}
		}
		if _, err := a.tenantFor(r, req.Parent); err != nil {
			return err
		}
	}
	t, err := a.prov.CreateTenant(r.Context(), provision.TenantSpec{Slug: req.Slug, Name: req.Name,
		Parent: req.Parent, Isolation: req.Isolation, Backend: req.Backend, PoolMode: req.PoolMode})
	if errors.Is(err, catalog.ErrNotFound) && req.Parent != "" {
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound,
			Message: fmt.Sprintf("parent tenant %q does not exist", req.Parent),
			Details: map[string]any{"parent": req.Parent}}
	}
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/tenants/"+url.PathEscape(t.ID))
	writeJSON(w, http.StatusCreated, t)
	return nil
}

// listTenants answers a page of tenants in tree order (by path); a key bound
// to a tenant lists only its subtree.
func (a *API) listTenants(w http.ResponseWriter, r *http.Request) error {
	var f catalog.TenantFilter
	if root := principalFrom(r.Context()).Root; root != nil {
		f.Within = root.ID
	}
	return a.listTenantPage(w, r, f) // in tree.go
}

// getTenant answers the tenant named by slug or id, with the database
// names mapped to it.
func (a *API) getTenant(w http.ResponseWriter, r *http.Request) error {
	t, err := a.tenantFor(r, r.PathValue("ref"))
	if err != nil {
		return err
	}
	return a.writeTenant(w, r, t) // in databases.go
}

func tenantNotFound(ref string) *Error {
	return &Error{Status: http.StatusNotFound, Code: CodeNotFound,
		Message: fmt.Sprintf("tenant %q does not exist", ref), Details: map[string]any{"tenant": ref}}
}
