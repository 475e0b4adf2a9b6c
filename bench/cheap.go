package bench

/*
#include <malloc.h>
static size_t c_heap_in_use(void) { return mallinfo2().uordblks; }
*/
import "C"

// CHeapInUse is the C heap in use as glibc's allocator counts it: Lua's
// memory, the C core's records and libuv's, for moonbridge's side of the
// memory workloads.
func CHeapInUse() int64 { return int64(C.c_heap_in_use()) }
