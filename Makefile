# Two entry points for people; CMake does the building.
#   make run    install what is missing, build, run ntpgated in the foreground on the
#               shipped default config (loopback only, never touches the system clock)
#   make check  install what is missing, build, run every test (plain and ASan+UBSan builds)
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 30
JOBS ?= $(shell nproc)

.PHONY: all deps deps-build run check test test-plain test-asan test-fuzz fuzz-long clean \
        install deb test-package

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
	cd $(BUILD) && ctest --output-on-failure

test-asan:
	cmake -S . -B $(ASAN_BUILD) -DNTPG_SANITIZE=ON -DCMAKE_C_COMPILER=clang >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure

# libFuzzer targets under ASan+UBSan, FUZZ_SECONDS each (make fuzz-long for an hour each).
test-fuzz:
	cmake -S . -B $(FUZZ_BUILD) -DNTPG_SANITIZE=ON -DNTPG_FUZZ=ON \
	  -DNTPG_FUZZ_SECONDS=$(FUZZ_SECONDS) -DCMAKE_C_COMPILER=clang >/dev/null
	cmake --build $(FUZZ_BUILD) -j $(JOBS)
	cd $(FUZZ_BUILD) && ctest -L fuzz --output-on-failure

fuzz-long:
	$(MAKE) test-fuzz FUZZ_SECONDS=3600

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

check: deps
	$(MAKE) test-plain
	$(MAKE) test-asan
	$(MAKE) test-fuzz
	$(MAKE) test-package

test: check

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) build-deb build-pkgtest dist

FORCE:
