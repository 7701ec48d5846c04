package admin

import "net/http"

// auditRoutes registers the audit routes. (To be written.)
func (a *API) auditRoutes(mux *http.ServeMux) {}
