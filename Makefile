# tiercache. Run `make` or `make help` for the list of targets.
#
# Every target that works on modules loops over every go.mod in the
# repository, so a sub-module (otterstore/, redisstore/, examples/, bench/...)
# is picked up as soon as its go.mod exists.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO ?= go
GOFMT ?= $(shell $(GO) env GOROOT)/bin/gofmt

# Every module's directory, the root (.) first.
MODULES := $(shell find . -name go.mod -not -path '*/node_modules/*' -not -path '*/testdata/*' -not -path './.git/*' -exec dirname {} \; | sort)

# Pinned; bump deliberately. Must support the Go version in use.
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK := $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# Benchmark settings: `make bench COUNT=10 BENCH=Race BENCH_OUT=.bench/new.txt`,
# then `benchstat .bench/old.txt .bench/new.txt`.
COUNT ?= 6
BENCH ?= .
BENCHTIME ?= 1s
BENCH_DIR := .bench
BENCH_OUT ?= $(BENCH_DIR)/bench.txt

.PHONY: help test bench lint fmt-check vet staticcheck demo demo-policies fuzz tidy

help: ## List the targets.
	@echo 'Usage: make TARGET [VAR=value ...]'
	@echo
	@awk 'BEGIN { FS = ":.*## " } /^[a-zA-Z0-9_-]+:.*## / { printf "  %-12s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
	@echo
	@echo 'Modules: $(MODULES)'

test: ## Run go test -race ./... in every module; stop at the first failure.
	@for m in $(MODULES); do \
		echo "==> $$m: go test -race ./..."; \
		(cd "$$m" && $(GO) test -race ./...) || exit 1; \
	done

.PHONY: test-faults
test-faults: ## Run redisstore's fault-injection suite (tag faults): Redis killed, frozen, behind a faulty proxy, hostile data, Close under load, overload.
	cd redisstore && $(GO) test -race -tags faults -run Fault -count=1 -v -timeout 30m ./...

bench: ## Run every module's benchmarks COUNT times (default 6), benchstat-friendly, saved in .bench/.
	@mkdir -p $(dir $(BENCH_OUT))
	@: > $(BENCH_OUT)
	@for m in $(MODULES); do \
		echo "==> $$m: go test -bench"; \
		(cd "$$m" && $(GO) test -run='^$$' -bench='$(BENCH)' -benchtime=$(BENCHTIME) -benchmem -count=$(COUNT) ./...) | tee -a $(BENCH_OUT) || exit 1; \
	done

# Comparison settings: `make bench-compare ROUNDS=5 SCALE=2 COMPARE_FLAGS=-profile=/tmp/prof`.
ROUNDS ?= 3
SCALE ?= 1
COMPARE_FLAGS ?=

.PHONY: bench-compare
bench-compare: ## Compare tiercache with go-redis/cache and sturdyc on real Redis (REDIS_ADDR, or one it starts); writes docs/bench/results.md and throughput.svg. A few minutes.
	cd bench && $(GO) run . -rounds=$(ROUNDS) -scale=$(SCALE) -out=../docs/bench $(COMPARE_FLAGS)

lint: fmt-check vet staticcheck ## Check formatting, then run go vet and staticcheck in every module.

fmt-check: ## Fail, listing the files, when gofmt would change any .go file.
	@files=$$(find . -name '*.go' -not -path './.git/*' -not -path '*/testdata/*' -not -path '*/node_modules/*'); \
	unformatted=$$(if [ -n "$$files" ]; then $(GOFMT) -l $$files; fi); \
	if [ -n "$$unformatted" ]; then \
		echo 'gofmt: these files need formatting (gofmt -w FILE):'; \
		echo "$$unformatted"; \
		exit 1; \
	fi

vet: ## Run go vet ./... in every module.
	@for m in $(MODULES); do \
		echo "==> $$m: go vet ./..."; \
		(cd "$$m" && $(GO) vet ./...) || exit 1; \
	done

staticcheck: ## Run the pinned staticcheck in every module.
	@for m in $(MODULES); do \
		echo "==> $$m: staticcheck ./..."; \
		(cd "$$m" && $(STATICCHECK) ./...) || exit 1; \
	done

demo: ## Run the two-tier cache on otter and Redis (REDIS_ADDR, or an embedded one) for about ten seconds.
	cd examples && $(GO) run ./twotier

demo-policies: ## Show the read policies side by side on two simulated layers.
	cd examples && $(GO) run ./policies

FUZZTIME ?= 60s
fuzz: ## Fuzz redisstore's entry decoder, then its JSON codec against encoding/json, for FUZZTIME (default 60s) each.
	cd redisstore && $(GO) test -run='^$$' -fuzz=FuzzDecode -fuzztime=$(FUZZTIME) .
	cd redisstore && $(GO) test -run='^$$' -fuzz=FuzzJSONCodec -fuzztime=$(FUZZTIME) .

tidy: ## Run go mod tidy in every module.
	@for m in $(MODULES); do \
		echo "==> $$m: go mod tidy"; \
		(cd "$$m" && $(GO) mod tidy) || exit 1; \
	done
