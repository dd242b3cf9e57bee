# steadyfs — build, test and install everything.
#
#   make                 build/steadyfs, build/steadyfs-probe, build/steadyfs-recover
#   make deps            install the Debian packages the build and tests need
#   make check           C unit tests, fuzz corpus replay, the call graph's
#                        loops (make callgraph), integration tests
#   make check SANITIZE=1  the same under ASan+UBSan
#   make mutants [MUTANTS="name ..."]  each test/mutants/*.patch must fail a unit test
#   make fuzz            libFuzzer on the SFTP codec (clang)
#   make fuzz-restore    libFuzzer on the take-over state's restore path
#   make demo            a throwaway sshd, a mount, a write, an outage, recovery
#   make bench           throughput against sshfs, same run, printed as ratios
#   make soak [SOAK_MINUTES=N] [SOAK_OPS=N] [SOAK_JOBS=N]  the model checker
#                        over many seeds with faults
#   make conformance PEERS_DIR=...  pjdfstest, fsx, fsstress, fio, stress-ng
#                        on steadyfs and sshfs; writes docs/conformance.md
#   make install [DESTDIR=...] [PREFIX=/usr/local]
#   make deb             build/deb/steadyfs_VERSION_ARCH.deb (docs/packaging.md)
#   make deb-check       build it from a fresh clone, lintian, install, mount,
#                        upgrade under a writer, remove, purge (as root)
#
# Sources are found by folder: lib/*.c is the shared library, fs/*.c and
# fs/*/*.c the filesystem (its folders: docs/architecture.md), probe/*.c
# and recover/*.c the tools, test/unit/test_*.c one unit-test program each.
# Adding a file needs no change here.

CC       ?= cc
PREFIX   ?= /usr/local
DESTDIR  ?=
SANITIZE ?= 0
PYTEST   := /usr/bin/python3 -m pytest
B        := build

# Debian packages: build, run and test dependencies (README says why each).
DEB_PKGS := make gcc clang pkg-config libfuse3-dev fuse3 libssh-dev \
	libmount-dev libsystemd-dev libjson-c-dev openssh-server \
	openssh-client sshfs python3-pytest prometheus \
	prometheus-node-exporter man-db groff-base systemd util-linux \
	git dpkg-dev debhelper lintian
# `make conformance` only: building pjdfstest and xfstests' fsx/fsstress,
# and the suites Debian ships. `make deps` installs them too; the build's
# own check (the stamp below) looks at DEB_PKGS only, so `make check` on a
# fresh machine does not wait for them.
CONF_PKGS := autoconf automake libtool perl xfslibs-dev libaio-dev uuid-dev \
	libattr1-dev libacl1-dev liburing-dev fio stress-ng

PKGS_FS      := fuse3 libssh mount libsystemd json-c
PKGS_TOOLS   := mount json-c
pkgcflags     = $(shell pkg-config --cflags $(PKGS_FS))
pkglibs_fs    = $(shell pkg-config --libs $(PKGS_FS))
pkglibs_tools = $(shell pkg-config --libs $(PKGS_TOOLS))

WARN    := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
	-Wmissing-prototypes -Wno-unused-parameter
CFLAGS  ?= -O2 -g
BASECFLAGS = -std=gnu11 $(WARN) -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 \
	-DFUSE_USE_VERSION=314 -Ilib -pthread $(pkgcflags)
LDFLAGS ?=
ifeq ($(SANITIZE),1)
  SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=undefined
  # Its own tree: a sanitized binary never replaces the plain one.
  B := build/san
  OBJ := $(B)/obj
else
  SANFLAGS :=
  OBJ := $(B)/obj
endif
ALLCFLAGS = $(BASECFLAGS) $(CFLAGS) $(SANFLAGS)

LIB_SRC     := $(wildcard lib/*.c)
FS_DIRS     := fs $(sort $(patsubst %/,%,$(dir $(wildcard fs/*/*.c))))
FS_SRC      := $(wildcard $(FS_DIRS:%=%/*.c))
FS_INC      := $(FS_DIRS:%=-I%)
PROBE_SRC   := $(wildcard probe/*.c)
RECOVER_SRC := $(wildcard recover/*.c)
UNIT_SRC    := $(wildcard test/unit/test_*.c)

LIB_OBJ     := $(LIB_SRC:%.c=$(OBJ)/%.o)
FS_OBJ      := $(FS_SRC:%.c=$(OBJ)/%.o)
PROBE_OBJ   := $(PROBE_SRC:%.c=$(OBJ)/%.o)
RECOVER_OBJ := $(RECOVER_SRC:%.c=$(OBJ)/%.o)
UNIT_BIN    := $(UNIT_SRC:test/unit/%.c=$(B)/unit/%)

PROGS := $(B)/steadyfs
ifneq ($(PROBE_SRC),)
  PROGS += $(B)/steadyfs-probe
endif
ifneq ($(RECOVER_SRC),)
  PROGS += $(B)/steadyfs-recover
endif

.PHONY: all deps deps-build check unit mutants callgraph pytest fuzz fuzz-replay \
	fuzz-restore fuzz-restore-coverage demo bench soak conformance install uninstall \
	clean deb deb-check
all: $(PROGS)

# ---- dependencies --------------------------------------------------------
# The stamp is remade (and `make deps-build` run) whenever a library or tool is
# missing, so a fresh machine needs nothing but `make check`. DEPS_CHECK=0
# skips that (the package build: Build-Depends bring the libraries, and the
# test suite's tools are not needed).
DEPS_CHECK ?= 1
$(B)/.deps-ok:
	@mkdir -p $(B)
	@if [ "$(DEPS_CHECK)" = 0 ]; then :; elif ! pkg-config --exists $(PKGS_FS) 2>/dev/null || \
	    ! command -v sshfs >/dev/null || ! test -x /usr/sbin/sshd || \
	    ! /usr/bin/python3 -c 'import pytest' 2>/dev/null; then \
		$(MAKE) --no-print-directory deps-build; fi
	@touch $@

# One apt-get update, then whatever of the list is missing.
deps: PKG_LIST = $(DEB_PKGS) $(CONF_PKGS)
deps-build: PKG_LIST = $(DEB_PKGS)
deps deps-build:
	@missing=$$(for p in $(PKG_LIST); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
		grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "deps: installing:" $$missing; \
		if [ "$$(id -u)" != 0 ]; then echo "deps: run as root (apt-get)" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "deps: all installed"; fi

# ---- build ---------------------------------------------------------------
# Relink and recompile when the flags change (SANITIZE=0 <-> 1).
$(B)/.flags: FORCE | $(B)/.deps-ok
	@echo '$(ALLCFLAGS) $(LDFLAGS)' | cmp -s - $@ || echo '$(ALLCFLAGS) $(LDFLAGS)' > $@
FORCE:

$(OBJ)/fs/%.o: DIR_INC = $(FS_INC)
$(OBJ)/%.o: %.c $(B)/.flags | $(B)/.deps-ok
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) $(DIR_INC) -MMD -MP -c $< -o $@

$(B)/libsteadyfs.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(B)/steadyfs: $(FS_OBJ) $(B)/libsteadyfs.a
	$(CC) $(ALLCFLAGS) $(LDFLAGS) -o $@ $^ $(pkglibs_fs) -lm

$(B)/steadyfs-probe: $(PROBE_OBJ) $(B)/libsteadyfs.a
	$(CC) $(ALLCFLAGS) $(LDFLAGS) -o $@ $^ $(pkglibs_tools) -lm

$(B)/steadyfs-recover: $(RECOVER_OBJ) $(B)/libsteadyfs.a
	$(CC) $(ALLCFLAGS) $(LDFLAGS) -o $@ $^ $(pkglibs_tools) -lm

# Unit tests may use any folder's modules: each program folder (fs/,
# recover/, probe/) is an archive of its objects without main.o, linked
# before the shared library, so a test pulls in only the modules it uses:
# two folders may define the same global name as long as one test does
# not need both, and a test may define a lower module's functions itself
# to stand in for it (test_pool.c's fake sessions). A test includes a
# folder's header by its path from the top ("recover/plan.h"); fs/ is
# also on the include path for the older tests.
UNIT_PARTS := fs recover probe
UNIT_ARCH  := $(UNIT_PARTS:%=$(B)/unit/lib%.a)
define unit_part
$(B)/unit/lib$(1).a: $(filter-out $(OBJ)/$(1)/main.o,$(filter $(OBJ)/$(1)/%,$(FS_OBJ) $(PROBE_OBJ) $(RECOVER_OBJ)))
	@mkdir -p $$(dir $$@)
	@rm -f $$@
	ar rcs $$@ $$^
endef
$(foreach p,$(UNIT_PARTS),$(eval $(call unit_part,$(p))))

$(B)/unit/%: test/unit/%.c $(UNIT_ARCH) $(B)/libsteadyfs.a $(B)/.flags
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) -Itest/unit -I. $(FS_INC) $(LDFLAGS) -o $@ $< $(UNIT_ARCH) \
		$(B)/libsteadyfs.a $(pkglibs_fs) -lm

# The fuzz target built with the normal compiler and a tiny driver, so
# `make check` replays the committed corpus (and any crash files) always.
$(B)/fuzz-replay-sftp: test/fuzz/fuzz_sftp.c test/fuzz/replay.c $(B)/libsteadyfs.a
	$(CC) $(ALLCFLAGS) -o $@ $^ -lm

# The restore fuzzer: the take-over state's restore path, with small
# tables so that inputs fill them (docs/fuzzing.md).
FUZZ_RESTORE_CAPS := -DKS_NODE_CAP=32 -DKS_FH_CAP=8 -DKS_INFL_CAP=16 \
	-DKS_EVENTS=16 -DNODES_NBUCKETS=16 -DKS_DEPTH_MAX=8
FUZZ_RESTORE_SRC := test/fuzz/fuzz_restore.c fs/keeper/keepstate.c fs/keeper/ksvalid.c \
	fs/vfs/nodes.c fs/vfs/nodes_links.c fs/vfs/nodes_keep.c fs/vfs/identity.c lib/names.c lib/clock.c
FUZZ_RESTORE_HDR := fs/keeper/keepstate.h fs/keeper/keepstate_int.h fs/keeper/ksvalid.h fs/vfs/nodes.h fs/vfs/nodes_int.h fs/vfs/identity.h \
	lib/names.h
$(B)/fuzz-replay-restore: $(FUZZ_RESTORE_SRC) $(FUZZ_RESTORE_HDR) test/fuzz/replay.c $(B)/.flags
	$(CC) $(ALLCFLAGS) $(FUZZ_RESTORE_CAPS) $(FS_INC) -o $@ $(FUZZ_RESTORE_SRC) \
		test/fuzz/replay.c $(shell pkg-config --libs json-c) -lm

# Test tools: programs the integration tests run (never installed).
TEST_TOOLS := $(B)/ks-corrupt
$(B)/ks-corrupt: test/tools/ks_corrupt.c $(OBJ)/fs/keeper/keepstate.o $(B)/.flags
	$(CC) $(ALLCFLAGS) $(FS_INC) $(LDFLAGS) -o $@ $< $(OBJ)/fs/keeper/keepstate.o

# ---- tests ---------------------------------------------------------------
unit: $(UNIT_BIN) $(TEST_TOOLS)
	@pass=0; fail=0; for t in $(UNIT_BIN); do \
		if $$t; then pass=$$((pass+1)); else echo "FAILED: $$t"; fail=$$((fail+1)); fi; \
	done; echo "unit: $$pass passed, $$fail failed"; [ $$fail -eq 0 ]

# Deliberate breakages (test/mutants/*.patch), each applied to a scratch
# copy under $(B)/mutants: every one must make a unit test fail.
mutants: unit
	SANITIZE=$(SANITIZE) test/mutants/run.sh $(B) $(MUTANTS)

fuzz-replay: $(B)/fuzz-replay-sftp $(B)/fuzz-replay-restore \
		$(wildcard test/fuzz/corpus/*) $(wildcard test/fuzz/corpus_restore/*)
	$(B)/fuzz-replay-sftp test/fuzz/corpus
	timeout 120 $(B)/fuzz-replay-restore test/fuzz/corpus_restore

pytest: all $(TEST_TOOLS)
	STEADYFS_BUILD=$(CURDIR)/$(B) SANITIZE=$(SANITIZE) \
		timeout 1500 $(PYTEST) -q -p no:cacheprovider test $(PYTEST_ARGS)

# The file-level call graph has no loop (test/callgraph.py;
# docs/architecture.md, "The call graph").
callgraph: all
	/usr/bin/python3 test/callgraph.py $(OBJ)

check: all unit fuzz-replay callgraph pytest

FUZZ_SECONDS ?= 60
fuzz: $(B)/libsteadyfs.a
	@mkdir -p $(B)/fuzz-corpus
	clang $(BASECFLAGS) -g -O1 -fsanitize=fuzzer,address,undefined \
		-o $(B)/fuzz-sftp test/fuzz/fuzz_sftp.c lib/buf.c lib/sftp.c
	$(B)/fuzz-sftp -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=$(B)/ \
		$(B)/fuzz-corpus test/fuzz/corpus

# The restore path under libFuzzer; a hang past 5 s is a finding.
fuzz-restore:
	@mkdir -p $(B)/fuzz-corpus-restore
	clang $(BASECFLAGS) $(FUZZ_RESTORE_CAPS) $(FS_INC) -g -O1 \
		-fsanitize=fuzzer,address,undefined -o $(B)/fuzz-restore \
		$(FUZZ_RESTORE_SRC) $(shell pkg-config --libs json-c)
	$(B)/fuzz-restore -max_total_time=$(FUZZ_SECONDS) -timeout=5 \
		-artifact_prefix=$(B)/restore- $(B)/fuzz-corpus-restore \
		test/fuzz/corpus_restore

# Line and branch coverage of the restore path by the committed corpus.
fuzz-restore-coverage:
	@mkdir -p $(B)/cov
	clang $(BASECFLAGS) $(FUZZ_RESTORE_CAPS) $(FS_INC) -g -O0 \
		-fprofile-instr-generate -fcoverage-mapping -o $(B)/cov/replay-restore \
		$(FUZZ_RESTORE_SRC) test/fuzz/replay.c $(shell pkg-config --libs json-c) -lm
	LLVM_PROFILE_FILE=$(B)/cov/restore.profraw $(B)/cov/replay-restore \
		test/fuzz/corpus_restore $(FUZZ_RESTORE_EXTRA)
	llvm-profdata merge -o $(B)/cov/restore.profdata $(B)/cov/restore.profraw
	llvm-cov report $(B)/cov/replay-restore -instr-profile=$(B)/cov/restore.profdata \
		fs/keeper/ksvalid.c fs/keeper/keepstate.c fs/vfs/nodes.c fs/vfs/nodes_links.c fs/vfs/nodes_keep.c lib/names.c

demo: all
	/usr/bin/python3 test/demo.py --build $(CURDIR)/$(B)

# The fault proxy's own ceiling first (timings: never part of make check).
bench: all
	STEADYFS_BUILD=$(CURDIR)/$(B) $(PYTEST) -q -s -p no:cacheprovider \
		test/bench/bench_proxy.py
	/usr/bin/python3 test/bench/bench.py --build $(CURDIR)/$(B) --transport

# The model checker (docs/modelcheck.md) over new seeds, every fault kind,
# until SOAK_MINUTES have passed or SOAK_OPS calls are done (0: no bound;
# SOAK_OPS alone runs until that many),
# SOAK_JOBS runs at once (each its own sshd and mount), SOAK_SEED_OPS calls
# per seed with a fault before about one call in 1/SOAK_FAULT_RATE, the
# server's copy also compared every SOAK_SETTLE calls; prints calls per
# type, faults per kind and calls/s at the end. `make check` runs it too,
# for a fixed budget (test/test_model.py).
SOAK_OPS        ?= 0
SOAK_MINUTES    ?= $(if $(filter 0,$(SOAK_OPS)),10,0)
SOAK_JOBS       ?= 3
SOAK_SEED_OPS   ?= 2000
SOAK_FAULT_RATE ?= 0.005
SOAK_SETTLE     ?= 250
SOAK_ARGS ?=
soak: all
	STEADYFS_BUILD=$(CURDIR)/$(B) /usr/bin/python3 test/modelcheck.py \
		--minutes $(SOAK_MINUTES) --total-ops $(SOAK_OPS) --jobs $(SOAK_JOBS) \
		--ops $(SOAK_SEED_OPS) --fault-rate $(SOAK_FAULT_RATE) \
		--settle-every $(SOAK_SETTLE) --keep-going --shrink-seconds 120 $(SOAK_ARGS)

# ---- conformance ---------------------------------------------------------
# Independent suites on steadyfs and sshfs over one throwaway sshd
# (test/conformance.py; docs/conformance.md says what a run shows and how
# long it takes). pjdfstest and xfstests are not packaged by Debian: they
# are built here, in $(CONF), from copies of a local checkout of each
# (PEERS_DIR/pjdfstest, PEERS_DIR/xfstests); their source is never part of
# this repository. Knobs: FSX_OPS, FSX_SEEDS (e.g. 1-5,7), FSSTRESS_OPS,
# FSSTRESS_SEEDS, FIO_SIZE, STRESS_SECONDS, PJD_JOBS, CONF_FS
# (steadyfs,sshfs), CONF_SUITES (pjdfstest,fsx,fsstress,fio,stress-ng),
# CONF_DOC (the report; empty: none), CONF_OP_TIMEOUT (steadyfs's
# op_timeout; empty: the daemon's default, 20 s), FSX_CUT=SECS/EVERY (e.g.
# 0.5/4: fsx on steadyfs goes through test/faultproxy.py, which cuts the
# link for SECS seconds every EVERY seconds; any error fails the run).
# Issue 14's run under cuts:
#   make conformance CONF_SUITES=fsx CONF_FS=steadyfs FSX_SEEDS=1-10 \
#        FSX_OPS=20000 FSX_CUT=0.5/4 CONF_OP_TIMEOUT=4 CONF_DOC=
PEERS_DIR      ?=
CONF           := $(B)/conformance
FSX_OPS        ?= 100000
FSX_SEEDS      ?= 1-5
FSSTRESS_OPS   ?= 2000
FSSTRESS_SEEDS ?= 1-2
FIO_SIZE       ?= 64m
STRESS_SECONDS ?= 20
PJD_JOBS       ?= 2
CONF_FS        ?= steadyfs,sshfs
CONF_SUITES    ?= pjdfstest,fsx,fsstress,fio,stress-ng
CONF_DOC       ?= docs/conformance.md
CONF_OP_TIMEOUT ?=
FSX_CUT        ?=

.PHONY: conformance-deps conformance-peers
conformance-deps:
	@for p in $(CONF_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
		grep -q 'install ok installed' || { $(MAKE) --no-print-directory deps; break; }; done

conformance-peers:
	@if [ -z "$(PEERS_DIR)" ] || [ ! -f "$(PEERS_DIR)/pjdfstest/pjdfstest.c" ] || \
	    [ ! -f "$(PEERS_DIR)/xfstests/ltp/fsx.c" ]; then \
		echo "conformance: PEERS_DIR must name a folder holding checkouts of" >&2; \
		echo "  pjdfstest/ and xfstests/ (PEERS_DIR='$(PEERS_DIR)'). Get one with:" >&2; \
		echo "  git clone https://github.com/pjd/pjdfstest.git DIR/pjdfstest" >&2; \
		echo "  git clone https://github.com/kdave/xfstests.git DIR/xfstests" >&2; \
		echo "  make conformance PEERS_DIR=DIR" >&2; exit 2; fi

# A copy of the checkout without its .git, built in place by a make that
# does not inherit this one's command-line variables (CC=, B=, ...); its
# log is printed only when the build fails.
PEER_MAKE := env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make
define conf_copy
	rm -rf $(CONF)/$(1) && mkdir -p $(CONF)/$(1) && \
	(cd $(PEERS_DIR)/$(1) && tar --exclude=.git -cf - .) | tar -xf - -C $(CONF)/$(1)
endef

# PEERS_DIR is checked only when something is built from it: once built,
# the suites run without it.
$(CONF)/pjdfstest/pjdfstest: | conformance-deps
	@$(MAKE) --no-print-directory conformance-peers
	@echo "conformance: building pjdfstest from $(PEERS_DIR)/pjdfstest"
	@$(call conf_copy,pjdfstest)
	@cd $(CONF)/pjdfstest && (autoreconf -ifs && ./configure && $(PEER_MAKE) pjdfstest) \
		> ../pjdfstest-build.log 2>&1 || { tail -30 ../pjdfstest-build.log; exit 1; }

$(CONF)/xfstests/ltp/fsx: | conformance-deps
	@$(MAKE) --no-print-directory conformance-peers
	@echo "conformance: building fsx and fsstress from $(PEERS_DIR)/xfstests"
	@$(call conf_copy,xfstests)
	@cd $(CONF)/xfstests && ($(PEER_MAKE) configure && ./configure && \
		$(PEER_MAKE) -C include && $(PEER_MAKE) -C lib && \
		$(PEER_MAKE) -C ltp fsx fsstress) \
		> ../xfstests-build.log 2>&1 || { tail -30 ../xfstests-build.log; exit 1; }

conformance: all conformance-deps $(CONF)/pjdfstest/pjdfstest $(CONF)/xfstests/ltp/fsx
	/usr/bin/python3 test/conformance.py --build $(CURDIR)/$(B) --tools $(CONF) \
		--fs $(CONF_FS) --suites $(CONF_SUITES) --fsx-ops $(FSX_OPS) \
		--fsx-seeds $(FSX_SEEDS) --fsstress-ops $(FSSTRESS_OPS) \
		--fsstress-seeds $(FSSTRESS_SEEDS) --fio-size $(FIO_SIZE) \
		--stress-seconds $(STRESS_SECONDS) --pjd-jobs $(PJD_JOBS) \
		$(if $(FSX_CUT),--fsx-cut $(FSX_CUT)) \
		$(if $(CONF_OP_TIMEOUT),--op-timeout $(CONF_OP_TIMEOUT)) \
		$(if $(CONF_DOC),--doc $(CONF_DOC))

# ---- install -------------------------------------------------------------
# mount(8) finds no helper named mount.fuse.steadyfs in /sbin, so it runs
# fuse3's /sbin/mount.fuse, which starts `steadyfs SOURCE MOUNTPOINT -o OPTS`
# from a fixed PATH that includes /usr/local/bin: fstab lines of type
# fuse.steadyfs need nothing more than the program (docs/fstab.md). Units
# name the programs by absolute path, so they are installed with PREFIX
# written into them.
MAN1 := $(wildcard docs/*.1)
MAN8 := $(wildcard docs/*.8)
UNITS := $(wildcard docs/systemd/*.service docs/systemd/*.timer)
DOCS := $(wildcard docs/*.md)
UNITDIR ?= /etc/systemd/system
DOCDIR ?= $(PREFIX)/share/doc/steadyfs
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/sbin \
		$(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man8 \
		$(DESTDIR)$(UNITDIR) $(DESTDIR)$(PREFIX)/share/steadyfs/alerts \
		$(DESTDIR)$(DOCDIR)
	install -m 755 $(B)/steadyfs $(DESTDIR)$(PREFIX)/bin/steadyfs
	for p in steadyfs-probe steadyfs-recover; do \
		if [ -x $(B)/$$p ]; then install -m 755 $(B)/$$p $(DESTDIR)$(PREFIX)/sbin/$$p; fi; done
	for m in $(MAN1); do install -m 644 $$m $(DESTDIR)$(PREFIX)/share/man/man1/; done
	for m in $(MAN8); do install -m 644 $$m $(DESTDIR)$(PREFIX)/share/man/man8/; done
	for u in $(UNITS); do \
		sed -e 's|/usr/local/bin/|$(PREFIX)/bin/|g' -e 's|/usr/local/sbin/|$(PREFIX)/sbin/|g' \
			$$u > $(DESTDIR)$(UNITDIR)/$${u##*/}.tmp && \
		chmod 644 $(DESTDIR)$(UNITDIR)/$${u##*/}.tmp && \
		mv -f $(DESTDIR)$(UNITDIR)/$${u##*/}.tmp $(DESTDIR)$(UNITDIR)/$${u##*/} || exit 1; done
	for r in $(wildcard docs/alerts/*.yml); do \
		install -m 644 $$r $(DESTDIR)$(PREFIX)/share/steadyfs/alerts/; done
	for d in $(DOCS); do install -m 644 $$d $(DESTDIR)$(DOCDIR)/; done

# mount.fuse.steadyfs: left by installs of earlier versions.
uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/steadyfs $(DESTDIR)$(PREFIX)/bin/mount.fuse.steadyfs \
		$(DESTDIR)$(PREFIX)/sbin/steadyfs-probe $(DESTDIR)$(PREFIX)/sbin/steadyfs-recover
	for m in $(notdir $(MAN1)); do rm -f $(DESTDIR)$(PREFIX)/share/man/man1/$$m; done
	for m in $(notdir $(MAN8)); do rm -f $(DESTDIR)$(PREFIX)/share/man/man8/$$m; done
	for u in $(notdir $(UNITS)); do rm -f $(DESTDIR)$(UNITDIR)/$$u; done
	rm -rf $(DESTDIR)$(PREFIX)/share/steadyfs $(DESTDIR)$(DOCDIR)

# ---- Debian package --------------------------------------------------------
# dpkg-buildpackage on a copy of the source tree (what git tracks, plus new
# files it does not ignore; the whole folder but build/ outside git), so the
# package never sees build/ and the tree gets no debian/ build leftovers.
# The version is lib/version.h's, written into a generated
# debian/changelog: there is no second place to bump. The .deb, its
# -dbgsym and .changes land in build/deb/. docs/packaging.md says why each
# file of debian/ is as it is.
DEB_VERSION = $(shell sed -n 's/^.define STEADYFS_VERSION "\([^"]*\)".*/\1/p' lib/version.h)
DEB_ARCH = $(shell dpkg --print-architecture 2>/dev/null)
DEB_TOP := $(B)/deb
DEB_SRC = $(DEB_TOP)/steadyfs-$(DEB_VERSION)
DEB_STAMP = $$(git log -1 --format=%ct 2>/dev/null || date +%s)
deb:
	@test -n "$(DEB_VERSION)" || { echo "deb: no STEADYFS_VERSION in lib/version.h" >&2; exit 1; }
	@command -v dpkg-buildpackage >/dev/null && command -v dh >/dev/null || \
		$(MAKE) --no-print-directory deps-build
	rm -rf $(DEB_TOP) && mkdir -p $(DEB_SRC)
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
		git ls-files -z -co --exclude-standard | \
			tar --null -T - --ignore-failed-read -cf -; \
	else tar --exclude=./build --exclude=./.git -cf - .; fi | tar -xf - -C $(DEB_SRC)
	{ printf 'steadyfs (%s) bookworm; urgency=medium\n\n' '$(DEB_VERSION)'; \
	  printf '  * Built from %s.\n\n' \
		"$$(git describe --always --dirty 2>/dev/null || echo 'a source tree')"; \
	  printf ' -- %s  %s\n' "$$(sed -n 's/^Maintainer: //p' debian/control)" \
		"$$(date -R -u -d @$(DEB_STAMP))"; } > $(DEB_SRC)/debian/changelog
	cd $(DEB_SRC) && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
		dpkg-buildpackage -us -uc -b -jauto
	@echo "deb: $(DEB_TOP)/steadyfs_$(DEB_VERSION)_$(DEB_ARCH).deb"

# test/test_deb.py, which make check runs too when it can (root, the tools
# present); here a missing tool fails instead of skipping.
deb-check: all
	STEADYFS_BUILD=$(CURDIR)/$(B) STEADYFS_DEB_CHECK=required \
		timeout 900 $(PYTEST) -q -p no:cacheprovider test/test_deb.py $(PYTEST_ARGS)

clean:
	rm -rf $(B)

-include $(shell find $(OBJ) -name '*.d' 2>/dev/null)
