# ulysses — the two commands a fresh machine needs: `make run` and `make test`.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
RUN_FLAGS ?=

FUZZ_DIR ?= build-fuzz
FUZZ_SECONDS ?= 20
# The CPU tests run again under AddressSanitizer + UBSan (a subset: the parsers, checkpoints,
# data sources and one trainer test keep CI within its time budget).
SANITIZE_TESTS ?= parse_limits_test finite_test checkpoint_test safetensors_test \
	data_sources_test model_config_test train_config_test adamw_test
FUZZERS = $(patsubst fuzz/%.cc,%,$(wildcard fuzz/*_fuzz.cc))

.PHONY: all deps build run test bench clean format fuzz sanitize

all: build

deps:
	bash scripts/install-deps.sh

$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: deps $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j $(JOBS)

# The default demo job: train the tiny preset on the synthetic long-range copy task.
run: build
	bash scripts/demo.sh $(BUILD_DIR) $(RUN_FLAGS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 600

# One clang build with AddressSanitizer + UBSan (and libFuzzer instrumentation) serves both
# `make sanitize` and `make fuzz`.
$(FUZZ_DIR)/CMakeCache.txt:
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DULYSSES_CUDA=off -DULYSSES_FUZZ=ON -DULYSSES_BUILD_BENCH=OFF

# A subset of the CPU tests (SANITIZE_TESTS) run under AddressSanitizer + UBSan.
sanitize: deps $(FUZZ_DIR)/CMakeCache.txt
	cmake --build $(FUZZ_DIR) -j $(JOBS) --target $(SANITIZE_TESTS)
	for t in $(SANITIZE_TESTS); do \
	  ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 OMP_NUM_THREADS=1 \
	    OPENBLAS_NUM_THREADS=1 $(FUZZ_DIR)/$$t --gtest_brief=1 || exit 1; \
	done

# libFuzzer harnesses of fuzz/, each run FUZZ_SECONDS from its seed corpus.
fuzz: deps $(FUZZ_DIR)/CMakeCache.txt
	cmake --build $(FUZZ_DIR) -j $(JOBS) --target $(FUZZERS)
	bash scripts/fuzz.sh $(FUZZ_DIR) $(FUZZ_SECONDS)

bench: build
	bash scripts/bench.sh $(BUILD_DIR)

format:
	clang-format -i $$(git ls-files '*.h' '*.cc' '*.cu')

clean:
	rm -rf $(BUILD_DIR)
