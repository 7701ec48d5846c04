// Package workdir holds what the report commands (bench/cmd/stratumbench,
// conformance/cmd/stratumconf) share about a run: the things it started,
// stopped in reverse order, its temporary directory, removed unless kept,
// its private PostgreSQL, its secrets and its progress lines. It imports only
// internal/pgcluster of ours.
package workdir
