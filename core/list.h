/*
** list.h — intrusive doubly linked lists (libuv's queue.h shape).
**
** Layer 0 (base). A head is a link pointing at itself when empty; an
** unlinked node also points at itself, so removing twice is harmless. A
** record is found from its link with mb_container_of.
*/
#ifndef MB_LIST_H
#define MB_LIST_H

#include "mb.h"

typedef struct mb_link {
  struct mb_link *next, *prev;
} mb_link;

static inline void mb_list_init(mb_link *h) { h->next = h->prev = h; }
static inline int mb_list_empty(const mb_link *h) { return h->next == h; }

/* Append n at the end of h. */
static inline void mb_list_push(mb_link *h, mb_link *n) {
  n->prev = h->prev;
  n->next = h;
  h->prev->next = n;
  h->prev = n;
}

static inline void mb_list_remove(mb_link *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->next = n->prev = n;
}

/* Move every node of h, in order, to the empty head n; h is left empty. */
static inline void mb_list_move(mb_link *h, mb_link *n) {
  mb_assert(mb_list_empty(n), "moving a list onto a non-empty head");
  if (mb_list_empty(h)) return;
  n->next = h->next;
  n->prev = h->prev;
  n->next->prev = n;
  n->prev->next = n;
  mb_list_init(h);
}

/* The record holding the first node of the non-empty list h. */
#define mb_list_first(h, T, m) mb_container_of((h)->next, T, m)

/* Visit each node l of h. The body must not unlink l (see _safe). */
#define mb_list_foreach(l, h) for ((l) = (h)->next; (l) != (h); (l) = (l)->next)

/* Visit each node l of h; the body may unlink l (n is the next one). */
#define mb_list_foreach_safe(l, n, h) \
  for ((l) = (h)->next, (n) = (l)->next; (l) != (h); (l) = (n), (n) = (l)->next)

#endif
