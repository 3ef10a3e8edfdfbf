# Atoll developer commands. `make run` starts a local cluster, `make test` runs every test;
# both first install what the machine lacks (scripts/setup.sh).

CARGO ?= cargo
CARGO_TARGET_DIR ?= $(HOME)/.cache/atoll/target
export CARGO_TARGET_DIR

# Link the RocksDB archive built once per machine (scripts/rocksdb-lib.sh builds it on first use).
WITH_ROCKSDB = ROCKSDB_LIB_DIR="$$(bash scripts/rocksdb-lib.sh)" ROCKSDB_STATIC=1

# Extra flags for `atoll playground`, e.g. `make run ARGS="--clean --kv-count 1"`.
ARGS ?=
DATA_DIR ?= data/playground

.PHONY: setup build run test crash-loop fuzz lint fmt clean-data bench-compare bench-scale-out bench-hotspot

setup:
	bash scripts/setup.sh

build: setup
	$(WITH_ROCKSDB) $(CARGO) build --bin atoll --bin atoll-pd --bin atoll-kv

run: build
	$(CARGO_TARGET_DIR)/debug/atoll playground --data-dir $(DATA_DIR) $(ARGS)

test: setup
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		echo "$(CARGO) nextest run --workspace --no-fail-fast"; \
		$(WITH_ROCKSDB) $(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		echo "$(CARGO) test --workspace --no-fail-fast"; \
		$(WITH_ROCKSDB) $(CARGO) test --workspace --no-fail-fast; \
	fi

# kill -9 of a random node (PD every 5th cycle) for CRASH_CYCLES cycles under raw and
# transactional writes (tests/crash_loop_e2e.rs); `make test` runs a short version (20 cycles).
# Reproduce a failure with the seed it prints: `make crash-loop ATOLL_CRASH_SEED=...`.
CRASH_CYCLES ?= 100
crash-loop: setup
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		echo "ATOLL_CRASH_CYCLES=$(CRASH_CYCLES) $(CARGO) nextest run --test crash_loop_e2e --no-capture crash_loop_"; \
		ATOLL_CRASH_CYCLES=$(CRASH_CYCLES) $(WITH_ROCKSDB) $(CARGO) nextest run --test crash_loop_e2e --no-capture crash_loop_; \
	else \
		echo "ATOLL_CRASH_CYCLES=$(CRASH_CYCLES) $(CARGO) test --test crash_loop_e2e crash_loop_ -- --nocapture"; \
		ATOLL_CRASH_CYCLES=$(CRASH_CYCLES) $(WITH_ROCKSDB) $(CARGO) test --test crash_loop_e2e crash_loop_ -- --nocapture; \
	fi

# The request fuzzer (tests/fuzz_e2e.rs) for long: every tikvpb/pdpb RPC against a real 3-node
# cluster for FUZZ_SECS or FUZZ_REQUESTS, whichever ends first. `make test` runs a short version.
# The seed is printed; a failure names the seed and request index to replay, e.g.
# `make fuzz FUZZ_SEED=0x1234` (plus ATOLL_FUZZ_ONLY=<index> in the environment to replay one).
FUZZ_SECS ?= 600
FUZZ_REQUESTS ?= 1000000
FUZZ_SEED ?= $(shell date +%s)
fuzz: setup
	ATOLL_FUZZ_SEED=$(FUZZ_SEED) ATOLL_FUZZ_SECS=$(FUZZ_SECS) ATOLL_FUZZ_REQUESTS=$(FUZZ_REQUESTS) \
		$(WITH_ROCKSDB) $(CARGO) test --test fuzz_e2e -- --nocapture fuzz_every_rpc

lint: setup
	$(CARGO) fmt --all -- --check
	$(WITH_ROCKSDB) $(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean-data:
	rm -rf $(DATA_DIR)

# Atoll against etcd on this machine (bench/compare.sh): release binaries, a 3-node playground
# and a 3-member etcd on loopback, one table. Flags in BENCH_ARGS, e.g.
# `make bench-compare BENCH_ARGS="--duration 5s --out bench/results/new.md"`.
BENCH_ARGS ?=
bench-compare: setup
	$(WITH_ROCKSDB) $(CARGO) build --release --bin atoll --bin atoll-pd --bin atoll-kv
	ATOLL_BIN_DIR=$(CARGO_TARGET_DIR)/release bash bench/compare.sh $(BENCH_ARGS)

# A 3-node cluster under YCSB gets a 4th node: ops/s per second and the time until balanced.
# `make bench-scale-out SCALE_ARGS="--duration 90s --out bench/results/new.md"`.
SCALE_ARGS ?=
bench-scale-out: setup
	$(WITH_ROCKSDB) $(CARGO) build --release --bin atoll --bin atoll-pd --bin atoll-kv
	ATOLL_BIN_DIR=$(CARGO_TARGET_DIR)/release bash bench/scale_out.sh $(SCALE_ARGS)

# Sequential inserts into 3 nodes: regions split at the hot end; bytes written per store per second.
HOTSPOT_ARGS ?=
bench-hotspot: setup
	$(WITH_ROCKSDB) $(CARGO) build --release --bin atoll --bin atoll-pd --bin atoll-kv
	ATOLL_BIN_DIR=$(CARGO_TARGET_DIR)/release bash bench/hotspot.sh $(HOTSPOT_ARGS)
