// Package pgtest is the test harness for tests that need a PostgreSQL
// server: TestMain hands the test binary to Main, which provides a server
// (STRATUM_TEST_DATABASE_URL's, or a throwaway cluster it starts), and tests
// get it with Get and make themselves fresh databases with NewDatabase.
//
// It owns the lifetime of that server within a test binary and the helpers
// tests use on it. Of this module it may import internal/pgcluster only, and
// only test code may import it.
package pgtest
