# extentd build and test entry points. `make test` is what CI runs (.ci/run).
#
# Other parts of the tree add integration targets without editing this file:
# a fragment such as test/integ.mk is included automatically and appends its
# target names to TEST_EXTRA, e.g.
#
#     TEST_EXTRA += integ-fs
#     integ-fs: ; go test -count=1 ./test/fs/...
#
# `make test TEST_EXTRA=` runs the core suite only.

SHELL       := /bin/bash
GO          ?= go
PKGS        ?= ./...
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -X main.version=$(VERSION)
BIN         ?= bin/extentd
FUZZTIME    ?= 10000x
BENCHTIME   ?= 1s
BENCH       ?= .
RACE_TIMEOUT ?= 15m
TEST_EXTRA  ?=

# Debian packages the test suite uses; installed by `make tools` when missing.
TEST_PACKAGES := fio nbdkit libnbd-bin python3-libnbd fuse3 xfsprogs e2fsprogs \
	qemu-utils qemu-system-x86 nbd-server nbd-client busybox-static kmod util-linux \
	procps git ca-certificates gcc libc6-dev
# One command per package, to tell which are missing.
TEST_COMMANDS := fio nbdkit nbdinfo nbdsh nbdcopy nbdfuse fusermount3 mkfs.xfs mkfs.ext4 \
	qemu-img qemu-io qemu-nbd qemu-system-x86_64 nbd-server nbd-client busybox gcc

-include $(sort $(wildcard */*.mk */*/*.mk))

.PHONY: all build test check invariants race lint fmt vet staticcheck fuzz-smoke bench bench-unit bench-servers bench-go tools clean help

all: build

help:
	@echo "make build       build $(BIN) (version $(VERSION))"
	@echo "make test        install missing test tools, then lint, race tests, fuzz smoke, TEST_EXTRA ($(TEST_EXTRA))"
	@echo "make check       lint, race, invariants (no tool install, no TEST_EXTRA)"
	@echo "make race        go test -race ./..."
	@echo "make invariants  tests of packages with -tags invariants checks, with the tag"
	@echo "make lint        gofmt check, go vet, staticcheck"
	@echo "make fuzz-smoke  every Fuzz target for FUZZTIME=$(FUZZTIME)"
	@echo "make bench-unit  unit tests of the benchmark harness (bench/lib, python3)"
	@echo "make bench       go benchmarks (BENCH=$(BENCH), BENCHTIME=$(BENCHTIME))"
	@echo "make bench-servers  fio over NBD: extentd vs nbdkit, qemu-nbd, nbd-server (BENCH_ARGS=--quick)"
	@echo "make bench-go    go benchmarks with benchstat (bench/gobench.sh)"
	@echo "make tools       apt-get install the test tools that are missing (root only)"

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/extentd

# The whole suite: the README's test command and what CI runs.
test: tools lint race invariants fuzz-smoke bench-unit $(TEST_EXTRA)
	@echo "make test: all passed (extra targets: $(or $(strip $(TEST_EXTRA)),none))"

# The developer loop before a commit (STYLE rule 43), without installing
# tools or running the integration targets.
check: lint race invariants

# Installs the test tools with apt-get when some are missing and we are root.
# Without root it only warns; tests that need a missing tool skip (outside CI)
# or fail (with CI set).
tools:
	@missing=""; for c in $(TEST_COMMANDS); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	if [ -z "$$missing" ]; then echo "tools: all present"; exit 0; fi; \
	echo "tools: missing:$$missing"; \
	if [ "$$(id -u)" != 0 ]; then echo "tools: not root; run 'sudo make tools' (tests needing them will skip, or fail under CI=true)"; exit 0; fi; \
	if ! command -v apt-get >/dev/null; then echo "tools: no apt-get; install the packages by hand:$(TEST_PACKAGES)"; exit 0; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -qq && apt-get install -y -qq --no-install-recommends $(TEST_PACKAGES) </dev/null

race:
	$(GO) test -race -count=1 -timeout $(RACE_TIMEOUT) $(PKGS)

# Packages with `-tags invariants` assertions (STYLE rule 39), and the
# packages that import them, run again with the tag (without -race).
invariants:
	@tagged=$$(grep -rl --include='*.go' '^//go:build.*invariants' . | xargs -r -n1 dirname | sort -u | sed 's|^\.|$(shell $(GO) list -m)|'); \
	if [ -z "$$tagged" ]; then echo "invariants: no package uses the tag"; exit 0; fi; \
	pkgs=$$($(GO) list -f '{{.ImportPath}} {{join .Imports " "}}' $(PKGS) | \
		awk -v t="$$tagged" 'BEGIN{n=split(t,a," "); for(i=1;i<=n;i++) want[a[i]]=1} {for(i=1;i<=NF;i++) if(want[$$i]){print $$1; break}}'); \
	echo "invariants:" $$pkgs; \
	$(GO) test -count=1 -tags invariants $$pkgs

lint: fmt vet staticcheck

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi; echo "gofmt: clean"

vet:
	$(GO) vet $(PKGS)

staticcheck:
	$(GO) tool staticcheck $(PKGS)

# Runs every Fuzz target in the module for FUZZTIME on top of its seed
# corpus (testdata/fuzz); a failure leaves the crasher there. FUZZTIME is a
# count of inputs (10000x: 8 s for the slowest target here, under a
# second for the fastest), not a duration: with a duration, Go before 1.27
# can fail a target with a bare "context deadline exceeded" at the deadline
# and no crasher (golang/go#75804; FuzzHandshake in CI on 2026-12-04).
fuzz-smoke:
	@set -e; n=0; \
	for file in $$(grep -rl --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*([A-Za-z_]* \*testing.F)' . | sort); do \
		dir=$$(dirname $$file); \
		for f in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)([A-Za-z_]* \*testing.F).*/\1/p' $$file); do \
			echo "fuzz $$dir $$f ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$dir; \
			n=$$((n+1)); \
		done; \
	done; \
	echo "fuzz-smoke: $$n targets"

# The harness's pure parts (parsers, report, extent_bound.py): no servers.
bench-unit:
	python3 -m unittest discover -s bench/lib -p 'test_*.py'

bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) -count=1 $(PKGS)

# extentd against nbdkit, qemu-nbd and nbd-server with fio over NBD, interleaved
# (about 12-20 minutes; installs nothing). BENCH_ARGS="--quick" for a smoke run.
bench-servers:
	bench/run.sh $(BENCH_ARGS)

# The Go benchmarks summarised with benchstat (bench/gobench.sh).
bench-go:
	bench/gobench.sh $(BENCH_GO_ARGS)

clean:
	rm -rf bin
