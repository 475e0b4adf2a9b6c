/*
** heap.h — a size-class heap for Lua's small blocks, one per runtime.
**
** Layer 0 (base). Lua allocates most of its memory in blocks of a few
** dozen bytes (short strings, closures, table nodes) and tells the size of
** every block it frees or resizes, so the blocks need no header: blocks of
** one class are carved from a page of MB_HEAP_PAGE bytes aligned on its
** size, and a block finds its page's header by masking its address. A page
** whose last block is freed goes back to malloc (one spare is kept), so
** memory that Lua frees leaves the process's heap as with malloc itself;
** blocks come from a class's lowest page first, so that pages do empty.
**
** Single-threaded: only the thread that runs the runtime's Lua state (the
** loop, or Close's) calls in, as for the lua_State itself. Built with
** AddressSanitizer (or -DMB_HEAP_OFF) every block goes to malloc instead,
** so the sanitizer sees each one.
*/
#ifndef MB_HEAP_H
#define MB_HEAP_H

#include <stddef.h>

#include "list.h"

#if defined(__SANITIZE_ADDRESS__) && !defined(MB_HEAP_OFF)
#define MB_HEAP_OFF 1
#endif

#ifndef MB_HEAP_PAGE
#define MB_HEAP_PAGE ((size_t)4096) /* bytes a page, and its alignment */
#endif
#ifndef MB_HEAP_SPARES
#define MB_HEAP_SPARES 1 /* empty pages kept */
#endif
#define MB_HEAP_MAX 256              /* the largest block a page holds */
#define MB_HEAP_STEP 16              /* classes: 16, 32, ... MB_HEAP_MAX bytes */
#define MB_HEAP_NCLASS (MB_HEAP_MAX / MB_HEAP_STEP)

/* A page's header, at its start; its blocks follow. */
typedef struct mb_heap_page {
  mb_link link;      /* on the heap's list of every page */
  void *free;        /* blocks freed, each holding the next */
  char *bump;        /* blocks never handed out start here */
  char *end;
  unsigned used;     /* blocks handed out */
  unsigned cls;      /* its class: blocks of (cls + 1) * MB_HEAP_STEP bytes */
  unsigned at;       /* its index in its class's nonfull heap, while there */
} mb_heap_page;

/* A class's pages that have a block to give, in a binary min-heap by
** address: blocks come from the lowest page, so survivors gather at the
** low end and pages above empty out and go back to malloc (jemalloc picks
** its slabs so, against fragmentation). cap is at least the class's page
** count, so that a free, which may put a page back, never allocates. */
typedef struct mb_heap_class {
  mb_heap_page **nonfull;
  unsigned n, cap;
  unsigned npages; /* pages of this class, full or not */
} mb_heap_class;

typedef struct mb_heap {
  mb_heap_class cls[MB_HEAP_NCLASS];
  mb_link pages;       /* every page but the spares, for mb_heap_close */
  mb_heap_page *spare; /* empty pages kept for the next class that needs one */
  unsigned nspare;     /* at most MB_HEAP_SPARES */
  size_t npages;       /* pages from malloc, spares included */
} mb_heap;

void mb_heap_init(mb_heap *h);
void mb_heap_close(mb_heap *h); /* free every page, blocks in use or not */

/* Lua's allocator's work, with Lua's contract (lua_Alloc): ptr and osize
** as Lua passes them, nsize 0 frees. NULL when malloc fails; ptr is then
** untouched. */
void *mb_heap_realloc(mb_heap *h, void *ptr, size_t osize, size_t nsize);

#endif
