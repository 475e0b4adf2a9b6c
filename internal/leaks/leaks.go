// Package leaks counts what freed Runtimes left behind, for the tests that
// look for leaks: bytes that Lua's allocator still counted after lua_close,
// and event loops that still had libuv handles open when closed. Both stay
// zero unless the C core has a bug. core records into it; tests read it.
package leaks

import "sync/atomic"

var luaBytes, loops atomic.Int64

// Record adds what one freed Runtime left behind.
func Record(lua, openLoops int64) {
	if lua != 0 {
		luaBytes.Add(lua)
	}
	if openLoops != 0 {
		loops.Add(openLoops)
	}
}

// Counts reports the totals so far: Lua bytes, and loops with handles open.
func Counts() (lua, openLoops int64) {
	return luaBytes.Load(), loops.Load()
}
