# moonbridge — build, test and demo. `make test` and `make demo` work on a
# fresh Debian machine: the C dependencies are installed when missing.

GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
DEPS := liblua5.4-dev libuv1-dev pkg-config gcc lua5.4
BIN := bin/moonbridge
# Tests build and run the examples with go: find the same one.
export PATH := $(patsubst %/,%,$(dir $(GO))):$(PATH)

.PHONY: all deps build test check asan lua-asan vet fmt-check bench-check fuzz fuzz-asan demo bench clean mutate

all: build

# Install the C libraries (Lua 5.4, libuv) and pkg-config when missing:
# with apt-get as root, otherwise print the command to run. core/cgo.go
# links their static archives (liblua5.4.a, libuv_a.a: the -dev packages
# ship them), so the programs built need neither library installed.
deps:
	@if pkg-config --exists lua5.4 libuv 2>/dev/null && command -v gcc lua5.4 >/dev/null && \
		[ "$$(gcc -print-file-name=liblua5.4.a)" != liblua5.4.a ] && \
		[ "$$(gcc -print-file-name=libuv_a.a)" != libuv_a.a ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing $(DEPS)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEPS) >/dev/null || exit 1; \
	else \
		echo "moonbridge needs $(DEPS); install them with:"; \
		echo "  sudo apt-get update && sudo apt-get install -y $(DEPS)"; \
		exit 1; \
	fi
	@test -x "$(GO)" || { echo "go not found: install Go 1.26+ or set GO=/path/to/go"; exit 1; }

build: deps
	$(GO) build -o $(BIN) ./cmd/moonbridge

# gofmt's own failure (a file it cannot parse) fails too, not only its list.
fmt-check:
	@out=$$($(GO)fmt -l .) || { echo "gofmt failed"; exit 1; }; \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet: deps
	$(GO) vet ./...

# The README's test command, and CI's: formatting, vet, every test under the
# race detector, bench/ (its own module) vetted and built, the C core under
# AddressSanitizer with leak detection, and a short run of every fuzz
# target, the C decoders' also under AddressSanitizer.
test: deps fmt-check vet bench-check
	$(GO) test -race -count=1 ./...
	$(MAKE) --no-print-directory asan
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(TEST_FUZZTIME)
	$(MAKE) --no-print-directory fuzz-asan FUZZTIME=$(TEST_FUZZTIME)

# A count of executions, not a duration: no deadline, so no Go 1.26
# coordinator race (see .ci/fuzz-target); a few seconds a target here.
TEST_FUZZTIME ?= 5000x

# bench/ is a module of its own, which ./... does not reach: vet it and
# compile its benchmarks (-run '^$$' runs none of them).
bench-check: deps
	cd bench && $(GO) vet ./... && $(GO) test -count=1 -run '^$$' ./...

# check is test by another name (make check is what C projects run).
check: test

# The C core under AddressSanitizer, with leak detection at exit: every
# allocation freed and every handle closed by Close. Lua itself is built
# instrumented too, with its API checks on (.ci/lua-asan: Debian's source
# of the installed version, fetched through apt into build/): Debian's
# liblua5.4.a is not instrumented, and a push past a Lua stack's room
# happens inside it. Without the source package (no registry reachable),
# asan still runs, against Debian's Lua, and says so; under CI that fails.
ASAN_CFLAGS = -fsanitize=address -fno-omit-frame-pointer -O1 -g -DMB_DEBUG
LUA_ASAN := $(CURDIR)/build/lua-asan
ASAN_LDFLAGS = -fsanitize=address $$(test -f $(LUA_ASAN)/liblua5.4.a && echo -L$(LUA_ASAN))
asan: deps lua-asan
	CGO_CFLAGS='$(ASAN_CFLAGS)' CGO_LDFLAGS="$(ASAN_LDFLAGS)" \
		$(GO) test -asan -count=1 ./core ./bridge

lua-asan: deps
	@bash .ci/lua-asan $(LUA_ASAN) >/dev/null || { \
		rm -f $(LUA_ASAN)/liblua5.4.a; \
		echo "lua-asan: no instrumented Lua: asan runs against Debian's liblua5.4.a," \
			"blind to overflows inside Lua's API calls"; \
		[ "$$CI" != true ]; }

# Run every fuzz target (go test -fuzz takes one target per run) through
# .ci/fuzz-target: its seed corpus as a plain test first, then FUZZTIME of
# fuzzing, no retry. A failing input is written to the package's
# testdata/fuzz/NAME/, where plain go test runs it from then on: keep it as
# a regression test. Long runs: make fuzz FUZZTIME=10m (a duration may end
# in Go 1.26's coordinator race, see .ci/fuzz-target; a count such as
# FUZZTIME=2000000x cannot). -fuzzminimizetime keeps runs from spending
# themselves minimizing.
FUZZTIME ?= 10s
FUZZFLAGS ?=
FUZZ = bash .ci/fuzz-target $(GO)
FUZZARGS = $(FUZZTIME) $(FUZZFLAGS) -fuzzminimizetime 3s

fuzz: deps
	$(FUZZ) ./core FuzzDecode $(FUZZARGS)
	$(FUZZ) ./core FuzzRoundTrip $(FUZZARGS)
	$(FUZZ) ./core FuzzDecodeMessage $(FUZZARGS)
	$(FUZZ) ./core FuzzCodecRoundTrip $(FUZZARGS)
	$(FUZZ) ./core FuzzCodecDecodeC $(FUZZARGS)
	$(FUZZ) ./core FuzzStrlib $(FUZZARGS)
	$(FUZZ) ./bridge FuzzCallArgs $(FUZZARGS)
	$(FUZZ) ./bridge FuzzJSONDecode $(FUZZARGS)
	$(FUZZ) ./bridge FuzzHostile $(FUZZARGS)
	$(FUZZ) ./bridge/llm FuzzSSEReader $(FUZZARGS)
	$(FUZZ) ./bridge/llm FuzzNDJSONReader $(FUZZARGS)
	$(FUZZ) ./bridge/llm FuzzOllamaStream $(FUZZARGS)
	$(FUZZ) ./bridge/llm FuzzOpenAIStream $(FUZZARGS)
	$(FUZZ) ./bridge/llm FuzzToolCallAssembly $(FUZZARGS)

# The C decoders' fuzz targets under AddressSanitizer: the value codec
# reads its input from an exact-size C allocation, and json.decode from a
# Lua string (malloc'd by Lua's allocator, with only its terminating zero
# past the text), so a read past either is caught.
fuzz-asan: deps lua-asan
	CGO_CFLAGS='$(ASAN_CFLAGS)' CGO_LDFLAGS="$(ASAN_LDFLAGS)" \
		$(FUZZ) ./core FuzzCodecDecodeC $(FUZZARGS) -asan
	CGO_CFLAGS='$(ASAN_CFLAGS)' CGO_LDFLAGS="$(ASAN_LDFLAGS)" \
		$(FUZZ) ./bridge FuzzJSONDecode $(FUZZARGS) -asan

demo: build
	./$(BIN) demo

# Plant each bug of mutations/ in turn and run the test the README's
# Guarantees table names for it: every one must be caught. Not part of
# make test (it rebuilds the module once per mutation).
mutate: deps
	$(GO) run ./internal/mutate

bench: deps
	cd bench && ./run.sh

clean:
	rm -rf bin build
