// Package workdir holds what the report commands (bench/cmd/stratumbench,
// conformance/cmd/stratumconf) share about a run: the things it started,
// stopped in reverse order, its temporary directory, removed unless kept,
// and its progress lines. It imports nothing of ours.
package workdir
