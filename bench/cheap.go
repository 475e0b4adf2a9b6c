package bench

/*
#include <malloc.h>
static size_t c_heap_in_use(void) {
	struct mallinfo2 m = mallinfo2();
	return m.uordblks + m.hblkhd;
}
*/
import "C"

import (
	"os"
	"strconv"
	"strings"
)

// CHeapInUse is the C heap in use as glibc's allocator counts it: Lua's
// memory, the C core's records and libuv's, for moonbridge's side of the
// memory workloads. It is the bytes in use in every arena (uordblks) plus
// the blocks glibc mmaps on their own (hblkhd: allocations above the mmap
// threshold, 128 KiB and up, such as the array part of a large table).
func CHeapInUse() int64 { return int64(C.c_heap_in_use()) }

// RSSBytes is the process's resident set size (/proc/self/statm), or 0 where
// it cannot be read. Its delta over a batch of parked tasks counts every page
// they made resident: Go heap, C heap and stacks alike, plus whatever the
// allocators keep around.
func RSSBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}
