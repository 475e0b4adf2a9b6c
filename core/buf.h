/*
** buf.h — malloc-owned growable byte buffers.
**
** Layer 0 (base). The zero value {0} is an empty buffer; its owner frees
** it with mb_buf_free.
*/
#ifndef MB_BUF_H
#define MB_BUF_H

#include <stddef.h>

typedef struct mb_buf {
  char *data;
  size_t len, cap;
} mb_buf;

void mb_buf_free(mb_buf *b);
int mb_buf_reserve(mb_buf *b, size_t extra); /* 0, or -1: out of memory */
int mb_buf_set(mb_buf *b, const char *data, size_t len); /* 0, or -1 (then empty) */

#endif
