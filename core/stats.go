package core

/*
#include <malloc.h>
#include "mb.h"

static int64_t mb_c_heap_in_use(void) {
	struct mallinfo2 mi = mallinfo2();
	return (int64_t)(mi.uordblks + mi.hblkhd);
}
static int64_t mb_leaks_lua(void) { return __atomic_load_n(&mb_leaked_lua_bytes, __ATOMIC_RELAXED); }
static int64_t mb_leaks_loops(void) { return __atomic_load_n(&mb_leaked_loops, __ATOMIC_RELAXED); }
*/
import "C"

// Leaks reports what the Runtimes freed so far left behind: bytes that
// Lua's allocator still counted after lua_close, and event loops that
// still had libuv handles open when closed. Both are zero unless the C
// core has a bug; the soak and fault tests check them.
func Leaks() (luaBytes, loops int64) {
	return int64(C.mb_leaks_lua()), int64(C.mb_leaks_loops())
}

// CHeapBytes is what glibc's malloc has handed out and not had back
// (mallinfo2: uordblks + hblkhd), for tests that look for C leaks. It is
// exact only with malloc's per-thread caches off
// (GLIBC_TUNABLES=glibc.malloc.tcache_count=0): chunks cached there count
// as in use. Under -asan malloc is AddressSanitizer's and this reads 0.
func CHeapBytes() int64 { return int64(C.mb_c_heap_in_use()) }
