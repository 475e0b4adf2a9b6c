// Package core is the cgo seam of moonbridge: it builds the C core (a libuv
// event loop scheduling Lua 5.4 coroutines) and exposes it to the Go API in
// package bridge. Nothing outside this module should import it.
package core

/*
#cgo pkg-config: lua5.4 libuv
#cgo CFLAGS: -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE
*/
import "C"
