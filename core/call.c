/*
** call.c — bridge calls: a Go function called from Lua, and its record
** from birth to free.
**
** Layer 3 (objects). An async call encodes its arguments into a new
** mb_call, hands it to the Go driver as an MB_EV_CALL event and suspends
** the task; the goroutine writes the results into the same record and
** pushes it on the completion queue (mb_call_complete), and the drain
** wakes the task, whose continuation decodes them and frees the record.
** Streams (stream.c) are calls that push chunks before they end.
*/
#include <stdlib.h>
#include <string.h>

#include "call.h"
#include "codec.h"
#include "errors.h"
#include "task.h"

/* Call records are recycled, with their buffers, by the loop (the only
** thread that creates or frees them): no allocation per call once warm.
** mb_call_pool_free frees the pool. */
#define MB_CALL_POOL_MAX 4096
#define MB_CALL_BUF_KEEP 4096 /* larger buffers are not kept in the pool */

/* ---------------------------------------------------------------------
** Errors a call can raise.
** ------------------------------------------------------------------- */

/* Read an MB_ERR_GO record, msg[0..len): the Go error's id (8 bytes,
** little-endian), its kind and op (each ended by a zero byte; empty: the
** defaults), then its text, which *msg and *len are left at. 0 when it is
** malformed. */
static int64_t mb_call_goerror(const char **msg, size_t *len, const char **kind,
                               const char **op) {
  const char *p = *msg, *end = *msg + *len, *k, *o;
  uint64_t id = 0;
  int i;
  if (*len < 10) return 0;
  for (i = 7; i >= 0; i--) id = id << 8 | (unsigned char)p[i];
  k = p + 8;
  if ((o = memchr(k, 0, (size_t)(end - k))) == NULL) return 0;
  o++;
  if ((p = memchr(o, 0, (size_t)(end - o))) == NULL) return 0;
  p++;
  if (*k != '\0') *kind = k;
  if (*o != '\0') *op = o;
  *msg = p;
  *len = (size_t)(end - p);
  return (int64_t)id;
}

/* Raise the Go side's error (MB_ERR, MB_ERR_GO), panic (MB_PANIC) or,
** with an empty message, its failure to store the result, as a "bridge"
** error whose op is the function (or the kind and op Go asked for). A Go
** error the run keeps is named by the error's goerror field. msg is
** anchored by the caller. */
int mb_call_raise(lua_State *L, const char *name, int status, const char *msg, size_t len) {
  const char *kind = "bridge", *op = name;
  int64_t goerror = 0;
  if (status == MB_ERR_GO) goerror = mb_call_goerror(&msg, &len, &kind, &op);
  if (status == MB_PANIC)
    lua_pushfstring(L, "%s: panic: %s", name, lua_pushlstring(L, msg, len));
  else if (len == 0)
    lua_pushfstring(L, "%s: not enough memory for the result", name);
  else
    lua_pushfstring(L, "%s: %s", name, lua_pushlstring(L, msg, len));
  mb_errors_push(L, kind, op, lua_tostring(L, -1), lua_rawlen(L, -1));
  if (goerror != 0) {
    lua_pushinteger(L, (lua_Integer)goerror);
    lua_setfield(L, -2, "goerror");
  }
  mb_errors_raise(L);
}


/* ---------------------------------------------------------------------
** The record.
** ------------------------------------------------------------------- */
static mb_call *mb_call_new(mb_rt *rt) {
  mb_call *c = rt->call_pool;
  mb_buf buf = {0};
  if (c == NULL) return calloc(1, sizeof *c);
  rt->call_pool = (mb_call *)c->msg.next;
  rt->ncall_pool--;
  buf = c->buf;
  memset(c, 0, sizeof *c);
  c->buf = buf;
  c->buf.len = 0;
  return c;
}

static void mb_call_free(mb_rt *rt, mb_call *c) {
  if (rt->ncall_pool >= MB_CALL_POOL_MAX || c->buf.cap > MB_CALL_BUF_KEEP) {
    mb_buf_free(&c->buf);
    free(c);
    return;
  }
  c->msg.next = (mb_msg *)rt->call_pool;
  rt->call_pool = c;
  rt->ncall_pool++;
}

/* A delivered record whose task was killed before its continuation ran. */
static void mb_call_release(mb_rt *rt, void *obj) {
  mb_call_free(rt, (mb_call *)obj);
}

void mb_call_pool_free(mb_rt *rt) {
  while (rt->call_pool != NULL) {
    mb_call *c = rt->call_pool;
    rt->call_pool = (mb_call *)c->msg.next;
    mb_buf_free(&c->buf);
    free(c);
  }
  rt->ncall_pool = 0;
}

/* ---------------------------------------------------------------------
** Start, cancel, complete, drain.
** ------------------------------------------------------------------- */

/* Hand c to Go. Its events are reserved first (event.c): here running
** out of memory can still be told to the caller, so no later event of the
** call can be lost. Returns 0, or -1 with nothing changed. */
int mb_call_start(lua_State *L, mb_call *c) {
  mb_rt *rt = mb_rt_of(L);
  if (mb_event_reserve(&rt->ev, rt->inflight + 1) != 0) return -1;
  mb_event_push(&rt->ev, MB_EV_CALL, 0, c);
  rt->inflight++;
  return 0;
}

/* Cancel the Go side of a call nobody waits for any more. Once Go started
** it, the slot names it; before, the event points at the record, which
** cannot be freed before Go has seen this batch of events. */
void mb_call_cancel(mb_rt *rt, mb_call *c) {
  mb_event_push(&rt->ev, MB_EV_CANCEL, c->slot, c->slot < 0 ? c : NULL);
}

/* The task stopped waiting (cancelled, killed): the completion will be
** dropped, and the Go side's context is cancelled. */
static void mb_call_undo(mb_rt *rt, void *obj) {
  mb_call *c = (mb_call *)obj;
  c->task = NULL;
  mb_call_cancel(rt, c);
}


int mb_call_complete(mb_rt *rt, mb_call *c, int status, const char *data, size_t len) {
  mb_call_store(c, MB_MSG_RESULT, status, data, len);
  return mb_queue_push(&rt->q, &c->msg);
}

/* The Go side of c has finished: one call less in flight, and Go may
** reuse its slot (not when closing: Go then frees everything itself). */
void mb_call_done(mb_rt *rt, mb_call *c) {
  mb_assert(rt->inflight > 0, "a call finished that was not in flight");
  rt->inflight--;
  if (!rt->closing) mb_event_push(&rt->ev, MB_EV_FREE, c->slot, NULL);
}

/* The task resumes once the rest of the drain is done (up to a thousand
** completions): start loading now what its resume and the continuation
** will read first — its thread's state and the results — so that with
** many tasks the cache misses overlap instead of coming one by one. */
static void mb_call_prefetch(mb_call *c) {
  const char *co = (const char *)c->task->co;
  __builtin_prefetch(co);
  __builtin_prefetch(co + 64);
  __builtin_prefetch(co + 128);
  if (c->buf.data != NULL) __builtin_prefetch(c->buf.data);
}

/* A completion from the queue: wake the task (its continuation decodes and
** frees), or drop the result nobody waits for. */
void mb_call_drain(mb_rt *rt, mb_call *c) {
  mb_call_done(rt, c);
  if (c->task != NULL && !rt->closing) {
    mb_call_prefetch(c);
    mb_task_wake_holding(rt, c->task, c, mb_call_release);
    c->task = NULL;
  } else {
    mb_call_free(rt, c);
  }
}

/* ---------------------------------------------------------------------
** The Lua side: the function an async Go function is, and its
** continuation. Upvalues: the function's index, its name. The name is
** looked up only to report an error: the common path does without.
** ------------------------------------------------------------------- */
#define mb_call_name(L) lua_tostring((L), lua_upvalueindex(2))

static int mb_call_k(lua_State *L, int status, lua_KContext ctx) {
  mb_rt *rt = mb_rt_of(L);
  mb_call *c = (mb_call *)ctx;
  (void)status;
  if (rt->current != NULL && rt->current->aborted)
    mb_task_wait_check(L); /* aborted: the drain frees c, or the wait's end did */
  {
    void *held = mb_task_take_held(rt); /* c is the continuation's now */
    mb_assert(held == c, "a call's results delivered to another wait");
    (void)held;
  }
  if (c->status != MB_OK) {
    /* Copy the message to Lua before freeing its buffer. */
    lua_pushlstring(L, c->buf.data ? c->buf.data : "", c->buf.len);
    status = c->status;
    mb_call_free(rt, c);
    return mb_call_raise(L, mb_call_name(L), status, lua_tostring(L, -1), lua_rawlen(L, -1));
  }
  {
    char err[160];
    int n = mb_codec_decode(L, c->buf.data, c->buf.len, err, sizeof err);
    mb_call_free(rt, c);
    if (n < 0) {
      const char *name = mb_call_name(L);
      return mb_errors_throw(L, "bridge", name, "%s: bad result: %s", name, err);
    }
    return n;
  }
}

/* Encode the arguments into c's buffer: straight in when they are
** scalars that fit the buffer it kept from its last use, else through the
** general encoder. NULL, or the error (pushed on L). */
static const char *mb_call_args(lua_State *L, mb_call *c) {
  int n = c->buf.data != NULL
              ? mb_codec_encode_flat(L, lua_gettop(L), c->buf.data, c->buf.cap)
              : -1;
  if (n >= 0) {
    c->buf.len = (size_t)n;
    return NULL;
  }
  c->buf.len = 0;
  return mb_call_encode_args(L, mb_call_name(L), &c->buf);
}

int mb_call_l_call(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  mb_task *t = rt->current; /* mb_task_wait_begin_as, with the name fetched only to refuse */
  const char *err;
  mb_call *c;
  if (t == NULL || !mb_task_can_yield(L)) mb_task_wait_refuse(L, mb_call_name(L), "wait for Go");
  c = mb_call_new(rt);
  if (c == NULL) return mb_errors_nomem(L, mb_call_name(L));
  c->fn = (int)lua_tointeger(L, lua_upvalueindex(1));
  c->slot = -1;
  if ((err = mb_call_args(L, c)) != NULL) {
    mb_call_free(rt, c);
    return mb_errors_throw(L, "bridge", mb_call_name(L), "%s", err);
  }
  if (mb_call_start(L, c) != 0) {
    mb_call_free(rt, c);
    return mb_errors_nomem(L, mb_call_name(L));
  }
  c->task = t;
  c->run = t->run->id;
  return mb_task_wait_other(L, t, c, mb_call_undo, mb_call_name(L), (lua_KContext)c, mb_call_k);
}
