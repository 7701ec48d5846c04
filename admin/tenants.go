package admin

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/router"
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
	t, err := a.router.CreateTenant(r.Context(), router.TenantSpec{Slug: req.Slug, Name: req.Name,
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

// listTenants answers every tenant in tree order.
func (a *API) listTenants(w http.ResponseWriter, r *http.Request) error {
	ts, err := a.cat.ListTenants(r.Context())
	if err != nil {
		return err
	}
	if ts == nil {
		ts = []*catalog.Tenant{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tenants": ts})
	return nil
}

// getTenant answers the tenant named by slug or id.
func (a *API) getTenant(w http.ResponseWriter, r *http.Request) error {
	ref := r.PathValue("ref")
	t, err := a.cat.GetTenant(r.Context(), ref)
	if errors.Is(err, catalog.ErrNotFound) {
		return tenantNotFound(ref)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}

func tenantNotFound(ref string) *Error {
	return &Error{Status: http.StatusNotFound, Code: CodeNotFound,
		Message: fmt.Sprintf("tenant %q does not exist", ref), Details: map[string]any{"tenant": ref}}
}
