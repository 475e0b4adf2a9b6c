# moonbridge — build, test and demo. `make test` and `make demo` work on a
# fresh Debian machine: the C dependencies are installed when missing.

GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
DEPS := liblua5.4-dev libuv1-dev pkg-config gcc lua5.4
BIN := bin/moonbridge
# Tests build and run the examples with go: find the same one.
export PATH := $(patsubst %/,%,$(dir $(GO))):$(PATH)

.PHONY: all deps build test asan vet fmt-check demo bench clean

all: build

# Install the C libraries (Lua 5.4, libuv) and pkg-config when missing:
# with apt-get as root, otherwise print the command to run.
deps:
	@if pkg-config --exists lua5.4 libuv 2>/dev/null && command -v gcc lua5.4 >/dev/null; then exit 0; fi; \
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

test: deps fmt-check vet
	$(GO) test -race -count=1 ./...
	$(MAKE) --no-print-directory asan

# The C core under AddressSanitizer, with leak detection at exit: every
# allocation freed and every handle closed by Close.
asan: deps
	CGO_CFLAGS='-fsanitize=address -fno-omit-frame-pointer -O1 -g' CGO_LDFLAGS='-fsanitize=address' \
		$(GO) test -asan -count=1 ./core ./bridge

demo: build
	./$(BIN) demo

bench: deps
	cd bench && ./run.sh

clean:
	rm -rf bin
