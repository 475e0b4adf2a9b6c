/*
** rt.c — the runtime: its life cycle, the completion queue, and the step
** the Go driver calls to make progress.
**
** Layer: C core. A step runs ready tasks and drains the completion queue
** until it has events for Go (calls to start, contexts to cancel, runs that
** ended) or nothing can move. When only Go work is outstanding it returns
** MB_STEP_PARK and the driver parks the Go way, woken in user space by the
** goroutine that completes; only with timers pending does it sleep in
** libuv, woken by uv_async_send. Producers learn which, from one exchange.
*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "mb.h"
#include "strlib.h"
#include "tablib.h"

#define MB_DRAIN_BUDGET 1024 /* messages per pass, so timers still run */

/* ---------------------------------------------------------------------
** Completion queue (Vyukov's intrusive MPSC).
** ------------------------------------------------------------------- */
void mb_mpsc_init(mb_mpsc *q) {
  q->stub.next = NULL;
  q->head = &q->stub;
  q->tail = &q->stub;
}

void mb_mpsc_push(mb_mpsc *q, mb_msg *m) {
  mb_msg *prev;
  __atomic_store_n(&m->next, NULL, __ATOMIC_RELAXED);
  prev = __atomic_exchange_n(&q->head, m, __ATOMIC_SEQ_CST);
  /* Between the exchange and this store the chain is broken; the consumer
  ** sees a non-empty queue it cannot pop yet and simply comes back. */
  __atomic_store_n(&prev->next, m, __ATOMIC_RELEASE);
}

mb_msg *mb_mpsc_pop(mb_mpsc *q) {
  mb_msg *tail = q->tail;
  mb_msg *next = __atomic_load_n(&tail->next, __ATOMIC_ACQUIRE);
  if (tail == &q->stub) {
    if (next == NULL) return NULL;
    q->tail = next;
    tail = next;
    next = __atomic_load_n(&next->next, __ATOMIC_ACQUIRE);
  }
  if (next != NULL) {
    q->tail = next;
    return tail;
  }
  if (tail != __atomic_load_n(&q->head, __ATOMIC_ACQUIRE))
    return NULL; /* a producer is between its exchange and its link */
  mb_mpsc_push(q, &q->stub);
  next = __atomic_load_n(&tail->next, __ATOMIC_ACQUIRE);
  if (next != NULL) {
    q->tail = next;
    return tail;
  }
  return NULL;
}

/* Empty only when the stub is both ends: any producer that exchanged the
** head since makes this false, even before it linked its node. */
int mb_mpsc_empty(mb_mpsc *q) {
  return q->tail == &q->stub &&
         __atomic_load_n(&q->head, __ATOMIC_SEQ_CST) == &q->stub;
}

/* ---------------------------------------------------------------------
** The completion path: any thread.
** ------------------------------------------------------------------- */

/* Push, then claim the driver's sleep if it sleeps: the exchange makes
** exactly one producer responsible for the wake-up. A driver sleeping in
** libuv is woken here; one parked in Go is woken by our caller (return 1).
** The plain load first keeps the common case (driver busy) to a read. */
int mb_rt_push(mb_rt *rt, mb_msg *m) {
  int was;
  mb_mpsc_push(&rt->q, m);
  if (__atomic_load_n(&rt->sleeping, __ATOMIC_SEQ_CST) == MB_SLEEP_NONE) return 0;
  was = __atomic_exchange_n(&rt->sleeping, MB_SLEEP_NONE, __ATOMIC_SEQ_CST);
  if (was == MB_SLEEP_UV) uv_async_send(&rt->async);
  return was == MB_SLEEP_GO;
}

static int mb_buf_set(mb_buf *b, const char *data, size_t len) {
  b->len = 0;
  if (len > 0 && mb_buf_reserve(b, len) != 0) return -1;
  if (len > 0) memcpy(b->data, data, len);
  b->len = len;
  return 0;
}

/* Store the Go side's results (or error text) in the record and queue it.
** The argument buffer is reused: no allocation when the results fit. */
static void mb_call_store(mb_call *c, int kind, int status, const char *data, size_t len) {
  c->status = status;
  if (mb_buf_set(&c->buf, data, len) != 0) {
    c->status = MB_ERR; /* an empty error message means out of memory */
    c->buf.len = 0;
  }
  c->msg.kind = kind;
}

static int mb_call_finish(mb_rt *rt, mb_call *c, int kind, int status,
                          const char *data, size_t len) {
  mb_call_store(c, kind, status, data, len);
  return mb_rt_push(rt, &c->msg);
}

int mb_call_complete(mb_rt *rt, mb_call *c, int status, const char *data, size_t len) {
  return mb_call_finish(rt, c, MB_MSG_RESULT, status, data, len);
}

/* The driver ran the call itself while the loop was parked and has taken
** the loop back: it is no longer asleep, and nobody needs waking. A
** producer that claimed the sleep meanwhile has signalled; that wake-up is
** spurious now, and harmless. */
void mb_call_complete_driver(mb_rt *rt, mb_call *c, int status, const char *data, size_t len) {
  mb_call_store(c, MB_MSG_RESULT, status, data, len);
  mb_rt_push_driver(rt, &c->msg);
}

/* Push as the goroutine that is about to step the loop: whoever holds the
** loop's token. The loop is no longer asleep, and nobody needs waking. */
void mb_rt_push_driver(mb_rt *rt, mb_msg *m) {
  __atomic_store_n(&rt->sleeping, MB_SLEEP_NONE, __ATOMIC_SEQ_CST);
  mb_mpsc_push(&rt->q, m);
}

/* A chunk for len bytes: a recycled one if the producer has one that fits
** (taking the whole spare stack at once, so Lua's pushes never race a
** pop), else a new one. */
static mb_chunk *mb_chunk_get(mb_stream *s, size_t len) {
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

/* A chunk outlives the emit call in the stream's FIFO. Returns -1 when
** memory is exhausted (Go reports it as an error). */
int mb_stream_emit(mb_rt *rt, mb_stream *s, const char *data, size_t len) {
  mb_chunk *ch = mb_chunk_get(s, len);
  if (ch == NULL) return -1;
  ch->msg.kind = MB_MSG_CHUNK;
  ch->s = s;
  ch->len = len;
  ch->qnext = NULL;
  memcpy(ch->data, data, len);
  __atomic_add_fetch(&s->produced, 1, __ATOMIC_SEQ_CST);
  return mb_rt_push(rt, &ch->msg);
}

int mb_stream_end(mb_rt *rt, mb_stream *s, int status, const char *data, size_t len) {
  return mb_call_finish(rt, &s->call, MB_MSG_END, status, data, len);
}

int mb_rt_submit_run(mb_rt *rt, mb_run *r) {
  r->msg.kind = MB_MSG_RUN;
  return mb_rt_push(rt, &r->msg);
}

void mb_rt_submit_run_driver(mb_rt *rt, mb_run *r) {
  r->msg.kind = MB_MSG_RUN;
  mb_rt_push_driver(rt, &r->msg);
}

int mb_rt_cancel_run(mb_rt *rt, int64_t id, int deadline) {
  mb_cancel *c = malloc(sizeof *c);
  if (c == NULL) return -1;
  c->msg.kind = MB_MSG_CANCEL;
  c->id = id;
  c->deadline = deadline;
  return mb_rt_push(rt, &c->msg);
}

int mb_rt_submit_register(mb_rt *rt, const char *name, int fn, int flags) {
  size_t n = strlen(name);
  mb_reg *g = malloc(sizeof *g + n + 1);
  if (g == NULL) return -1;
  g->msg.kind = MB_MSG_REGISTER;
  g->fn = fn;
  g->flags = flags;
  memcpy(g->name, name, n + 1);
  return mb_rt_push(rt, &g->msg);
}

int mb_rt_close(mb_rt *rt) {
  rt->close_msg.kind = MB_MSG_CLOSE;
  return mb_rt_push(rt, &rt->close_msg);
}

mb_run *mb_run_new(int64_t id, int kind, const char *name, size_t namelen,
                   const char *data, size_t len) {
  mb_run *r = calloc(1, sizeof *r);
  if (r == NULL) return NULL;
  r->id = id;
  r->kind = kind;
  r->namelen = namelen;
  mb_list_init(&r->tasks);
  mb_list_init(&r->failed);
  mb_list_init(&r->link);
  if (mb_buf_reserve(&r->in, namelen + 1 + len) != 0) {
    free(r);
    return NULL;
  }
  memcpy(r->in.data, name, namelen);
  r->in.data[namelen] = '\0';
  if (len > 0) memcpy(r->in.data + namelen + 1, data, len);
  r->in.len = namelen + 1 + len;
  return r;
}

void mb_run_free(mb_run *r) {
  if (r == NULL) return;
  mb_buf_free(&r->in);
  mb_buf_free(&r->out);
  free(r);
}

/* ---------------------------------------------------------------------
** Events for the Go driver.
** ------------------------------------------------------------------- */
int mb_rt_event(mb_rt *rt, int kind, int slot, void *ptr) {
  if (rt->nev == rt->capev) {
    int cap = rt->capev ? rt->capev * 2 : 64;
    mb_event *ev = realloc(rt->ev, (size_t)cap * sizeof *ev);
    if (ev == NULL) return -1;
    rt->ev = ev;
    rt->capev = cap;
  }
  rt->ev[rt->nev].kind = kind;
  rt->ev[rt->nev].slot = slot;
  rt->ev[rt->nev].ptr = ptr;
  rt->nev++;
  return 0;
}

/* ---------------------------------------------------------------------
** Runs.
** ------------------------------------------------------------------- */
static void mb_run_finish(mb_rt *rt, mb_run *r) {
  if (r->done) return;
  r->done = 1;
  mb_rt_event(rt, MB_EV_RUN_DONE, 0, r);
}

/* Finish the run with the error value on L's top (popped). */
static void mb_run_fail_top(mb_rt *rt, mb_run *r) {
  if (!r->done) {
    mb_error_fields(rt->L, -1, &r->out);
    r->status = MB_RUNST_ERROR;
    mb_run_finish(rt, r);
  }
  lua_pop(rt->L, 1);
}

static void mb_run_fail_op(mb_rt *rt, mb_run *r, const char *kind, const char *op,
                           const char *msg) {
  mb_error_push(rt->L, kind, op, msg, strlen(msg));
  mb_run_fail_top(rt, r);
}

static void mb_run_fail(mb_rt *rt, mb_run *r, const char *kind, const char *msg) {
  mb_run_fail_op(rt, r, kind, NULL, msg);
}

/* Kill every live task of the run. Its result must be decided first, so
** the kills do not decide it. */
static void mb_run_kill_all(mb_rt *rt, mb_run *r) {
  while (!mb_list_empty(&r->tasks))
    mb_task_kill(rt, mb_container_of(r->tasks.next, mb_task, run_link));
}

/* End the run now with this error: every task of it is killed. */
void mb_run_abort(mb_rt *rt, mb_run *r, const char *kind, const char *op, const char *msg) {
  mb_run_fail_op(rt, r, kind, op, msg);
  mb_run_kill_all(rt, r);
}

static void mb_run_start(mb_rt *rt, mb_run *r) {
  lua_State *L = rt->L;
  const char *name = r->in.data;
  const char *data = r->in.data + r->namelen + 1;
  size_t len = r->in.len - r->namelen - 1;
  int nargs = 0;
  char err[256];
  mb_list_push(&rt->runs, &r->link);
  if (rt->closing) {
    mb_run_fail(rt, r, "closed", "the runtime is closed");
    return;
  }
  if (r->kind == MB_RUN_SET) {
    nargs = mb_codec_decode(L, data, len, err, sizeof err);
    if (nargs != 1) {
      lua_settop(L, 0);
      mb_run_fail(rt, r, "runtime", nargs < 0 ? err : "SetGlobal takes one value");
      return;
    }
    lua_setglobal(L, name);
    r->out.len = 0;
    mb_run_finish(rt, r);
    return;
  }
  if (r->kind == MB_RUN_CHUNK) {
    /* The source's length (8 bytes, little-endian), the source, then the
    ** arguments the chunk gets as "...". */
    uint64_t srclen = 0;
    int i;
    for (i = 7; i >= 0 && len >= 8; i--) srclen = srclen << 8 | (unsigned char)data[i];
    if (len < 8 || srclen > len - 8) {
      mb_run_fail(rt, r, "runtime", "malformed chunk message");
      return;
    }
    if (luaL_loadbufferx(L, data + 8, (size_t)srclen, name, "t") != LUA_OK) {
      mb_run_fail_top(rt, r);
      return;
    }
    nargs = mb_codec_decode(L, data + 8 + srclen, len - 8 - (size_t)srclen, err, sizeof err);
    if (nargs < 0) {
      lua_pop(L, 1);
      mb_run_fail(rt, r, "runtime", err);
      return;
    }
  } else {
    if (lua_getglobal(L, name) != LUA_TFUNCTION) {
      snprintf(err, sizeof err, "Call: global '%s' is not a function (a %s value)",
               name, luaL_typename(L, -1));
      lua_pop(L, 1);
      mb_run_fail(rt, r, "runtime", err);
      return;
    }
    nargs = mb_codec_decode(L, data, len, err, sizeof err);
    if (nargs < 0) {
      lua_pop(L, 1);
      mb_run_fail(rt, r, "runtime", err);
      return;
    }
  }
  /* Chunk names carry Lua's "=" or "@" prefix; the task's name does not. */
  r->main = mb_task_spawn(L, r, nargs, name + (name[0] == '=' || name[0] == '@'));
  lua_pop(L, 1); /* the Task: anchored in the registry while it lives */
}

/* os.exit(code): the run ends now with its code, and every task of it is
** killed (their to-be-closed variables closed). The host process lives on. */
void mb_run_exit(mb_rt *rt, mb_run *r) {
  r->exiting = 0;
  mb_error_push_exit(rt->L, r->exit_code);
  mb_run_fail_top(rt, r);
  mb_run_kill_all(rt, r);
}

/* Only detached tasks are left: cancel them, so their cleanup runs; the
** run ends when the last of them has. */
static void mb_run_reap_detached(mb_rt *rt, mb_run *r) {
  mb_link *l;
  for (l = r->tasks.next; l != &r->tasks; l = l->next) {
    mb_task *t = mb_container_of(l, mb_task, run_link);
    if (t->cancel != MB_CANCEL_NONE) continue;
    mb_cancel_error_push(rt->L, t, 0);
    mb_task_cancel(rt, rt->L, t);
  }
}

/* Called by the scheduler when one of the run's tasks ended. */
void mb_run_task_ended(mb_rt *rt, mb_run *r, mb_task *t) {
  lua_State *L = rt->L;
  if (t == r->main && !r->done) {
    if (t->status == MB_TASK_FAILED) {
      lua_pushvalue(t->co, -1); /* the error stays for the task's waiters */
      lua_xmove(t->co, L, 1);
      mb_run_fail_top(rt, r);
      mb_run_kill_all(rt, r); /* as a process ends with its main chunk */
    } else if (t->status == MB_TASK_CANCELLED) {
      mb_run_fail(rt, r, "cancelled", "the run's main task was cancelled");
    } else if (r->kind == MB_RUN_CALL) {
      char err[256];
      r->out.len = 0;
      if (mb_codec_encode(t->co, 1, t->nres, &r->out, err, sizeof err) != 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "Call '%s': %s", r->in.data, err);
        mb_run_fail(rt, r, "runtime", msg);
      } else {
        mb_run_finish(rt, r);
      }
    }
  }
  if (t->status == MB_TASK_FAILED && !t->observed && r->done && r->limit == MB_LIMIT_NONE) {
    /* The run's result is decided (a Call returned): say it on stderr.
    ** Not when the run went over a limit: that is its error already. */
    mb_stdio_report(t->co, -1);
  }
  if (r->ntasks > r->ndetached) return;
  if (r->ndetached > 0) {
    mb_run_reap_detached(rt, r);
    return;
  }
  /* The run is over. A task that failed with nobody waiting fails the run;
  ** any further ones are reported, not lost. */
  while (!mb_list_empty(&r->failed)) {
    mb_task *f = mb_container_of(r->failed.next, mb_task, fail_link);
    if (!r->done) {
      lua_pushvalue(f->co, -1);
      lua_xmove(f->co, L, 1);
      mb_run_fail_top(rt, r);
    } else if (r->limit == MB_LIMIT_NONE) {
      mb_stdio_report(f->co, -1);
    }
    mb_task_unfail(L, f); /* after its last use: this may free it */
  }
  mb_run_finish(rt, r);
  if (r->released) mb_run_free(r);
}

/* Go has taken the run's result. A finished Call's tasks may still run:
** then the last of them frees the run. */
void mb_run_release(mb_rt *rt, mb_run *r) {
  (void)rt;
  mb_list_remove(&r->link);
  r->released = 1;
  if (r->ntasks == 0) mb_run_free(r);
}

static mb_run *mb_run_find(mb_rt *rt, int64_t id) {
  mb_link *l;
  for (l = rt->runs.next; l != &rt->runs; l = l->next) {
    mb_run *r = mb_container_of(l, mb_run, link);
    if (r->id == id && !r->done) return r;
  }
  return NULL;
}

/* ---------------------------------------------------------------------
** Draining the queue.
** ------------------------------------------------------------------- */
static void mb_close_all(mb_rt *rt) {
  mb_link *l;
  rt->closing = 1;
  for (l = rt->runs.next; l != &rt->runs; l = l->next)
    mb_run_abort(rt, mb_container_of(l, mb_run, link), "closed", NULL, "the runtime was closed");
}

static int mb_drain(mb_rt *rt) {
  int n = 0;
  mb_msg *m;
  while (n < MB_DRAIN_BUDGET && (m = mb_mpsc_pop(&rt->q)) != NULL) {
    n++;
    switch (m->kind) {
      case MB_MSG_RESULT:
      case MB_MSG_CHUNK:
      case MB_MSG_END:
        mb_bridge_drain(rt, m);
        break;
      case MB_MSG_RUN:
        mb_run_start(rt, (mb_run *)m);
        break;
      case MB_MSG_CANCEL: {
        mb_cancel *c = (mb_cancel *)m;
        mb_run *r = mb_run_find(rt, c->id);
        int deadline = c->deadline;
        free(c);
        if (r != NULL && deadline)
          mb_run_abort(rt, r, "limit", "deadline", "the run's deadline passed");
        else if (r != NULL)
          mb_run_abort(rt, r, "cancelled", NULL, "the run's context was cancelled");
        break;
      }
      case MB_MSG_REGISTER: {
        mb_reg *g = (mb_reg *)m;
        mb_rt_register(rt, g->name, g->fn, g->flags);
        free(g);
        break;
      }
      case MB_MSG_CLOSE:
        mb_close_all(rt);
        break;
    }
  }
  return n;
}

/* ---------------------------------------------------------------------
** Deadlock: nothing ready, no sleeper, no Go work in flight, nothing in
** the queue — yet some runs still have tasks. None of them can ever move.
** ------------------------------------------------------------------- */
static void mb_deadlock(mb_rt *rt) {
  lua_State *L = rt->L;
  mb_link *l;
  for (l = rt->runs.next; l != &rt->runs; l = l->next) {
    mb_run *r = mb_container_of(l, mb_run, link);
    luaL_Buffer b;
    mb_link *tl;
    char line[512];
    if (r->done || r->ntasks == 0) continue;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "deadlock: all tasks are blocked and nothing can wake them");
    for (tl = r->tasks.next; tl != &r->tasks; tl = tl->next) {
      mb_task_blocked_where(mb_container_of(tl, mb_task, run_link), line, sizeof line);
      luaL_addchar(&b, '\n');
      luaL_addstring(&b, line);
    }
    luaL_pushresult(&b);
    mb_run_abort(rt, r, "deadlock", NULL, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

static int mb_has_live_tasks(mb_rt *rt) {
  mb_link *l;
  for (l = rt->runs.next; l != &rt->runs; l = l->next) {
    mb_run *r = mb_container_of(l, mb_run, link);
    if (!r->done && r->ntasks > 0) return 1;
  }
  return 0;
}

/* ---------------------------------------------------------------------
** The step.
** ------------------------------------------------------------------- */

/* Run every task that is ready now, once; a task of priority p that
** keeps yielding is resumed up to p times in a row. Tasks made ready
** meanwhile (by yield, or by an inline completion) wait for the next pass,
** so a task that keeps yielding cannot keep the queue from being drained. */
static void mb_run_ready(mb_rt *rt) {
  mb_link batch;
  if (mb_list_empty(&rt->ready)) return;
  /* Move the whole run queue aside, then resume from it. */
  batch.next = rt->ready.next;
  batch.prev = rt->ready.prev;
  batch.next->prev = &batch;
  batch.prev->next = &batch;
  mb_list_init(&rt->ready);
  while (!mb_list_empty(&batch)) {
    mb_task *t = mb_container_of(batch.next, mb_task, ready);
    int turns = t->priority;
    for (;;) {
      mb_list_remove(&t->ready);
      t->wait = MB_WAIT_NONE;
      mb_task_resume(rt, t);
      /* Another turn only if it just queued itself again by yielding. */
      if (--turns <= 0 || t->wait != MB_WAIT_READY || t->aborted ||
          rt->ready.prev != &t->ready)
        break;
    }
  }
}

/* Wake sleepers that are due even while tasks keep the loop busy, so a
** greedy task cannot starve timers. */
static void mb_sleep_due(mb_rt *rt) {
  if (rt->nheap == 0) return;
  uv_update_time(&rt->loop);
  if (rt->heap[0]->deadline <= uv_now(&rt->loop)) mb_sleep_fire(rt);
}

static void mb_sleep_uv(mb_rt *rt) {
  __atomic_store_n(&rt->sleeping, MB_SLEEP_UV, __ATOMIC_SEQ_CST);
  if (!mb_mpsc_empty(&rt->q)) {
    __atomic_store_n(&rt->sleeping, MB_SLEEP_NONE, __ATOMIC_SEQ_CST);
    return;
  }
  uv_run(&rt->loop, UV_RUN_ONCE);
  __atomic_store_n(&rt->sleeping, MB_SLEEP_NONE, __ATOMIC_SEQ_CST);
}

/* Nothing can move until a message arrives: no ready task, no sleeper,
** and Go work in flight (or no task at all: otherwise it is a deadlock). */
static int mb_idle(mb_rt *rt) {
  return mb_list_empty(&rt->ready) && !rt->closing && rt->nheap == 0 &&
         (rt->inflight > 0 || !mb_has_live_tasks(rt));
}

/* Park the Go way: claim the sleep, then look at the queue once more. A
** producer that pushed before the claim is seen here; one that pushes
** after it sees the claim and wakes the driver. Returns 0 if the queue
** was not empty after all (a producer that already took the claim will
** also signal: a spurious wake-up for the driver, which is harmless). */
static int mb_park_go(mb_rt *rt) {
  __atomic_store_n(&rt->sleeping, MB_SLEEP_GO, __ATOMIC_SEQ_CST);
  if (mb_mpsc_empty(&rt->q)) return 1;
  __atomic_store_n(&rt->sleeping, MB_SLEEP_NONE, __ATOMIC_SEQ_CST);
  return 0;
}

static int mb_step_loop(mb_rt *rt) {
  for (;;) {
    int drained = mb_drain(rt);
    mb_sleep_due(rt);
    mb_run_ready(rt);
    if (rt->over_limit) mb_runs_over_limit(rt);
    if (rt->nev > 0) {
      /* When the loop would park right after Go handled these events, say
      ** so now: the driver parks without another step, so a goroutine it
      ** just started runs on the driver's own thread, not a woken one. */
      if (mb_idle(rt) && mb_park_go(rt)) return MB_STEP_EVENTS_PARK;
      return MB_STEP_EVENTS;
    }
    if (!mb_list_empty(&rt->ready) || drained > 0) continue;
    if (!mb_mpsc_empty(&rt->q)) continue;
    if (rt->closing) return MB_STEP_CLOSED;
    if (rt->nheap > 0) {
      mb_sleep_uv(rt);
      continue;
    }
    if (rt->inflight == 0 && mb_has_live_tasks(rt)) {
      mb_deadlock(rt);
      continue;
    }
    if (mb_park_go(rt)) return MB_STEP_PARK;
  }
}

/* The step runs protected: a memory error in the scheduler's own Lua calls
** ends the loop cleanly (MB_STEP_FATAL) instead of aborting the process. */
static int mb_step_p(lua_State *L) {
  lua_pushinteger(L, mb_step_loop((mb_rt *)lua_touserdata(L, 1)));
  return 1;
}

int mb_rt_step(mb_rt *rt) {
  lua_State *L = rt->L;
  int st;
  rt->nev = 0;
  lua_pushcfunction(L, mb_step_p);
  lua_pushlightuserdata(L, rt);
  st = lua_pcall(L, 1, 1, 0);
  if (st != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    snprintf(rt->fatal, sizeof rt->fatal, "%s", msg ? msg : "error in the scheduler");
    lua_pop(L, 1);
    return MB_STEP_FATAL;
  }
  st = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return st;
}

/* ---------------------------------------------------------------------
** Life cycle.
** ------------------------------------------------------------------- */
/* Lua's allocator. It counts what Lua holds, and with a memory limit set
** refuses a task's allocation past it: Lua then collects garbage, tries
** once more, and raises "not enough memory" in the task. The scheduler's
** own allocations (rt->current is NULL) may go past the limit, so a run
** that hit it can still be reported and the Runtime keeps serving. */
static void *mb_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  mb_rt *rt = (mb_rt *)ud;
  size_t old = ptr != NULL ? osize : 0; /* without ptr, osize is a type tag */
  void *p;
  if (nsize == 0) {
    free(ptr);
    rt->mem_used -= old;
    return NULL;
  }
  if (nsize > old && rt->mem_limit > 0 && rt->current != NULL &&
      rt->mem_used + (nsize - old) > rt->mem_limit)
    return NULL;
  p = realloc(ptr, nsize);
  if (p != NULL) rt->mem_used = rt->mem_used - old + nsize;
  return p;
}

static int mb_panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "moonbridge: unprotected Lua error: %s\n", msg ? msg : "?");
  abort();
}

static void mb_async_cb(uv_async_t *h) { (void)h; /* the step drains */ }

static void mb_timer_cb(uv_timer_t *h) {
  mb_rt *rt = (mb_rt *)h->data;
  /* Return from uv_run now: the tasks are ready, the loop must not poll.
  ** (Only from inside uv_run: a stop requested outside it would make the
  ** next uv_run return at once, even the one that closes the handles.) */
  if (mb_sleep_fire(rt) > 0) uv_stop(&rt->loop);
}

/* Arm the one timer at the earliest sleeper's deadline, or stop it. */
void mb_timer_arm(mb_rt *rt) {
  if (rt->nheap == 0) {
    uv_timer_stop(&rt->timer);
    return;
  }
  {
    uint64_t now = uv_now(&rt->loop), when = rt->heap[0]->deadline;
    uv_timer_start(&rt->timer, mb_timer_cb, when > now ? when - now : 0, 0);
  }
}

static int mb_rt_open_libs(lua_State *L) {
  luaL_openlibs(L);
  mb_error_open(L);
  mb_task_open(L);
  mb_coro_open(L);
  mb_await_open(L);
  mb_chan_open(L);
  mb_promise_open(L);
  mb_timer_open(L);
  mb_bridge_open(L);
  mb_stdio_open(L);
  mb_strlib_open(L);
  mb_tablib_open(L);
  return 0;
}

/* What freed runtimes left behind, for tests: bytes Lua's allocator still
** counted after lua_close, and loops that still had handles open. */
int64_t mb_leaked_lua_bytes, mb_leaked_loops;

mb_rt *mb_rt_new(void) {
  mb_rt *rt = calloc(1, sizeof *rt);
  if (rt == NULL) return NULL;
  mb_mpsc_init(&rt->q);
  rt->sleeping = MB_SLEEP_GO; /* no driver steps it until the first push */
  rt->rand = 0x9e3779b9u;
  mb_list_init(&rt->ready);
  mb_list_init(&rt->runs);
  if (uv_loop_init(&rt->loop) != 0) {
    free(rt);
    return NULL;
  }
  uv_async_init(&rt->loop, &rt->async, mb_async_cb);
  uv_unref((uv_handle_t *)&rt->async); /* it must not keep the loop alive */
  uv_timer_init(&rt->loop, &rt->timer);
  rt->timer.data = rt;
  /* Inline calls encode their results here: sized so they rarely grow. */
  if (mb_buf_reserve(&rt->scratch_out, 4096) != 0) {
    mb_rt_free(rt);
    return NULL;
  }
  rt->L = lua_newstate(mb_alloc, rt);
  if (rt->L == NULL) {
    mb_rt_free(rt);
    return NULL;
  }
  lua_atpanic(rt->L, mb_panic);
  *(void **)lua_getextraspace(rt->L) = NULL; /* new threads copy it */
  lua_pushcfunction(rt->L, mb_rt_open_libs);
  if (lua_pcall(rt->L, 0, 0, 0) != LUA_OK) {
    mb_rt_free(rt);
    return NULL;
  }
  return rt;
}

/* Make require(name) call open (a module of the C core). */
void mb_preload(lua_State *L, const char *name, lua_CFunction open) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, open);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

static int mb_require_global_p(lua_State *L) {
  const char *name = lua_tostring(L, 1);
  lua_getglobal(L, "require");
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  lua_setglobal(L, name);
  return 0;
}

/* Make require(name) run src, a module shipped as Lua source (luamod/);
** with global set, also require it now into the global of that name.
** Called before the loop starts. Returns 0, or -1 with rt->fatal set. */
int mb_rt_preload(mb_rt *rt, const char *name, const char *src, size_t len, int global) {
  lua_State *L = rt->L;
  char chunk[96];
  snprintf(chunk, sizeof chunk, "@%s.lua", name);
  if (luaL_loadbuffer(L, src, len, chunk) != LUA_OK) goto fail;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_insert(L, -2);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
  if (!global) return 0;
  lua_pushcfunction(L, mb_require_global_p);
  lua_pushstring(L, name);
  if (lua_pcall(L, 1, 0, 0) == LUA_OK) return 0;
fail:
  snprintf(rt->fatal, sizeof rt->fatal, "module %s: %s", name,
           lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
  lua_pop(L, 1);
  return -1;
}

static void mb_close_cb(uv_handle_t *h) { (void)h; }

/* Free everything. The Go side calls this after the loop stopped and every
** goroutine it started has returned, so late completions are all in the
** queue: drain it, dropping them. */
void mb_rt_free(mb_rt *rt) {
  mb_msg *m;
  if (rt == NULL) return;
  if (rt->L != NULL) {
    rt->closing = 1;
    while ((m = mb_mpsc_pop(&rt->q)) != NULL) {
      if (m->kind == MB_MSG_RUN) {
        mb_run_free((mb_run *)m);
      } else if (m->kind == MB_MSG_CANCEL || m->kind == MB_MSG_REGISTER) {
        free(m);
      } else if (m->kind != MB_MSG_CLOSE) {
        mb_bridge_drain(rt, m);
      }
    }
    lua_close(rt->L); /* collects iterators: releases Lua's share of streams */
    rt->L = NULL;
    if (rt->mem_used != 0) __atomic_add_fetch(&mb_leaked_lua_bytes, (int64_t)rt->mem_used, __ATOMIC_RELAXED);
  }
  while (rt->call_pool != NULL) {
    mb_call *c = rt->call_pool;
    rt->call_pool = (mb_call *)c->msg.next;
    mb_buf_free(&c->buf);
    free(c);
  }
  uv_close((uv_handle_t *)&rt->async, mb_close_cb);
  uv_close((uv_handle_t *)&rt->timer, mb_close_cb);
  uv_run(&rt->loop, UV_RUN_DEFAULT); /* let the close callbacks fire */
  if (uv_loop_close(&rt->loop) != 0) __atomic_add_fetch(&mb_leaked_loops, 1, __ATOMIC_RELAXED);
  free(rt->heap);
  free(rt->ev);
  mb_buf_free(&rt->scratch_in);
  mb_buf_free(&rt->scratch_out);
  free(rt);
}
