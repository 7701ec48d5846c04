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
// fills ss.params, the parameters forwarded to the backend.
func (ss *session) identify(ctx context.Context, userSuffix string) (*router.Placement, error) {
	ss.params = make(map[string]string, len(ss.startup))
	for k, v := range ss.startup {
		switch k {
		case paramUser, paramDatabase, paramOptions, rewrite.TenantSetting:
		case "client_encoding":
			if !safeClientEncoding(v) {
				return nil, fatalf(codeFeatureNotSupported, "client_encoding %q is not supported by stratum-proxy: "+
					"in it a quote or backslash byte can be part of a multi-byte character, so statements could "+
					"be read differently by the proxy's guard and by PostgreSQL; use UTF8", v)
			}
			ss.params[k] = v
		case paramReplication:
			if v != "false" && v != "0" && v != "off" && v != "no" {
				return nil, fatalf(codeFeatureNotSupported, "replication connections are not supported by stratum-proxy")
			}
		default:
			ss.params[k] = v
		}
	}
	ref := ss.startup[rewrite.TenantSetting]
	if opt, ok := ss.startup[paramOptions]; ok {
		v, found, rest := takeOption(opt, rewrite.TenantSetting)
		if ref == "" && found {
			ref = v
		}
		if rest != "" {
			ss.params[paramOptions] = rest
		}
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

// safeClientEncoding reports whether an encoding keeps ASCII bytes ASCII:
// PostgreSQL's client-only encodings SJIS, BIG5, GBK, UHC, GB18030 and JOHAB
// do not (a second byte may be a quote or backslash).
func safeClientEncoding(enc string) bool {
	norm := strings.ToUpper(strings.NewReplacer("-", "", "_", "", " ", "").Replace(enc))
	switch norm {
	case "SJIS", "SHIFTJIS", "MSKANJI", "SHIFTJIS2004", "BIG5", "GBK", "CP936", "UHC", "GB18030", "JOHAB", "WIN932", "WIN936", "WIN949", "WIN950":
		return false
	}
	return true
}
