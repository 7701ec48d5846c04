package proxy

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/jackc/pgx/v5/pgproto3"
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
//
// It runs once the user is authenticated, and first checks the database name
// (checkDatabase), as PostgreSQL checks it after authentication.
func (ss *session) identify(ctx context.Context, userSuffix string) (*router.Placement, error) {
	mapped, err := ss.checkDatabase(ctx)
	if err != nil {
		return nil, err
	}
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
		if mapped != nil {
			return mapped, blocked(mapped, true)
		}
		return nil, &Error{Code: codeInvalidAuthSpec, Fatal: true,
			Message: "no tenant named on the connection, and its database name is mapped to no tenant the user may use",
			Hint: "name one with options=-c stratum.tenant=<slug> in the connection string, " +
				"a user name of the form <user>.<tenant>, or a database name mapped to a tenant"}
	}
	p, err := ss.resolve(ctx, ref, true)
	if err == nil {
		ss.startupNotice = oldSlugNotice(nil, ref, p)
	}
	return p, err
}

// clientDatabase is the database name the client connects with: the startup
// parameter database, or, when it sends none, its user name as sent (the
// whole "user.tenant"), PostgreSQL's default.
func (ss *session) clientDatabase() string {
	if db := ss.startup[paramDatabase]; db != "" {
		return db
	}
	return ss.startup[paramUser]
}

// checkDatabase applies the rule for the client's database name: it must be
// one of Config.DatabaseNames (the app's database name), or a name mapped to
// a tenant inside the user's subtree, whose placement it then returns (nil
// for an app name). Any other name gets FATAL 3D000 'database "x" does not
// exist', PostgreSQL's answer, as PgBouncer gives for a database it does not
// serve. The check runs after authentication, where PostgreSQL runs it, so
// a client without a password learns nothing about which names exist; and a
// name mapped to a tenant outside the user's subtree is answered as an
// unmapped one, after the same lookups, so that a user cannot find other
// tenants' mappings. With Config.AllowAnyDatabase every name passes.
func (ss *session) checkDatabase(ctx context.Context) (*router.Placement, error) {
	db := ss.clientDatabase()
	for _, name := range ss.srv.cfg.DatabaseNames {
		if db == name {
			return nil, nil
		}
	}
	root, err := ss.srv.backends.Resolve(ctx, ss.user.TenantID)
	if err != nil {
		return nil, catalogError(err, true)
	}
	p, err := ss.srv.backends.ResolveDatabase(ctx, db)
	switch {
	case err == nil && p.Tenant.Within(root.Tenant):
		return p, nil
	case err != nil && !errors.Is(err, catalog.ErrNotFound):
		return nil, catalogError(err, true)
	case ss.srv.cfg.AllowAnyDatabase:
		return nil, nil
	}
	// Quoted as PostgreSQL quotes it: the name as sent, between double quotes.
	return nil, fatalf(codeInvalidCatalogName, "database \"%s\" does not exist", db)
}

// oldSlugNotice appends to dst, when ref is an old slug of the tenant p (it
// was renamed), a NOTICE (SQLSTATE 01P01, deprecated_feature) naming the
// current slug. The session uses the tenant: an old slug stays reserved for
// its tenant, so it can reach no other. Called only once the user may use p.
func oldSlugNotice(dst []byte, ref string, p *router.Placement) []byte {
	if !catalog.ValidSlug(ref) || ref == p.Tenant.Slug {
		return dst
	}
	return appendMsg(dst, &pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: codeDeprecated,
		Message: fmt.Sprintf("tenant %q was renamed to %q; the old name still reaches it", ref, p.Tenant.Slug),
		Hint:    fmt.Sprintf("name the tenant %q in the connection settings", p.Tenant.Slug)})
}

// resolve finds the tenant named ref and checks the session's user may use it.
// An unknown tenant and one outside the user's subtree are refused alike
// (notAvailable), after the same lookups, so that a user cannot tell them apart
// and enumerate the slugs of other tenants.
func (ss *session) resolve(ctx context.Context, ref string, fatal bool) (*router.Placement, error) {
	if !catalog.ValidRef(ref) {
		e := errorf(codeInvalidParamValue, "invalid tenant name %q: use a tenant slug or id", ref)
		e.Fatal = fatal
		return nil, e
	}
	root, err := ss.srv.backends.Resolve(ctx, ss.user.TenantID)
	if err != nil {
		return nil, catalogError(err, fatal)
	}
	p, err := ss.srv.backends.Resolve(ctx, ref)
	if errors.Is(err, catalog.ErrNotFound) || err == nil && !p.Tenant.Within(root.Tenant) {
		return nil, ss.notAvailable(ref, fatal)
	}
	if err != nil {
		return nil, catalogError(err, fatal)
	}
	return p, blocked(p, fatal)
}

// notAvailable is the one refusal of a tenant the session's user may not use,
// whether it does not exist or lies outside the user's subtree: the same
// SQLSTATE (42501), message and hint, naming only what the client sent.
func (ss *session) notAvailable(ref string, fatal bool) *Error {
	e := errorf(codeInsufficientPriv, "tenant %q does not exist or user %q may not use it", ref, ss.user.Name)
	e.Hint = "name a tenant inside the subtree of the user's tenant, by slug or id"
	e.Fatal = fatal
	return e
}

// blocked refuses a tenant that is suspended, archived or not ready, or under
// such an ancestor (55000); nil when it may be used.
func blocked(p *router.Placement, fatal bool) error {
	if p.Policy.Blocked == "" {
		return nil
	}
	e := errorf(codeNotInPrerequisite, "%s", p.Policy.Blocked)
	if strings.Contains(p.Policy.Blocked, catalog.StatusSuspended) {
		e.Hint = "an operator can resume a suspended tenant through the admin API"
	}
	e.Fatal = fatal
	return e
}

// reauthorize checks again, with the catalog as it is now, what the login
// checked of the session's user (refreshPolicy calls it at transaction
// boundaries after any catalog change): the user still exists, the current
// tenant p still lies in the user's subtree (the tenant may have been moved,
// the user re-bound), and a session that switched away from the tenant it
// named at startup still may switch. It returns the FATAL that ends the
// session, or nil; on success the session keeps the user as it is now. A
// changed password ends nothing, as in PostgreSQL: the password is checked at
// login only. During a catalog outage the router serves the last known user
// and tenants, so an outage ends no session.
//
// The message names only the tenant the session is in (the client named it
// or switched to it) and the user, never the tenant it was moved under.
func (ss *session) reauthorize(ctx context.Context, p *router.Placement) *Error {
	u, err := ss.srv.backends.User(ctx, ss.user.Name)
	if errors.Is(err, catalog.ErrNotFound) {
		return fatalf(codeInsufficientPriv, "user %q no longer exists; the session ends", ss.user.Name)
	}
	if err != nil {
		ss.log.Warn("re-reading the session's user failed; keeping the last one", zap.Error(err))
		return nil
	}
	root, err := ss.srv.backends.Resolve(ctx, u.TenantID)
	if err != nil && !errors.Is(err, catalog.ErrNotFound) {
		ss.log.Warn("re-reading the user's tenant failed; keeping the last one", zap.Error(err))
		return nil
	}
	if err != nil || !p.Tenant.Within(root.Tenant) {
		e := fatalf(codeInsufficientPriv, "user %q may no longer use tenant %q: it is no longer inside the user's tenant subtree; the session ends",
			u.Name, ss.cur.Tenant.Slug)
		e.Hint = "the tenant was moved or the user re-bound; connect again naming a tenant the user may use"
		return e
	}
	if p.Tenant.ID != ss.initial.Tenant.ID && !u.CanSwitch {
		e := fatalf(codeInsufficientPriv, "user %q may no longer switch tenants and has switched to tenant %q; the session ends",
			u.Name, ss.cur.Tenant.Slug)
		e.Hint = "connect again naming the tenant"
		return e
	}
	ss.user = u
	return nil
}

// defaultDatabaseName is Config.DatabaseNames' default: the shared
// database's name, which the dev deployment's and a default deployment's
// clients connect with ("app").
func defaultDatabaseName(rc router.Config) string {
	if rc.Set.SharedDatabase != "" {
		return rc.Set.SharedDatabase
	}
	return "app"
}
