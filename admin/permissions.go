package admin

import "net/http"

// permissionRoutes registers the permissions routes. (To be written.)
func (a *API) permissionRoutes(mux *http.ServeMux) {}
