/*
** mb.c — the one function behind mb_assert.
**
** Layer 0 (base). Compiled always, used with -DMB_DEBUG only.
*/
#include <stdio.h>
#include <stdlib.h>

#include "mb.h"

#if defined(MB_DEBUG)
void mb_assert_fail(const char *cond, const char *msg, const char *file, int line) {
  fprintf(stderr, "moonbridge: %s:%d: invariant broken: %s (%s)\n", file, line, msg, cond);
  abort();
}
#endif
