# The front door. `make run` starts the service; `make test` builds and runs every test.
# Both install what they need from Debian first (scripts/install-deps).
# CMake does the building; this file only names the builds:
#   build/       gcc, Release, -Werror         (what `make run` uses)
#   build-asan/  clang, ASan + UBSan, -Werror  (the second half of `make test`)
#   build-fuzz/  clang, libFuzzer              (`make fuzz`)

JOBS        ?= $(shell nproc)
# Keep the nested makes CMake runs quiet about directories.
MAKEFLAGS   += --no-print-directory
CMAKE_FLAGS ?=
FUZZ_SECONDS ?= 60

.PHONY: all build deps run demo test test-release test-asan check-format format fuzz bench clean

all: build

deps:
	@scripts/install-deps

build: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DVH_DEVELOPER=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build build -j $(JOBS)

run: build
	@scripts/run

demo: build
	@scripts/demo build/vocohook

test: deps check-format test-release test-asan
	@echo "make test: all checks passed (gcc -Werror, clang ASan+UBSan, clang-format)"

test-release: build
	@cd build && ../scripts/with-postgres ctest --output-on-failure -j $(JOBS)
	@bench/run --smoke --no-build

test-asan: deps
	@CC=clang cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DVH_DEVELOPER=ON \
	    -DVH_SANITIZE=ON -DVH_BENCH=OFF $(CMAKE_FLAGS) >/dev/null
	@cmake --build build-asan -j $(JOBS)
	@cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ../scripts/with-postgres ctest \
	    --output-on-failure -j $(JOBS)

check-format: deps
	@files=$$(git ls-files '*.c' '*.h'); \
	clang-format --dry-run --Werror $$files && echo "clang-format: $$(echo $$files | wc -w) files clean"

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

fuzz: deps
	@CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVH_FUZZ=ON \
	    -DVH_SANITIZE=ON -DVH_TESTS=OFF -DVH_BENCH=OFF >/dev/null
	@cmake --build build-fuzz -j $(JOBS)
	@scripts/fuzz build-fuzz $(FUZZ_SECONDS)

bench: build
	@bench/run

clean:
	rm -rf build build-asan build-fuzz
