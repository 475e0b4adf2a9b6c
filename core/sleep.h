/*
** sleep.h — sleepers: a binary min-heap by deadline and one libuv timer
** armed at the earliest, instead of a timer handle per sleeper.
**
** Layer 0 (base). A sleeper is embedded in what sleeps (a task); the heap
** knows nothing else of it. Deadlines are in loop time (milliseconds).
*/
#ifndef MB_SLEEP_H
#define MB_SLEEP_H

#include <stdint.h>

#include <lua.h>
#include <uv.h>

typedef struct mb_sleeper {
  uint64_t deadline; /* loop time (ms) to wake */
  uint32_t seq;      /* ties between equal deadlines go in arrival order */
  int idx;           /* in the heap, or -1 */
} mb_sleeper;

typedef struct mb_sleepers {
  mb_sleeper **heap;
  int n, cap;
  uint32_t seq;      /* sleepers added so far (wraps; compared serially) */
  uv_timer_t timer;  /* armed at heap[0]'s deadline */
  uv_timer_cb cb;    /* the timer's callback: wakes the due sleepers */
} mb_sleepers;

/* init returns 0 or a libuv error; cb runs when the earliest is due. */
int mb_sleep_init(mb_sleepers *s, uv_loop_t *loop, uv_timer_cb cb, void *data);
void mb_sleep_close(mb_sleepers *s); /* closes the timer: before uv_loop_close */
void mb_sleep_free(mb_sleepers *s);  /* frees the heap: after the timer closed */

static inline void mb_sleeper_init(mb_sleeper *x) { x->idx = -1; }
static inline int mb_sleep_empty(const mb_sleepers *s) { return s->n == 0; }

int mb_sleep_add(mb_sleepers *s, mb_sleeper *x); /* 0, or -1: out of memory */
void mb_sleep_remove(mb_sleepers *s, mb_sleeper *x);
mb_sleeper *mb_sleep_pop_due(mb_sleepers *s, uint64_t now);

/* Seconds (argument i of L) to a deadline in loop time, rounded up. */
uint64_t mb_sleep_deadline(lua_State *L, int i, uv_loop_t *loop);

#endif
