# ulysses — the two commands a fresh machine needs: `make run` and `make test`.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
RUN_FLAGS ?=

.PHONY: all deps build run test bench clean format

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

bench: build
	bash scripts/bench.sh $(BUILD_DIR)

format:
	clang-format -i $$(git ls-files '*.h' '*.cc' '*.cu')

clean:
	rm -rf $(BUILD_DIR)
