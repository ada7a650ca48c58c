# berth — build, test, demo, bench. `make help` lists the targets.
#
# Everything uses the binary `make build` makes, the one users install: the integration tests
# and the bench must measure it.

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

CARGO     ?= cargo
PREFIX    ?= /usr/local
ROOTFS    := $(CURDIR)/build/rootfs
# The runtime the integration tests drive; any runc-compatible binary works:
#   make test-integration BERTH_BIN=/usr/sbin/runc
BERTH_BIN ?= $(CURDIR)/target/dist/berth
# Tests mostly wait on child processes, so more threads than cores is fine.
TEST_THREADS ?= 4

.PHONY: help build rootfs test test-unit test-integration test-conformance conformance-table test-engines test-vm test-criu test-systemd demo install bench bench-vm bench-scale link-order check-link-order lint require-root

help:
	@echo "make build             target/dist/berth: static, LTO (the tests use it too)"
	@echo "make rootfs            busybox rootfs in build/rootfs (from busybox-static)"
	@echo "make test              unit + integration + engine + VM (cgroup v2, CRIU, systemd) tests (root)"
	@echo "make test-integration  integration tests only; BERTH_BIN=/usr/sbin/runc to compare"
	@echo "make test-conformance  the OCI conformance suite; BERTH_BIN=/usr/sbin/runc to compare"
	@echo "make conformance-table the suite against berth, runc and crun: the README's table"
	@echo "make test-engines      Docker and podman run containers with berth, and with runc"
	@echo "make test-criu         checkpoint/restore tests, in a QEMU VM whose kernel CRIU supports"
	@echo "make test-systemd      the cgroup tests with --systemd-cgroup, in a VM booted with systemd"
	@echo "make demo              build, then run a real container with berth"
	@echo "make install           install berth to $(PREFIX)/sbin"
	@echo "make bench             berth vs runc vs crun, side by side, + chart (root)"
	@echo "make bench-vm          the same in the cgroup v2 VM (tools/vm)"
	@echo "make bench-scale       500 berth containers at once: create, list, state"
	@echo "make link-order        relist the start path's functions for the linker (root)"
	@echo "make lint              cargo fmt --check and clippy -D warnings"

# A static executable (glibc's libc.a, libseccomp.a): no dynamic loader at each start, which
# cost about half of a `berth state`. berth resolves no user or host names (no NSS). The flag
# goes to the final link only (cargo rustc): build scripts and proc-macros stay dynamic.
# pack-relative-relocs: the start-up relocations as a bitmap (DT_RELR) instead of a 300 kB table
# that every start reads.
# The start path's functions first and together (lld's --symbol-ordering-file; the list is
# link/start-path.symbols, see tools/trace-start-path): the kernel maps a binary 64 kB around
# each page it faults in, and with them spread over .text a start mapped nearly all 4.3 MB of
# it. The linker is the toolchain's own lld (rust-lld), which rustc 1.90 and later use on x86_64
# Linux anyway: named here because GNU ld has no such option.
RUST_GCC_LD = $(shell rustc --print sysroot)/lib/rustlib/$(shell rustc -vV | sed -n 's/^host: //p')/bin/gcc-ld
LINK_ORDER := $(CURDIR)/link/start-path.symbols
build:
	LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=$$(pkg-config --variable=libdir libseccomp) \
		$(CARGO) rustc --profile dist --bin berth -- -C target-feature=+crt-static \
		-C link-arg=-Wl,-z,pack-relative-relocs \
		-C link-arg=-fuse-ld=lld -C link-arg=-B$(RUST_GCC_LD) \
		-C link-arg=-Wl,--symbol-ordering-file=$(LINK_ORDER) -C link-arg=-Wl,--no-warn-symbol-ordering

# Rewrites link/start-path.symbols: what a start runs on this host, then what it adds on the
# cgroup v2 VM of tools/vm (a few minutes).
link-order: require-root build rootfs
	tools/trace-start-path target/dist/berth $(ROOTFS) $(LINK_ORDER)
	tools/vm/run-in-vm -- tools/trace-start-path --append target/dist/berth $(ROOTFS) $(LINK_ORDER)
	$(MAKE) build

rootfs:
	tools/mkrootfs $(ROOTFS)

require-root:
	@if [ "$$(id -u)" != 0 ]; then echo "this target needs root (containers, mounts, namespaces)" >&2; exit 1; fi

# The whole suite. CI runs exactly this (.ci/run).
test: require-root build rootfs test-unit check-link-order test-integration test-conformance test-engines test-vm test-criu \
	test-systemd

# Does link/start-path.symbols still name the binary's functions? (see tools/trace-start-path)
check-link-order: build
	tools/trace-start-path --check target/dist/berth $(LINK_ORDER)

# Unit tests: pure logic next to the code in src/.
test-unit:
	$(CARGO) test --release --bins

test-integration: require-root build rootfs
	BERTH_BIN=$(BERTH_BIN) BERTH_TEST_ROOTFS=$(ROOTFS) \
		$(CARGO) test --release --test integration -- --test-threads $(TEST_THREADS)

# Docker and podman (and containerd) with berth as their runtime, each scenario also with runc
# as the control. Each engine runs privately, started and stopped by the tests.
test-engines: require-root build rootfs
	BERTH_BIN=$(BERTH_BIN) BERTH_TEST_ROOTFS=$(ROOTFS) \
		$(CARGO) test --release --test engines -- --test-threads $(TEST_THREADS)

# The OCI conformance suite (oci-validation/README.md); fails on a case that fails without an
# explanation in oci-validation/explanations.
test-conformance: require-root build rootfs
	BERTH_BIN=$(BERTH_BIN) BERTH_TEST_ROOTFS=$(ROOTFS) TEST_THREADS=$(TEST_THREADS) \
		oci-validation/results --check

# The suite against berth, runc and crun; rewrites the results table in README.md.
conformance-table: require-root build rootfs
	BERTH_TEST_ROOTFS=$(ROOTFS) TEST_THREADS=$(TEST_THREADS) oci-validation/results --write

# The cgroup tests again, in a QEMU VM with a pure cgroup v2 hierarchy (tools/vm/README.md):
# this host kind is cgroup v1 hybrid.
test-vm: require-root build rootfs
	BERTH_BIN=$(BERTH_BIN) BERTH_TEST_ROOTFS=$(ROOTFS) tools/vm/test-v2

# checkpoint/restore with CRIU, in the VM: CRIU cannot dump on every host kernel (tools/vm/README.md).
test-criu: require-root build rootfs
	BERTH_BIN=$(BERTH_BIN) BERTH_TEST_ROOTFS=$(ROOTFS) tools/vm/test-criu

# The cgroup tests again with --systemd-cgroup, in the VM with Debian's systemd as PID 1, and
# Docker, containerd's CRI and podman with systemd's cgroup driver running containers with
# berth (and runc); then the cgroup tests once more with systemd's cgroup v1 (hybrid) layout.
test-systemd: require-root build rootfs
	BERTH_BIN=$(BERTH_BIN) BERTH_TEST_ROOTFS=$(ROOTFS) tools/vm/test-v2 --systemd
	BERTH_BIN=$(BERTH_BIN) BERTH_TEST_ROOTFS=$(ROOTFS) tools/vm/test-v2 --systemd-v1

demo: build rootfs
	BERTH_BIN=$(BERTH_BIN) tools/demo

install: build
	install -D -m 0755 target/dist/berth $(DESTDIR)$(PREFIX)/sbin/berth

# bench/chart-v1.svg and bench/chart-v2.svg, which the README shows, are copies of the charts
# these write to build/.
bench: require-root build rootfs
	BERTH_BIN=$(BERTH_BIN) bench/run --svg build/bench-v1.svg --title "cgroup v1 host ($$(uname -r))"

# The same in the cgroup v2 VM of tools/vm (TCG: absolute times mean little there, ratios hold).
# berth runs from the VM's tmpfs, as crun and runc run from its cached /usr: from the project
# folder (9p, cache=mmap) each start re-reads its pages from the host (state x2.9 instead of x0.9).
# So is the rootfs: from 9p every exec of /bin/true in a container re-reads busybox from the host
# (0.3 s a time under TCG, 0.1 s for the cached /usr's), a constant that buried the runtimes'
# differences in noise (the ratio of berth's run+delete to crun's: x0.77 with it, x0.46 without).
# And the VM runs without address space randomisation: QEMU 7.2's TCG keys the code it has
# translated by virtual address, so with ASLR every process translates all the code it runs
# anew, each time, a cost hardware does not have that then outweighs the runtime's own work
# (berth's command-line parsing: 24 ms with it, 1.2 ms without; 0.1 ms on the host). It is off
# for every runtime alike; `make bench-vm VM_ASLR=2` measures with it.
VM_ASLR ?= 0
bench-vm: require-root build rootfs
	tools/vm/run-in-vm --timeout 3600 -- sh -c 'echo $(VM_ASLR) >/proc/sys/kernel/randomize_va_space && \
		cp $(BERTH_BIN) /tmp/berth && cp -a $(ROOTFS) /tmp/rootfs && \
		exec bench/run --runtime crun=/usr/bin/crun --runtime runc=/usr/sbin/runc \
		--runtime berth=/tmp/berth --rootfs /tmp/rootfs \
		--rounds 5 --svg build/bench-v2.svg --title "cgroup v2 VM (QEMU TCG, randomize_va_space=$(VM_ASLR))"'

# 500 containers running at once: create, list and state as their number grows.
bench-scale: require-root build rootfs
	BERTH_BIN=$(BERTH_BIN) bench/run scale

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
