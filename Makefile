# moonbridge — build, test and demo. `make test` and `make demo` work on a
# fresh Debian machine: the C dependencies are installed when missing.

GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
DEPS := liblua5.4-dev libuv1-dev pkg-config gcc lua5.4
BIN := bin/moonbridge
# Tests build and run the examples with go: find the same one.
export PATH := $(patsubst %/,%,$(dir $(GO))):$(PATH)

.PHONY: all deps build test check asan vet fmt-check fuzz demo bench clean

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

fmt-check:
	@out=$$($(GO)fmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet: deps
	$(GO) vet ./...

# The README's test command, and CI's: formatting, vet, every test under the
# race detector, the C core under AddressSanitizer with leak detection, and
# a short run of every fuzz target.
test: deps fmt-check vet
	$(GO) test -race -count=1 ./...
	$(MAKE) --no-print-directory asan
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(TEST_FUZZTIME)

TEST_FUZZTIME ?= 3s

# check is test by another name (make check is what C projects run).
check: test

# The C core under AddressSanitizer, with leak detection at exit: every
# allocation freed and every handle closed by Close.
asan: deps
	CGO_CFLAGS='-fsanitize=address -fno-omit-frame-pointer -O1 -g -DMB_DEBUG' CGO_LDFLAGS='-fsanitize=address' \
		$(GO) test -asan -count=1 ./core ./bridge

# Run every fuzz target for FUZZTIME (go test -fuzz takes one target per
# run). A failing input is written to the package's testdata/fuzz/NAME/,
# where plain go test runs it from then on: keep it as a regression test.
# Long runs: make fuzz FUZZTIME=10m; the C codec under AddressSanitizer:
# make fuzz FUZZFLAGS=-asan CGO_CFLAGS='-fsanitize=address -g' CGO_LDFLAGS=-fsanitize=address.
# -fuzzminimizetime keeps short runs from spending themselves minimizing.
FUZZTIME ?= 10s
FUZZFLAGS ?=
FUZZ = bash .ci/fuzz-target $(GO) test $(FUZZFLAGS) -fuzzminimizetime 3s -run '^$$' -fuzztime $(FUZZTIME)

fuzz: deps
	$(FUZZ) -fuzz '^FuzzDecode$$' ./core
	$(FUZZ) -fuzz '^FuzzRoundTrip$$' ./core
	$(FUZZ) -fuzz '^FuzzDecodeMessage$$' ./core
	$(FUZZ) -fuzz '^FuzzCodecRoundTrip$$' ./core
	$(FUZZ) -fuzz '^FuzzCodecDecodeC$$' ./core
	$(FUZZ) -fuzz '^FuzzStrlib$$' ./core
	$(FUZZ) -fuzz '^FuzzCallArgs$$' ./bridge
	$(FUZZ) -fuzz '^FuzzJSONDecode$$' ./bridge
	$(FUZZ) -fuzz '^FuzzSSEReader$$' ./bridge/llm
	$(FUZZ) -fuzz '^FuzzNDJSONReader$$' ./bridge/llm
	$(FUZZ) -fuzz '^FuzzOllamaStream$$' ./bridge/llm
	$(FUZZ) -fuzz '^FuzzOpenAIStream$$' ./bridge/llm
	$(FUZZ) -fuzz '^FuzzToolCallAssembly$$' ./bridge/llm

demo: build
	./$(BIN) demo

bench: deps
	cd bench && ./run.sh

clean:
	rm -rf bin
