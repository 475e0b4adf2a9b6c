/*
** buf.c — malloc-owned growable byte buffers: the arguments, results and
** errors that cross between Go and the loop live in them.
**
** Layer 0 (base).
*/
#include <stdint.h>
#include <stdlib.h>

#include "buf.h"

void mb_buf_free(mb_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

int mb_buf_reserve(mb_buf *b, size_t extra) {
  size_t need, ncap;
  char *p;
  if (extra <= b->cap - b->len) return 0; /* the common case: room enough */
  if (extra > SIZE_MAX - b->len) return -1;
  need = b->len + extra;
  ncap = b->cap < 64 ? 64 : b->cap;
  while (ncap < need) { /* grow geometrically so appends are amortized O(1) */
    if (ncap > SIZE_MAX / 2) {
      ncap = need;
      break;
    }
    ncap *= 2;
  }
  p = (char *)realloc(b->data, ncap);
  if (p == NULL) return -1;
  b->data = p;
  b->cap = ncap;
  return 0;
}
