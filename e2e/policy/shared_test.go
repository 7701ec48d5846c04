package policy

import (
	"context"
	"slices"
	"testing"

	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
	"github.com/stratum-hq/stratum-proxy/provision"
	"github.com/stratum-hq/stratum-proxy/server"
)

// policyTest is a test of TestPolicy: a subtest on a stack it shares.
type policyTest struct {
	name string
	run  func(t *testing.T, ts *stacktest.Stack)
	// only is the one pool mode of the stack it runs on, or bothModes.
	only string
}

// bothModes is policyTest.only of a test that runs on both stacks.
const bothModes = ""

// TestPolicy runs the package's tests that need nothing of a stack but
// tenants of their own as subtests of one stack per pool mode: a stack costs
// seconds of CPU to start, a tenant a fraction of one. Each subtest makes
// its own stand-ins for the demo tenants it uses (standIns) and changes
// config, permissions and status only on those, so no subtest sees another's
// policy. The subtests of alone run first, one at a time, with nothing else
// on the stack (see each entry for why); the rest then run in parallel.
// Those with a pool mode of their own (only) run on that mode's stack only:
// each had a stack of that mode to itself before. One of them runs by
// itself with, for example,
//
//	go test ./e2e/policy -run 'TestPolicy/.*/ReadOnlySurvivesEscapedSettingNames$'
func TestPolicy(t *testing.T) {
	alone := []policyTest{
		// policy_escapes_test.go. It calls the admin API in a loop for
		// seconds (hence the stacks' RateLimit -1), and every change it
		// makes moves the catalog generation every session of the stack
		// checks.
		{"PolicyChurnLosesNoAnswerAndReachesEverySession", testPolicyChurnLosesNoAnswerAndReachesEverySession, bothModes},
		// timeouts_test.go. It holds an ACCESS EXCLUSIVE lock on the shared
		// orders table, which every shared tenant of the stack would wait
		// for, until the proxy ends its session.
		{"IdleInTransactionTimeoutFreesSharedTable", testIdleInTransactionTimeoutFreesSharedTable, bothModes},
		// access_roles_test.go. They compare snapshots of data that
		// every shared tenant of the stack can change (the shared orders
		// sequence, the shared database's large objects).
		{"ReadOnlyEnforcedByPostgres", testReadOnlyEnforcedByPostgres, bothModes},
		{"PreStagedEscapesRefused", testPreStagedEscapesRefused, "session"},
	}
	parallel := []policyTest{
		// policy_test.go
		{"ConfigReachesSessions", testConfigReachesSessions, bothModes},
		{"PermissionsReachSessions", testPermissionsReachSessions, bothModes},
		{"SuspendEndsSessions", testSuspendEndsSessions, bothModes},
		// authz_test.go
		{"SessionsReauthorizedAtTransactionBoundary", testSessionsReauthorizedAtTransactionBoundary, bothModes},
		// policy_escapes_test.go
		{"ReadOnlySurvivesEscapedSettingNames", testReadOnlySurvivesEscapedSettingNames, bothModes},
		{"ReadOnlySurvivesResetThroughExtendedProtocol", testReadOnlySurvivesResetThroughExtendedProtocol, bothModes},
		{"ReadOnlyReappliedBeforeStatementPipelinedAfterReset", testReadOnlyReappliedBeforeStatementPipelinedAfterReset, bothModes},
		{"ReadOnlyCheckedAtExecuteOfStatementsPreparedEarlier", testReadOnlyCheckedAtExecuteOfStatementsPreparedEarlier, bothModes},
		{"NoDDLCheckedAtBindOfStatementsPreparedEarlier", testNoDDLCheckedAtBindOfStatementsPreparedEarlier, bothModes},
		{"ReadOnlyNotUndoneByReplayedClientSetting", testReadOnlyNotUndoneByReplayedClientSetting, bothModes},
		{"ReadOnlyRefusesSetConfigFunctionCall", testReadOnlyRefusesSetConfigFunctionCall, bothModes},
		{"ResetAllThenCopyInOneQueryKeepsRelaying", testResetAllThenCopyInOneQueryKeepsRelaying, bothModes},
		{"NoDDLDropsUnnamedStatementParsedEarlier", testNoDDLDropsUnnamedStatementParsedEarlier, bothModes},
		{"NoDDLCheckedOnStatementsBroughtBySwitch", testNoDDLCheckedOnStatementsBroughtBySwitch, bothModes},
		{"SwitchAppliesNewTenantsPolicy", testSwitchAppliesNewTenantsPolicy, bothModes},
		{"SuspendWaitsForOpenBatchSync", testSuspendWaitsForOpenBatchSync, bothModes},
		{"ReadOnlyRefusesBindOfAnotherSessionsStatement", testReadOnlyRefusesBindOfAnotherSessionsStatement, bothModes},
		{"PipeliningSessionStillGetsPolicyAndSuspension", testPipeliningSessionStillGetsPolicyAndSuspension, bothModes},
		{"PendingPolicyDoesNotWaitOnCopyIn", testPendingPolicyDoesNotWaitOnCopyIn, bothModes},
		// timeouts_test.go
		{"StatementTimeoutEnforcedByProxy", testStatementTimeoutEnforcedByProxy, bothModes},
		// access_roles_test.go
		{"NoDDLEnforcedByPostgres", testNoDDLEnforcedByPostgres, bothModes},
		{"LiveSessionFollowsAccessLevel", testLiveSessionFollowsAccessLevel, "session"},
		{"ConfigOverrideStaysInItsSession", testConfigOverrideStaysInItsSession, "session"},
		// caps_test.go
		{"BoundKeyCannotRaiseItsShareAbovePlatformDefault", testBoundKeyCannotRaiseItsShareAbovePlatformDefault, "session"},
	}
	stacktest.PoolModes(t, func(t *testing.T, ts *stacktest.Stack) {
		// Before any subtest makes a tenant: the subtests' tenants get it
		// when they are made, and ApplySchema has only the demo
		// tenants' placements to apply it to.
		applyRunSQL(t, ts)
		for _, pt := range alone {
			if pt.only != bothModes && pt.only != ts.PoolMode {
				continue
			}
			t.Run(pt.name, func(t *testing.T) { pt.run(t, ts) })
		}
		for _, pt := range parallel {
			if pt.only != bothModes && pt.only != ts.PoolMode {
				continue
			}
			t.Run(pt.name, func(t *testing.T) {
				t.Parallel()
				pt.run(t, ts)
			})
		}
	}, func(c *server.Config) { c.Admin.RateLimit = -1 })
}

// demoStandIns are a subtest's own tenants in the places of the demo
// tenants it would otherwise use (slugs; "" for those not made).
type demoStandIns struct {
	acmesec, northstar, alpha, beta, apex, gamma string
}

// standIns makes, for one subtest, its own stand-ins for the demo tenants,
// named after tag (unique per subtest): tag_northstar (shared) under acmesec,
// where the demo user may switch, in northstar_msp's place; for "alpha" and
// "beta" in which, tag_alpha (shared) and tag_beta (schema) under it, in
// client_alpha's and client_beta's; for "apex", tag_apex (shared) under
// acmesec, in apex_partners' place; for "gamma", tag_apex and tag_gamma
// (database) under it, in client_gamma's. With "acmesec", tag_acmesec
// (shared) under acmesec stands in for the root, and tag_northstar and
// tag_apex are made under it. No slug is part of another, so an error
// naming one names no other.
func standIns(t *testing.T, ts *stacktest.Stack, tag string, which ...string) demoStandIns {
	t.Helper()
	var s demoStandIns
	root := "acmesec"
	if slices.Contains(which, "acmesec") {
		s.acmesec = newTenant(t, ts, tag+"_acmesec", "acmesec", "shared")
		root = s.acmesec
	}
	s.northstar = newTenant(t, ts, tag+"_northstar", root, "shared")
	for _, w := range which {
		switch w {
		case "acmesec":
		case "alpha":
			s.alpha = newTenant(t, ts, tag+"_alpha", s.northstar, "shared")
		case "beta":
			s.beta = newTenant(t, ts, tag+"_beta", s.northstar, "schema")
		case "apex", "gamma":
			if s.apex == "" {
				s.apex = newTenant(t, ts, tag+"_apex", root, "shared")
			}
			if w == "gamma" {
				s.gamma = newTenant(t, ts, tag+"_gamma", s.apex, "database")
			}
		default:
			t.Fatalf("standIns: no demo tenant %q", w)
		}
	}
	return s
}

// newTenant creates a tenant (the stack's teardown drops it) and returns its
// slug.
func newTenant(t *testing.T, ts *stacktest.Stack, slug, parent, isolation string) string {
	t.Helper()
	return newTenantSpec(t, ts, provision.TenantSpec{Slug: slug, Parent: parent, Isolation: isolation})
}

// newTenantSpec is newTenant with the whole spec.
func newTenantSpec(t *testing.T, ts *stacktest.Stack, spec provision.TenantSpec) string {
	t.Helper()
	if _, err := ts.Provisioner.CreateTenant(context.Background(), spec); err != nil {
		t.Fatalf("creating tenant %s: %v", spec.Slug, err)
	}
	return spec.Slug
}
