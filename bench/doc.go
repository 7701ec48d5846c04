// Package bench holds stratum-proxy's benchmarks; it has no code of its own.
//
// hotpath_test.go has Go micro-benchmarks of the per-message hot path, with
// allocation counts:
//
//	go test ./bench -run '^$' -bench . -benchmem
//
// cmd/stratumbench is the end-to-end benchmark behind `make bench`: a private
// PostgreSQL, PgBouncer and the proxy side by side under pgbench and a Go load
// generator, results written to bench/results/. Nothing imports this package.
package bench
