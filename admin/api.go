package admin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"path"
	"strings"

	"go.uber.org/zap"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/provision"
)

// Config shapes the admin API. Zero fields get the defaults noted.
type Config struct {
	// BootstrapKey, when non-empty, is accepted as an admin key with every
	// scope. cmd reads it from STRATUM_BOOTSTRAP_ADMIN_KEY; this package reads
	// no environment.
	BootstrapKey string
	// Readiness, when set, is asked by /readyz after the catalog answered;
	// nil means the catalog alone decides readiness.
	Readiness Readiness
	// Metrics, when set, is served at GET /metrics without authentication
	// (Prometheus scrapes it; keep the admin port internal).
	Metrics http.Handler
	// Logger receives one line per internal error (with the request id); default
	// a no-op logger.
	Logger *zap.Logger
	// RateLimit is each API key's budget in requests per minute, for keys
	// without a limit of their own (the bootstrap key included); default 600.
	// A negative value turns the default off (keys with their own limit stay
	// limited). Budgets are kept in this process's memory: every replica
	// grants a key its full budget.
	RateLimit int
	// PlatformMaxConns is the proxy's per-tenant backend connection limit
	// (pool.max_per_tenant): a tenant-bound key may not set
	// proxy.max_connections above it unless an ancestor allows more.
	// 0: no such cap.
	PlatformMaxConns int
}

// Readiness is an extra readiness check for /readyz, declared here and
// implemented by whoever wires the API (for example: the proxy is listening).
type Readiness interface {
	// Ready returns nil when the process may take traffic. It must honour ctx.
	Ready(ctx context.Context) error
}

// RequestIDHeader names the response header that carries each request's
// random id; internal-error log lines carry the same id.
const RequestIDHeader = "X-Request-Id"

// API is the admin HTTP API. It implements http.Handler and is safe for
// concurrent use; it holds no resources of its own, so it has no Close.
type API struct {
	cfg  Config
	prov *provision.Provisioner
	cat  *catalog.Catalog
	log  *zap.Logger
	mux  *http.ServeMux
	// registered lists every route, for the OpenAPI sync test.
	registered []registeredRoute
	// limiter holds per-key request budgets (rate limiting).
	limiter *limiter
}

type registeredRoute struct {
	path    string
	methods methods
}

// Route is one registered path and the methods it answers (HEAD, implied by
// GET, is not listed).
type Route struct {
	Path    string
	Methods []string
}

// Routes lists every registered route, in registration order; tests walk it
// (the scoping test asks every route with a key bound elsewhere).
func (a *API) Routes() []Route {
	out := make([]Route, 0, len(a.registered))
	for _, rr := range a.registered {
		r := Route{Path: rr.path}
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			if _, ok := rr.methods[m]; ok {
				r.Methods = append(r.Methods, m)
			}
		}
		out = append(out, r)
	}
	return out
}

var _ http.Handler = (*API)(nil)

// New returns the admin API over p (and p's catalog): p creates tenants'
// placements. The caller keeps ownership of p's catalog, and closes it after
// the HTTP server that serves the API has shut down.
func New(cfg Config, p *provision.Provisioner) *API {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit = DefaultRateLimit
	}
	a := &API{cfg: cfg, prov: p, cat: p.Catalog(), log: cfg.Logger, limiter: newLimiter(cfg.RateLimit)}
	a.mux = a.routes()
	return a
}

// ServeHTTP gives every response a request id and the JSON content type, and
// turns a panic in a handler into a 500 JSON error.
func (a *API) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	h := w.Header()
	h.Set(RequestIDHeader, newRequestID())
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			a.log.Error("admin handler panicked", zap.String("request_id", h.Get(RequestIDHeader)),
				zap.String("method", req.Method), zap.String("path", req.URL.Path), zap.Any("panic", v), zap.StackSkip("stack", 2))
			// Headers may already be out; then this write is lost, which is the
			// best that can be done.
			a.writeError(w, req, errPanic)
		}
	}()
	if !cleanPath(req.URL.EscapedPath()) {
		// http.ServeMux would redirect to the cleaned path, with an empty
		// body; such a path is only ever sent on purpose.
		a.writeError(w, req, badRequest(`the path is not canonical: it has an empty, "." or ".." segment`,
			map[string]any{"path": req.URL.EscapedPath()}))
		return
	}
	a.mux.ServeHTTP(w, req)
}

// cleanPath reports whether p is an absolute path without empty, "." or ".."
// segments (a trailing slash aside), as http.ServeMux wants it.
func cleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c == p
}

// handlerFunc is a route's handler: it writes a success response itself and
// returns any failure, which serve hands to writeError.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (a *API) serve(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			a.writeError(w, r, err)
		}
	}
}

// methods maps an HTTP method to the handler of one path.
type methods map[string]handlerFunc

// routes builds the mux. Every path is registered once per method and once
// without a method (answering 405 with Allow), and "/" answers 404, so that
// the mux never writes its own plain-text errors.
func (a *API) routes() *http.ServeMux {
	mux := http.NewServeMux()
	a.route(mux, "/healthz", methods{http.MethodGet: a.healthz})
	a.route(mux, "/readyz", methods{http.MethodGet: a.readyz})
	if a.cfg.Metrics != nil {
		a.route(mux, "/metrics", methods{http.MethodGet: func(w http.ResponseWriter, r *http.Request) error {
			a.cfg.Metrics.ServeHTTP(w, r)
			return nil
		}})
	}
	a.route(mux, "/v1/openapi.json", methods{http.MethodGet: a.openapi})
	a.tenantRoutes(mux)
	a.treeRoutes(mux)
	a.configRoutes(mux)
	a.permissionRoutes(mux)
	a.keyRoutes(mux)
	a.auditRoutes(mux)
	a.userRoutes(mux)
	a.databaseRoutes(mux)
	a.moveRoutes(mux)
	mux.HandleFunc("/", a.serve(func(w http.ResponseWriter, r *http.Request) error {
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound,
			Message: "no such route: " + r.Method + " " + r.URL.Path}
	}))
	return mux
}

func (a *API) route(mux *http.ServeMux, path string, ms methods) {
	a.registered = append(a.registered, registeredRoute{path: path, methods: ms})
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		h, ok := ms[m]
		if !ok {
			continue
		}
		mux.HandleFunc(m+" "+path, a.serve(h))
		allow = append(allow, m)
		if m == http.MethodGet {
			allow = append(allow, http.MethodHead) // a GET pattern also serves HEAD
		}
	}
	allowed := strings.Join(allow, ", ")
	mux.HandleFunc(path, a.serve(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Allow", allowed)
		return &Error{Status: http.StatusMethodNotAllowed, Code: CodeMethodNotAllowed,
			Message: "method " + r.Method + " is not allowed on " + r.URL.Path + "; use " + allowed,
			Details: map[string]any{"allow": allow}}
	}))
}

func newRequestID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // never fails
	return hex.EncodeToString(b)
}
