package admin

import "net/http"

// Route groups still to be written; each moves to its own file.

func (a *API) treeRoutes(mux *http.ServeMux)       {}
func (a *API) configRoutes(mux *http.ServeMux)     {}
func (a *API) permissionRoutes(mux *http.ServeMux) {}
func (a *API) keyRoutes(mux *http.ServeMux)        {}
func (a *API) auditRoutes(mux *http.ServeMux)      {}

func (a *API) openapi(w http.ResponseWriter, r *http.Request) error { return nil }

type limiter struct{}
