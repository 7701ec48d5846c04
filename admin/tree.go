package admin

import "net/http"

// treeRoutes registers the tree routes. (To be written.)
func (a *API) treeRoutes(mux *http.ServeMux) {}
