/*
** rt.c — the runtime: its life cycle, and the step the Go driver calls to
** make progress.
**
** Layer 5 (life cycle), the top: the only file that knows every module.
** A step runs ready tasks and drains the completion queue until it has
** events for Go (calls to start, contexts to cancel, runs that ended) or
** nothing can move. When only Go work is outstanding it returns
** MB_STEP_PARK and the driver parks the Go way, woken in user space by the
** goroutine that completes; only with timers pending does it sleep in
** libuv, woken by uv_async_send (queue.c).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "await.h"
#include "bridge.h"
#include "call.h"
#include "chan.h"
#include "coro.h"
#include "env.h"
#include "errors.h"
#include "heap.h"
#include "inspect.h"
#include "lbug.h"
#include "interrupt.h"
#include "json.h"
#include "limit.h"
#include "output.h"
#include "promise.h"
#include "rt.h"
#include "run.h"
#include "stream.h"
#include "strlib.h"
#include "tablib.h"
#include "task.h"
#include "timer.h"

#define MB_DRAIN_BUDGET 1024 /* messages per pass, so timers still run */

/* ---------------------------------------------------------------------
** Draining the queue: each message to the module that owns its record.
** ------------------------------------------------------------------- */
static int mb_rt_drain(mb_rt *rt) {
  int n = 0;
  mb_msg *m;
  while (n < MB_DRAIN_BUDGET && (m = mb_queue_pop(&rt->q)) != NULL) {
    n++;
    switch (m->kind) {
      case MB_MSG_RESULT:
        mb_call_drain(rt, (mb_call *)m);
        break;
      case MB_MSG_CHUNK:
      case MB_MSG_END:
        mb_stream_drain(rt, m);
        break;
      case MB_MSG_RUN:
        mb_run_start(rt, (mb_run *)m);
        break;
      case MB_MSG_CANCEL:
        mb_run_drain_cancel(rt, (mb_run_cancel_msg *)m);
        break;
      case MB_MSG_REGISTER:
        mb_bridge_register(rt, (mb_bridge_reg *)m);
        break;
      case MB_MSG_CLOSE:
        rt->closing = 1;
        mb_run_close_all(rt);
        break;
      case MB_MSG_TRIM:
        mb_task_pool_trim(rt);
        break;
      default:
        mb_assert(0, "a message of no known kind");
    }
  }
  return n;
}

/* ---------------------------------------------------------------------
** The step.
** ------------------------------------------------------------------- */

/* Run every task that is ready now, once; a task of priority p that
** keeps yielding is resumed up to p times in a row. Tasks made ready
** meanwhile (by yield, or by an inline completion) wait for the next pass,
** so a task that keeps yielding cannot keep the queue from being drained. */
static void mb_rt_run_ready(mb_rt *rt) {
  mb_link batch;
  mb_list_init(&batch);
  mb_list_move(&rt->ready, &batch);
  while (!mb_list_empty(&batch)) {
    mb_task *t = mb_list_first(&batch, mb_task, ready);
    int turns = t->priority;
    for (;;) {
      mb_run *r = t->run;
      mb_list_remove(&t->ready);
      t->wait = MB_WAIT_NONE;
      if (mb_task_resume(rt, t)) { /* it ended: its run learns of it */
        mb_run_task_end(rt, r, t);
        break; /* its record may be gone */
      }
      if (r->exiting) { /* it called os.exit: the run ends, t with it */
        mb_run_exit(rt, r);
        break;
      }
      /* Another turn only if it just queued itself again by yielding. */
      if (--turns <= 0 || t->wait != MB_WAIT_READY || t->aborted ||
          rt->ready.prev != &t->ready)
        break;
    }
  }
}

/* Wake sleepers that are due even while tasks keep the loop busy, so a
** greedy task cannot starve timers. */
static void mb_rt_wake_due(mb_rt *rt) {
  if (mb_sleep_empty(&rt->sleepers)) return;
  uv_update_time(&rt->loop);
  if (rt->sleepers.heap[0]->deadline <= uv_now(&rt->loop)) mb_task_wake_sleepers(rt);
}

/* Nothing can move until a message arrives: no ready task, no sleeper,
** and Go work in flight (or no task at all: otherwise it is a deadlock). */
static int mb_rt_idle(mb_rt *rt) {
  return mb_list_empty(&rt->ready) && !rt->closing && mb_sleep_empty(&rt->sleepers) &&
         (rt->inflight > 0 || !mb_run_has_live_tasks(rt));
}

static int mb_rt_has_events(mb_rt *rt) {
  return rt->ev.n > 0 || !mb_list_empty(&rt->done);
}

static int mb_rt_step_loop(mb_rt *rt) {
  for (;;) {
    int drained = mb_rt_drain(rt);
    mb_rt_wake_due(rt);
    mb_rt_run_ready(rt);
    if (rt->over_limit) mb_run_end_over_limit(rt);
    if (mb_rt_has_events(rt)) {
      /* When the loop would park right after Go handled these events, say
      ** so now: the driver parks without another step, so a goroutine it
      ** just started runs on the driver's own thread, not a woken one. */
      if (mb_rt_idle(rt) && mb_queue_park_go(&rt->q)) return MB_STEP_EVENTS_PARK;
      return MB_STEP_EVENTS;
    }
    if (!mb_list_empty(&rt->ready) || drained > 0) continue;
    if (!mb_queue_empty(&rt->q)) continue;
    if (rt->closing) return MB_STEP_CLOSED;
    if (!mb_sleep_empty(&rt->sleepers)) {
      mb_queue_sleep_uv(&rt->q, &rt->loop);
      continue;
    }
    if (rt->inflight == 0 && mb_run_has_live_tasks(rt)) {
      mb_run_deadlock(rt);
      continue;
    }
    if (mb_queue_park_go(&rt->q)) return MB_STEP_PARK;
  }
}

/* The step runs protected: a memory error in the scheduler's own Lua calls
** ends the loop cleanly (MB_STEP_FATAL) instead of aborting the process. */
static int mb_rt_step_p(lua_State *L) {
  lua_pushinteger(L, mb_rt_step_loop((mb_rt *)lua_touserdata(L, 1)));
  return 1;
}

int mb_rt_step(mb_rt *rt) {
  lua_State *L = rt->L;
  int st;
  rt->ev.n = 0;
  rt->step++;
  lua_pushcfunction(L, mb_rt_step_p);
  lua_pushlightuserdata(L, rt);
  mb_interrupt_enter(rt);
  st = lua_pcall(L, 1, 1, 0);
  mb_interrupt_leave(rt);
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

/* Any thread: the runtime is closing. The message is embedded in rt. */
int mb_rt_close(mb_rt *rt) {
  atomic_store(&rt->close_asked, 1);
  rt->close_msg.kind = MB_MSG_CLOSE;
  return mb_queue_push(&rt->q, &rt->close_msg);
}

/* Any thread (the Go driver's timer, Loop.armTrim): the loop parked with
** more threads pooled than it keeps; let those it no longer uses go. The
** message is embedded in rt, so it is queued once at a time. Returns as
** mb_queue_push (1: wake the driver), or 0 when it is queued already. */
int mb_rt_trim(mb_rt *rt) {
  if (atomic_exchange(&rt->trim_asked, 1)) return 0;
  rt->trim_msg.kind = MB_MSG_TRIM;
  return mb_queue_push(&rt->q, &rt->trim_msg);
}

/* ---------------------------------------------------------------------
** Life cycle.
** ------------------------------------------------------------------- */
/* Lua's allocator. It counts what Lua holds, and refuses what the limits
** do not allow (mb_limit_alloc_refuses: MemoryLimit, with the scheduler's
** reserve outside tasks, and a task's run past its deadline or budget),
** noting where the task is: Lua then collects garbage, tries once more,
** and raises a memory error (LUA_ERRMEM) without a message handler.
** Blocks come from the runtime's small-block heap (heap.c), or malloc. */
static void *mb_rt_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  mb_rt *rt = (mb_rt *)ud;
  size_t old = ptr != NULL ? osize : 0; /* without ptr, osize is a type tag */
  void *p;
  if (nsize == 0) {
    mb_heap_realloc(&rt->heap, ptr, osize, 0);
    rt->mem_used -= old;
    return NULL;
  }
  if (nsize > old && mb_limit_alloc_refuses(rt, nsize - old)) {
    rt->alloc_failed++;
    mb_limit_oom_where(rt); /* for the error's traceback */
    return NULL;
  }
  p = mb_heap_realloc(&rt->heap, ptr, osize, nsize);
  if (p != NULL)
    rt->mem_used = rt->mem_used - old + nsize;
  else
    rt->alloc_failed++;
  return p;
}

static int mb_rt_panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "moonbridge: unprotected Lua error: %s\n", msg ? msg : "?");
  abort();
}

/* The sleepers' timer fired: wake the due ones, and return from uv_run
** now, the tasks are ready and the loop must not poll. (Only from inside
** uv_run: a stop requested outside it would make the next uv_run return
** at once, even the one that closes the handles.) */
static void mb_rt_timer_cb(uv_timer_t *h) {
  mb_rt *rt = (mb_rt *)h->data;
  if (mb_task_wake_sleepers(rt) > 0) uv_stop(&rt->loop);
}

/* The task module: its own functions and the combinators above them. */
static int mb_rt_luaopen_task(lua_State *L) {
  mb_task_luaopen(L);
  mb_await_lib(L);
  mb_inspect_lib(L);
  return 1;
}

/* Every library a script sees, in layer order. */
static int mb_rt_open_libs(lua_State *L) {
  luaL_openlibs(L);
  mb_lbug_open(L); /* load, loadfile, dofile, require fix what they load */
  mb_errors_open(L);
  mb_output_open(L);
  mb_task_open(L);
  mb_preload(L, "task", mb_rt_luaopen_task);
  mb_coro_open(L);
  mb_chan_open(L);
  mb_promise_open(L);
  mb_timer_open(L);
  mb_stream_open(L);
  mb_await_open(L);
  mb_strlib_open(L); /* string and table functions that honour the limits */
  mb_tablib_open(L);
  /* Modules of other helpers go here, one line each. */
  mb_preload(L, "json", mb_json_open);
  mb_env_open(L); /* last: the internal modules leave package.preload */
  return 0;
}

/* A new runtime for the Go Runtime go_handle names: every init checked,
** and what succeeded undone in reverse when one fails (libuv's
** uv_loop_init). NULL when memory, or libuv, fails. */
mb_rt *mb_rt_new(uintptr_t go_handle) {
  mb_rt *rt = calloc(1, sizeof *rt);
  if (rt == NULL) goto fail;
  rt->go_handle = go_handle;
  rt->rand = 0x9e3779b9u;
  rt->alloc_watch = MB_LIMIT_ALLOC_WATCH;
  mb_list_init(&rt->ready);
  mb_list_init(&rt->runs);
  mb_list_init(&rt->done);
  mb_list_init(&rt->orphans);
  if (uv_loop_init(&rt->loop) != 0) goto fail_rt;
  if (mb_queue_init(&rt->q, &rt->loop) != 0) goto fail_loop;
  if (mb_sleep_init(&rt->sleepers, &rt->loop, mb_rt_timer_cb, rt) != 0) goto fail_queue;
  /* Inline calls encode their results here: sized so they rarely grow. */
  if (mb_buf_reserve(&rt->scratch_out, 4096) != 0) goto fail_sleep;
  mb_heap_init(&rt->heap);
  rt->L = lua_newstate(mb_rt_alloc, rt);
  if (rt->L == NULL) goto fail_scratch;
  lua_atpanic(rt->L, mb_rt_panic);
  mb_task_mark(rt->L) = NULL; /* new threads copy it */
  lua_pushcfunction(rt->L, mb_rt_open_libs);
  if (lua_pcall(rt->L, 0, 0, 0) != LUA_OK) goto fail_lua;
  return rt;
fail_lua:
  lua_close(rt->L);
fail_scratch:
  mb_heap_close(&rt->heap);
  mb_buf_free(&rt->scratch_out);
fail_sleep:
  mb_sleep_close(&rt->sleepers);
fail_queue:
  mb_queue_close(&rt->q);
  uv_run(&rt->loop, UV_RUN_DEFAULT); /* let the close callbacks run */
fail_loop:
  uv_loop_close(&rt->loop);
fail_rt:
  free(rt);
fail:
  return NULL;
}

static int mb_rt_require_global_p(lua_State *L) {
  const char *name = lua_tostring(L, 1);
  lua_getglobal(L, "require");
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  lua_setglobal(L, name);
  return 0;
}

/* Make require(name) run src, a module shipped as Lua source (luamod/),
** in moonbridge's private environment (env.c: "moonbridge.*" modules only
** moonbridge's own code can require); with global set, also require it
** now into the global of that name. Called before the loop starts (no
** script has run: _G is as the libraries made it). Returns 0, or -1 with
** rt->fatal set. */
int mb_rt_preload(mb_rt *rt, const char *name, const char *src, size_t len, int global) {
  lua_State *L = rt->L;
  if (mb_env_preload_lua(L, name, src, len) != 0) goto fail;
  if (!global) return 0;
  lua_pushcfunction(L, mb_rt_require_global_p);
  lua_pushstring(L, name);
  if (lua_pcall(L, 1, 0, 0) == LUA_OK) return 0;
fail:
  snprintf(rt->fatal, sizeof rt->fatal, "module %s: %s", name,
           lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
  lua_pop(L, 1);
  return -1;
}

/* Free everything. The Go side calls this after the loop stopped and every
** goroutine it started has returned, so late completions are all in the
** queue: drain them, dropping them. Reports what a bug would leave: bytes
** Lua's allocator still counts after lua_close, and a loop that still had
** handles open. */
void mb_rt_free(mb_rt *rt, int64_t *leaked_lua_bytes, int *leaked_loop) {
  mb_msg *m;
  *leaked_lua_bytes = 0;
  *leaked_loop = 0;
  if (rt == NULL) return;
  rt->closing = 1;
  while ((m = mb_queue_pop(&rt->q)) != NULL) {
    switch (m->kind) {
      case MB_MSG_RESULT: mb_call_drain(rt, (mb_call *)m); break;
      case MB_MSG_CHUNK:
      case MB_MSG_END: mb_stream_drain(rt, m); break;
      case MB_MSG_RUN: mb_run_free((mb_run *)m); break;
      case MB_MSG_CANCEL:
      case MB_MSG_REGISTER: free(m); break;
      default: break; /* MB_MSG_CLOSE and _TRIM are embedded in rt */
    }
  }
  rt->mem_reserve = 0; /* finalizers run now get MemoryLimit itself */
  lua_close(rt->L); /* collects iterators: releases Lua's share of streams */
  rt->L = NULL;
  mb_heap_close(&rt->heap); /* every page, even one a leak would keep */
  *leaked_lua_bytes = (int64_t)rt->mem_used;
  mb_run_free_all(rt);
  mb_call_pool_free(rt);
  mb_queue_close(&rt->q);
  mb_sleep_close(&rt->sleepers);
  uv_run(&rt->loop, UV_RUN_DEFAULT); /* let the close callbacks fire */
  *leaked_loop = uv_loop_close(&rt->loop) != 0;
  mb_sleep_free(&rt->sleepers);
  mb_event_free(&rt->ev);
  mb_buf_free(&rt->scratch_in);
  mb_buf_free(&rt->scratch_out);
  free(rt);
}
