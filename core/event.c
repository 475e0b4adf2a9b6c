/*
** event.c — the events of a step, for the Go driver.
**
** Layer 0 (base). Every event belongs to a bridge call in flight: it
** starts (MB_EV_CALL), is cancelled or freed (once each), or a stream has
** room again (MB_EV_CREDIT, at most once a step: a second one in the same
** step would land in the same one-slot Go channel). So a step adds at most
** MB_EVENT_PER_CALL events per call alive in it, plus one per call started
** in it. A call reserves its share when it starts, the one point where a
** failing allocation can still be reported (to the calling task); after
** that, mb_event_push cannot fail, and no cancellation, free or credit is
** ever lost.
*/
#include <stdlib.h>

#include "event.h"
#include "mb.h"

/* Grow the array to hold need events (mb_event_reserve's slow path). */
int mb_event_grow(mb_events *e, int need) {
  mb_event *v;
  int cap = e->cap ? e->cap : 64;
  while (cap < need) cap *= 2;
  v = realloc(e->v, (size_t)cap * sizeof *v);
  if (v == NULL) return -1;
  e->v = v;
  e->cap = cap;
  return 0;
}

void mb_event_free(mb_events *e) {
  free(e->v);
  e->v = NULL;
  e->n = e->cap = 0;
}
