# stratum-proxy: the two set-up commands are `make demo` and `make test`.
GO      ?= go
BIN     := bin/stratum-proxy
PKGS    := ./...
FUZZTIME ?= 30s

.PHONY: demo test build deps vet fmt-check fuzz bench conformance clean

## deps: install what the build and the tests need (PostgreSQL server from apt when absent).
deps:
	@bash .ci/install-deps

# VERSION is what `stratum-proxy version` prints: the git description of the checkout.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/stratum-proxy

## demo: a private PostgreSQL, the proxy on 127.0.0.1:6432, the admin API on 127.0.0.1:8080 and the demo tenants.
## Flags of `stratum-proxy dev` go in ARGS, e.g. make demo ARGS="--pool-mode transaction".
ARGS ?=
demo: deps build
	./$(BIN) dev --data-dir ./.stratum-dev $(ARGS)

## test: everything, with the race detector, against real PostgreSQL clusters the tests start themselves,
## then a short run of each fuzz target (a count of inputs, not a time, so a slow start cannot fail it).
test: deps vet fmt-check
	$(GO) test -race -count=1 -timeout 15m $(PKGS)
	$(MAKE) fuzz FUZZTIME=20000x

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

## fuzz: run each fuzz target for FUZZTIME (default 30s); a crash fails and leaves its input under testdata/fuzz.
fuzz:
	$(GO) test ./internal/wire -run '^$$' -fuzz '^FuzzReader$$' -fuzztime $(FUZZTIME)
	$(GO) test ./rewrite -run '^$$' -fuzz '^FuzzGuard$$' -fuzztime $(FUZZTIME)
	$(GO) test ./rewrite -run '^$$' -fuzz '^FuzzClassifyTenantCommand$$' -fuzztime $(FUZZTIME)
	$(GO) test ./proxy -run '^$$' -fuzz '^FuzzStartup$$' -fuzztime $(FUZZTIME)

clean:
	rm -rf bin

## bench: proxy vs direct PostgreSQL vs PgBouncer (pgbench), then an online placement move under load;
## writes bench/results/. Not part of make test. BENCH_FLAGS passes more flags (e.g. -moves=false, -move-rows N).
BENCH_DURATION ?= 10s
BENCH_FLAGS ?=
bench: deps
	bash bench/install-deps
	$(GO) run ./bench/cmd/stratumbench -duration $(BENCH_DURATION) $(BENCH_FLAGS)

## conformance: pgx's, psycopg's and node-postgres's own test suites, directly and through the proxy in
## session and transaction pooling, compared test by test; writes conformance/results/latest.md. Not part
## of make test. The psycopg and node-postgres suites are not in their packages: PSYCOPG_SRC and
## NODE_PG_SRC name git repositories of github.com/psycopg/psycopg and github.com/brianc/node-postgres
## (see conformance/README.md). CONFORMANCE_ARGS passes flags, e.g. CONFORMANCE_ARGS="-suites pgx".
PSYCOPG_SRC ?=
NODE_PG_SRC ?=
CONFORMANCE_ARGS ?=
conformance: deps
	bash conformance/install-deps
	$(GO) run ./conformance/cmd/stratumconf -psycopg-src "$(PSYCOPG_SRC)" -node-pg-src "$(NODE_PG_SRC)" $(CONFORMANCE_ARGS)
