/*
** event.h — events handed to the Go driver when a step returns.
**
** Layer 0 (base). The loop appends; Go reads rt->ev.v[0..n-1] after the
** step. Pushing never fails: room is reserved when a call starts (see
** event.c), where running out of memory can still be reported.
*/
#ifndef MB_EVENT_H
#define MB_EVENT_H

#include "mb.h"

enum {
  MB_EV_CALL = 1, /* ptr: mb_call* (or mb_stream*) to start in a goroutine */
  MB_EV_CANCEL,   /* slot; or, before Go assigned one, ptr: the mb_call */
  MB_EV_FREE,     /* slot: the call is finished and its record gone */
  MB_EV_CREDIT    /* slot: a stream has room again */
};

typedef struct mb_event {
  int kind;
  int slot;
  void *ptr;
} mb_event;

typedef struct mb_events {
  mb_event *v;
  int n, cap;
} mb_events;

/* The most events one call may add in one step after it started:
** MB_EV_CANCEL and MB_EV_FREE once in its life, MB_EV_CREDIT once a step. */
#define MB_EVENT_PER_CALL 3

int mb_event_grow(mb_events *e, int need); /* 0, or -1: out of memory */
void mb_event_free(mb_events *e);

/* Room for one more event now and MB_EVENT_PER_CALL for each of calls
** (the calls in flight, counting the one starting). 0, or -1. */
static inline int mb_event_reserve(mb_events *e, int calls) {
  int need = e->n + 1 + MB_EVENT_PER_CALL * calls;
  return need <= e->cap ? 0 : mb_event_grow(e, need);
}

static inline void mb_event_push(mb_events *e, int kind, int slot, void *ptr) {
  mb_assert(e->n < e->cap, "an event without reserved room");
  e->v[e->n].kind = kind;
  e->v[e->n].slot = slot;
  e->v[e->n].ptr = ptr;
  e->n++;
}

#endif
