# Thin wrapper over CMake. The two commands a newcomer needs:
#   make run    install what is missing, build, start `build/realm serve`
#   make test   install what is missing, build with ASan+UBSan, run every test
#               (the integration suite twice: SQLite, then PostgreSQL)
#   make bench  install what is missing, build Release, compare with Node (BENCHMARKS.md)
.PHONY: all setup setup-test setup-bench build build-asan build-bench run test test-model unit integration integration-pg fuzz fuzz-build bench format clean

JOBS ?= 2
ARGS ?=
FUZZ_SECONDS ?= 15

all: build

setup:
	@scripts/setup.sh

setup-test:
	@scripts/setup.sh --test

setup-bench:
	@scripts/setup.sh --bench

build: setup
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DREALM_TESTS=OFF >/dev/null
	@cmake --build build -j$(JOBS)

build-asan: setup-test
	@cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DREALM_SANITIZE=ON >/dev/null
	@cmake --build build/asan -j$(JOBS)

run: build
	./build/realm serve $(ARGS)

unit: build-asan
	@scripts/check-layers.sh
	@scripts/check-symbols.sh build/asan/librealm_core.a
	@cd build/asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j$(JOBS)

integration: build-asan
	@REALM_BIN=$(CURDIR)/build/asan/realm /usr/bin/python3 -m pytest -q tests/integration

# The same suite with the registry in PostgreSQL: one throwaway cluster
# (tests/integration/pg_util.py), a database per server (conftest.py).
integration-pg: build-asan
	@REALM_TEST_DB=pg REALM_BIN=$(CURDIR)/build/asan/realm /usr/bin/python3 -m pytest -q tests/integration

fuzz-build: setup-test
	@CC=clang cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=Debug -DREALM_SANITIZE=ON -DREALM_FUZZ=ON -DREALM_TESTS=OFF >/dev/null
	@cmake --build build/fuzz -j$(JOBS)

# Each fuzzer runs for FUZZ_SECONDS from its seed corpus (fuzz/corpus/NAME).
fuzz: fuzz-build
	@for f in build/fuzz/fuzz_*; do \
	  n=$$(basename $$f); mkdir -p build/fuzz/corpus/$$n; \
	  echo "fuzz: $$n for $(FUZZ_SECONDS)s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 build/fuzz/corpus/$$n fuzz/corpus/$$n >/dev/null 2>build/fuzz/$$n.log || { tail -40 build/fuzz/$$n.log; exit 1; }; \
	done

# The model generate's tests use (scripts/make_test_model.py: llama.cpp's
# llama-spm vocabulary, random weights from a fixed seed; 9 MB, 2 s). Made
# again only when the script or the pinned node-llama-cpp (its llama.cpp
# tree, hence the vocabulary) changes.
TEST_MODEL := build/models/tiny-test.gguf
test-model: $(TEST_MODEL)

$(TEST_MODEL): scripts/make_test_model.py package-lock.json
	@scripts/setup.sh --test
	@PYTHONPATH=build/llama.cpp/gguf-py /usr/bin/python3 scripts/make_test_model.py --out $@

# The Release build is compiled too: -O2 finds warnings -O0 does not.
test: build test-model unit integration integration-pg fuzz

# The same configuration bench/run.sh builds (it rebuilds when run alone).
build-bench: setup-bench
	@cmake -S . -B build/bench -DCMAKE_BUILD_TYPE=Release -DREALM_TESTS=OFF -DREALM_BENCH=ON -DCMAKE_C_FLAGS="$(REALM_BENCH_CFLAGS)" >/dev/null
	@cmake --build build/bench -j$(JOBS)

# Realm against Node peers; writes bench/results/core.json and BENCHMARKS.md.
bench: build-bench
	@bench/run.sh

format:
	@clang-format -i $$(git ls-files 'src/*.c' 'src/*.h' 'tests/unit/*.c' 'fuzz/*.c')

clean:
	rm -rf build
