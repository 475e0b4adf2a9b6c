/*
** stream.c — Go streams: a Go function Lua iterates with a generic for,
** whose closing value cancels the Go side when the loop is left early.
**
** Layer 3 (objects). A stream is a call (call.c) whose goroutine emits
** chunks until it returns. They go through a ring (stream.h), not the
** completion queue: the iterator takes them where Go put them, and the
** loop hears of a chunk only when Lua waits for one (the doorbell). The
** window between the halves: Go may run MB_STREAM_WINDOW chunks ahead of
** Lua; past that it waits, and Lua, taking chunks, lets it go
** (MB_EV_CREDIT) once it is within half of it. Both halves of that
** protocol are here, with the counters they share.
*/
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "errors.h"
#include "stream.h"
#include "task.h"

#define MB_STREAM_MT "moonbridge.Stream"

/* ---------------------------------------------------------------------
** The producer half: Go's goroutine, any thread.
** ------------------------------------------------------------------- */

/* Is the producer a whole window ahead of Lua? */
static int mb_stream_full(mb_stream *s) {
  return __atomic_load_n(&s->produced, __ATOMIC_SEQ_CST) -
             __atomic_load_n(&s->consumed, __ATOMIC_SEQ_CST) >= MB_STREAM_WINDOW;
}

/* A chunk for len bytes: a recycled one if the producer has one that fits
** (taking the whole spare stack at once, so Lua's pushes never race a
** pop), else a new one. */
static mb_chunk *mb_stream_chunk_get(mb_stream *s, size_t len) {
  mb_chunk *ch;
  size_t cap;
  if (s->mine == NULL) s->mine = __atomic_exchange_n(&s->spare, NULL, __ATOMIC_ACQUIRE);
  ch = s->mine;
  if (ch != NULL && ch->cap >= len) {
    s->mine = ch->qnext;
    return ch;
  }
  cap = len < 64 ? 64 : len;
  ch = malloc(sizeof *ch + cap);
  if (ch != NULL) ch->cap = cap;
  return ch;
}

/* Put a chunk in the ring. Returns -1 when memory is exhausted (Go
** reports it as an error), else bits: MB_STREAM_WAKE (the caller must wake
** the driver), MB_STREAM_FULL (the window is full: call mb_stream_room
** before the next chunk). Publishing and then looking for a sleeping Lua
** pairs with mb_stream_sleep's store and look (both sequentially
** consistent): either Lua sees the chunk, or this sees Lua's flag, and
** the exchange lets exactly one side act on it. */
int mb_stream_emit(mb_rt *rt, mb_stream *s, const char *data, size_t len) {
  int64_t p = __atomic_load_n(&s->produced, __ATOMIC_RELAXED); /* only we write it */
  mb_chunk *ch;
  int rc = 0;
  mb_assert(!mb_stream_full(s), "emit into a full window");
  ch = mb_stream_chunk_get(s, len);
  if (ch == NULL) return -1;
  ch->len = len;
  ch->qnext = NULL;
  memcpy(ch->data, data, len);
  s->ring[p % MB_STREAM_WINDOW] = ch;
  __atomic_store_n(&s->produced, p + 1, __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&s->lua_sleeping, __ATOMIC_SEQ_CST) &&
      __atomic_exchange_n(&s->lua_sleeping, 0, __ATOMIC_SEQ_CST))
    rc = mb_queue_push(&rt->q, &s->bell) ? MB_STREAM_WAKE : 0;
  if (mb_stream_full(s)) rc |= MB_STREAM_FULL;
  return rc;
}

/* May the producer go on (1), or must it wait for MB_EV_CREDIT (0)? It
** says it waits, then looks again: Lua, taking a chunk, sees either the
** flag (and sends a credit: the exchange makes it exactly one) or the
** room this second look finds. A credit for room found anyway is stale,
** and harmless. */
int mb_stream_room(mb_stream *s) {
  if (!mb_stream_full(s)) return 1;
  __atomic_store_n(&s->go_waiting, 1, __ATOMIC_SEQ_CST);
  return !mb_stream_full(s);
}

/* The Go function returned: its error text, if any, rides the record. */
int mb_stream_end(mb_rt *rt, mb_stream *s, int status, const char *data, size_t len) {
  mb_call_store(&s->call, MB_MSG_END, status, data, len);
  return mb_queue_push(&rt->q, &s->call.msg);
}

/* ---------------------------------------------------------------------
** The consumer half: the loop.
** ------------------------------------------------------------------- */
static void mb_stream_chunk_free_list(mb_chunk *ch) {
  while (ch != NULL) {
    mb_chunk *next = ch->qnext;
    free(ch);
    ch = next;
  }
}

/* What is left in the ring once both halves let go. */
static void mb_stream_ring_free(mb_stream *s) {
  for (int i = 0; i < MB_STREAM_WINDOW; i++) {
    free(s->ring[i]);
    s->ring[i] = NULL;
  }
}

/* Hand a taken chunk back to the producer (see MB_STREAM_RECYCLE). Only
** the loop pushes and the producer only takes the whole stack: no ABA. */
static void mb_stream_chunk_recycle(mb_stream *s, mb_chunk *ch) {
  if (ch->cap > MB_STREAM_RECYCLE || s->ended) {
    free(ch);
    return;
  }
  ch->qnext = __atomic_load_n(&s->spare, __ATOMIC_RELAXED);
  while (!__atomic_compare_exchange_n(&s->spare, &ch->qnext, ch, 1, __ATOMIC_RELEASE,
                                      __ATOMIC_RELAXED)) {
  }
}

static void mb_stream_release(mb_stream *s) {
  if (--s->refs > 0) return;
  mb_stream_ring_free(s);
  mb_stream_chunk_free_list(s->decoding);
  mb_stream_chunk_free_list(s->spare);
  mb_stream_chunk_free_list(s->mine);
  mb_buf_free(&s->call.buf);
  free(s);
}

/* Lua took a chunk: let a blocked producer go once Lua is within half the
** window. The exchange makes sure exactly one credit is sent per block,
** and at most one a step goes out (all of them would reach Go after the
** step, into the same one-slot channel; event.c counts on it). */
static void mb_stream_took(mb_rt *rt, mb_stream *s) {
  int64_t consumed = __atomic_add_fetch(&s->consumed, 1, __ATOMIC_SEQ_CST);
  int64_t produced;
  if (s->ended || s->credit_step == rt->step) return;
  if (__atomic_load_n(&s->go_waiting, __ATOMIC_SEQ_CST) == 0) return;
  produced = __atomic_load_n(&s->produced, __ATOMIC_SEQ_CST);
  if (produced - consumed > MB_STREAM_WINDOW / 2) return;
  if (__atomic_exchange_n(&s->go_waiting, 0, __ATOMIC_SEQ_CST)) {
    s->credit_step = rt->step;
    s->credit_yield = 1;
    mb_event_push(&rt->ev, MB_EV_CREDIT, s->call.slot, NULL);
  }
}

/* The stream function's name, for messages: the iterator's second upvalue,
** read only on the paths that print it, not once a chunk. */
static const char *mb_stream_name(lua_State *L) {
  return lua_tostring(L, lua_upvalueindex(2));
}

/* Decode chunk ch onto L's stack. While it is decoded it is on the
** decoding list, so a memory error raised meanwhile (the limit) loses it
** to nobody: the stream frees the list. A finalizer run by the decode's
** allocations may take the next chunk meanwhile; each call unlinks its own. */
static int mb_stream_decode(lua_State *L, mb_stream *s, mb_chunk *ch) {
  mb_chunk **pp;
  int n;
  char err[160];
  ch->qnext = s->decoding;
  s->decoding = ch;
  n = mb_codec_decode(L, ch->data, ch->len, err, sizeof err);
  for (pp = &s->decoding; *pp != ch; pp = &(*pp)->qnext) {
  }
  *pp = ch->qnext;
  mb_stream_chunk_recycle(s, ch);
  if (n < 0) {
    const char *name = mb_stream_name(L);
    return mb_errors_throw(L, "bridge", name, "%s: bad chunk: %s", name, err);
  }
  return n;
}

/* Take the next chunk out of the ring, if Go published one: the slot is
** the producer's again once consumed says so. */
static mb_chunk *mb_stream_next_chunk(mb_rt *rt, mb_stream *s) {
  int64_t k = __atomic_load_n(&s->consumed, __ATOMIC_RELAXED); /* only we write it */
  mb_chunk *ch;
  if (k >= __atomic_load_n(&s->produced, __ATOMIC_ACQUIRE)) return NULL;
  ch = s->ring[k % MB_STREAM_WINDOW];
  s->ring[k % MB_STREAM_WINDOW] = NULL;
  mb_stream_took(rt, s);
  return ch;
}

/* Lua is about to wait for a chunk: say so, then look once more (see
** mb_stream_emit). Returns the chunk found after all, or NULL: the
** producer rings the bell with the next one. While a bell may be on its
** way (bell_due) the flag is not raised again: the bell is one message and
** must not be queued twice. */
static mb_chunk *mb_stream_sleep(mb_rt *rt, mb_stream *s) {
  mb_chunk *ch;
  if (s->bell_due) return NULL;
  s->bell_due = 1;
  __atomic_store_n(&s->lua_sleeping, 1, __ATOMIC_SEQ_CST);
  ch = mb_stream_next_chunk(rt, s);
  if (ch != NULL && __atomic_exchange_n(&s->lua_sleeping, 0, __ATOMIC_SEQ_CST))
    s->bell_due = 0; /* taken back: no bell will come */
  return ch;
}

/* Give the next chunk, the end (nil), or the Go error; -1 when none yet. */
static int mb_stream_take(lua_State *L, mb_rt *rt, mb_stream *s) {
  mb_chunk *ch = mb_stream_next_chunk(rt, s);
  if (ch != NULL) return mb_stream_decode(L, s, ch);
  if (s->ended) {
    if (s->call.status != MB_OK) {
      int status = s->call.status;
      lua_pushlstring(L, s->call.buf.data ? s->call.buf.data : "", s->call.buf.len);
      s->call.status = MB_OK; /* raised once; the next call ends the loop */
      s->call.buf.len = 0;
      return mb_call_raise(L, mb_stream_name(L), status, lua_tostring(L, -1),
                           lua_rawlen(L, -1));
    }
    lua_pushnil(L);
    return 1;
  }
  ch = mb_stream_sleep(rt, s);
  if (ch != NULL) return mb_stream_decode(L, s, ch);
  return -1;
}

/* The task stopped waiting in the iterator (cancelled, killed). */
static void mb_stream_undo(mb_rt *rt, void *obj) {
  (void)rt;
  ((mb_stream *)obj)->waiter = NULL;
}

static int mb_stream_next_k(lua_State *L, int status, lua_KContext ctx) {
  mb_rt *rt = mb_rt_of(L);
  mb_stream **sp = (mb_stream **)lua_touserdata(L, lua_upvalueindex(1));
  mb_stream *s = *sp;
  mb_task *t = rt->current;
  int n;
  (void)status;
  (void)ctx;
  mb_task_wait_check(L);
  if (s == NULL) {
    lua_pushnil(L);
    return 1;
  }
  /* One task reads a stream: a second one would wait beside the first,
  ** and a chunk wakes one waiter. */
  if (t != NULL && (!s->has_reader || s->reader != t->id || s->reader_run != t->run->id)) {
    if (s->has_reader)
      return mb_errors_misuse(L, "%s: the stream is read by another task",
                              mb_stream_name(L));
    s->has_reader = 1, s->reader_run = t->run->id, s->reader = t->id;
  }
  /* Go hears of a credit only when the step ends: end it now, this task
  ** queued again, so the producer refills one half of the ring while Lua
  ** takes the other. Otherwise Lua would empty the ring first, and the two
  ** halves would take turns instead of running side by side. */
  if (s->credit_yield) {
    s->credit_yield = 0;
    if (t != NULL && mb_task_can_yield(L)) {
      mb_task_ready(rt, t);
      return mb_task_wait_yield(L, t, MB_WAIT_READY, "its turn", 0, mb_stream_next_k);
    }
  }
  n = mb_stream_take(L, rt, s);
  if (n >= 0) return n;
  t = mb_task_wait_begin_as(L, mb_stream_name(L), "wait for Go");
  s->waiter = t;
  return mb_task_wait_other(L, t, s, mb_stream_undo, mb_stream_name(L), 0, mb_stream_next_k);
}

static int mb_stream_next(lua_State *L) {
  lua_settop(L, 0); /* the for loop's state and control are unused */
  return mb_stream_next_k(L, LUA_OK, 0);
}

/* The for loop ended (or the iterator was collected): cancel the Go side
** if it is still running, and drop whatever it sent that Lua never took. */
static int mb_stream_close(lua_State *L) {
  mb_stream **sp = (mb_stream **)luaL_checkudata(L, 1, MB_STREAM_MT);
  mb_stream *s = *sp;
  if (s == NULL) return 0;
  *sp = NULL;
  s->lua_closed = 1;
  s->waiter = NULL;
  if (!s->ended) mb_call_cancel(mb_rt_of(L), &s->call);
  mb_stream_release(s); /* the ring's chunks go with the record */
  return 0;
}

/* The Lua function of a Go stream: start it, and return the generic for's
** iterator, nil, nil, and the closing value. */
int mb_stream_l_call(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  const char *name = lua_tostring(L, lua_upvalueindex(2));
  mb_stream *s, **sp;
  const char *err;
  s = calloc(1, sizeof *s);
  if (s == NULL) return mb_errors_nomem(L, name);
  s->call.fn = (int)lua_tointeger(L, lua_upvalueindex(1));
  s->call.slot = -1;
  s->call.run = rt->current != NULL ? rt->current->run->id : 0;
  s->refs = 1;
  s->bell.kind = MB_MSG_CHUNK;
  if ((err = mb_call_encode_args(L, name, &s->call.buf)) != NULL) {
    mb_stream_release(s);
    return mb_errors_throw(L, "bridge", name, "%s", err);
  }
  lua_settop(L, 0);
  sp = (mb_stream **)lua_newuserdatauv(L, sizeof *sp, 0);
  *sp = s;
  luaL_setmetatable(L, MB_STREAM_MT);
  if (mb_call_start(L, &s->call) != 0) {
    *sp = NULL;
    mb_stream_release(s);
    return mb_errors_nomem(L, name);
  }
  s->refs = 2; /* Lua's closing value and Go, until END is drained */
  lua_pushvalue(L, 1);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushcclosure(L, mb_stream_next, 2); /* ud iter */
  lua_insert(L, 1);                       /* iter ud */
  lua_pushnil(L);
  lua_insert(L, 2);
  lua_pushnil(L);
  lua_insert(L, 3); /* iter nil nil ud: the fourth is the closing value */
  return 4;
}

/* Wake the task blocked in the iterator, if any. */
static void mb_stream_wake(mb_rt *rt, mb_stream *s) {
  mb_task *t = s->waiter;
  if (t == NULL || rt->closing) return;
  s->waiter = NULL;
  mb_task_ready(rt, t);
}

/* The doorbell (MB_MSG_CHUNK) or the end (MB_MSG_END) from the queue. */
void mb_stream_drain(mb_rt *rt, mb_msg *m) {
  mb_stream *s;
  if (m->kind == MB_MSG_CHUNK) {
    s = (mb_stream *)((char *)m - offsetof(mb_stream, bell));
    s->bell_due = 0;
    if (!s->lua_closed) mb_stream_wake(rt, s);
    return;
  }
  mb_assert(m->kind == MB_MSG_END, "a stream message of another kind");
  s = (mb_stream *)m;
  mb_call_done(rt, &s->call);
  s->ended = 1;
  mb_stream_wake(rt, s);
  mb_stream_release(s);
}

static const luaL_Reg mb_stream_meta[] = {
    {"__close", mb_stream_close}, {"__gc", mb_stream_close}, {NULL, NULL}};

void mb_stream_open(lua_State *L) {
  luaL_newmetatable(L, MB_STREAM_MT);
  luaL_setfuncs(L, mb_stream_meta, 0);
  lua_pop(L, 1);
}
