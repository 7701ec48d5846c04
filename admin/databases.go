package admin

import (
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/stratum-hq/stratum-proxy/catalog"
)

// databaseRoutes: map and unmap client database names to a tenant
// (identification by database name).
func (a *API) databaseRoutes(mux *http.ServeMux) {
	a.route(mux, "/v1/tenants/{ref}/databases/{name}", methods{
		http.MethodPut:    a.authed(scopesWrite, a.mapDatabase),
		http.MethodDelete: a.authed(scopesWrite, a.unmapDatabase),
	})
}

// tenantWithDatabases is a tenant as GET /v1/tenants/{ref} shows it: with
// the database names mapped to it.
type tenantWithDatabases struct {
	*catalog.Tenant
	Databases []string `json:"databases"`
}

// checkDatabaseName refuses what cannot be a PostgreSQL database name and
// the names of real databases: template0/1, postgres, the shared database,
// the backends' admin databases, and names starting with pg_ or stratum
// (the proxy's own databases).
func (a *API) checkDatabaseName(name string) error {
	bad := func(msg string) error {
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeInvalid,
			Message: fmt.Sprintf("database name %q: %s", name, msg), Details: map[string]any{"name": name}}
	}
	if name == "" || len(name) > 63 || strings.ContainsRune(name, 0) || !utf8.ValidString(name) {
		return bad("1 to 63 bytes of UTF-8, no NUL")
	}
	l := strings.ToLower(name)
	reserved := []string{"postgres", "template0", "template1"}
	if a.prov != nil {
		reserved = append(reserved, a.prov.ReservedDatabases()...)
	}
	for _, r := range reserved {
		if l == strings.ToLower(r) {
			return bad("reserved (a real database of the backends)")
		}
	}
	if strings.HasPrefix(l, "pg_") || strings.HasPrefix(l, "stratum") {
		return bad("reserved (names starting with pg_ or stratum)")
	}
	return nil
}

// mapDatabase maps a database name to the tenant; 200 with the tenant and
// its mappings. 409 when the name is mapped to another tenant, visible to
// the caller or not (the same answer either way).
func (a *API) mapDatabase(w http.ResponseWriter, r *http.Request) error {
	t, err := a.tenantFor(r, r.PathValue("ref"))
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	if err := a.checkDatabaseName(name); err != nil {
		return err
	}
	if err := a.cat.MapDatabase(r.Context(), name, t.ID); err != nil {
		return err
	}
	return a.writeTenant(w, r, t)
}

// unmapDatabase removes a mapping of the tenant; 200 with the tenant and
// its remaining mappings; 404 when the name is not mapped to it.
func (a *API) unmapDatabase(w http.ResponseWriter, r *http.Request) error {
	t, err := a.tenantFor(r, r.PathValue("ref"))
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	if name == "" || strings.ContainsRune(name, 0) || !utf8.ValidString(name) {
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound,
			Message: fmt.Sprintf("database name %q is not mapped to this tenant", name), Details: map[string]any{"name": name}}
	}
	if err := a.cat.UnmapDatabase(r.Context(), name, t.ID); err != nil {
		return err
	}
	return a.writeTenant(w, r, t)
}

func (a *API) writeTenant(w http.ResponseWriter, r *http.Request, t *catalog.Tenant) error {
	dbs, err := a.cat.TenantDatabases(r.Context(), t.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tenantWithDatabases{Tenant: t, Databases: dbs})
	return nil
}
