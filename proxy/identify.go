package proxy

import (
	"context"
	"errors"
	"strings"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/rewrite"
	"github.com/stratum-hq/stratum-proxy/router"
)

// Startup parameters the proxy consumes instead of forwarding.
const (
	paramUser        = "user"
	paramDatabase    = "database"
	paramOptions     = "options"
	paramReplication = "replication"
)

// identify finds the session's tenant, in this order of precedence: the
// startup parameter stratum.tenant; "-c stratum.tenant=…" in options; the
// user-name suffix (user.tenant); a database name mapped to a tenant. It also
// fills ss.params, the parameters forwarded to the backend, after checking
// them against the allow-list (checkStartup).
func (ss *session) identify(ctx context.Context, userSuffix string) (*router.Placement, error) {
	params, optTenant, optFound, perr := checkStartup(ss.startup)
	if perr != nil {
		return nil, perr
	}
	ss.params = params
	ref := ss.startup[rewrite.TenantSetting]
	if ref == "" && optFound {
		ref = optTenant
	}
	if ref == "" {
		ref = userSuffix
	}
	if ref == "" {
		if db := ss.startup[paramDatabase]; db != "" {
			p, err := ss.srv.backends.ResolveDatabase(ctx, db)
			if err == nil {
				return p, ss.authorize(ctx, p, true)
			}
			if !errors.Is(err, catalog.ErrNotFound) {
				return nil, catalogError(err, true)
			}
		}
		return nil, &Error{Code: codeInvalidAuthSpec, Fatal: true,
			Message: "no tenant named on the connection",
			Hint: "name one with options=-c stratum.tenant=<slug> in the connection string, " +
				"a user name of the form <user>.<tenant>, or a database name mapped to a tenant"}
	}
	return ss.resolve(ctx, ref, true)
}

// resolve finds the tenant named ref and checks the session's user may use it.
func (ss *session) resolve(ctx context.Context, ref string, fatal bool) (*router.Placement, error) {
	if !catalog.ValidRef(ref) {
		e := errorf(codeInvalidParamValue, "invalid tenant name %q: use a tenant slug or id", ref)
		e.Fatal = fatal
		return nil, e
	}
	p, err := ss.srv.backends.Resolve(ctx, ref)
	if errors.Is(err, catalog.ErrNotFound) {
		e := errorf(codeInvalidCatalogName, "tenant %q does not exist", ref)
		e.Fatal = fatal
		return nil, e
	}
	if err != nil {
		return nil, catalogError(err, fatal)
	}
	return p, ss.authorize(ctx, p, fatal)
}

// authorize checks that the tenant lies in the user's subtree and is active.
func (ss *session) authorize(ctx context.Context, p *router.Placement, fatal bool) error {
	root, err := ss.srv.backends.Resolve(ctx, ss.user.TenantID)
	if err != nil {
		return catalogError(err, fatal)
	}
	var e *Error
	switch {
	case !p.Tenant.Within(root.Tenant):
		e = errorf(codeInsufficientPriv, "user %q may not use tenant %q: it is outside the user's tenant %q and its descendants",
			ss.user.Name, p.Tenant.Slug, root.Tenant.Slug)
	case p.Policy.Blocked != "":
		e = errorf(codeNotInPrerequisite, "%s", p.Policy.Blocked)
		if strings.Contains(p.Policy.Blocked, catalog.StatusSuspended) {
			e.Hint = "an operator can resume a suspended tenant through the admin API"
		}
	default:
		return nil
	}
	e.Fatal = fatal
	return e
}
