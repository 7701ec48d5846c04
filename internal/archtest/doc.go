// Package archtest holds the tests that read the repository's source rather
// than run it: the one that keeps the import arrows of
// ../shared/ARCHITECTURE.md true, and the one that keeps the README's list of
// refusals complete (every SQLSTATE and guard label the code refuses with).
// It has no code of its own.
package archtest
