/*
** buf.h — malloc-owned growable byte buffers.
**
** Layer 0 (base). The zero value {0} is an empty buffer; its owner frees
** it with mb_buf_free.
*/
#ifndef MB_BUF_H
#define MB_BUF_H

#include <stddef.h>
#include <string.h>

typedef struct mb_buf {
  char *data;
  size_t len, cap;
} mb_buf;

void mb_buf_free(mb_buf *b);
int mb_buf_reserve(mb_buf *b, size_t extra); /* 0, or -1: out of memory */

/* Replace the contents by len bytes of data; the space is reused when it
** is big enough, so a record's buffer carries results without allocating.
** 0, or -1 (then empty). Inline: it is on every call's completion path. */
static inline int mb_buf_set(mb_buf *b, const char *data, size_t len) {
  b->len = 0;
  if (len == 0) return 0;
  if (mb_buf_reserve(b, len) != 0) return -1;
  memcpy(b->data, data, len);
  b->len = len;
  return 0;
}

#endif
