# peapod — the two commands of the quick start are `make run` and `make test`.
#
#   make deps       install what is missing (Debian packages, the Python venv in .venv), then
#                   check every input in scripts/deps.list (make deps-check alone)
#   make build      cargo build -p peapod (debug, what the e2e suite drives)
#   make run        deps + release build + start peapod on 127.0.0.1:6443, data in .peapod/
#   make test       lint, unit + store conformance, e2e (in that order)
#   make lint       cargo fmt --check, clippy -D warnings
#   make test-unit  cargo test --workspace (includes the fuzzing targets of crates/fuzz, briefly)
#   make fuzz       the fuzzing targets for longer, fresh seed (FUZZ_CASES=100000 per target;
#                   PEAPOD_FUZZ_SEED=<n> replays a failure's seed)
#   make test-e2e   build + pytest tests/e2e (real kubectl, Python client, both datastores)
#   make bench      store benchmark (if present) + scheduler decision cost + service proxy sync cost
#                   + bench/api_bench.py (Rust client bench/api-bench)
#                   + bench/pod_startup.py (pod create -> Ready, burst, per-pod footprint)
#                   + bench/stream_bench.py (exec round trip, logs -f delivery)
#                   + bench/workload_bench.py (a controller scaled 0 -> 100 -> 0)
#                   + proxy sync_bench (1,000 Services x 10 endpoints), bench/service_bench.py
#                   (Service change -> traffic, ClusterIP cost), bench/dns_bench.py,
#                   bench/leader_failover.py (kill -9 of the leader -> a pod bound),
#                   bench/node_join.py (ip netns exec agent -> node Ready), podnet sync_bench
#                   bench/podnet_bench.py (pod-to-pod across nodes) and
#                   bench/node_failover.py (agent kill -> pod Running elsewhere); prints every
#                   figure beside bench/recorded.json, flagging > 25 % moves the wrong way
#   make bench-record  the last bench run's figures become bench/recorded.json
#
# CARGO_TARGET_DIR is respected when set in the environment.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed-requirements
REQUIREMENTS := tests/e2e/requirements.txt
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
DATA_DIR := .peapod
LISTEN := 127.0.0.1:6443
# An upper bound on the whole e2e run; SIGINT lets pytest stop the servers it started.
E2E_TIMEOUT := 1800

# Debian packages the project needs (see ARCHITECTURE.md §5): every `apt:` source in
# scripts/deps.list, which also says who reads each input. `make deps` ends with
# scripts/check-deps, which checks every input there and names the first one missing.
DEPS_LIST := scripts/deps.list
APT_PACKAGES := $(sort $(patsubst apt:%,%,$(filter apt:%,$(shell sed 's/\#.*//' $(DEPS_LIST)))))
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help deps deps-apt deps-check venv build build-release run test lint test-unit test-e2e fuzz bench bench-record clean

help:
	@sed -n 's/^#   //p' Makefile

deps: deps-apt venv
	@$(MAKE) --no-print-directory deps-check

# Fails with one line naming the first missing build- or run-time input.
deps-check:
	@scripts/check-deps

deps-apt:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null | grep -q '^install ok installed$$' \
	    || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV_STAMP)

# Re-installed only when the pinned requirements change.
$(VENV_STAMP): $(REQUIREMENTS)
	@if ! [ -x $(PY) ] || ! $(PY) -m pip --version >/dev/null 2>&1; then \
	  rm -rf $(VENV); \
	  if ! python3 -m venv $(VENV) >/dev/null 2>&1; then \
	    echo "deps: python3 -m venv failed; installing python3-venv"; \
	    rm -rf $(VENV); \
	    $(SUDO) apt-get update -qq; \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends python3-venv; \
	    python3 -m venv $(VENV); \
	  fi; \
	fi
	$(PY) -m pip install -q --disable-pip-version-check -r $(REQUIREMENTS)
	@touch $@

# peapod-shim (crates/shim) is the per-pod helper binary the agent runs beside peapod.
build:
	cargo build -p peapod -p shim

build-release:
	cargo build --release -p peapod -p shim

# Starts `peapod up` in the foreground (control plane + node agent), with a demo image built
# offline from Debian's busybox-static and imported from DIR/images/, then creates seed 004's
# web server pod (examples/web-server-pod.yaml: busybox httpd instead of nginx).
DEMO_POD := examples/web-server-pod.yaml

run: deps build-release
	@bin="$(TARGET_DIR)/release/peapod"; kubectl="$(CURDIR)/$(VENV)/bin/kubectl"; \
	kubeconfig="$(CURDIR)/$(DATA_DIR)/kubeconfig.yaml"; out="$(CURDIR)/$(DATA_DIR)/stdout"; \
	mkdir -p "$(DATA_DIR)/images"; : > "$$out"; \
	python3 tests/e2e/images.py demo-archive "$(DATA_DIR)/images/demo-web.tar" peapod.local/demo/web:1.0; \
	echo "Starting peapod on https://$(LISTEN), data in $(DATA_DIR)/. Stop with Ctrl-C."; \
	"$$bin" up --data-dir "$(CURDIR)/$(DATA_DIR)" --listen $(LISTEN) > >(tee "$$out") & pid=$$!; \
	trap 'kill -TERM $$pid 2>/dev/null; wait $$pid' INT TERM; \
	for _ in $$(seq 1 300); do grep -q '^peapod ready' "$$out" && break; \
	  kill -0 $$pid 2>/dev/null || { wait $$pid; exit 1; }; sleep 0.1; done; \
	"$$kubectl" --kubeconfig "$$kubeconfig" apply -f $(DEMO_POD); \
	echo "Then, in another terminal:"; \
	echo "  export KUBECONFIG=$$kubeconfig"; \
	echo "  $$kubectl get pods -o wide"; \
	echo "  $$kubectl describe pod web-server"; \
	echo "  curl http://\$$($$kubectl get pod web-server -o jsonpath='{.status.podIP}')/"; \
	wait $$pid

test: deps
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory test-unit
	@$(MAKE) --no-print-directory test-e2e

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

test-unit:
	cargo test --workspace

# Every decoder of the API server, fuzzed (crates/fuzz); `make test` runs the same briefly.
FUZZ_CASES := 100000

fuzz:
	PEAPOD_FUZZ_CASES=$(FUZZ_CASES) cargo test --profile fuzz -p fuzz -- --nocapture

test-e2e: venv build
	PEAPOD_BIN="$(TARGET_DIR)/debug/peapod" timeout -s INT -k 60 $(E2E_TIMEOUT) \
	  $(PY) -m pytest tests/e2e -q -p no:cacheprovider

# The pod startup benchmark's peer: podman kube play (catatonit is its pause binary).
BENCH_APT_PACKAGES := podman catatonit

BENCH_DIR := $(TARGET_DIR)/bench
BENCH_LOG := $(BENCH_DIR)/last-run.log

# Every bench prints its figures as `figure {...}` lines too (bench/figures.py); the whole
# output goes to $(BENCH_LOG) and bench/compare.py prints each figure beside the recorded one
# (bench/recorded.json), flagging those that moved more than 25 % the wrong way.
bench: deps build-release
	@missing=""; for p in $(BENCH_APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null | grep -q '^install ok installed$$' \
	    || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; fi
	@mkdir -p $(BENCH_DIR); : > $(BENCH_LOG)
	cargo run --release -p store --example store_bench | tee -a $(BENCH_LOG)
	cargo run --release -p protobuf --example transcode_bench | tee -a $(BENCH_LOG)
	cargo run --release -p scheduler --example decide_bench | tee -a $(BENCH_LOG)
	cargo run --release -p proxy --example sync_bench | tee -a $(BENCH_LOG)
	cargo run --release -p podnet --example sync_bench | tee -a $(BENCH_LOG)
	cargo build --release -p api-bench
	$(PY) bench/api_bench.py --bin "$(TARGET_DIR)/release/peapod" \
	  --api-bench "$(TARGET_DIR)/release/api-bench" | tee -a $(BENCH_LOG)
	$(PY) bench/pod_startup.py --bin "$(TARGET_DIR)/release/peapod" | tee -a $(BENCH_LOG)
	$(PY) bench/stream_bench.py --bin "$(TARGET_DIR)/release/peapod" | tee -a $(BENCH_LOG)
	$(PY) bench/workload_bench.py --bin "$(TARGET_DIR)/release/peapod" | tee -a $(BENCH_LOG)
	$(PY) bench/service_bench.py --bin "$(TARGET_DIR)/release/peapod" | tee -a $(BENCH_LOG)
	$(PY) bench/leader_failover.py --bin "$(TARGET_DIR)/release/peapod" | tee -a $(BENCH_LOG)
	cargo build --release -p dns --example dns_load
	$(PY) bench/dns_bench.py --bin "$(TARGET_DIR)/release/peapod" \
	  --load "$(TARGET_DIR)/release/examples/dns_load" | tee -a $(BENCH_LOG)
	$(PY) bench/node_join.py --bin "$(TARGET_DIR)/release/peapod" | tee -a $(BENCH_LOG)
	$(PY) bench/podnet_bench.py --bin "$(TARGET_DIR)/release/peapod" | tee -a $(BENCH_LOG)
	$(PY) bench/node_failover.py --bin "$(TARGET_DIR)/release/peapod" | tee -a $(BENCH_LOG)
	@$(PY) bench/compare.py $(BENCH_LOG) --out $(BENCH_DIR)/figures.json

# After a run worth keeping (a quiet machine): the last run's figures become the recorded
# ones. Commit bench/recorded.json with the docs/benchmarks.md tables that quote them.
bench-record:
	$(PY) bench/compare.py $(BENCH_LOG) --record

clean:
	rm -rf $(DATA_DIR)
