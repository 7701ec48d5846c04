package admin

import "net/http"

// configRoutes registers the config routes. (To be written.)
func (a *API) configRoutes(mux *http.ServeMux) {}
