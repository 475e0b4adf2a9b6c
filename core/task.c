/*
** task.c — tasks: Lua threads scheduled by the loop; waiting, waking and
** cancelling them; and the `task` module's own functions.
**
** Layer 2 (scheduler). A task is a Task userdata (its record, anchored in
** the registry until it ends) plus a root thread. The thread's first
** function is mb_task_main, which calls the task's function under a
** message handler, so an error becomes an error table with the task's
** traceback while the stack is still there to read. Every suspension goes
** through the wait protocol below (prologue, yield, check), which records
** what the task waits for: the one thing to undo if the task is woken
** another way. The run a task belongs to is run.c's: mb_task_resume and
** mb_task_kill return ended tasks to it instead of calling up.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dbglib.h"
#include "errors.h"
#include "limit.h"
#include "output.h"
#include "pack.h"
#include "task.h"
#include "userhook.h"

#define MB_TASK_MT "moonbridge.Task"
#define MB_GROUP_MT "moonbridge.Group"

/* A Task's user values. */
enum {
  MB_TASK_UV_THREAD = 1, /* its root thread; once it is done, its results
                         ** when they moved off it (mb_task_forget) */
  MB_TASK_UV_NAME,       /* its name, or nil */
  MB_TASK_UV_CANCEL,     /* the error its cancellation delivers */
  MB_TASK_UV_GROUP,      /* the group that owns it */
  MB_TASK_UV_ERROR,      /* what it knows of errors it raised or received:
                         ** a table, slots MB_TERR_* (see mb_task_msgh) */
  MB_TASK_NUV = MB_TASK_UV_ERROR
};

/* The slots of a task's error record: the last error value its message
** handler saw, with that error's traceback and message (for Go and the
** run's report); and the last error a wait raised in it again (a hop),
** with the traceback it came with. */
enum { MB_TERR_VALUE = 1, MB_TERR_TB, MB_TERR_MSG, MB_TERR_HOP, MB_TERR_HOPTB };

/* A task group (task.group()): its live children and who waits for them. */
typedef struct mb_group {
  mb_link tasks;   /* children still running */
  mb_link waiters; /* g:wait callers */
  int failed;      /* a child failed: its error is the group's user value */
  int closed;      /* waited for: no more spawns */
} mb_group;

static void mb_task_group_child_ended(mb_rt *rt, mb_task *t);
static void mb_task_hook(lua_State *L, lua_Debug *ar);
static int mb_task_interrupted(lua_State *L, mb_rt *rt, mb_task *t);

static const char *const mb_task_status_names[] = {
    "pending", "running", "suspended", "done", "failed", "cancelled"};

/* ---------------------------------------------------------------------
** Threads: a task that returned gives its thread back for the next spawn
** (about ten times cheaper than a new one, and a thread the collector need
** not mark, sweep and free). The pool is a Lua table, which anchors them.
** It grows to what a burst of tasks gave back, up to MB_POOL_MAX; threads
** that sat there a whole MB_POOL_AGE_MS (the pool never went below them)
** are let go, down to MB_POOL_KEEP. Under a MemoryLimit it keeps
** MB_POOL_KEEP at most: idle threads must not count against scripts.
** A loop that parks with more than MB_POOL_KEEP has the Go driver ask
** for mb_task_pool_trim after a period, since an idle loop puts no
** thread back and its collector, with nothing allocated, never runs.
** ------------------------------------------------------------------- */
#define MB_POOL_MAX 16384

static lua_State *mb_task_thread_get(lua_State *L, mb_rt *rt) {
  lua_State *co;
  if (rt->npool > 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->pool_ref);
    lua_rawgeti(L, -1, rt->npool);
    lua_pushnil(L);
    lua_rawseti(L, -3, rt->npool);
    if (--rt->npool < rt->pool_low) rt->pool_low = rt->npool;
    lua_remove(L, -2);
    co = lua_tothread(L, -1);
  } else {
    co = lua_newthread(L);
  }
  return co;
}

/* Let go of the threads no spawn took in the last period (the pool table
** on L's top). Clearing the top slots allocates nothing. */
static void mb_task_pool_age(mb_rt *rt, lua_State *L, uint64_t now) {
  int idle = rt->pool_low;
  if (idle > rt->npool - MB_POOL_KEEP) idle = rt->npool - MB_POOL_KEEP;
  for (; idle > 0; idle--) {
    lua_pushnil(L);
    lua_rawseti(L, -2, rt->npool--);
  }
  rt->pool_low = rt->npool;
  rt->pool_since = now;
}

/* Is a period over since the pool last aged? The loop's clock is read
** afresh: a loop that never sleeps in libuv (only Go calls) never
** updates it. Only a pool beyond MB_POOL_KEEP asks, so the spawns of a
** steady load do not pay the clock. */
static int mb_task_pool_aged(mb_rt *rt) {
  if (rt->npool <= MB_POOL_KEEP) return 0;
  uv_update_time(&rt->loop);
  return uv_now(&rt->loop) - rt->pool_since >= MB_POOL_AGE_MS;
}

static void mb_task_thread_put(mb_rt *rt, mb_task *t) {
  lua_State *L = rt->L;
  int max = rt->mem_limit > 0 ? MB_POOL_KEEP : MB_POOL_MAX;
  if (lua_status(t->co) != LUA_OK || lua_gettop(t->co) != 0) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->pool_ref);
  if (mb_task_pool_aged(rt)) mb_task_pool_age(rt, L, uv_now(&rt->loop));
  if (rt->npool < max) {
    mb_task_mark(t->co) = NULL;
    if (rt->userhooks) mb_userhook_forget(L, t->co); /* a new task's hook is its own */
    lua_pushthread(t->co);
    lua_xmove(t->co, L, 1);
    lua_rawseti(L, -2, ++rt->npool);
  }
  lua_pop(L, 1);
}

/* The loop sat parked with a surplus in the pool (MB_MSG_TRIM, queued by
** the Go driver's timer): age the pool as a put would, and collect the
** threads let go now, or an idle Lua would hold them until its next
** burst. Another park with a surplus left asks again. */
void mb_task_pool_trim(mb_rt *rt) {
  lua_State *L = rt->L;
  int had = rt->npool;
  atomic_store(&rt->trim_asked, 0);
  if (!mb_task_pool_aged(rt)) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->pool_ref);
  mb_task_pool_age(rt, L, uv_now(&rt->loop));
  lua_pop(L, 1);
  if (rt->npool < had) lua_gc(L, LUA_GCCOLLECT);
}

/* ---------------------------------------------------------------------
** The message handler of every task: see the file comment.
** ------------------------------------------------------------------- */

/* The line a task's traceback starts with: "in task 'name'" or "in task
** #id" (t NULL: "in the runtime"). */
static void mb_task_head(const mb_task *t, char *buf, size_t len) {
  if (t != NULL && t->name != NULL)
    snprintf(buf, len, "in task '%s'", t->name);
  else if (t != NULL)
    snprintf(buf, len, "in task #%lld", (long long)t->id);
  else
    snprintf(buf, len, "in the runtime");
}

/* Push the error record of t, a live task (anchored by its ref), made on
** first use. */
static void mb_task_errrec(lua_State *L, mb_task *t) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
  if (lua_getiuservalue(L, -1, MB_TASK_UV_ERROR) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, MB_TERR_HOPTB, 0);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, -3, MB_TASK_UV_ERROR);
  }
  lua_remove(L, -2);
}

/* __tostring of the value at index 1, called protected: an error value
** whose metamethod fails is still passed on, unchanged. */
static int mb_task_tostring_p(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

/* Push the message Go and the run's report show for the error value at
** idx: a string or number as it is, else its __tostring (called here,
** inside the task, under its limits), else "(error object is a %s
** value)" as lua.c says. Returns 1, with that error pushed instead, when
** the run went over a limit in __tostring: it ends the task. */
static int mb_task_errmsg(lua_State *L, mb_task *t, int idx) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TSTRING || lua_type(L, idx) == LUA_TNUMBER) {
    lua_pushvalue(L, idx);
    lua_tostring(L, -1);
    return 0;
  }
  if (luaL_getmetafield(L, idx, "__tostring") != LUA_TNIL) {
    int st;
    lua_pop(L, 1);
    lua_pushcfunction(L, mb_task_tostring_p);
    lua_pushvalue(L, idx);
    st = lua_pcall(L, 1, 1, 0);
    if (st != LUA_OK && t->run->limit != MB_LIMIT_NONE && mb_errors_ours(L, -1)) return 1;
    if (st == LUA_OK && lua_type(L, -1) == LUA_TSTRING) return 0;
    lua_pop(L, 1);
  }
  lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, idx));
  return 0;
}

/* Every task's message handler. An error of moonbridge's (a table with its
** metatable) gets the task's traceback stamped in. Any other value is
** passed on unchanged, as stock Lua passes it (so a string stays a string
** across waits and `load` returns its error as one); its traceback and
** message are noted in the task's error record instead, after the hops
** it crossed if a wait raised this very value in the task. */
int mb_task_msgh(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  mb_task *t = rt->current;
  char head[96];
  rt->hook_raised = 0; /* the error is ours: no script code runs here */
  if (t != NULL && t->reraise) { /* passed on as it is, traceback and all */
    t->reraise = 0;
    lua_settop(L, 1);
    return 1;
  }
  mb_task_head(t, head, sizeof head);
  lua_settop(L, 1);
  if (mb_errors_ours(L, 1) || t == NULL) {
    if (mb_errors_ours(L, 1)) mb_errors_stamp(L, head);
    return 1;
  }
  luaL_checkstack(L, 6, "message handler");
  mb_task_errrec(L, t);                  /* 2 */
  luaL_traceback(L, L, head, 1);         /* 3 */
  lua_rawgeti(L, 2, MB_TERR_HOP);
  if (lua_rawequal(L, -1, 1) && lua_rawgeti(L, 2, MB_TERR_HOPTB) == LUA_TSTRING) {
    lua_remove(L, 4);                    /* err rec tb hops */
    lua_insert(L, 3);                    /* err rec hops tb */
    lua_pushliteral(L, "\n");
    lua_insert(L, 4);
    lua_concat(L, 3);                    /* err rec hops.."\n"..tb */
  }
  lua_settop(L, 3);
  lua_rawseti(L, 2, MB_TERR_TB);
  if (mb_task_errmsg(L, t, 1)) { /* over a limit: that error goes on instead */
    lua_replace(L, 1);
    lua_settop(L, 1);
    mb_errors_stamp(L, head);
    return 1;
  }
  lua_rawseti(L, 2, MB_TERR_MSG);
  lua_pushvalue(L, 1);
  lua_rawseti(L, 2, MB_TERR_VALUE);
  lua_settop(L, 1);
  return 1;
}

/* t failed with an error value not of moonbridge's, alone on its thread's
** top: put the message and traceback its handler noted under it, so the
** thread keeps them with the error (waiters, the run's report and Go read
** them there): msg, tb, error. Without a note for this value (Lua called
** no handler: an error in the handler itself), a note says why. */
static void mb_task_keep_failure(mb_rt *rt, mb_task *t, const char *head) {
  lua_State *co = t->co;
  lua_State *L = rt->L;
  (void)lua_checkstack(co, 3);
  luaL_checkstack(L, 4, "a task's failure");
  mb_task_errrec(L, t);
  lua_rawgeti(L, -1, MB_TERR_VALUE);
  lua_pushvalue(co, -1);
  lua_xmove(co, L, 1);
  if (lua_rawequal(L, -1, -2)) {
    lua_rawgeti(L, -3, MB_TERR_MSG);
    lua_rawgeti(L, -4, MB_TERR_TB);
  } else { /* no metamethod runs here, outside any task */
    if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
      lua_pushvalue(L, -1);
      lua_tostring(L, -1);
    } else {
      lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, -1));
    }
    lua_pushfstring(L, "%s (no stack traceback: Lua calls no message handler for an "
                       "error in the handler itself)", head);
  }
  lua_xmove(L, co, 2);
  lua_rotate(co, -3, 2); /* msg tb err */
  lua_pop(L, 3);
}

/* Whether t failed with an error value not of moonbridge's: then its
** thread holds msg, tb, error on its top (mb_task_keep_failure). */
static int mb_task_failed_raw(lua_State *L, mb_task *t) {
  (void)L;
  return t->status == MB_TASK_FAILED && t->co != NULL && lua_gettop(t->co) >= 3 &&
         !mb_errors_ours(t->co, -1);
}

/* Push t's failure (t has ended) onto L as an error of moonbridge's, for
** the run's result and reports: its own error, or, for any other value,
** a "runtime" error with its message, traceback, and the value as cause. */
void mb_task_push_error(lua_State *L, mb_task *t) {
  lua_State *co = t->co;
  luaL_checkstack(L, 4, "a task's error");
  (void)lua_checkstack(co, 3); /* fails only out of memory with the stack full */
  if (!mb_task_failed_raw(L, t)) {
    lua_pushvalue(co, -1);
    lua_xmove(co, L, 1);
    return;
  }
  lua_pushvalue(co, -3);
  lua_pushvalue(co, -3);
  lua_pushvalue(co, -3);
  lua_xmove(co, L, 3); /* msg tb err */
  {
    size_t n;
    const char *msg = lua_tolstring(L, -3, &n);
    mb_errors_push(L, "runtime", NULL, msg, n);
  }
  lua_insert(L, -4);       /* rep msg tb err */
  lua_setfield(L, -4, "cause");
  lua_setfield(L, -3, "traceback");
  lua_pop(L, 1);
}

/* Report t's failure, which nobody will see otherwise, on stderr. */
void mb_task_report(mb_rt *rt, mb_task *t) {
  mb_task_push_error(rt->L, t);
  mb_output_report(rt->L, -1);
  lua_pop(rt->L, 1);
}

/* A wait raises in the running task, again, the error value on L's top
** that src (NULL: none known) failed with, or that rejected a promise src
** produced (its Task at taskidx, or 0). moonbridge's own errors are
** copied, so each waiter appends its own hop to the traceback; any other
** value goes on unchanged, and the traceback it came with is noted in the
** running task's error record, for its message handler (which puts it
** before the task's own) and task.traceback. */
static void mb_task_pass(lua_State *L, mb_task *src, int taskidx) {
  mb_rt *rt = mb_rt_of(L);
  int err;
  if (mb_errors_ours(L, -1)) {
    mb_errors_fork(L);
    return;
  }
  if (rt->current == NULL) return;
  luaL_checkstack(L, 4, "an error");
  err = lua_gettop(L);
  if (src != NULL && src->status == MB_TASK_FAILED && mb_task_failed_raw(L, src)) {
    lua_pushvalue(src->co, -2);
    lua_xmove(src->co, L, 1);
  } else if (taskidx != 0 && src != NULL &&
             lua_getiuservalue(L, taskidx, MB_TASK_UV_ERROR) == LUA_TTABLE &&
             lua_rawgeti(L, -1, MB_TERR_VALUE) >= 0 && lua_rawequal(L, -1, err)) {
    lua_rawgeti(L, -2, MB_TERR_TB);
  } else {
    lua_pushnil(L);
  }
  mb_task_errrec(L, rt->current);
  lua_pushvalue(L, err);
  lua_rawseti(L, -2, MB_TERR_HOP);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, MB_TERR_HOPTB);
  lua_settop(L, err);
}

void mb_task_pass_error(lua_State *L, mb_task *src) { mb_task_pass(L, src, 0); }

void mb_task_pass_error_at(lua_State *L, int taskidx) {
  taskidx = lua_absindex(L, taskidx);
  mb_task_pass(L, mb_task_test(L, taskidx), taskidx);
}

/* ---------------------------------------------------------------------
** Coroutines suspended inside a task's wait (see task.h's marks): a task
** killed in its wait ends them all, innermost first.
** ------------------------------------------------------------------- */

/* Close co, a thread of a task being killed, under the task's count hook
** (set for the kill: mb_task_kill), and leave its stack empty. An error
** its handlers raised is dropped: nobody waits for a killed task. */
static void mb_task_kill_close(mb_rt *rt, lua_State *co) {
  lua_State *L = rt->L;
  mb_task_hook_set(L, co, rt->hook_count);
  if (mb_limit_closethread(L, co) != LUA_OK) lua_pop(L, 1);
  lua_settop(co, 0);
}

/* End co and the coroutines inward of it, innermost first, as an unwinding
** would: each is closed (its to-be-closed variables closed; they cannot
** wait; they run under the killed task's count hook) and left dead, with
** no error value left on its stack (a coroutine with a value there and no
** frames reads as not yet started). */
static void mb_task_kill_coros_from(mb_rt *rt, lua_State *co) {
  lua_State *inner;
  if (co == NULL) return;
  inner = mb_task_mark_inner(co);
  mb_task_kill_coros_from(rt, inner);
  mb_task_mark(co) = NULL;
  mb_task_kill_close(rt, co);
}

/* t will not run again: end the coroutines that wait with it. Called
** before resetting t's root, whose stack keeps them. */
static void mb_task_kill_coros(mb_rt *rt, mb_task *t) {
  lua_State *outer = t->coros;
  t->coros = NULL;
  mb_task_kill_coros_from(rt, outer);
}

/* ---------------------------------------------------------------------
** The run queue and waking.
** ------------------------------------------------------------------- */

/* Queue the task with nothing delivered (spawned, yielded, preempted, a
** sleep ended): a cancellation may still abort its wait. */
void mb_task_ready(mb_rt *rt, mb_task *t) {
  t->wait = MB_WAIT_READY;
  t->wait_obj = NULL;
  t->wait_what = "its turn";
  mb_list_push(&rt->ready, &t->ready);
}

/* Undo a multi-way wait: its registrations, and its deadline if any. */
static void mb_task_waiters_unlink(mb_rt *rt, mb_task *t) {
  int i;
  for (i = 0; i < t->nw; i++) mb_list_remove(&t->wv[i].link);
  t->wv = NULL;
  t->nw = 0;
  if (t->sleep.idx >= 0) mb_sleep_remove(&rt->sleepers, &t->sleep);
}

/* The wait completed and its result was delivered (a call's results, a
** channel's value): queue the task so that a cancellation arriving now is
** raised at its next suspension point instead of losing the result. Every
** other registration of a multi-way wait is undone. */
void mb_task_wake(mb_rt *rt, mb_task *t) {
  if (t->wait == MB_WAIT_OBJS) mb_task_waiters_unlink(rt, t);
  t->wait = MB_WAIT_WOKEN;
  t->wait_obj = NULL;
  t->wait_what = "its turn";
  mb_list_push(&rt->ready, &t->ready);
}

/* Fire one registration: the task learns which case completed and how. */
void mb_task_waiter_fire(mb_rt *rt, mb_waiter *w, int ok) {
  mb_task *t = w->task;
  t->fired = w->index;
  t->fired_ok = ok;
  mb_task_wake(rt, t);
}

/* Fire every registration on an awaitable's list (it became ready). */
void mb_task_waiters_fire_all(mb_rt *rt, mb_link *list) {
  while (!mb_list_empty(list))
    mb_task_waiter_fire(rt, mb_list_first(list, mb_waiter, link), 1);
}

void mb_task_waiter_init(mb_waiter *w, mb_task *t, lua_State *L, int index, int op) {
  mb_list_init(&w->link);
  w->task = t;
  w->L = L;
  w->index = index;
  w->op = op;
  w->slot = 0;
}

/* ---------------------------------------------------------------------
** Waiting. Every suspension of a task has the same three parts: the
** prologue (mb_task_wait_begin: a task that can yield here), the yield
** (mb_task_wait_yield and its forms, which record what the task waits
** for, the one thing to undo if it is woken another way), and the check
** its continuation starts with (mb_task_wait_check).
** ------------------------------------------------------------------- */

/* mb_task_wait_begin found no task, or no way to yield: say which. */
void mb_task_wait_refuse(lua_State *L, const char *name, const char *verb) {
  if (mb_rt_of(L)->current == NULL) mb_errors_misuse(L, "%s: not inside a task", name);
  mb_errors_cannot_yield(L, name, verb);
}

/* Suspend the running task (L is its root thread or a user coroutine it
** resumed) until whatever it now waits for wakes it. A cancellation that
** is pending is raised here instead: this is a suspension point. */
int mb_task_wait_yield(lua_State *L, mb_task *t, int wait, const char *what,
                       lua_KContext ctx, lua_KFunction k) {
  mb_rt *rt = mb_rt_of(L);
  mb_assert(wait != MB_WAIT_OTHER || t->wait_undo != NULL, "a wait without its undo");
  t->wait = wait;
  t->wait_what = what;
  if (t->cancel == MB_CANCEL_PENDING) {
    mb_task_wait_end(rt, t);
    return mb_task_cancel_raise(L, t);
  }
  rt->yielding = 1;
  return lua_yieldk(L, 0, ctx, k);
}

/* Wait on obj, an object of a higher layer (a bridge call, a stream):
** undo(rt, obj) makes it forget the task if the wait ends another way. */
int mb_task_wait_other(lua_State *L, mb_task *t, void *obj, mb_wait_undo undo,
                       const char *what, lua_KContext ctx, lua_KFunction k) {
  t->wait_obj = obj;
  t->wait_undo = undo;
  return mb_task_wait_yield(L, t, MB_WAIT_OTHER, what, ctx, k);
}

/* Register the task on wv[0..n-1] (already linked by the caller) and
** suspend it: the usual way to wait for awaitables. */
int mb_task_wait_objs(lua_State *L, mb_task *t, mb_waiter *wv, int n, const char *what,
                      lua_KContext ctx, lua_KFunction k) {
  t->wv = wv;
  t->nw = n;
  t->fired = 0;
  t->fired_ok = 0;
  return mb_task_wait_yield(L, t, MB_WAIT_OBJS, what, ctx, k);
}

/* First thing a waiting continuation does: raise if the wait was aborted
** (cancelled, or unable to carry on in a coroutine). */
void mb_task_wait_check(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  mb_task *t = rt->current;
  if (t == NULL || !t->aborted) return;
  t->aborted = 0;
  if (t->wake_err != NULL) {
    const char *why = t->wake_err;
    t->wake_err = NULL;
    mb_errors_throw(L, "cancelled", NULL, "%s", why);
  }
  mb_task_cancel_raise(L, t);
}

/* The running task, for what needs one without waiting (task.spawn). */
mb_task *mb_task_current(lua_State *L, const char *name) {
  mb_rt *rt = mb_rt_of(L);
  if (rt->current == NULL) mb_errors_misuse(L, "%s: not inside a task", name);
  return rt->current;
}

/* Undo whatever the task waits for, so nothing will wake it later. */
void mb_task_wait_end(mb_rt *rt, mb_task *t) {
  switch (t->wait) {
    case MB_WAIT_READY:
      mb_list_remove(&t->ready);
      break;
    case MB_WAIT_WOKEN: /* its continuation will not take what was delivered */
      mb_list_remove(&t->ready);
      if (t->held != NULL) {
        void *held = t->held;
        t->held = NULL;
        t->held_free(rt, held);
      }
      break;
    case MB_WAIT_OTHER:
      t->wait_undo(rt, t->wait_obj);
      break;
    case MB_WAIT_OBJS:
      mb_task_waiters_unlink(rt, t);
      break;
    case MB_WAIT_SLEEP:
      mb_sleep_remove(&rt->sleepers, &t->sleep);
      break;
  }
  t->wait = MB_WAIT_NONE;
  t->wait_obj = NULL;
  t->wait_undo = NULL;
}

/* End the task's wait without its result and let it run: its continuation
** raises (mb_task_wait_check). */
static void mb_task_abort(mb_rt *rt, mb_task *t) {
  mb_task_wait_end(rt, t);
  t->aborted = 1;
  mb_task_ready(rt, t);
}

/* ---------------------------------------------------------------------
** Sleepers (sleep.c keeps them in a heap by deadline).
** ------------------------------------------------------------------- */

/* Wake every sleeper whose deadline has passed; returns how many. A join
** with a deadline (task.timeout) that is due has timed out: its other
** registrations are undone and no case fired. */
int mb_task_wake_sleepers(mb_rt *rt) {
  uint64_t now = uv_now(&rt->loop);
  mb_sleeper *x;
  int woke = 0;
  while ((x = mb_sleep_pop_due(&rt->sleepers, now)) != NULL) {
    mb_task *t = mb_container_of(x, mb_task, sleep);
    if (t->wait == MB_WAIT_OBJS) {
      mb_task_waiters_unlink(rt, t);
      t->fired = 0;
    }
    mb_task_ready(rt, t);
    woke++;
  }
  return woke;
}

/* ---------------------------------------------------------------------
** Creating, resuming and ending tasks.
** ------------------------------------------------------------------- */
/* The task's function returned or raised: its status (LUA_OK, or the
** error's, so that a memory error is told by LUA_ERRMEM) goes below the
** results or the error, in the message handler's slot. */
static int mb_task_main_k(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  luaL_checkstack(L, 1, "too many results"); /* the function's fill the stack */
  lua_pushinteger(L, status == LUA_YIELD ? LUA_OK : status);
  lua_replace(L, 1);
  return lua_gettop(L);
}

/* The root function of every task thread: stack is fn, args... */
static int mb_task_main(lua_State *L) {
  int n = lua_gettop(L);
  int st;
  lua_pushcfunction(L, mb_task_msgh);
  lua_insert(L, 1);
  st = lua_pcallk(L, n - 1, LUA_MULTRET, 1, 0, mb_task_main_k);
  return mb_task_main_k(L, st, 0);
}

/* Spawn a task running the function below nargs arguments on L's top; they
** are moved to the task, and the Task userdata is left in their place. */
mb_task *mb_task_spawn(lua_State *L, mb_run *run, int nargs, const char *name) {
  mb_rt *rt = mb_rt_of(L);
  lua_State *co;
  mb_task *t;
  if (rt->current != NULL && rt->current->killed) /* its run is being torn down */
    mb_errors_misuse(L, "cannot start a task: the run has ended");
  luaL_checkstack(L, 4, "spawning a task");
  co = mb_task_thread_get(L, rt);
  if (!lua_checkstack(co, nargs + 2)) /* mb_task_main, the function, its arguments */
    mb_errors_misuse(L, "cannot start a task: too many arguments (%d)", nargs);
  t = (mb_task *)lua_newuserdatauv(L, sizeof *t, MB_TASK_NUV);
  memset(t, 0, sizeof *t);
  t->co = co;
  t->run = run;
  t->id = run->ntask_ids++; /* per run: a script's first task is #1 */
  t->sleep.idx = -1;
  t->priority = 1;
  /* The loop's cached time costs nothing; an exact one only once asked. */
  t->created = rt->accounting ? uv_hrtime() : uv_now(&rt->loop) * 1000000;
  mb_list_init(&t->ready);
  mb_list_init(&t->waiters);
  mb_list_init(&t->w1.link);
  mb_list_init(&t->fail_link);
  mb_list_init(&t->group_link);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->task_mt_ref);
  lua_setmetatable(L, -2);
  lua_rotate(L, -2, 1); /* fn args task thread */
  lua_setiuservalue(L, -2, MB_TASK_UV_THREAD);
  if (name != NULL) {
    t->name = lua_pushstring(L, name);
    lua_setiuservalue(L, -2, MB_TASK_UV_NAME);
  }
  /* fn args task: move fn and args under mb_task_main on the thread. */
  lua_rotate(L, -(nargs + 2), 1); /* task fn args */
  lua_pushcfunction(co, mb_task_main);
  lua_xmove(L, co, nargs + 1);
  t->nres = nargs + 1; /* values to pass at the first resume */
  mb_task_mark(co) = t;
  lua_pushvalue(L, -1);
  t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  run->ntasks++;
  mb_list_push(&run->tasks, &t->run_link);
  t->status = MB_TASK_PENDING;
  mb_task_ready(rt, t);
  return t;
}

/* The task will not run again. Its Task stays pushed on rt->L (the caller
** pops it): once unanchored from the registry, only that keeps the record
** alive while the run's bookkeeping, which may allocate, still uses it. */
static void mb_task_end(mb_rt *rt, mb_task *t, int status) {
  mb_run *r = t->run;
  lua_rawgeti(rt->L, LUA_REGISTRYINDEX, t->ref);
  t->status = status;
  if (!mb_list_empty(&t->waiters)) t->observed = 1;
  mb_task_waiters_fire_all(rt, &t->waiters);
  mb_list_remove(&t->run_link);
  r->ntasks--;
  if (t->detached) r->ndetached--;
  if (t == r->main) t->observed = 1; /* its outcome is the run's */
  if (t->group != NULL) mb_task_group_child_ended(rt, t);
  if (rt->oom_task == t) mb_limit_forget(rt, t);
  if (status == MB_TASK_FAILED && !t->observed && !t->detached && !r->done) {
    /* Its error waits for a taker or the run's end; the registry keeps
    ** the record alive meanwhile (nothing else may hold the Task). */
    mb_list_push(&r->failed, &t->fail_link);
  } else {
    if (status == MB_TASK_FAILED && !t->observed) {
      t->observed = 1; /* nobody can take it: say it on stderr */
      mb_task_report(rt, t);
    }
    luaL_unref(rt->L, LUA_REGISTRYINDEX, t->ref);
    t->ref = LUA_NOREF;
  }
}

/* t's failure was taken (awaited, joined, detached) or reported: it
** leaves the run's list and its anchor goes. Callers hold the Task. */
void mb_task_unfail(lua_State *L, mb_task *t) {
  if (mb_list_empty(&t->fail_link)) return;
  mb_list_remove(&t->fail_link);
  luaL_unref(L, LUA_REGISTRYINDEX, t->ref);
  t->ref = LUA_NOREF;
}

/* Push the live task's cancellation error (set by Task:cancel) onto L. */
static void mb_task_cancel_value(lua_State *L, mb_task *t) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
  lua_getiuservalue(L, -1, MB_TASK_UV_CANCEL);
  lua_remove(L, -2);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    mb_task_cancel_error(L, t, 0);
  }
}

/* Raise the pending cancellation at this suspension point. From now on the
** error unwinds the task, and cleanup may await, until it is caught. */
int mb_task_cancel_raise(lua_State *L, mb_task *t) {
  mb_task_cancel_delivered(t);
  mb_task_cancel_value(L, t);
  lua_error(L);
  mb_unreachable();
}

/* Is the value at idx this task's cancellation error? */
int mb_task_is_cancel(lua_State *L, mb_task *t, int idx) {
  int is;
  idx = lua_absindex(L, idx);
  if (t->cancel == MB_CANCEL_NONE || !lua_istable(L, idx)) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
  if (lua_type(L, -1) != LUA_TUSERDATA) {
    lua_pop(L, 1);
    return 0;
  }
  lua_getiuservalue(L, -1, MB_TASK_UV_CANCEL);
  is = lua_rawequal(L, -1, idx);
  lua_pop(L, 2);
  return is;
}

/* An error was caught (pcall, xpcall, coroutine.resume). If the task's run
** is over a limit, the run's limit error goes on up. If it was the running
** task's cancellation, the task swallowed it: raise it again at the next
** suspension point. */
void mb_task_caught(lua_State *L, int idx) {
  mb_task *t = mb_rt_of(L)->current;
  if (t != NULL && t->run->limit != MB_LIMIT_NONE) mb_limit_raise(L, t->run); /* no catching */
  if (t != NULL && t->cancel == MB_CANCEL_DELIVERED && mb_task_is_cancel(L, t, idx))
    t->cancel = MB_CANCEL_PENDING;
}

/* A cancelled task's outcome is its cancellation, whatever it returned;
** an error other than the cancellation (raised by its cleanup) fails it. */
static void mb_task_finish(mb_rt *rt, mb_task *t, int ok, int nres) {
  lua_State *co = t->co;
  /* A cancellation that never reached a suspension point changes nothing:
  ** the task finished first, and what it did (a send, a receive) stands. */
  if (ok && (t->cancel == MB_CANCEL_NONE || !t->cancel_seen)) {
    lua_rotate(co, -nres, -1); /* the status to the top, then drop it */
    lua_pop(co, 1);
    t->nres = nres - 1;
    mb_task_end(rt, t, MB_TASK_DONE);
    return;
  }
  if (ok) { /* it caught the cancellation and returned */
    lua_settop(co, 0);
    mb_task_cancel_value(co, t);
    t->nres = 0;
    mb_task_end(rt, t, MB_TASK_CANCELLED);
    return;
  }
  mb_task_end(rt, t, mb_task_is_cancel(co, t, -1) ? MB_TASK_CANCELLED : MB_TASK_FAILED);
}

/* A task cancelled before it ever ran ends without running. */
static void mb_task_end_unstarted(mb_rt *rt, mb_task *t) {
  lua_settop(t->co, 0);
  mb_task_cancel_value(t->co, t);
  t->nres = 0;
  mb_task_end(rt, t, MB_TASK_CANCELLED);
}

/* mb_pack_values, protected (it allocates): n is on the top. */
static int mb_task_pack_p(lua_State *L) {
  int n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  mb_pack_values(L, n);
  return 1;
}

/* Move a done task's results off its thread into its Task (on rt->L's
** top), so the thread can go: one value as it is, several packed
** (pack.h). Returns 0, keeping them where they are, when there is no
** room to. */
static int mb_task_move_results(mb_rt *rt, mb_task *t) {
  lua_State *L = rt->L;
  int i, n = t->nres;
  if (!lua_checkstack(L, n + 3)) return 0;
  if (n > 1) { /* copies: a failure leaves them on the thread */
    if (!lua_checkstack(t->co, n)) return 0;
    lua_pushcfunction(L, mb_task_pack_p);
    for (i = 1; i <= n; i++) lua_pushvalue(t->co, i);
    lua_xmove(t->co, L, n);
    lua_pushinteger(L, n);
    if (lua_pcall(L, n + 1, 1, 0) != LUA_OK) { /* out of memory */
      lua_pop(L, 1);
      return 0;
    }
    lua_settop(t->co, 0);
  } else {
    lua_xmove(t->co, L, 1);
  }
  lua_setiuservalue(L, -2, MB_TASK_UV_THREAD);
  return 1;
}

/* The run is done with the ended task (see mb_task_resume): pop its Task.
** A task that returned gives up its thread, for reuse if the pool has
** room: a spawn then costs no new thread, and the collector has none to
** mark and sweep; its results, if any, move into the Task. */
void mb_task_forget(mb_rt *rt, mb_task *t) {
  mb_assert(t->status >= MB_TASK_DONE, "forgetting a live task");
  if (t->status == MB_TASK_DONE && t->ref == LUA_NOREF &&
      (t->nres == 0 || mb_task_move_results(rt, t))) {
    mb_task_thread_put(rt, t);
    t->co = NULL; /* with no results, the Task may still anchor the thread; harmless */
  }
  lua_pop(rt->L, 1);
}

/* The count hook a turn of t needs (a slice, a budget, a deadline), or
** none: a pooled thread may carry the hook of an earlier run's task.
** Setting a hook restarts its count. A slice wants that (it counts one
** turn); a budget or deadline does not: a task that yields every few
** hundred instructions must still reach the hook, so a hook already in
** place keeps counting across turns. A task's first turn starts a count
** of its own: mb_limit_precharge paid for its last, partial period. */
static void mb_task_set_hook(mb_rt *rt, mb_task *t, int first) {
  lua_State *co = t->co;
  int count = mb_limit_hook_count(rt, t->run);
  int carry = !first && (t->run->insn_limited || t->run->deadline > 0);
  rt->hook_count = count;
  t->slice_used = 0;
  if (rt->userhooks) { /* a script set hooks: keep co's own */
    if ((carry || count == 0) && mb_task_hook_ok(rt->L, co, count)) return;
    mb_task_hook_set(rt->L, co, count);
  } else if (count == 0) {
    if (lua_gethook(co) != NULL) lua_sethook(co, NULL, 0, 0);
  } else if (!carry || lua_gethook(co) != mb_task_hook || lua_gethookcount(co) != count) {
    lua_sethook(co, mb_task_hook, LUA_MASKCOUNT, count);
  }
}

/* t failed with status st, its error alone on its thread's top. Lua called
** no message handler for a memory error (LUA_ERRMEM), nor for an error in
** the handler itself (LUA_ERRERR): the error is made one of ours here. Out
** of memory under the limit, the task's end ends its run (run.c). A task
** of a run over a limit fails with that limit's error, whatever ended it:
** an allocation the limit refused (mb_limit_alloc_over), or an error that
** replaced the limit's on its way up (a __close handler's, or a message
** handler's). */
static void mb_task_failed(mb_rt *rt, mb_task *t, int st) {
  mb_run *r = t->run;
  char head[96];
  mb_task_head(t, head, sizeof head);
  if (r->limit != MB_LIMIT_NONE && !mb_errors_has(t->co, -1, "limit", mb_limit_op(r->limit))) {
    const char *where = rt->oom_task == t ? rt->oom_where : NULL;
    lua_pop(t->co, 1);
    lua_pushstring(t->co, mb_limit_message(r->limit));
    mb_errors_adopt(t->co, "limit", mb_limit_op(r->limit), head, where);
  } else if (st == LUA_ERRMEM) {
    t->oom = (unsigned char)mb_limit_memerr(rt, t->co, t, head);
  } else if (!mb_errors_ours(t->co, -1)) {
    mb_task_keep_failure(rt, t, head);
  }
  mb_task_finish(rt, t, 0, 1);
}

/* Give t a turn. Returns 1 when it ended (returned, failed, or cancelled
** before it started): its Task is then pushed on rt->L, anchoring the
** record while the caller does the run's bookkeeping, and the caller
** pops it with mb_task_forget. Returns 0 when it suspended. A task that
** returned although its run went over a limit in this turn (a limit error
** some C function caught and dropped) fails with the limit's error. */
int mb_task_resume(mb_rt *rt, mb_task *t) {
  lua_State *co = t->co;
  int nres, st, nargs = t->nres, first = t->status == MB_TASK_PENDING;
  if (first && t->cancel != MB_CANCEL_NONE) {
    mb_task_end_unstarted(rt, t);
    return 1;
  }
  if (first && t->run->insn_limited) mb_limit_precharge(rt, t->run);
  if (t->run->limit != MB_LIMIT_NONE) return 0; /* its run is ending: killed after this turn */
  t->nres = 0;
  t->status = MB_TASK_RUNNING;
  rt->current = t;
  rt->running = co;
  mb_task_set_hook(rt, t, first);
  t->resumes++;
  if (rt->accounting) {
    uint64_t t0 = uv_hrtime();
    st = lua_resume(co, rt->L, nargs, &nres);
    t->cpu += uv_hrtime() - t0;
  } else {
    st = lua_resume(co, rt->L, nargs, &nres);
  }
  rt->current = NULL;
  rt->running = NULL;
  rt->hook_raised = 0;
  if (st == LUA_YIELD) {
    lua_pop(co, nres);
    mb_assert(rt->yielding, "a task yielded without the runtime's mark");
    rt->yielding = 0;
    t->status = MB_TASK_SUSPENDED;
    return 0;
  }
  if (st == LUA_OK) { /* mb_task_main returned: status, results or error */
    st = (int)lua_tointeger(co, -nres);
    if (st == LUA_OK && t->run->limit == MB_LIMIT_NONE) {
      mb_task_finish(rt, t, 1, nres);
      return 1;
    }
    if (st == LUA_OK) { /* its run is over a limit: that fails it */
      lua_settop(co, 0);
      lua_pushnil(co);
    } else {
      lua_replace(co, -2); /* keep only the error */
    }
  }
  /* The task failed; with LUA_ERRMEM also when the error escaped its
  ** pcall (a memory error in the message handler), alone on top. */
  mb_task_failed(rt, t, st);
  return 1;
}

/* End a task that will not run again: the run is being torn down. Its
** to-be-closed variables are closed; they cannot wait. That cleanup is the
** run's code, so it runs as the task: under MemoryLimit and the count hook
** of its run's limits (the deadline and the budget), and, when the run is
** over a limit already, ended at the hook's first tick (mb_task_hook), so
** a handler that loops cannot hold the loop. When the runtime is closing,
** Close's preemption (interruptClose) ends it the same way.
** It ends with the error at rt->L's index err, which the run's tasks
** share. Its Task is left pushed on rt->L, as mb_task_resume does when a
** task ends. */
void mb_task_kill(mb_rt *rt, mb_task *t, int err) {
  mb_task *current = rt->current;
  lua_State *running = rt->running;
  int count = rt->hook_count;
  mb_task_wait_end(rt, t);
  t->killed = 1;
  rt->current = t;
  rt->running = t->co;
  rt->hook_count = mb_limit_hook_count(rt, t->run);
  mb_task_kill_coros(rt, t);
  if (lua_status(t->co) != LUA_OK) mb_task_kill_close(rt, t->co);
  rt->current = current;
  rt->running = running;
  rt->hook_count = count;
  rt->hook_raised = 0;
  lua_settop(t->co, 0);
  (void)lua_checkstack(t->co, 1);
  lua_pushvalue(rt->L, err);
  lua_xmove(rt->L, t->co, 1);
  t->nres = 0;
  t->observed = 1;
  mb_task_end(rt, t, MB_TASK_CANCELLED);
}

/* Cancel t (see Task:cancel). The error to deliver is on L's top (popped).
** Returns 0 when t had already finished. */
int mb_task_cancel(mb_rt *rt, lua_State *L, mb_task *t) {
  if (t->status >= MB_TASK_DONE) {
    lua_pop(L, 1);
    return 0;
  }
  if (t->cancel != MB_CANCEL_NONE) { /* already on its way */
    lua_pop(L, 1);
    return 1;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
  lua_insert(L, -2);
  lua_setiuservalue(L, -2, MB_TASK_UV_CANCEL);
  lua_pop(L, 1);
  t->cancel = MB_CANCEL_PENDING;
  switch (t->wait) {
    case MB_WAIT_NONE:  /* running, or ending the run: raised when it suspends */
    case MB_WAIT_WOKEN: /* its result is delivered: raised at its next wait */
      break;
    case MB_WAIT_READY:
      if (t->status == MB_TASK_PENDING) break; /* ends when its turn comes */
      /* fall through - a yield or a preemption is aborted like any wait */
    default:
      mb_task_abort(rt, t);
  }
  return 1;
}

/* Push the cancellation error for t with the reason at idx (0: none). */
void mb_task_cancel_error(lua_State *L, mb_task *t, int idx) {
  if (idx != 0 && lua_type(L, idx) == LUA_TSTRING) {
    size_t n;
    const char *m = lua_tolstring(L, idx, &n);
    mb_errors_push(L, "cancelled", NULL, m, n);
  } else if (t->name != NULL) {
    const char *m = lua_pushfstring(L, "task '%s' was cancelled", t->name);
    mb_errors_push(L, "cancelled", NULL, m, strlen(m));
    lua_remove(L, -2);
  } else {
    const char *m = lua_pushfstring(L, "task #%I was cancelled", (lua_Integer)t->id);
    mb_errors_push(L, "cancelled", NULL, m, strlen(m));
    lua_remove(L, -2);
  }
  if (idx != 0 && !lua_isnoneornil(L, idx)) {
    lua_pushliteral(L, "cause"); /* raw: the error metatable is a script's to change */
    lua_pushvalue(L, idx);
    lua_rawset(L, -3);
  }
}

/* "file:line" where t is (the innermost Lua function on its stack with a
** line), or "?". */
static void mb_task_where(mb_task *t, char *buf, size_t len) {
  lua_Debug ar;
  int level;
  snprintf(buf, len, "?");
  for (level = 0; t->co && lua_getstack(t->co, level, &ar); level++) {
    lua_getinfo(t->co, "Sl", &ar);
    if (ar.currentline > 0) {
      snprintf(buf, len, "%s:%d", ar.short_src, ar.currentline);
      return;
    }
  }
}

/* "task 'name' (file:line) waits for <what>": for deadlock reports. */
int mb_task_blocked_where(mb_task *t, char *buf, size_t len) {
  char where[160];
  const char *w = t->wait != MB_WAIT_NONE && t->wait_what != NULL ? t->wait_what : "nothing";
  mb_task_where(t, where, sizeof where);
  if (t->name != NULL)
    return snprintf(buf, len, "  task '%s' (%s) waits for %s", t->name, where, w);
  return snprintf(buf, len, "  task #%lld (%s) waits for %s", (long long)t->id, where, w);
}

/* Push t:info()'s table: id, name, status, waiting_for (while suspended),
** where, created_at (Unix seconds), age, cpu (seconds; counted once
** rt->accounting is on) and resumes. Turns the accounting on: what it
** costs is paid only by a runtime someone inspects. */
void mb_task_push_info(lua_State *L, mb_task *t) {
  mb_rt *rt = mb_rt_of(L);
  uint64_t now = uv_hrtime(), age = now > t->created ? now - t->created : 0;
  uv_timeval64_t wall;
  char where[160];
  rt->accounting = 1;
  luaL_checkstack(L, 4, "task info");
  lua_createtable(L, 0, 9);
  lua_pushinteger(L, (lua_Integer)t->id);
  lua_setfield(L, -2, "id");
  if (t->name != NULL) {
    lua_pushstring(L, t->name);
    lua_setfield(L, -2, "name");
  }
  lua_pushstring(L, mb_task_status_names[t->status]);
  lua_setfield(L, -2, "status");
  if (t->status == MB_TASK_SUSPENDED && t->wait != MB_WAIT_NONE && t->wait_what != NULL) {
    if (t->wait == MB_WAIT_OTHER) /* call.c and stream.c give the function's name */
      lua_pushfstring(L, "the Go call %s", t->wait_what);
    else
      lua_pushstring(L, t->wait_what);
    lua_setfield(L, -2, "waiting_for");
  }
  if (t->status == MB_TASK_RUNNING || t->status == MB_TASK_SUSPENDED) {
    mb_task_where(t, where, sizeof where);
    lua_pushstring(L, where);
    lua_setfield(L, -2, "where");
  }
  if (uv_gettimeofday(&wall) == 0) {
    lua_pushnumber(L, (lua_Number)wall.tv_sec + wall.tv_usec / 1e6 - age / 1e9);
    lua_setfield(L, -2, "created_at");
  }
  lua_pushnumber(L, age / 1e9);
  lua_setfield(L, -2, "age");
  lua_pushnumber(L, t->cpu / 1e9);
  lua_setfield(L, -2, "cpu");
  lua_pushinteger(L, (lua_Integer)t->resumes);
  lua_setfield(L, -2, "resumes");
}

/* ---------------------------------------------------------------------
** Preemption: with a time slice set, a count hook on every task thread
** yields a task that ran that many instructions without suspending (Lua
** 5.4 lets count hooks yield), and raises a pending cancellation, so even
** a greedy loop can be stopped. The same hook watches a run's instruction
** budget and deadline (limit.c).
** ------------------------------------------------------------------- */
static void mb_task_hook(lua_State *L, lua_Debug *ar) {
  mb_rt *rt = mb_rt_of(L);
  mb_task *t = rt->current;
  mb_run *r;
  if (rt->userhooks) { /* a script's hook first: see userhook.h */
    mb_userhook_call(L, ar);
    if (ar->event != LUA_HOOKCOUNT) return;
  }
  if (t == NULL) return;
  if (rt->interrupt && mb_task_interrupted(L, rt, t)) return;
  if (rt->userhooks && !rt->interrupt && lua_gethookcount(L) < rt->hook_count) {
    /* A script's count hook is shorter than the turn's: the work below
    ** is for every hook_count instructions. */
    if ((rt->hook_part += lua_gethookcount(L)) < rt->hook_count) return;
    rt->hook_part = 0;
  }
  r = t->run;
  /* An error raised from here reaches the message handlers with this
  ** thread's hooks off (Lua calls them before it unwinds out of the
  ** hook): xpcall's handler wrapper runs a script's handler elsewhere
  ** then (mb_task_xpcall_msgh). */
  rt->hook_raised = 1;
  rt->hook_raised_in = L; /* until it returns, or a pcall in L catches */
  if ((r->insn_limited || r->deadline > 0 || r->limit != MB_LIMIT_NONE) && mb_limit_tick(rt, r))
    mb_limit_raise(L, r);
  /* Interrupted where it cannot give up its turn (in a C function's
  ** callback, a message handler) while Close waits: it fails instead, at
  ** every instruction until it is out (where it yields), so no pcall on
  ** the way holds it. The same for its run's cancellation, unless the
  ** cancellation already killed it: its cleanup runs on, as below. */
  if (rt->interrupt && atomic_load(&rt->close_asked))
    mb_errors_throw(L, "closed", NULL, "the runtime was closed");
  if (t->killed) {
    /* The cleanup of a task killed with its runtime closing: the runtime
    ** cannot wait for it. */
    if (rt->closing) mb_errors_throw(L, "closed", NULL, "the runtime was closed");
    rt->hook_raised = 0;
    rt->hook_raised_in = NULL;
    return;
  }
  if (rt->interrupt && r->id == atomic_load(&rt->interrupt_run))
    mb_errors_throw(L, "cancelled", NULL, "the run's context was cancelled");
  if (t->cancel == MB_CANCEL_PENDING) mb_task_cancel_raise(L, t);
  rt->hook_raised = 0;
  rt->hook_raised_in = NULL;
  if (rt->slice == 0 || (t->slice_used += rt->hook_count) < rt->slice) return;
  t->slice_used = 0;
  if (!mb_task_can_yield(L)) return;
  mb_task_ready(rt, t);
  rt->yielding = 1;
  lua_yield(L, 0);
}

/* The interrupt's one-instruction hook fired in L (interrupt.c asked for
** it): put back the usual hook and give up the turn, so the scheduler
** reads its queue (a cancelled run ends there) before it runs t again.
** Where L cannot yield, the next instruction tries again. */
static int mb_task_interrupted(lua_State *L, mb_rt *rt, mb_task *t) {
  if (!mb_task_can_yield(L)) return 0;
  rt->interrupt = 0;
  mb_task_hook_set(L, L, rt->hook_count);
  mb_task_ready(rt, t);
  rt->yielding = 1;
  lua_yield(L, 0);
  return 1;
}

/* From a signal handler on the loop's thread, inside a step: make the Lua
** thread running now call the hook at its next instruction. lua_sethook
** may be called asynchronously (ldebug.c; lua.c does it on SIGINT). */
void mb_task_interrupt(mb_rt *rt) {
  lua_State *L = rt->running;
  rt->interrupt = 1;
  if (L != NULL) lua_sethook(L, mb_task_hook, lua_gethookmask(L) | LUA_MASKCOUNT, 1);
}

/* The mask and count co's hook needs (mb_task_hook_ok). */
static int mb_task_hook_mask(lua_State *L, lua_State *co, int count, int *n) {
  int user = 0, ucount = 0;
  if (mb_rt_of(L)->userhooks) user = mb_userhook_mask(L, co, &ucount);
  *n = count > 0 && (ucount == 0 || count < ucount) ? count : ucount; /* the shorter */
  return user | (count > 0 ? LUA_MASKCOUNT : 0);
}

int mb_task_hook_ok(lua_State *L, lua_State *co, int count) {
  int n, mask = mb_task_hook_mask(L, co, count, &n);
  if (mask == 0) return lua_gethook(co) == NULL;
  return lua_gethook(co) == mb_task_hook && lua_gethookmask(co) == mask &&
         lua_gethookcount(co) == n;
}

void mb_task_hook_set(lua_State *L, lua_State *co, int count) {
  int n, mask = mb_task_hook_mask(L, co, count, &n);
  if (mask == 0)
    lua_sethook(co, NULL, 0, 0);
  else
    lua_sethook(co, mb_task_hook, mask, n);
}

/* debug.sethook: the script's hook recorded (userhook.c), then the
** thread's hook: the scheduler's count (the running turn's, which a
** script cannot take away) with the script's events. Changing a hook
** restarts its count, so a change is a checkpoint of the run's limits: a
** loop of sethook calls cannot dodge the budget or the deadline. */
static int mb_task_l_sethook(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  mb_task *t = rt->current;
  lua_State *L1 = mb_userhook_sethook(L);
  int count = mb_task_turn_count(rt);
  if (mb_task_hook_ok(L, L1, count)) return 0;
  if (t != NULL && (t->run->insn_limited || t->run->deadline > 0) && mb_limit_tick(rt, t->run))
    mb_limit_raise(L, t->run);
  mb_task_hook_set(L, L1, count);
  return 0;
}

void mb_task_set_slice(mb_rt *rt, int instructions) {
  rt->slice = instructions > 0 ? instructions : 0;
}

/* ---------------------------------------------------------------------
** pcall and xpcall, as stock, but they notice a task swallowing its own
** cancellation (so it is raised again at the next suspension point).
** ------------------------------------------------------------------- */
static int mb_task_finishpcall(lua_State *L, int status, lua_KContext extra) {
  if (status != LUA_OK && status != LUA_YIELD) {
    mb_rt_of(L)->hook_raised = 0;
    mb_rt_of(L)->hook_raised_in = NULL; /* caught: Lua turned L's hooks on again */
    mb_limit_caught(L, status);
    mb_task_caught(L, -1);
    lua_pushboolean(L, 0);
    lua_pushvalue(L, -2);
    return 2;
  }
  return lua_gettop(L) - (int)extra;
}

static int mb_task_l_pcall(lua_State *L) {
  int status;
  luaL_checkany(L, 1);
  lua_pushboolean(L, 1);
  lua_insert(L, 1);
  status = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, mb_task_finishpcall);
  return mb_task_finishpcall(L, status, 0);
}

/* A message handler run on a thread of its own: the handler at 1, the
** error at 2. Called, not resumed into: it cannot yield, as a message
** handler cannot in stock Lua. */
static int mb_task_msgh_body(lua_State *L) {
  lua_call(L, 1, 1);
  return 1;
}

/* xpcall's message handler in a task: the script's handler (upvalue 1)
** with the error. An error the count hook raised (the run's limit, a
** cancellation, Close) reaches a message handler with the failing
** thread's hooks off, since Lua calls the handler before it unwinds out
** of the hook: there no limit, cancellation or Close could stop a handler
** that loops, so the handler then runs on a thread of its own, which has
** the task's hook. Every run needs it, since Close reaches every run; it
** costs xpcall a closure (about 35 ns).
** What it returns, or the error it ends with, is the handler's result. */
static int mb_task_xpcall_msgh(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  lua_State *co, *running = rt->running;
  int nres, st;
  lua_settop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  if (!rt->hook_raised) {
    lua_insert(L, 1);
    lua_call(L, 1, 1);
    return 1;
  }
  rt->hook_raised = 0;
  co = lua_newthread(L); /* with L's hook */
  mb_task_mark(co) = NULL;
  lua_pushcfunction(co, mb_task_msgh_body);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 2);
  rt->running = co;
  st = lua_resume(co, L, 2, &nres);
  rt->running = running;
  rt->hook_raised = 0;
  mb_assert(st != LUA_YIELD, "a message handler yielded"); /* the body calls it */
  (void)st;
  lua_xmove(co, L, 1); /* its result, or its error */
  return 1;
}

static int mb_task_l_xpcall(lua_State *L) {
  int status;
  int n = lua_gettop(L);
  mb_task *t = mb_rt_of(L)->current;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (t != NULL && lua_iscfunction(L, 2) == 0) {
    lua_pushvalue(L, 2); /* a script's handler: see above */
    lua_pushcclosure(L, mb_task_xpcall_msgh, 1);
    lua_replace(L, 2);
  }
  lua_pushboolean(L, 1);
  lua_pushvalue(L, 1);
  lua_rotate(L, 3, 2);
  status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, mb_task_finishpcall);
  return mb_task_finishpcall(L, status, 2);
}

/* ---------------------------------------------------------------------
** Groups: structured concurrency. The first failure of a child cancels
** its siblings; g:wait (or closing the group) returns once every child
** has ended, and raises that failure.
** ------------------------------------------------------------------- */
static mb_group *mb_task_group_check(lua_State *L, int i) {
  return (mb_group *)luaL_checkudata(L, i, MB_GROUP_MT);
}

/* Cancel every child still running. */
static void mb_task_group_cancel_all(mb_rt *rt, lua_State *L, mb_group *g) {
  mb_link *l;
  mb_list_foreach(l, &g->tasks) {
    mb_task *c = mb_container_of(l, mb_task, group_link);
    if (c->cancel != MB_CANCEL_NONE) continue;
    mb_task_cancel_error(L, c, 0);
    mb_task_cancel(rt, L, c);
  }
}

/* The Task of the child that ended is on rt->L's top. */
static void mb_task_group_child_ended(mb_rt *rt, mb_task *t) {
  lua_State *L = rt->L;
  mb_group *g = t->group;
  mb_list_remove(&t->group_link);
  t->group = NULL;
  if (t->status == MB_TASK_FAILED) {
    t->observed = 1; /* the group raises it */
    if (!g->failed) {
      g->failed = 1;
      lua_getiuservalue(L, -1, MB_TASK_UV_GROUP); /* the group */
      lua_pushvalue(L, -2);
      lua_setiuservalue(L, -2, 1); /* keeps the failed child, its error */
      lua_pop(L, 1);
      mb_task_group_cancel_all(rt, L, g);
    }
  }
  if (mb_list_empty(&g->tasks)) mb_task_waiters_fire_all(rt, &g->waiters);
}

static int mb_task_l_group(lua_State *L) {
  mb_group *g = (mb_group *)lua_newuserdatauv(L, sizeof *g, 1);
  memset(g, 0, sizeof *g);
  mb_list_init(&g->tasks);
  mb_list_init(&g->waiters);
  luaL_setmetatable(L, MB_GROUP_MT);
  return 1;
}

static mb_task *mb_task_spawn_opts(lua_State *L, int first);

static int mb_task_l_group_spawn(lua_State *L) {
  mb_group *g = mb_task_group_check(L, 1);
  mb_task *t;
  if (g->closed) return mb_errors_misuse(L, "group:spawn: the group has ended");
  t = mb_task_spawn_opts(L, 2);
  t->group = g;
  mb_list_push(&g->tasks, &t->group_link);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, MB_TASK_UV_GROUP); /* children anchor the group */
  if (g->failed) { /* a sibling already failed: it starts cancelled */
    mb_task_cancel_error(L, t, 0);
    mb_task_cancel(mb_rt_of(L), L, t);
  }
  return 1;
}

/* The outcome once every child has ended: nothing, or the first failure
** (the group's user value is the child that failed). */
static int mb_task_group_outcome(lua_State *L, mb_group *g) {
  mb_task *c;
  g->closed = 1;
  if (!g->failed) return 0;
  lua_getiuservalue(L, 1, 1);
  c = mb_task_test(L, -1);
  mb_assert(c != NULL && c->co != NULL, "a failed group without its child");
  lua_pushvalue(c->co, -1);
  lua_xmove(c->co, L, 1);
  mb_task_pass_error(L, c);
  return lua_error(L);
}

/* ctx: 1 once this waiter was cancelled and is waiting for the children
** to unwind before it raises. */
static int mb_task_group_wait_k(lua_State *L, int status, lua_KContext ctx) {
  mb_rt *rt = mb_rt_of(L);
  mb_group *g = mb_task_group_check(L, 1);
  mb_task *self = rt->current;
  (void)status;
  if (self->aborted && self->cancel == MB_CANCEL_PENDING && self->wake_err == NULL) {
    /* Cancelled while waiting: no child may outlive the group. */
    self->aborted = 0;
    mb_task_cancel_delivered(self);
    mb_task_group_cancel_all(rt, L, g);
    ctx = 1;
  } else {
    mb_task_wait_check(L);
  }
  if (!mb_list_empty(&g->tasks)) {
    mb_task_waiter_init(&self->w1, self, L, 1, MB_OP_DONE);
    mb_list_push(&g->waiters, &self->w1.link);
    return mb_task_wait_objs(L, self, &self->w1, 1, "a task group", ctx, mb_task_group_wait_k);
  }
  if (ctx == 1) {
    g->closed = 1;
    return mb_task_cancel_raise(L, self);
  }
  return mb_task_group_outcome(L, g);
}

static int mb_task_l_group_wait(lua_State *L) {
  mb_group *g = mb_task_group_check(L, 1);
  lua_settop(L, 1);
  if (mb_list_empty(&g->tasks)) mb_task_current(L, "group:wait");
  else mb_task_wait_begin(L, "group:wait");
  return mb_task_group_wait_k(L, LUA_OK, 0);
}

/* local g <close> = task.group(): leaving the scope waits for the
** children; leaving it by an error cancels them first. */
static int mb_task_l_group_close(lua_State *L) {
  mb_group *g = mb_task_group_check(L, 1);
  if (!lua_isnil(L, 2)) mb_task_group_cancel_all(mb_rt_of(L), L, g);
  lua_settop(L, 1);
  if (mb_list_empty(&g->tasks)) {
    g->closed = 1;
    return 0;
  }
  return mb_task_l_group_wait(L);
}

/* ---------------------------------------------------------------------
** The Lua API: task.spawn, Task:wait and friends.
** ------------------------------------------------------------------- */
mb_task *mb_task_test(lua_State *L, int i) {
  return (mb_task *)luaL_testudata(L, i, MB_TASK_MT);
}

static mb_task *mb_task_check(lua_State *L, int i) {
  return (mb_task *)luaL_checkudata(L, i, MB_TASK_MT);
}

/* Push the finished task's (the Task at idx) results, or raise its error.
** Its results are on its thread, or in the Task once the thread is gone. */
int mb_task_results(lua_State *L, int idx) {
  mb_task *t = (mb_task *)lua_touserdata(L, idx);
  lua_State *co = t->co;
  int i, n = t->nres;
  t->observed = 1;
  mb_task_unfail(L, t);
  if (t->status == MB_TASK_FAILED || t->status == MB_TASK_CANCELLED) {
    lua_pushvalue(co, -1);
    lua_xmove(co, L, 1);
    mb_task_pass_error(L, t);
    return lua_error(L);
  }
  if (n == 0) return 0;
  luaL_checkstack(L, n + 1, "too many results to wait for");
  if (co == NULL) { /* moved into the Task */
    int tt = lua_getiuservalue(L, idx, MB_TASK_UV_THREAD);
    if (n == 1) return 1;
    mb_assert(tt == LUA_TTABLE, "a Task's results replaced"); /* dbglib.c refuses debug.setuservalue on a Task */
    (void)tt;
    mb_pack_unpack(L, -1);
    lua_remove(L, -(n + 1));
    return n;
  }
  if (!lua_checkstack(co, n)) /* the copies go through co's own stack */
    return luaL_error(L, "too many results to wait for");
  for (i = 1; i <= n; i++) lua_pushvalue(co, i);
  lua_xmove(co, L, n);
  return n;
}

static int mb_task_wait_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  mb_task_wait_check(L);
  return mb_task_results(L, (int)ctx);
}

static int mb_task_finished(const mb_task *t) {
  return t->status >= MB_TASK_DONE;
}

/* Wait for the Task at idx (L's stack anchors it) to end. */
int mb_task_await(lua_State *L, int idx) {
  mb_task *self, *t = (mb_task *)lua_touserdata(L, idx);
  idx = lua_absindex(L, idx);
  if (mb_task_finished(t)) return mb_task_results(L, idx);
  self = mb_task_current(L, "Task:wait");
  if (self == t) return mb_errors_misuse(L, "Task:wait: a task cannot wait for itself");
  mb_task_wait_begin(L, "Task:wait");
  mb_task_waiter_init(&self->w1, self, L, 1, MB_OP_DONE);
  mb_list_push(&t->waiters, &self->w1.link);
  return mb_task_wait_objs(L, self, &self->w1, 1, "another task", (lua_KContext)idx, mb_task_wait_k);
}

static int mb_task_l_wait(lua_State *L) {
  mb_task_check(L, 1);
  lua_settop(L, 1); /* keeps the awaited Task anchored on our stack */
  return mb_task_await(L, 1);
}

static int mb_task_l_done(lua_State *L) {
  lua_pushboolean(L, mb_task_finished(mb_task_check(L, 1)));
  return 1;
}

static int mb_task_l_status(lua_State *L) {
  lua_pushstring(L, mb_task_status_names[mb_task_check(L, 1)->status]);
  return 1;
}

static int mb_task_l_info(lua_State *L) {
  mb_task_push_info(L, mb_task_check(L, 1));
  return 1;
}

static int mb_task_l_cancel(lua_State *L) {
  mb_task *t = mb_task_check(L, 1);
  mb_task_cancel_error(L, t, lua_isnoneornil(L, 2) ? 0 : 2);
  lua_pushboolean(L, mb_task_cancel(mb_rt_of(L), L, t));
  return 1;
}

/* Task:detach(): the run will not wait for it; it is cancelled when all
** else has finished, and its error is reported without failing the run. */
static int mb_task_l_detach(lua_State *L) {
  mb_task *t = mb_task_check(L, 1);
  lua_settop(L, 1);
  if (t->detached) return 1;
  if (mb_task_finished(t)) {
    if (t->status == MB_TASK_FAILED && !t->observed) {
      t->observed = 1;
      mb_task_report(mb_rt_of(L), t);
      mb_task_unfail(L, t);
    }
    return 1;
  }
  t->detached = 1;
  t->run->ndetached++;
  return 1;
}

static int mb_task_l_tostring(lua_State *L) {
  mb_task *t = mb_task_check(L, 1);
  if (lua_getiuservalue(L, 1, MB_TASK_UV_NAME) == LUA_TSTRING)
    lua_pushfstring(L, "Task '%s' (%s)", lua_tostring(L, -1), mb_task_status_names[t->status]);
  else
    lua_pushfstring(L, "Task #%I (%s)", (lua_Integer)t->id, mb_task_status_names[t->status]);
  return 1;
}

/* Spawn from arguments first.. : [options,] fn, args...; the Task is left
** on the stack's top. */
static mb_task *mb_task_spawn_opts(lua_State *L, int first) {
  mb_task *self = mb_task_current(L, "task.spawn");
  const char *name = NULL;
  int priority = 1;
  mb_task *t;
  if (lua_type(L, first) == LUA_TTABLE) {
    int isnum;
    if (lua_getfield(L, first, "name") != LUA_TNIL) {
      if (lua_type(L, -1) != LUA_TSTRING)
        mb_errors_misuse(L, "task.spawn: option 'name' must be a string (got %s)", luaL_typename(L, -1));
      name = lua_tostring(L, -1); /* anchored by the options table */
    }
    if (lua_getfield(L, first, "priority") != LUA_TNIL) {
      lua_Integer p = lua_tointegerx(L, -1, &isnum);
      if (!isnum || p < 1 || p > 100)
        mb_errors_misuse(L, "task.spawn: option 'priority' must be an integer from 1 to 100");
      priority = (int)p;
    }
    lua_pop(L, 2);
    first++;
  }
  luaL_checktype(L, first, LUA_TFUNCTION);
  t = mb_task_spawn(L, self->run, lua_gettop(L) - first, name);
  t->priority = (unsigned char)priority;
  return t;
}

static int mb_task_l_spawn(lua_State *L) {
  mb_task_spawn_opts(L, 1);
  return 1;
}

static int mb_task_yield_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  mb_task_wait_check(L);
  return 0;
}

static int mb_task_l_yield(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  mb_task *self = mb_task_wait_begin(L, "task.yield");
  mb_task_ready(rt, self);
  return mb_task_wait_yield(L, self, MB_WAIT_READY, "its turn", 0, mb_task_yield_k);
}

static int mb_task_l_sleep(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  uint64_t when = mb_sleep_deadline(L, 1, &mb_rt_of(L)->loop);
  mb_task *self = mb_task_wait_begin(L, "task.sleep");
  self->sleep.deadline = when;
  if (mb_sleep_add(&rt->sleepers, &self->sleep) != 0) return mb_errors_nomem(L, "task.sleep");
  return mb_task_wait_yield(L, self, MB_WAIT_SLEEP, "a timer", 0, mb_task_yield_k);
}

static int mb_task_exit_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  mb_task_wait_check(L); /* only a kill resumes it; never a normal wake-up */
  return 0;
}

/* os.exit([code [, close]]): ends the run with the code, as the process
** would end in stock Lua; the host Go process keeps running. */
static int mb_task_l_os_exit(lua_State *L) {
  mb_task *self = mb_task_current(L, "os.exit");
  int code;
  if (lua_isboolean(L, 1)) code = lua_toboolean(L, 1) ? 0 : 1;
  else code = (int)luaL_optinteger(L, 1, 0);
  self->run->exit_code = code;
  if (!mb_task_can_yield(L)) {
    /* Cannot suspend here: end the run with an error carrying the code. */
    mb_errors_push_exit(L, code);
    return lua_error(L);
  }
  self->run->exiting = 1;
  self->cancel = MB_CANCEL_NONE; /* nothing may interrupt the exit */
  return mb_task_wait_yield(L, self, MB_WAIT_NONE, "the run's end", 0, mb_task_exit_k);
}

/* task.traceback(err): the traceback an error value crossed waits with,
** every hop (the failing task's stack, then each waiter's), or nil. An
** error of moonbridge's carries it; for another value, it is what the
** running task knows: the last error a wait raised in it, or the last
** one its message handler saw. A failed or cancelled Task gives its
** error's. */
static int mb_task_l_traceback(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  mb_task *t;
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  lua_pushnil(L); /* 2: the answer when there is none */
  if ((t = mb_task_test(L, 1)) != NULL) {
    if (t->status < MB_TASK_FAILED) return 1;
    mb_task_push_error(L, t);
    lua_replace(L, 1);
  }
  if (mb_errors_ours(L, 1)) {
    lua_pushliteral(L, "traceback");
    if (lua_rawget(L, 1) != LUA_TSTRING) lua_pushnil(L);
    return 1;
  }
  if (rt->current == NULL) return 1;
  mb_task_errrec(L, rt->current); /* 3 */
  lua_rawgeti(L, 3, MB_TERR_HOP);
  if (lua_rawequal(L, -1, 1)) lua_rawgeti(L, 3, MB_TERR_HOPTB);
  else if (lua_rawgeti(L, 3, MB_TERR_VALUE) >= 0 && lua_rawequal(L, -1, 1)) lua_rawgeti(L, 3, MB_TERR_TB);
  else lua_pushnil(L);
  return 1;
}

static int mb_task_l_current(lua_State *L) {
  mb_task *self = mb_task_current(L, "task.current");
  lua_rawgeti(L, LUA_REGISTRYINDEX, self->ref);
  return 1;
}

static const luaL_Reg mb_task_methods[] = {
    {"wait", mb_task_l_wait},
    {"done", mb_task_l_done},
    {"status", mb_task_l_status},
    {"cancel", mb_task_l_cancel},
    {"detach", mb_task_l_detach},
    {"info", mb_task_l_info},
    {NULL, NULL}};

static const luaL_Reg mb_task_group_methods[] = {
    {"spawn", mb_task_l_group_spawn},
    {"wait", mb_task_l_group_wait},
    {NULL, NULL}};

static const luaL_Reg mb_task_funcs[] = {
    {"spawn", mb_task_l_spawn},
    {"yield", mb_task_l_yield},
    {"sleep", mb_task_l_sleep},
    {"current", mb_task_l_current},
    {"traceback", mb_task_l_traceback},
    {"group", mb_task_l_group},
    {NULL, NULL}};

/* The task module's own functions; rt.c adds the combinators (await.c). */
int mb_task_luaopen(lua_State *L) {
  luaL_newlib(L, mb_task_funcs);
  return 1;
}

/* errors.rawpcall(fn, ...): pcall that leaves a caught cancellation
** delivered, so the caller's cleanup may await before deciding (try). */
static int mb_task_rawpcall_k(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  if (status != LUA_OK && status != LUA_YIELD) {
    mb_limit_caught(L, status);
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  return lua_gettop(L);
}

static int mb_task_l_rawpcall(lua_State *L) {
  luaL_checkany(L, 1);
  lua_pushboolean(L, 1);
  lua_insert(L, 1);
  return mb_task_rawpcall_k(L, lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, mb_task_rawpcall_k), 0);
}

/* errors.swallowed(err): the caller dropped err; if it was the running
** task's cancellation, it is raised again at the next suspension point. */
static int mb_task_l_swallowed(lua_State *L) {
  mb_task_caught(L, 1);
  return 0;
}

/* moonbridge.errors, for the Lua modules (try, pipeline): the error
** constructors and the two pcall variants cancellation needs. */
static int mb_task_luaopen_errors(lua_State *L) {
  static const luaL_Reg funcs[] = {{"new", mb_errors_l_new}, {"is", mb_errors_l_is},
                                   {"rawpcall", mb_task_l_rawpcall},
                                   {"swallowed", mb_task_l_swallowed}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}

void mb_task_open(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  static const luaL_Reg task_meta[] = {{"__tostring", mb_task_l_tostring}, {NULL, NULL}};
  static const luaL_Reg group_meta[] = {{"__close", mb_task_l_group_close}, {NULL, NULL}};
  mb_newclass(L, MB_TASK_MT, mb_task_methods, task_meta);
  rt->task_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  mb_newclass(L, MB_GROUP_MT, mb_task_group_methods, group_meta);
  lua_pop(L, 1);
  lua_newtable(L);
  rt->pool_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  mb_preload(L, "moonbridge.errors", mb_task_luaopen_errors);
  lua_getglobal(L, "os");
  lua_pushcfunction(L, mb_task_l_os_exit);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);
  lua_pushcfunction(L, mb_task_l_pcall);
  lua_setglobal(L, "pcall");
  lua_pushcfunction(L, mb_task_l_xpcall);
  lua_setglobal(L, "xpcall");
  if (lua_getglobal(L, "debug") == LUA_TTABLE) { /* a script's hook beside ours */
    lua_pushcfunction(L, mb_task_l_sethook);
    lua_setfield(L, -2, "sethook");
    lua_pushcfunction(L, mb_userhook_l_gethook);
    lua_setfield(L, -2, "gethook");
    mb_dbglib_guard(L);
  }
  lua_pop(L, 1);
}
