// Package cheap measures the C heap, for tests that look for C leaks. It
// uses glibc's mallinfo2, so only tests import it: the library does not.
package cheap

/*
#include <malloc.h>
#include <stdint.h>

static int64_t mb_cheap_in_use(void) {
	struct mallinfo2 mi = mallinfo2();
	return (int64_t)(mi.uordblks + mi.hblkhd);
}
*/
import "C"

// Bytes is what glibc's malloc has handed out and not had back
// (mallinfo2: uordblks + hblkhd). It is exact only with malloc's
// per-thread caches off (GLIBC_TUNABLES=glibc.malloc.tcache_count=0):
// chunks cached there count as in use. Under -asan malloc is
// AddressSanitizer's and this reads 0.
func Bytes() int64 { return int64(C.mb_cheap_in_use()) }
