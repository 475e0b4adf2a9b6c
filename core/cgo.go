//go:build !moonbridge_shared

package core

// Lua 5.4 and libuv, linked statically: Debian's liblua5.4.a and
// libuv_a.a (from liblua5.4-dev and libuv1-dev). Their objects are
// position-independent, so they link into Go's default executables and
// into -buildmode=pie alike. -Wl,--export-dynamic puts the Lua API in the
// program's dynamic symbol table, as lua5.4 itself does (lua.c is linked
// with -Wl,-E): Lua C modules loaded with require (lua-cjson, lpeg) find
// lua_* there. A program so built needs neither library installed, and
// calls into Lua without the PLT: the same instructions for the VM, 7 %
// less CPU on fib(35) (bench/RESULTS.md, issue 18).

/*
#cgo CFLAGS: -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -I/usr/include/lua5.4
#cgo LDFLAGS: -l:liblua5.4.a -l:libuv_a.a -lm -ldl -lpthread -Wl,--export-dynamic
*/
import "C"
