SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules

GO ?= go
GOFMT ?= gofmt
# Router address for `make cluster` and `make owners`; keep it on loopback
# unless other machines should reach the chat.
HTTP_ADDR ?= 127.0.0.1:8080
# Node number (1-3) for kill-node and restart-node.
N ?=
# Rooms for `make owners`, comma-separated.
ROOMS ?=
# Cycles of `make failover`.
KILLS ?= 20
PAUSES ?= 5
# Scenario of `make bench` (empty: all).
SCENARIO ?=
# Time per target of `make fuzz`.
FUZZTIME ?= 30s
export HTTP_ADDR ROOMS KILLS PAUSES

.PHONY: help build cluster kill-node restart-node owners failover fuzz bench-go test test-short lint bench \
	proto verify-proto tidy clean clean-data

help: ## list targets (this is the default)
	@echo "usage: make <target> [VAR=value ...]"
	@echo
	@awk 'BEGIN { FS = ":.*## " } /^[a-z][a-z-]*:.*## / { printf "  %-13s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
	@echo
	@echo "variables: HTTP_ADDR=$(HTTP_ADDR)  N=<1-3>  ROOMS=a,b  GO=$(GO)"

build: ## build bin/objectnode and bin/router
	$(GO) build -o bin/ ./cmd/...

cluster: build ## run 3 object nodes and a router on localhost in the foreground (HTTP_ADDR=...); Ctrl-C stops all
	bash scripts/cluster.sh

kill-node: ## kill -9 object node N of the running cluster (make kill-node N=2)
	bash scripts/kill-node.sh "$(N)"

restart-node: ## start object node N again after kill-node (make restart-node N=2)
	bash scripts/restart-node.sh "$(N)"

owners: ## show members, shard owners and active rooms (ROOMS=a,b also shows who owns those)
	bash scripts/owners.sh

lint: ## go vet, and fail listing files gofmt would change
	$(GO) vet ./...
	@unformatted="$$($(GOFMT) -l .)"; \
	if [[ -n "$$unformatted" ]]; then \
	  echo "gofmt: these files are not formatted (run: gofmt -w FILE):" >&2; \
	  echo "$$unformatted" | sed 's/^/  /' >&2; \
	  exit 1; \
	fi

test: lint ## lint, then all tests with the race detector
	$(GO) test -race -count=1 -timeout 20m ./...

test-short: lint ## lint, then the quick tests (-short, no race detector)
	$(GO) test -short -count=1 -timeout 10m ./...

failover: build ## failover experiment: kill -9 / SIGSTOP leaders under load (KILLS=20 PAUSES=5)
	bash scripts/failover.sh

fuzz: ## fuzz raft entry decoding and browser frame parsing (FUZZTIME=30s each)
	$(GO) test -run '^$$' -fuzz FuzzDecodeCommand -fuzztime $(FUZZTIME) ./shard
	$(GO) test -run '^$$' -fuzz FuzzParseFrame -fuzztime $(FUZZTIME) ./router

bench: build ## benchmark suite on a real cluster (SCENARIO=n runs one); table in docs/benchmarks.md
	./bin/bench $(if $(SCENARIO),--scenario $(SCENARIO))

bench-go: ## Go benchmarks of the hot paths
	$(GO) test -run '^$$' -bench . -benchmem ./...

proto: ## regenerate proto/roompb/*.pb.go (needs protoc)
	bash scripts/genproto.sh

verify-proto: ## regenerate the proto code in a temp copy and fail if it differs from proto/roompb
	@tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	mkdir -p "$$tmp/scripts" "$$tmp/proto"; \
	cp scripts/genproto.sh "$$tmp/scripts/"; cp go.mod go.sum "$$tmp/"; \
	cp -R proto/. "$$tmp/proto/"; \
	find "$$tmp/proto" -name '*.pb.go' -delete; \
	(cd "$$tmp" && bash scripts/genproto.sh); \
	if ! diff -ru -x '*.proto' proto "$$tmp/proto"; then \
	  echo "verify-proto: committed proto code is stale; run \`make proto\` and commit the result" >&2; \
	  exit 1; \
	fi; \
	echo "verify-proto: proto/roompb is up to date"

tidy: ## go mod tidy; fails if that changed go.mod or go.sum
	@tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	cp go.mod go.sum "$$tmp/"; \
	$(GO) mod tidy; \
	if ! diff -u "$$tmp/go.mod" go.mod || ! diff -u "$$tmp/go.sum" go.sum; then \
	  echo "tidy: go.mod/go.sum were not tidy; go mod tidy changed them (diff above): review and commit" >&2; \
	  exit 1; \
	fi; \
	echo "tidy: go.mod and go.sum are tidy"

clean: ## remove bin/ (keeps data/; see clean-data)
	rm -rf bin

clean-data: ## remove data/ (chat history, logs, pids) of the local cluster
	@for f in data/pids/*.pid; do \
	  [[ -f "$$f" ]] || continue; \
	  if kill -0 "$$(cat "$$f")" 2>/dev/null; then \
	    echo "clean-data: $$(basename "$$f" .pid) is running (pid $$(cat "$$f")); stop the cluster first" >&2; exit 1; \
	  fi; \
	done
	@if [[ -e data ]]; then \
	  echo "removing data/ ($$(du -sh data | cut -f1)):"; \
	  ls -1 data | sed 's|^|  data/|'; \
	  rm -rf data; \
	else \
	  echo "clean-data: no data/ to remove"; \
	fi
