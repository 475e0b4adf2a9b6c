/*
** heap.c — a size-class heap for Lua's small blocks (see heap.h).
**
** Layer 0 (base). A class's pages with a block to give are in a min-heap
** by address, and blocks come from the lowest: allocation fills the low
** pages again and leaves the high ones to empty out and go back to malloc.
** A block is either free in its page (on the page's list, or above its
** bump pointer) or Lua's; which page and class is known from its address
** and the size Lua passes, so blocks carry nothing of their own.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"

/* Where a page's blocks start: past its header, aligned as malloc's. */
#define MB_HEAP_HDR ((sizeof(mb_heap_page) + 15) & ~(size_t)15)

/* The bytes a page takes from malloc: its size less glibc's chunk header
** (two size_t before each block), so that pages malloc lays end to end
** stay aligned, without the gap of almost a page that a whole page's size
** leaves before each (free for malloc's other blocks, but in the RSS). */
#define MB_HEAP_TAKE (MB_HEAP_PAGE - 2 * sizeof(size_t))

void mb_heap_init(mb_heap *h) {
  memset(h->cls, 0, sizeof h->cls);
  mb_list_init(&h->pages);
  h->spare = NULL;
  h->nspare = 0;
  h->npages = 0;
}

#if !defined(MB_HEAP_OFF)

/* The class of a block of n bytes, 1 <= n <= MB_HEAP_MAX. */
static inline unsigned mb_heap_class_of(size_t n) {
  return (unsigned)((n - 1) / MB_HEAP_STEP);
}

/* The page a block lies in: pages are aligned on their size. */
static inline mb_heap_page *mb_heap_page_of(void *p) {
  return (mb_heap_page *)((uintptr_t)p & ~(uintptr_t)(MB_HEAP_PAGE - 1));
}

/* ---------------------------------------------------------------------
** A class's nonfull pages: a binary min-heap by address.
** ------------------------------------------------------------------- */

static inline void mb_heap_set(mb_heap_class *k, unsigned i, mb_heap_page *pg) {
  k->nonfull[i] = pg;
  pg->at = i;
}

/* Move the page at i up to its place. */
static void mb_heap_up(mb_heap_class *k, unsigned i) {
  mb_heap_page *pg = k->nonfull[i];
  while (i > 0) {
    unsigned up = (i - 1) / 2;
    if ((uintptr_t)k->nonfull[up] < (uintptr_t)pg) break;
    mb_heap_set(k, i, k->nonfull[up]);
    i = up;
  }
  mb_heap_set(k, i, pg);
}

/* Move the page at i down to its place. */
static void mb_heap_down(mb_heap_class *k, unsigned i) {
  mb_heap_page *pg = k->nonfull[i];
  for (;;) {
    unsigned c = 2 * i + 1;
    if (c >= k->n) break;
    if (c + 1 < k->n && (uintptr_t)k->nonfull[c + 1] < (uintptr_t)k->nonfull[c]) c++;
    if ((uintptr_t)pg < (uintptr_t)k->nonfull[c]) break;
    mb_heap_set(k, i, k->nonfull[c]);
    i = c;
  }
  mb_heap_set(k, i, pg);
}

/* Add pg: never allocates (cap covers every page of the class). */
static void mb_heap_insert(mb_heap_class *k, mb_heap_page *pg) {
  mb_assert(k->n < k->cap, "a class's nonfull heap without room");
  k->nonfull[k->n] = pg;
  mb_heap_up(k, k->n++);
}

/* Take out the page at i. */
static void mb_heap_remove(mb_heap_class *k, unsigned i) {
  mb_heap_page *last = k->nonfull[--k->n];
  if (i == k->n) return;
  mb_heap_set(k, i, last);
  if (i > 0 && (uintptr_t)last < (uintptr_t)k->nonfull[(i - 1) / 2])
    mb_heap_up(k, i);
  else
    mb_heap_down(k, i);
}

/* ---------------------------------------------------------------------
** Pages.
** ------------------------------------------------------------------- */

/* A fresh page for class c, in its nonfull heap: a spare if there is
** one, else from malloc. NULL when malloc fails. */
static mb_heap_page *mb_heap_page_new(mb_heap *h, unsigned c) {
  mb_heap_class *k = &h->cls[c];
  mb_heap_page *pg;
  if (k->npages == k->cap) { /* room first: mb_heap_insert must not fail */
    unsigned cap = k->cap < 8 ? 8 : 2 * k->cap;
    mb_heap_page **a = realloc(k->nonfull, cap * sizeof *a);
    if (a == NULL) return NULL;
    k->nonfull = a;
    k->cap = cap;
  }
  pg = h->spare;
  if (pg != NULL) {
    h->spare = (mb_heap_page *)pg->free;
    h->nspare--;
  } else {
    void *p;
    if (posix_memalign(&p, MB_HEAP_PAGE, MB_HEAP_TAKE) != 0) return NULL;
    pg = p;
    h->npages++;
  }
  pg->free = NULL;
  pg->bump = (char *)pg + MB_HEAP_HDR;
  pg->end = (char *)pg + MB_HEAP_TAKE;
  pg->used = 0;
  pg->cls = c;
  mb_list_push(&h->pages, &pg->link);
  k->npages++;
  mb_heap_insert(k, pg);
  return pg;
}

/* A page's last block came back (it is out of its nonfull heap): keep it
** as a spare (on their list through its free field), or give it back, so
** memory Lua frees leaves the process as it would with malloc. */
static void mb_heap_page_drop(mb_heap *h, mb_heap_page *pg) {
  mb_list_remove(&pg->link);
  h->cls[pg->cls].npages--;
  if (h->nspare < MB_HEAP_SPARES) {
    pg->free = h->spare;
    h->spare = pg;
    h->nspare++;
    return;
  }
  h->npages--;
  free(pg);
}

/* Whether pg has no block to give. */
static inline int mb_heap_page_full(const mb_heap_page *pg) {
  return pg->free == NULL &&
         (size_t)(pg->end - pg->bump) < (size_t)(pg->cls + 1) * MB_HEAP_STEP;
}

/* A block of class c: from the lowest page with one, a new page if none.
** A page it fills up leaves the nonfull heap. */
static void *mb_heap_alloc(mb_heap *h, unsigned c) {
  mb_heap_class *k = &h->cls[c];
  mb_heap_page *pg;
  void *b;
  if (k->n == 0) {
    pg = mb_heap_page_new(h, c);
    if (pg == NULL) return NULL;
  } else {
    pg = k->nonfull[0];
  }
  if (pg->free != NULL) {
    b = pg->free;
    pg->free = *(void **)b;
  } else {
    b = pg->bump;
    pg->bump += (size_t)(c + 1) * MB_HEAP_STEP;
  }
  pg->used++;
  if (mb_heap_page_full(pg)) mb_heap_remove(k, 0);
  return b;
}

/* Put block b back on its page. A full page goes back in the nonfull
** heap; an empty one goes (mb_heap_page_drop). */
static void mb_heap_free(mb_heap *h, void *b) {
  mb_heap_page *pg = mb_heap_page_of(b);
  mb_heap_class *k = &h->cls[pg->cls];
  int was_full = mb_heap_page_full(pg);
  *(void **)b = pg->free;
  pg->free = b;
  if (--pg->used == 0) { /* never full with one block: a page holds several */
    mb_heap_remove(k, pg->at);
    mb_heap_page_drop(h, pg);
  } else if (was_full) {
    mb_heap_insert(k, pg);
  }
}
/* A block of n > 0 bytes, from a page or from malloc. */
static inline void *mb_heap_get(mb_heap *h, size_t n) {
  return n <= MB_HEAP_MAX ? mb_heap_alloc(h, mb_heap_class_of(n)) : malloc(n);
}

/* Give back block p of n bytes, to its page or to malloc. */
static inline void mb_heap_put(mb_heap *h, void *p, size_t n) {
  if (n <= MB_HEAP_MAX)
    mb_heap_free(h, p);
  else
    free(p);
}

#endif

/* With MB_HEAP_OFF every block is malloc's, so that AddressSanitizer sees
** each one. */
void *mb_heap_realloc(mb_heap *h, void *ptr, size_t osize, size_t nsize) {
#if defined(MB_HEAP_OFF)
  (void)h;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
#else
  void *q;
  if (ptr == NULL) return nsize > 0 ? mb_heap_get(h, nsize) : NULL;
  if (nsize == 0) {
    mb_heap_put(h, ptr, osize);
    return NULL;
  }
  if (osize > MB_HEAP_MAX && nsize > MB_HEAP_MAX) return realloc(ptr, nsize);
  if (osize <= MB_HEAP_MAX && nsize <= MB_HEAP_MAX &&
      mb_heap_class_of(osize) == mb_heap_class_of(nsize))
    return ptr; /* it fits where it is */
  /* Between classes, or between a page and malloc: move it. */
  q = mb_heap_get(h, nsize);
  if (q == NULL) return NULL;
  memcpy(q, ptr, osize < nsize ? osize : nsize);
  mb_heap_put(h, ptr, osize);
  return q;
#endif
}

void mb_heap_close(mb_heap *h) {
  (void)h; /* without MB_DEBUG and with MB_HEAP_OFF, nothing reads it */
#if !defined(MB_HEAP_OFF)
  mb_link *n, *next;
  mb_list_foreach_safe(n, next, &h->pages) {
    mb_list_remove(n);
    free(mb_container_of(n, mb_heap_page, link));
    h->npages--;
  }
  while (h->spare != NULL) {
    mb_heap_page *pg = h->spare;
    h->spare = (mb_heap_page *)pg->free;
    free(pg);
    h->npages--;
  }
  h->nspare = 0;
  for (int i = 0; i < MB_HEAP_NCLASS; i++) {
    free(h->cls[i].nonfull);
    h->cls[i].nonfull = NULL;
    h->cls[i].n = h->cls[i].cap = h->cls[i].npages = 0;
  }
#endif
  mb_assert(h->npages == 0, "a heap page on no list");
}
