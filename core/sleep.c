/*
** sleep.c — sleepers: one binary min-heap by deadline and one libuv timer
** armed at the earliest.
**
** Layer 0 (base). The heap holds mb_sleeper records embedded in whatever
** sleeps; waking them is the caller's business (the timer's callback and
** mb_sleep_pop_due), so this file knows nothing of tasks.
*/
#include <stdlib.h>

#include <lauxlib.h>

#include "mb.h"
#include "sleep.h"

int mb_sleep_init(mb_sleepers *s, uv_loop_t *loop, uv_timer_cb cb, void *data) {
  int rc = uv_timer_init(loop, &s->timer);
  if (rc != 0) return rc;
  s->timer.data = data;
  s->cb = cb;
  s->heap = NULL;
  s->n = s->cap = 0;
  s->seq = 0;
  return 0;
}

void mb_sleep_close(mb_sleepers *s) {
  uv_close((uv_handle_t *)&s->timer, NULL);
}

void mb_sleep_free(mb_sleepers *s) {
  free(s->heap);
  s->heap = NULL;
  s->n = s->cap = 0;
}

static void mb_sleep_set(mb_sleepers *s, int i, mb_sleeper *x) {
  s->heap[i] = x;
  x->idx = i;
}

/* Does a wake before b? Equal deadlines keep the order they were added. */
static int mb_sleep_before(const mb_sleeper *a, const mb_sleeper *b) {
  if (a->deadline != b->deadline) return a->deadline < b->deadline;
  return (int32_t)(a->seq - b->seq) < 0;
}

static void mb_sleep_up(mb_sleepers *s, int i) {
  mb_sleeper *x = s->heap[i];
  while (i > 0) {
    int p = (i - 1) / 2;
    if (!mb_sleep_before(x, s->heap[p])) break;
    mb_sleep_set(s, i, s->heap[p]);
    i = p;
  }
  mb_sleep_set(s, i, x);
}

static void mb_sleep_down(mb_sleepers *s, int i) {
  mb_sleeper *x = s->heap[i];
  for (;;) {
    int c = 2 * i + 1;
    if (c >= s->n) break;
    if (c + 1 < s->n && mb_sleep_before(s->heap[c + 1], s->heap[c])) c++;
    if (!mb_sleep_before(s->heap[c], x)) break;
    mb_sleep_set(s, i, s->heap[c]);
    i = c;
  }
  mb_sleep_set(s, i, x);
}

/* Arm the one timer at the earliest deadline, or stop it. */
static void mb_sleep_arm(mb_sleepers *s) {
  uint64_t now, when;
  if (s->n == 0) {
    uv_timer_stop(&s->timer);
    return;
  }
  now = uv_now(s->timer.loop);
  when = s->heap[0]->deadline;
  uv_timer_start(&s->timer, s->cb, when > now ? when - now : 0, 0);
}

int mb_sleep_add(mb_sleepers *s, mb_sleeper *x) {
  mb_assert(x->idx < 0, "a sleeper added twice");
  if (s->n == s->cap) {
    int cap = s->cap ? s->cap * 2 : 64;
    mb_sleeper **h = realloc(s->heap, (size_t)cap * sizeof *h);
    if (h == NULL) return -1;
    s->heap = h;
    s->cap = cap;
  }
  x->seq = s->seq++;
  s->heap[s->n] = x;
  x->idx = s->n++;
  mb_sleep_up(s, x->idx);
  mb_sleep_arm(s);
  return 0;
}

void mb_sleep_remove(mb_sleepers *s, mb_sleeper *x) {
  int i = x->idx;
  mb_sleeper *last;
  mb_assert(i >= 0 && i < s->n && s->heap[i] == x, "removing a sleeper not in the heap");
  last = s->heap[--s->n];
  if (i < s->n) {
    mb_sleep_set(s, i, last);
    mb_sleep_down(s, i);
    mb_sleep_up(s, last->idx);
  }
  x->idx = -1;
  mb_sleep_arm(s);
}

/* Take the earliest sleeper if its deadline is not after now, else NULL. */
mb_sleeper *mb_sleep_pop_due(mb_sleepers *s, uint64_t now) {
  mb_sleeper *x;
  if (s->n == 0 || s->heap[0]->deadline > now) return NULL;
  x = s->heap[0];
  mb_sleep_remove(s, x);
  return x;
}

/* Seconds (argument i) to a deadline in loop time, rounded up: never early. */
uint64_t mb_sleep_deadline(lua_State *L, int i, uv_loop_t *loop) {
  lua_Number secs = luaL_checknumber(L, i);
  if (!(secs >= 0)) luaL_argerror(L, i, "duration must be a non-negative number");
  if (secs > 1e12) secs = 1e12;
  uv_update_time(loop);
  return uv_now(loop) + (uint64_t)(secs * 1000.0 + 0.999999);
}
