/*
** heap.c — a size-class heap for Lua's small blocks (see heap.h).
**
** Layer 0 (base). A class's pages with a block to give are on its avail
** list, the one to use first at the front: a page that had none and just
** got one back goes there, so allocation fills nearly full pages again and
** leaves sparse ones (at the back) to empty out and go back to malloc.
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

void mb_heap_init(mb_heap *h) {
  for (int i = 0; i < MB_HEAP_NCLASS; i++) {
    mb_list_init(&h->cls[i].avail);
    mb_list_init(&h->cls[i].full);
  }
  h->spare = NULL;
  h->pages = 0;
}

#if defined(MB_HEAP_OFF)

/* Every block from malloc, so that AddressSanitizer sees each one. */
void *mb_heap_realloc(mb_heap *h, void *ptr, size_t osize, size_t nsize) {
  (void)h;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

void mb_heap_close(mb_heap *h) { (void)h; }

#else

/* The class of a block of n bytes, 1 <= n <= MB_HEAP_MAX. */
static inline unsigned mb_heap_class_of(size_t n) {
  return (unsigned)((n - 1) / MB_HEAP_STEP);
}

/* The page a block lies in: pages are aligned on their size. */
static inline mb_heap_page *mb_heap_page_of(void *p) {
  return (mb_heap_page *)((uintptr_t)p & ~(uintptr_t)(MB_HEAP_PAGE - 1));
}

/* A fresh page for class c, at the front of its avail list: the spare if
** there is one, else from malloc. NULL when malloc fails. */
static mb_heap_page *mb_heap_page_new(mb_heap *h, unsigned c) {
  mb_heap_page *pg = h->spare;
  if (pg != NULL) {
    h->spare = NULL;
  } else {
    pg = aligned_alloc(MB_HEAP_PAGE, MB_HEAP_PAGE);
    if (pg == NULL) return NULL;
    h->pages++;
  }
  pg->free = NULL;
  pg->bump = (char *)pg + MB_HEAP_HDR;
  pg->end = (char *)pg + MB_HEAP_PAGE;
  pg->used = 0;
  pg->cls = c;
  mb_list_init(&pg->link);
  mb_list_push(h->cls[c].avail.next, &pg->link); /* before the first: the front */
  return pg;
}

/* A page's last block came back: keep it as the spare, or give it back,
** so memory Lua frees leaves the process as it would with malloc. */
static void mb_heap_page_drop(mb_heap *h, mb_heap_page *pg) {
  mb_list_remove(&pg->link);
  if (h->spare == NULL) {
    h->spare = pg;
    return;
  }
  h->pages--;
  free(pg);
}

/* A block of class c: from the first page with one, a new page if none.
** The page it fills up moves to the full list. */
static void *mb_heap_alloc(mb_heap *h, unsigned c) {
  size_t size = (size_t)(c + 1) * MB_HEAP_STEP;
  mb_heap_class *k = &h->cls[c];
  mb_heap_page *pg;
  void *b;
  if (mb_list_empty(&k->avail)) {
    pg = mb_heap_page_new(h, c);
    if (pg == NULL) return NULL;
  } else {
    pg = mb_container_of(k->avail.next, mb_heap_page, link);
  }
  if (pg->free != NULL) {
    b = pg->free;
    pg->free = *(void **)b;
  } else {
    b = pg->bump;
    pg->bump += size;
  }
  pg->used++;
  if (pg->free == NULL && (size_t)(pg->end - pg->bump) < size) { /* full now */
    mb_list_remove(&pg->link);
    mb_list_push(&k->full, &pg->link);
  }
  return b;
}

/* Put block b back on its page. A full page gets to the front of the avail
** list; an empty one goes (mb_heap_page_drop). */
static void mb_heap_free(mb_heap *h, void *b) {
  mb_heap_page *pg = mb_heap_page_of(b);
  int was_full = pg->free == NULL &&
                 (size_t)(pg->end - pg->bump) < (size_t)(pg->cls + 1) * MB_HEAP_STEP;
  *(void **)b = pg->free;
  pg->free = b;
  if (--pg->used == 0) {
    mb_heap_page_drop(h, pg);
  } else if (was_full) {
    mb_list_remove(&pg->link);
    mb_list_push(h->cls[pg->cls].avail.next, &pg->link);
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

void *mb_heap_realloc(mb_heap *h, void *ptr, size_t osize, size_t nsize) {
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
}

/* Free every page of list l. */
static void mb_heap_free_list(mb_heap *h, mb_link *l) {
  mb_link *n, *next;
  mb_list_foreach_safe(n, next, l) {
    mb_list_remove(n);
    free(mb_container_of(n, mb_heap_page, link));
    h->pages--;
  }
}

void mb_heap_close(mb_heap *h) {
  for (int i = 0; i < MB_HEAP_NCLASS; i++) {
    mb_heap_free_list(h, &h->cls[i].avail);
    mb_heap_free_list(h, &h->cls[i].full);
  }
  if (h->spare != NULL) {
    free(h->spare);
    h->spare = NULL;
    h->pages--;
  }
  mb_assert(h->pages == 0, "a heap page on no list");
}

#endif
