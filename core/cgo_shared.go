//go:build moonbridge_shared

package core

// Lua 5.4 and libuv as the shared libraries pkg-config finds: for systems
// without the static archives cgo.go links (go build -tags
// moonbridge_shared).

/*
#cgo pkg-config: lua5.4 libuv
#cgo CFLAGS: -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE
*/
import "C"
