// Package core is the cgo seam of moonbridge: it builds the C core (a libuv
// event loop scheduling Lua 5.4 coroutines) and exposes it to the Go API in
// package bridge. Nothing outside this module should import it.
//
// Lua 5.4 and libuv are linked statically by default (cgo.go), from
// Debian's liblua5.4.a and libuv_a.a: a program built with moonbridge runs
// on a machine where neither library is installed. Build with
// -tags moonbridge_shared to link the shared libraries found by pkg-config
// instead (cgo_shared.go), where the static archives are missing.
package core
