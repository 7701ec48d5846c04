// Package archtest holds the test that keeps the import arrows of
// ../shared/ARCHITECTURE.md true. It has no code of its own.
package archtest
