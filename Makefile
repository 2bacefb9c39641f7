# Two entry points for people; CMake does the building.
#   make run    install what is missing (apt-get, says so first), build, run ntpgated in the
#               foreground on the shipped default config (loopback only, never touches the
#               system clock)
#   make check  install what is missing (the same), build, run every deterministic test: the
#               plain build, the ASan+UBSan build, the ThreadSanitizer build of the thread
#               tests, and each fuzz target over its checked-in corpus
# Skip the package installation with `make check DEPS=no` (or NTPG_NO_DEPS=1 in the
# environment): deps.sh then only lists what is missing.
# Random fuzzing is separate: `make fuzz` (FUZZ_SECONDS each, 30 s), `make fuzz-long` (an hour).
BUILD ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 30
JOBS ?= $(shell nproc)
# ctest runs test files side by side (each has its own addresses; CMakeLists.txt serializes
# the few that share a port or measure load). 2 keeps CI deterministic on a 2-core machine.
CTEST_JOBS ?= 2
DEPS ?= yes
ifeq ($(DEPS),no)
export NTPG_NO_DEPS = 1
endif
TSAN_ENV = TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan.supp"

.PHONY: all deps deps-build run check test test-plain test-asan test-tsan test-fuzz \
        test-fuzzreplay fuzz fuzz-long fuzz-build clean install deb test-package bench-timequality \
        bench-metrics bench-nts

all: $(BUILD)/ntpgated

deps-build:
	scripts/deps.sh build

deps:
	scripts/deps.sh test

$(BUILD)/ntpgated: FORCE
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

run: deps-build $(BUILD)/ntpgated
	setpriv --bounding-set -sys_time -- $(BUILD)/ntpgated -n -x -c etc/ntpgate.conf

test-plain: $(BUILD)/ntpgated
	cd $(BUILD) && ctest -j $(CTEST_JOBS) --output-on-failure

test-asan:
	cmake -S . -B $(ASAN_BUILD) -DNTPG_SANITIZE=ON -DCMAKE_C_COMPILER=clang >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest -j $(CTEST_JOBS) --output-on-failure

# ThreadSanitizer: the tests that run threads (label `threads`: the pool, the monitor from
# several threads, logging while the log is reopened, and against the TSan-built daemon
# test_threads.py, a reload under load, and mode 6 / :config in the serving threads). Any
# report not in tests/tsan.supp ends the process with status 66: a failure.
test-tsan:
	cmake -S . -B $(TSAN_BUILD) -DNTPG_TSAN=ON -DCMAKE_C_COMPILER=clang >/dev/null
	cmake --build $(TSAN_BUILD) -j $(JOBS)
	cd $(TSAN_BUILD) && $(TSAN_ENV) ctest -L threads --output-on-failure

fuzz-build:
	cmake -S . -B $(FUZZ_BUILD) -DNTPG_SANITIZE=ON -DNTPG_FUZZ=ON \
	  -DNTPG_FUZZ_SECONDS=$(FUZZ_SECONDS) -DCMAKE_C_COMPILER=clang >/dev/null
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzzers

# Every libFuzzer target over its checked-in corpus fuzz/corpus/NAME, each input once
# (-runs=0, under ASan+UBSan): deterministic.
test-fuzzreplay: fuzz-build
	cd $(FUZZ_BUILD) && ctest -L fuzzreplay -j $(CTEST_JOBS) --output-on-failure

# Random fuzzing, FUZZ_SECONDS per target (not part of `make check`).
fuzz: fuzz-build
	cd $(FUZZ_BUILD) && ctest -L '^fuzz$$' --output-on-failure

test-fuzz: fuzz

fuzz-long:
	$(MAKE) fuzz FUZZ_SECONDS=3600

# Install from source: make install [PREFIX=/usr/local] [DESTDIR=...] (GNUInstallDirs).
PREFIX ?= /usr/local
install: deps-build
	cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)
	DESTDIR=$(DESTDIR) cmake --install $(BUILD)

# The Debian package: dist/ntpgate_VERSION_ARCH.deb (debhelper, from a clean copy of the tree).
deb: deps
	scripts/build-deb.sh dist

# The package end to end: lintian, the unit's exposure, install/upgrade/remove/purge in a
# throwaway Debian 12 root (tests/package/test_package.sh).
test-package:
	tests/package/test_package.sh

# ntpgated's and chronyd's offset estimates side by side through one jitter relay (long; not
# part of make check): docs/client.md has the table of a run.
bench-timequality: deps $(BUILD)/ntpgated
	bench/timequality.sh

# Serving CPU per answer with and without a Prometheus scraping every second (not in check).
bench-metrics: deps all
	bench/metrics.sh -b $(BUILD)

# NTS CPU per answer against plain NTP, ntpgated and chronyd in one run (not in check):
# docs/nts.md and docs/performance.md have the figures. In a private network namespace.
bench-nts: deps all
	unshare -n sh -c 'ip link set lo up && NTPG_DAEMON=$(abspath $(BUILD))/ntpgated \
	  NTPG_SRC=$(CURDIR) NTPG_ADDR_SALT=0 python3 bench/ntsbench.py'

check: deps
	$(MAKE) test-plain
	$(MAKE) test-asan
	$(MAKE) test-tsan
	$(MAKE) test-fuzzreplay
	$(MAKE) test-package

test: check

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD) build-deb build-pkgtest dist

FORCE:
