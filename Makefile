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
ADMIN_ADDR ?= 127.0.0.1:8081
# Object nodes `make cluster` starts (node1..nodeNODES, 1-9).
NODES ?= 3
# Node number (1-9) for kill-node, restart-node, add-node, remove-node and forget-node.
N ?=
# Data, logs and pids of the local cluster (relative to the repository).
CLUSTER_DATA ?= data
# Rooms for `make owners`, comma-separated.
ROOMS ?=
# Steps of `make failover`: ADDS nodes join (3 -> 3+ADDS), then KILLS kill -9
# cycles, PAUSES SIGSTOP cycles and WIPES disk wipes, then REMOVES nodes are
# decommissioned (REMOVES <= ADDS: never fewer than 3 nodes).
KILLS ?= 20
PAUSES ?= 5
ADDS ?= 2
REMOVES ?= 2
WIPES ?= 1
# Network faults `make netlab` adds to those steps: a node cut off from the
# others both ways, only its packets out dropped, only packets to it
# dropped. SKIP_UNUSABLE=1 makes it say why and succeed where the machine
# cannot build the lab (not root, no namespaces), except with CI=true.
PARTITIONS ?= 5
MUTES ?= 3
DEAFS ?= 3
SKIP_UNUSABLE ?=
# Scenarios of `make bench`: one (4), or a list run on one cluster (3,4); empty: all.
SCENARIO ?=
# Offered rates (msgs/s) replacing the hot-room and overload ramps' steps
# in `make bench` (7000, or 4000,7000): one rate held, to compare builds.
STEPS ?=
# Time per target of `make fuzz`.
FUZZTIME ?= 30s
# `make nemesis`: one run per seed (SEEDS=1,2,3 for several, else SEED), its
# operations starting within DURATION; OPS='2s kill node2 3s; ...' replays a
# list a failure printed; NETLAB=1 runs on network namespaces with
# partitions and one-way cuts too (root); NEMESIS_FLAGS passes other flags.
SEED ?= 1
SEEDS ?=
DURATION ?= 2m
OPS ?=
NETLAB ?=
NEMESIS_FLAGS ?=
export HTTP_ADDR ADMIN_ADDR ROOMS KILLS PAUSES ADDS REMOVES WIPES
export CLUSTER_DATA

.PHONY: help build cluster kill-node restart-node add-node remove-node forget-node owners failover netlab nemesis fuzz bench-go test test-short lint bench \
	proto verify-proto tidy clean clean-data

help: ## list targets (this is the default)
	@echo "usage: make <target> [VAR=value ...]"
	@echo
	@awk 'BEGIN { FS = ":.*## " } /^[a-z][a-z-]*:.*## / { printf "  %-13s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
	@echo
	@echo "variables: HTTP_ADDR=$(HTTP_ADDR)  ADMIN_ADDR=$(ADMIN_ADDR)  NODES=$(NODES)  N=<1-9>  ROOMS=a,b  CLUSTER_DATA=$(CLUSTER_DATA)  GO=$(GO)"

build: ## build bin/objectnode and bin/router
	$(GO) build -o bin/ ./cmd/...

cluster: build ## run NODES (3) object nodes and a router on localhost in the foreground; Ctrl-C stops all
	bash scripts/cluster.sh "$(NODES)"

kill-node: ## kill -9 object node N of the running cluster (make kill-node N=2)
	bash scripts/kill-node.sh "$(N)"

restart-node: ## start object node N again after kill-node; on a wiped data dir it joins as a new replica
	bash scripts/restart-node.sh "$(N)"

add-node: ## add object node N to the running cluster and wait until replicas have moved to it (N=4)
	bash scripts/add-node.sh "$(N)"

remove-node: ## decommission node N: replicas move away, it exits (N=2); refused below 3 nodes unless FORCE=1
	FORCE="$(FORCE)" bash scripts/remove-node.sh "$(N)"

forget-node: ## forget node N, gone for good (killed, never decommissioned): its replicas move to the others (N=3); FORCE=1 if it runs
	FORCE="$(FORCE)" bash scripts/forget-node.sh "$(N)"

owners: ## show members, each shard's replicas and moves, active objects (ROOMS=a,b: who owns those)
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

failover: build ## failover experiment under load: add, kill -9, SIGSTOP, wipe, remove nodes (ADDS=2 KILLS=20 PAUSES=5 WIPES=1 REMOVES=2)
	bash scripts/failover.sh

netlab: build ## (root) the failover experiment on network namespaces, a host per process, with partitions and one-way cuts too (PARTITIONS=5 MUTES=3 DEAFS=3)
	bash scripts/failover.sh --netlab --data data/netlab --partitions "$(PARTITIONS)" --mutes "$(MUTES)" --deafs "$(DEAFS)" \
	  $(if $(SKIP_UNUSABLE),--skip-unusable)

nemesis: build ## seeded random faults overlapping adds and removes under load, checked (SEED=1 or SEEDS=1,2,3, DURATION=2m, OPS=..., NETLAB=1)
	./bin/nemesis --bin bin --data data/nemesis --seeds "$(or $(SEEDS),$(SEED))" --duration "$(DURATION)" \
	  $(if $(OPS),--ops "$(OPS)") $(if $(NETLAB),--netlab) $(NEMESIS_FLAGS)

fuzz: ## fuzz raft entry decoding, peers' Raft messages, and browser frame parsing (FUZZTIME=30s each)
	$(GO) test -run '^$$' -fuzz FuzzDecodeCommand -fuzztime $(FUZZTIME) ./shard
	$(GO) test -run '^$$' -fuzz FuzzStep -fuzztime $(FUZZTIME) ./shard
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) ./apps/chat/wire

bench: build ## benchmark suite on a real cluster (SCENARIO=n or n,m runs those); table in docs/benchmarks.md
	./bin/bench $(if $(SCENARIO),--scenario $(SCENARIO)) $(if $(STEPS),--steps $(STEPS))

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
