/*
** task.c — tasks: Lua threads scheduled by the loop, and the `task` module.
**
** Layer: C core. A task is a Task userdata (its record, anchored in the
** registry until it ends) plus a root thread. The thread's first function
** is mb_task_main, which calls the task's function under a message handler,
** so an error becomes an error table with the task's traceback while the
** stack is still there to read. Every suspension goes through
** mb_wait_yield, which records what the task waits for — the one thing to
** undo if the task is woken another way.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb.h"

#define MB_TASK_MT "moonbridge.Task"
#define MB_GROUP_MT "moonbridge.Group"

/* A Task's user values. */
enum {
  MB_TASK_UV_THREAD = 1, /* its root thread */
  MB_TASK_UV_NAME,       /* its name, or nil */
  MB_TASK_UV_CANCEL,     /* the error its cancellation delivers */
  MB_TASK_UV_GROUP,      /* the group that owns it */
  MB_TASK_NUV = MB_TASK_UV_GROUP
};
#define MB_POOL_MAX 256

void mb_run_task_ended(mb_rt *rt, mb_run *r, mb_task *t);

static const char *const mb_status_names[] = {
    "pending", "running", "suspended", "done", "failed", "cancelled"};

/* ---------------------------------------------------------------------
** Threads: finished threads that ended cleanly are reused (about ten times
** cheaper than a new one). The pool is a Lua table, which anchors them.
** ------------------------------------------------------------------- */
static lua_State *mb_thread_get(lua_State *L, mb_rt *rt) {
  lua_State *co;
  if (rt->npool > 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->pool_ref);
    lua_rawgeti(L, -1, rt->npool);
    lua_pushnil(L);
    lua_rawseti(L, -3, rt->npool);
    rt->npool--;
    lua_remove(L, -2);
    co = lua_tothread(L, -1);
  } else {
    co = lua_newthread(L);
  }
  return co;
}

static void mb_thread_put(mb_rt *rt, mb_task *t) {
  lua_State *L = rt->L;
  if (rt->npool >= MB_POOL_MAX || lua_status(t->co) != LUA_OK ||
      lua_gettop(t->co) != 0)
    return;
  *(void **)lua_getextraspace(t->co) = NULL;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->pool_ref);
  lua_pushthread(t->co);
  lua_xmove(t->co, L, 1);
  lua_rawseti(L, -2, ++rt->npool);
  lua_pop(L, 1);
}

/* ---------------------------------------------------------------------
** The run queue and waking.
** ------------------------------------------------------------------- */

/* Queue the task with nothing delivered (spawned, yielded, preempted, a
** sleep ended): a cancellation may still abort its wait. */
void mb_task_ready(mb_rt *rt, mb_task *t) {
  t->wait = MB_WAIT_READY;
  t->wait_obj = NULL;
  mb_list_push(&rt->ready, &t->ready);
}

/* Undo a multi-way wait: its registrations, and its deadline if any. */
static void mb_waiters_unlink(mb_rt *rt, mb_task *t) {
  int i;
  for (i = 0; i < t->nw; i++) mb_list_remove(&t->wv[i].link);
  t->wv = NULL;
  t->nw = 0;
  if (t->heap_idx >= 0) mb_sleep_remove(rt, t);
}

/* The wait completed and its result was delivered (a call's results, a
** channel's value): queue the task so that a cancellation arriving now is
** raised at its next suspension point instead of losing the result. Every
** other registration of a multi-way wait is undone. */
void mb_task_wake(mb_rt *rt, mb_task *t) {
  if (t->wait == MB_WAIT_OBJS) mb_waiters_unlink(rt, t);
  t->wait = MB_WAIT_WOKEN;
  t->wait_obj = NULL;
  mb_list_push(&rt->ready, &t->ready);
}

/* Fire one registration: the task learns which case completed and how. */
void mb_waiter_fire(mb_rt *rt, mb_waiter *w, int ok) {
  mb_task *t = w->task;
  t->fired = w->index;
  t->fired_ok = ok;
  mb_task_wake(rt, t);
}

/* Fire every registration on an awaitable's list (it became ready). */
void mb_waiters_fire_all(mb_rt *rt, mb_link *list) {
  while (!mb_list_empty(list))
    mb_waiter_fire(rt, mb_container_of(list->next, mb_waiter, link), 1);
}

/* Register the task on wv[0..n-1] (already linked by the caller) and
** suspend it: the usual way to wait for awaitables. */
int mb_wait_objs(lua_State *L, mb_task *t, mb_waiter *wv, int n, const char *what,
                 lua_KContext ctx, lua_KFunction k) {
  t->wv = wv;
  t->nw = n;
  t->fired = 0;
  t->fired_ok = 0;
  return mb_wait_yield(L, t, MB_WAIT_OBJS, (void *)what, ctx, k);
}

void mb_waiter_init(mb_waiter *w, mb_task *t, lua_State *L, int index, int op) {
  mb_list_init(&w->link);
  w->task = t;
  w->L = L;
  w->index = index;
  w->op = op;
  w->slot = 0;
}

/* Suspend the running task (L is its root thread or a user coroutine it
** resumed) until whatever it now waits for wakes it. A cancellation that
** is pending is raised here instead: this is a suspension point. */
int mb_wait_yield(lua_State *L, mb_task *t, int wait, void *obj,
                  lua_KContext ctx, lua_KFunction k) {
  mb_rt *rt = mb_rt_of(L);
  t->wait = wait;
  t->wait_obj = obj;
  if (t->cancel == MB_CANCEL_PENDING) {
    mb_task_wait_end(rt, t);
    return mb_cancel_raise(L, t);
  }
  rt->yielding = 1;
  return lua_yieldk(L, 0, ctx, k);
}

/* First thing a waiting continuation does: raise if the wait was aborted
** (cancelled, or unable to carry on in a coroutine). */
void mb_wait_check(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  mb_task *t = rt->current;
  if (t == NULL || !t->aborted) return;
  t->aborted = 0;
  if (t->wake_err != NULL) {
    const char *why = t->wake_err;
    t->wake_err = NULL;
    mb_error_throw(L, "cancelled", NULL, "%s", why);
  }
  mb_cancel_raise(L, t);
}

mb_task *mb_task_of(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  if (rt->current == NULL) mb_misuse(L, "not inside a task");
  return rt->current;
}

/* Undo whatever the task waits for, so nothing will wake it later. */
void mb_task_wait_end(mb_rt *rt, mb_task *t) {
  switch (t->wait) {
    case MB_WAIT_READY:
    case MB_WAIT_WOKEN:
      mb_list_remove(&t->ready);
      break;
    case MB_WAIT_CALL: {
      mb_call *c = (mb_call *)t->wait_obj;
      c->task = NULL; /* the completion will be dropped */
      mb_call_cancel(rt, c);
      break;
    }
    case MB_WAIT_STREAM:
      ((mb_stream *)t->wait_obj)->waiter = NULL;
      break;
    case MB_WAIT_OBJS:
      mb_waiters_unlink(rt, t);
      break;
    case MB_WAIT_SLEEP:
      mb_sleep_remove(rt, t);
      break;
  }
  t->wait = MB_WAIT_NONE;
  t->wait_obj = NULL;
}

/* End the task's wait without its result and let it run: its continuation
** raises (mb_wait_check). */
void mb_task_abort(mb_rt *rt, mb_task *t) {
  mb_task_wait_end(rt, t);
  t->aborted = 1;
  mb_task_ready(rt, t);
}

/* ---------------------------------------------------------------------
** Sleepers: one binary min-heap by deadline and one libuv timer armed at
** the earliest, instead of a timer handle per task.
** ------------------------------------------------------------------- */
static void mb_heap_set(mb_rt *rt, int i, mb_task *t) {
  rt->heap[i] = t;
  t->heap_idx = i;
}

/* Does a wake before b? Equal deadlines keep the order they were added. */
static int mb_heap_before(const mb_task *a, const mb_task *b) {
  if (a->deadline != b->deadline) return a->deadline < b->deadline;
  return (int32_t)(a->sleep_seq - b->sleep_seq) < 0;
}

static void mb_heap_up(mb_rt *rt, int i) {
  mb_task *t = rt->heap[i];
  while (i > 0) {
    int p = (i - 1) / 2;
    if (!mb_heap_before(t, rt->heap[p])) break;
    mb_heap_set(rt, i, rt->heap[p]);
    i = p;
  }
  mb_heap_set(rt, i, t);
}

static void mb_heap_down(mb_rt *rt, int i) {
  mb_task *t = rt->heap[i];
  for (;;) {
    int c = 2 * i + 1;
    if (c >= rt->nheap) break;
    if (c + 1 < rt->nheap && mb_heap_before(rt->heap[c + 1], rt->heap[c])) c++;
    if (!mb_heap_before(rt->heap[c], t)) break;
    mb_heap_set(rt, i, rt->heap[c]);
    i = c;
  }
  mb_heap_set(rt, i, t);
}

int mb_sleep_add(mb_rt *rt, mb_task *t) {
  if (rt->nheap == rt->capheap) {
    int cap = rt->capheap ? rt->capheap * 2 : 64;
    mb_task **h = realloc(rt->heap, (size_t)cap * sizeof *h);
    if (h == NULL) return -1;
    rt->heap = h;
    rt->capheap = cap;
  }
  t->sleep_seq = rt->sleep_seq++;
  rt->heap[rt->nheap] = t;
  t->heap_idx = rt->nheap++;
  mb_heap_up(rt, t->heap_idx);
  mb_timer_arm(rt);
  return 0;
}

void mb_sleep_remove(mb_rt *rt, mb_task *t) {
  int i = t->heap_idx;
  mb_task *last = rt->heap[--rt->nheap];
  if (i < rt->nheap) {
    mb_heap_set(rt, i, last);
    mb_heap_down(rt, i);
    mb_heap_up(rt, last->heap_idx);
  }
  t->heap_idx = -1;
  mb_timer_arm(rt);
}

/* Wake every sleeper whose deadline has passed; returns how many. */
int mb_sleep_fire(mb_rt *rt) {
  uint64_t now = uv_now(&rt->loop);
  int woke = 0;
  while (rt->nheap > 0 && rt->heap[0]->deadline <= now) {
    mb_task *t = rt->heap[0];
    mb_sleep_remove(rt, t);
    if (t->wait == MB_WAIT_OBJS) { /* a wait with a deadline: timed out */
      mb_waiters_unlink(rt, t);
      t->fired = 0;
    }
    mb_task_ready(rt, t);
    woke++;
  }
  mb_timer_arm(rt);
  return woke;
}

/* ---------------------------------------------------------------------
** Creating, resuming and ending tasks.
** ------------------------------------------------------------------- */
static int mb_task_main_k(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  lua_pushboolean(L, status == LUA_OK || status == LUA_YIELD);
  lua_replace(L, 1); /* the message handler's slot */
  return lua_gettop(L);
}

/* The root function of every task thread: stack is fn, args... */
static int mb_task_main(lua_State *L) {
  int n = lua_gettop(L);
  int st;
  lua_pushcfunction(L, mb_error_handler);
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
  luaL_checkstack(L, 4, "spawning a task");
  co = mb_thread_get(L, rt);
  t = (mb_task *)lua_newuserdatauv(L, sizeof *t, MB_TASK_NUV);
  memset(t, 0, sizeof *t);
  t->co = co;
  t->run = run;
  t->id = ++rt->ntask_ids;
  t->heap_idx = -1;
  t->priority = 1;
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
  *(mb_task **)lua_getextraspace(co) = t;
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
  mb_waiters_fire_all(rt, &t->waiters);
  mb_list_remove(&t->run_link);
  r->ntasks--;
  if (t->detached) r->ndetached--;
  if (t == r->main) t->observed = 1; /* its outcome is the run's */
  if (t->group != NULL) mb_group_child_ended(rt, t);
  if (status == MB_TASK_FAILED && !t->observed && !t->detached && !r->done) {
    /* Its error waits for a taker or the run's end; the registry keeps
    ** the record alive meanwhile (nothing else may hold the Task). */
    mb_list_push(&r->failed, &t->fail_link);
  } else {
    if (status == MB_TASK_FAILED && !t->observed) {
      t->observed = 1; /* nobody can take it: say it on stderr */
      mb_stdio_report(t->co, -1);
    }
    luaL_unref(rt->L, LUA_REGISTRYINDEX, t->ref);
    t->ref = LUA_NOREF;
  }
  mb_run_task_ended(rt, r, t);
}

/* t's failure was taken (awaited, joined, detached) or reported: it
** leaves the run's list and its anchor goes. Callers hold the Task. */
void mb_task_unfail(lua_State *L, mb_task *t) {
  if (mb_list_empty(&t->fail_link)) return;
  mb_list_remove(&t->fail_link);
  luaL_unref(L, LUA_REGISTRYINDEX, t->ref);
  t->ref = LUA_NOREF;
}

/* Forget the finished task's thread when it holds nothing worth keeping. */
static void mb_task_recycle(mb_rt *rt, mb_task *t) {
  if (t->status != MB_TASK_DONE || t->nres != 0 || t->ref != LUA_NOREF) return;
  mb_thread_put(rt, t);
  t->co = NULL; /* the Task's uservalue still anchors the thread; harmless */
}

/* Push the live task's cancellation error (set by Task:cancel) onto L. */
static void mb_cancel_push(lua_State *L, mb_task *t) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
  lua_getiuservalue(L, -1, MB_TASK_UV_CANCEL);
  lua_remove(L, -2);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    mb_cancel_error_push(L, t, 0);
  }
}

/* Raise the pending cancellation at this suspension point. From now on the
** error unwinds the task, and cleanup may await, until it is caught. */
int mb_cancel_raise(lua_State *L, mb_task *t) {
  mb_cancel_delivered(t);
  mb_cancel_push(L, t);
  return lua_error(L);
}

/* Is the value at idx this task's cancellation error? */
int mb_cancel_is(lua_State *L, mb_task *t, int idx) {
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
void mb_cancel_caught(lua_State *L, int idx) {
  mb_task *t = mb_rt_of(L)->current;
  if (t != NULL && t->run->limit != MB_LIMIT_NONE) mb_limit_raise(L, t->run); /* no catching */
  if (t != NULL && t->cancel == MB_CANCEL_DELIVERED && mb_cancel_is(L, t, idx))
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
    mb_task_recycle(rt, t);
    lua_pop(rt->L, 1);
    return;
  }
  if (ok) { /* it caught the cancellation and returned */
    lua_settop(co, 0);
    mb_cancel_push(co, t);
    t->nres = 0;
    mb_task_end(rt, t, MB_TASK_CANCELLED);
    lua_pop(rt->L, 1);
    return;
  }
  mb_task_end(rt, t, mb_cancel_is(co, t, -1) ? MB_TASK_CANCELLED : MB_TASK_FAILED);
  lua_pop(rt->L, 1);
}

/* A task cancelled before it ever ran ends without running. */
static void mb_task_end_unstarted(mb_rt *rt, mb_task *t) {
  lua_settop(t->co, 0);
  mb_cancel_push(t->co, t);
  t->nres = 0;
  mb_task_end(rt, t, MB_TASK_CANCELLED);
  lua_pop(rt->L, 1);
}

/* The count hook a turn of t needs (a slice, a budget, a deadline), or
** none: a pooled thread may carry the hook of an earlier run's task.
** Setting a hook restarts its count. A slice wants that (it counts one
** turn); a budget or deadline does not: a task that yields every few
** hundred instructions must still reach the hook, so a hook already in
** place keeps counting across turns. */
static void mb_task_set_hook(mb_rt *rt, mb_task *t) {
  lua_State *co = t->co;
  int count = mb_limit_hook_count(rt, t->run);
  int carry = t->run->insn_limited || t->run->deadline > 0;
  rt->hook_count = count;
  t->slice_used = 0;
  if (count == 0) {
    if (lua_gethook(co) != NULL) lua_sethook(co, NULL, 0, 0);
  } else if (!carry || lua_gethook(co) != mb_preempt_hook || lua_gethookcount(co) != count) {
    lua_sethook(co, mb_preempt_hook, LUA_MASKCOUNT, count);
  }
}

void mb_task_resume(mb_rt *rt, mb_task *t) {
  lua_State *co = t->co;
  int nres, st, nargs = t->nres;
  if (t->status == MB_TASK_PENDING && t->cancel != MB_CANCEL_NONE) {
    mb_task_end_unstarted(rt, t);
    return;
  }
  if (t->run->limit != MB_LIMIT_NONE) return; /* its run is ending: killed after this turn */
  t->nres = 0;
  t->status = MB_TASK_RUNNING;
  rt->current = t;
  mb_task_set_hook(rt, t);
  st = lua_resume(co, rt->L, nargs, &nres);
  rt->current = NULL;
  if (st == LUA_YIELD) {
    lua_pop(co, nres);
    if (!rt->yielding) mb_task_ready(rt, t); /* cannot happen: be safe */
    rt->yielding = 0;
    t->status = MB_TASK_SUSPENDED;
    if (t->run->exiting) mb_run_exit(rt, t->run);
    return;
  }
  if (st == LUA_OK) {
    int ok = lua_toboolean(co, -nres);
    /* false, error (from mb_task_main): keep only the error. */
    if (!ok) lua_replace(co, -2);
    mb_task_finish(rt, t, ok, nres);
    return;
  }
  /* An error that escaped the task's pcall (a memory error in the
  ** handler), already alone on top. */
  mb_task_finish(rt, t, 0, 1);
}

/* End a task that will not run again: the run is being torn down. Its
** to-be-closed variables are closed; they cannot wait. */
void mb_task_kill(mb_rt *rt, mb_task *t) {
  mb_task_wait_end(rt, t);
  mb_coro_kill(t);
  if (lua_status(t->co) != LUA_OK) lua_resetthread(t->co);
  lua_settop(t->co, 0);
  mb_error_push(t->co, "cancelled", NULL, "the task's run ended", 20);
  t->nres = 0;
  t->observed = 1;
  mb_task_end(rt, t, MB_TASK_CANCELLED);
  lua_pop(rt->L, 1);
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
void mb_cancel_error_push(lua_State *L, mb_task *t, int idx) {
  if (idx != 0 && lua_type(L, idx) == LUA_TSTRING) {
    size_t n;
    const char *m = lua_tolstring(L, idx, &n);
    mb_error_push(L, "cancelled", NULL, m, n);
  } else if (t->name != NULL) {
    const char *m = lua_pushfstring(L, "task '%s' was cancelled", t->name);
    mb_error_push(L, "cancelled", NULL, m, strlen(m));
    lua_remove(L, -2);
  } else {
    const char *m = lua_pushfstring(L, "task #%I was cancelled", (lua_Integer)t->id);
    mb_error_push(L, "cancelled", NULL, m, strlen(m));
    lua_remove(L, -2);
  }
  if (idx != 0 && !lua_isnoneornil(L, idx)) {
    lua_pushvalue(L, idx);
    lua_setfield(L, -2, "cause");
  }
}

/* "task 'name' (file:line) waits for <what>": for deadlock reports. */
int mb_task_blocked_where(mb_task *t, char *buf, size_t len) {
  static const char *const what[] = {"nothing", "its turn", "its turn", "a bridge call",
                                     "a stream", "?", "a timer"};
  lua_Debug ar;
  char where[160] = "?";
  const char *w = t->wait == MB_WAIT_OBJS && t->wait_obj ? (const char *)t->wait_obj
                                                         : what[t->wait];
  int level;
  for (level = 0; t->co && lua_getstack(t->co, level, &ar); level++) {
    lua_getinfo(t->co, "Sl", &ar);
    if (ar.currentline > 0) {
      snprintf(where, sizeof where, "%s:%d", ar.short_src, ar.currentline);
      break;
    }
  }
  if (t->name != NULL)
    return snprintf(buf, len, "  task '%s' (%s) waits for %s", t->name, where, w);
  return snprintf(buf, len, "  task #%lld (%s) waits for %s", (long long)t->id, where, w);
}

/* ---------------------------------------------------------------------
** Preemption: with a time slice set, a count hook on every task thread
** yields a task that ran that many instructions without suspending (Lua
** 5.4 lets count hooks yield), and raises a pending cancellation, so even
** a greedy loop can be stopped. The same hook watches a run's instruction
** budget and deadline (limit.c).
** ------------------------------------------------------------------- */
void mb_preempt_hook(lua_State *L, lua_Debug *ar) {
  mb_rt *rt = mb_rt_of(L);
  mb_task *t = rt->current;
  mb_run *r;
  (void)ar;
  if (t == NULL) return;
  r = t->run;
  if (r->insn_limited || r->deadline > 0 || r->limit != MB_LIMIT_NONE) mb_limit_check(L, rt, r);
  if (t->cancel == MB_CANCEL_PENDING) mb_cancel_raise(L, t);
  if (rt->slice == 0 || (t->slice_used += rt->hook_count) < rt->slice) return;
  t->slice_used = 0;
  if (!lua_isyieldable(L)) return;
  mb_task_ready(rt, t);
  rt->yielding = 1;
  lua_yield(L, 0);
}

void mb_rt_set_slice(mb_rt *rt, int instructions) {
  rt->slice = instructions > 0 ? instructions : 0;
}

/* ---------------------------------------------------------------------
** pcall and xpcall, as stock, but they notice a task swallowing its own
** cancellation (so it is raised again at the next suspension point).
** ------------------------------------------------------------------- */
static int mb_finishpcall(lua_State *L, int status, lua_KContext extra) {
  if (status != LUA_OK && status != LUA_YIELD) {
    mb_cancel_caught(L, -1);
    lua_pushboolean(L, 0);
    lua_pushvalue(L, -2);
    return 2;
  }
  return lua_gettop(L) - (int)extra;
}

static int mb_l_pcall(lua_State *L) {
  int status;
  luaL_checkany(L, 1);
  lua_pushboolean(L, 1);
  lua_insert(L, 1);
  status = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, mb_finishpcall);
  return mb_finishpcall(L, status, 0);
}

static int mb_l_xpcall(lua_State *L) {
  int status;
  int n = lua_gettop(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushboolean(L, 1);
  lua_pushvalue(L, 1);
  lua_rotate(L, 3, 2);
  status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, mb_finishpcall);
  return mb_finishpcall(L, status, 2);
}

/* ---------------------------------------------------------------------
** Groups: structured concurrency. The first failure of a child cancels
** its siblings; g:wait (or closing the group) returns once every child
** has ended, and raises that failure.
** ------------------------------------------------------------------- */
static mb_group *mb_group_check(lua_State *L, int i) {
  return (mb_group *)luaL_checkudata(L, i, MB_GROUP_MT);
}

/* Cancel every child still running. */
static void mb_group_cancel_all(mb_rt *rt, lua_State *L, mb_group *g) {
  mb_link *l;
  for (l = g->tasks.next; l != &g->tasks; l = l->next) {
    mb_task *c = mb_container_of(l, mb_task, group_link);
    if (c->cancel != MB_CANCEL_NONE) continue;
    mb_cancel_error_push(L, c, 0);
    mb_task_cancel(rt, L, c);
  }
}

/* The Task of the child that ended is on rt->L's top. */
void mb_group_child_ended(mb_rt *rt, mb_task *t) {
  lua_State *L = rt->L;
  mb_group *g = t->group;
  mb_list_remove(&t->group_link);
  t->group = NULL;
  if (t->status == MB_TASK_FAILED) {
    t->observed = 1; /* the group raises it */
    if (!g->failed) {
      g->failed = 1;
      lua_getiuservalue(L, -1, MB_TASK_UV_GROUP); /* the group */
      lua_pushvalue(t->co, -1);
      lua_xmove(t->co, L, 1);
      lua_setiuservalue(L, -2, 1);
      lua_pop(L, 1);
      mb_group_cancel_all(rt, L, g);
    }
  }
  if (mb_list_empty(&g->tasks)) mb_waiters_fire_all(rt, &g->waiters);
}

static int mb_l_group(lua_State *L) {
  mb_group *g = (mb_group *)lua_newuserdatauv(L, sizeof *g, 1);
  memset(g, 0, sizeof *g);
  mb_list_init(&g->tasks);
  mb_list_init(&g->waiters);
  luaL_setmetatable(L, MB_GROUP_MT);
  return 1;
}

static mb_task *mb_spawn_opts(lua_State *L, int first);

static int mb_l_group_spawn(lua_State *L) {
  mb_group *g = mb_group_check(L, 1);
  mb_task *t;
  if (g->closed) return mb_misuse(L, "group:spawn: the group has ended");
  t = mb_spawn_opts(L, 2);
  t->group = g;
  mb_list_push(&g->tasks, &t->group_link);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, MB_TASK_UV_GROUP); /* children anchor the group */
  if (g->failed) { /* a sibling already failed: it starts cancelled */
    mb_cancel_error_push(L, t, 0);
    mb_task_cancel(mb_rt_of(L), L, t);
  }
  return 1;
}

/* The outcome once every child has ended: nothing, or the first failure. */
static int mb_group_outcome(lua_State *L, mb_group *g) {
  g->closed = 1;
  if (!g->failed) return 0;
  lua_getiuservalue(L, 1, 1);
  return lua_error(L);
}

/* ctx: 1 once this waiter was cancelled and is waiting for the children
** to unwind before it raises. */
static int mb_group_wait_k(lua_State *L, int status, lua_KContext ctx) {
  mb_rt *rt = mb_rt_of(L);
  mb_group *g = mb_group_check(L, 1);
  mb_task *self = rt->current;
  (void)status;
  if (self->aborted && self->cancel == MB_CANCEL_PENDING && self->wake_err == NULL) {
    /* Cancelled while waiting: no child may outlive the group. */
    self->aborted = 0;
    mb_cancel_delivered(self);
    mb_group_cancel_all(rt, L, g);
    ctx = 1;
  } else {
    mb_wait_check(L);
  }
  if (!mb_list_empty(&g->tasks)) {
    mb_waiter_init(&self->w1, self, L, 1, MB_OP_DONE);
    mb_list_push(&g->waiters, &self->w1.link);
    return mb_wait_objs(L, self, &self->w1, 1, "a task group", ctx, mb_group_wait_k);
  }
  if (ctx == 1) {
    g->closed = 1;
    return mb_cancel_raise(L, self);
  }
  return mb_group_outcome(L, g);
}

static int mb_l_group_wait(lua_State *L) {
  mb_group_check(L, 1);
  lua_settop(L, 1);
  if (!lua_isyieldable(L) && !mb_list_empty(&mb_group_check(L, 1)->tasks))
    return mb_misuse(L, "group:wait cannot suspend here (attempt to yield across a C-call boundary)");
  mb_task_of(L);
  return mb_group_wait_k(L, LUA_OK, 0);
}

/* local g <close> = task.group(): leaving the scope waits for the
** children; leaving it by an error cancels them first. */
static int mb_l_group_close(lua_State *L) {
  mb_group *g = mb_group_check(L, 1);
  if (!lua_isnil(L, 2)) mb_group_cancel_all(mb_rt_of(L), L, g);
  lua_settop(L, 1);
  if (mb_list_empty(&g->tasks)) {
    g->closed = 1;
    return 0;
  }
  return mb_l_group_wait(L);
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

/* Push the finished task's results, or raise its error. */
int mb_task_results(lua_State *L, mb_task *t) {
  lua_State *co = t->co;
  int i, n = t->nres;
  t->observed = 1;
  mb_task_unfail(L, t);
  if (t->status == MB_TASK_FAILED || t->status == MB_TASK_CANCELLED) {
    lua_pushvalue(co, -1);
    lua_xmove(co, L, 1);
    mb_error_fork(L);
    return lua_error(L);
  }
  if (n == 0 || co == NULL) return 0;
  luaL_checkstack(L, n, "too many results to wait for");
  for (i = 1; i <= n; i++) lua_pushvalue(co, i);
  lua_xmove(co, L, n);
  return n;
}

static int mb_task_wait_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  mb_wait_check(L);
  return mb_task_results(L, (mb_task *)ctx);
}

static int mb_task_finished(const mb_task *t) {
  return t->status >= MB_TASK_DONE;
}

/* Wait for t (on L's stack, which anchors it) to end. */
int mb_task_await(lua_State *L, mb_task *t) {
  mb_task *self;
  if (mb_task_finished(t)) return mb_task_results(L, t);
  self = mb_task_of(L);
  if (self == t) return mb_misuse(L, "a task cannot wait for itself");
  if (!lua_isyieldable(L))
    return mb_misuse(L, "Task:wait cannot suspend here (attempt to yield across a C-call boundary)");
  mb_waiter_init(&self->w1, self, L, 1, MB_OP_DONE);
  mb_list_push(&t->waiters, &self->w1.link);
  return mb_wait_objs(L, self, &self->w1, 1, "another task", (lua_KContext)t, mb_task_wait_k);
}

static int mb_l_task_wait(lua_State *L) {
  mb_task *t = mb_task_check(L, 1);
  lua_settop(L, 1); /* keeps the awaited Task anchored on our stack */
  return mb_task_await(L, t);
}

static int mb_l_task_done(lua_State *L) {
  lua_pushboolean(L, mb_task_finished(mb_task_check(L, 1)));
  return 1;
}

static int mb_l_task_status(lua_State *L) {
  lua_pushstring(L, mb_status_names[mb_task_check(L, 1)->status]);
  return 1;
}

static int mb_l_task_cancel(lua_State *L) {
  mb_task *t = mb_task_check(L, 1);
  mb_cancel_error_push(L, t, lua_isnoneornil(L, 2) ? 0 : 2);
  lua_pushboolean(L, mb_task_cancel(mb_rt_of(L), L, t));
  return 1;
}

/* Task:detach(): the run will not wait for it; it is cancelled when all
** else has finished, and its error is reported without failing the run. */
static int mb_l_task_detach(lua_State *L) {
  mb_task *t = mb_task_check(L, 1);
  lua_settop(L, 1);
  if (t->detached) return 1;
  if (mb_task_finished(t)) {
    if (t->status == MB_TASK_FAILED && !t->observed) {
      t->observed = 1;
      mb_stdio_report(t->co, -1);
      mb_task_unfail(L, t);
    }
    return 1;
  }
  t->detached = 1;
  t->run->ndetached++;
  return 1;
}

static int mb_l_task_tostring(lua_State *L) {
  mb_task *t = mb_task_check(L, 1);
  if (lua_getiuservalue(L, 1, MB_TASK_UV_NAME) == LUA_TSTRING)
    lua_pushfstring(L, "Task '%s' (%s)", lua_tostring(L, -1), mb_status_names[t->status]);
  else
    lua_pushfstring(L, "Task #%I (%s)", (lua_Integer)t->id, mb_status_names[t->status]);
  return 1;
}

/* Spawn from arguments first.. : [options,] fn, args...; the Task is left
** on the stack's top. */
static mb_task *mb_spawn_opts(lua_State *L, int first) {
  mb_task *self = mb_task_of(L);
  const char *name = NULL;
  int priority = 1;
  mb_task *t;
  if (lua_type(L, first) == LUA_TTABLE) {
    int isnum;
    if (lua_getfield(L, first, "name") != LUA_TNIL) {
      if (lua_type(L, -1) != LUA_TSTRING)
        mb_misuse(L, "task.spawn: option 'name' must be a string (got %s)", luaL_typename(L, -1));
      name = lua_tostring(L, -1); /* anchored by the options table */
    }
    if (lua_getfield(L, first, "priority") != LUA_TNIL) {
      lua_Integer p = lua_tointegerx(L, -1, &isnum);
      if (!isnum || p < 1 || p > 100)
        mb_misuse(L, "task.spawn: option 'priority' must be an integer from 1 to 100");
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

static int mb_l_spawn(lua_State *L) {
  mb_spawn_opts(L, 1);
  return 1;
}

static int mb_yield_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  mb_wait_check(L);
  return 0;
}

static int mb_l_yield(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  mb_task *self = mb_task_of(L);
  if (!lua_isyieldable(L))
    return mb_misuse(L, "task.yield cannot suspend here (attempt to yield across a C-call boundary)");
  mb_task_ready(rt, self);
  return mb_wait_yield(L, self, MB_WAIT_READY, NULL, 0, mb_yield_k);
}

/* Seconds (argument i) to a deadline in loop time, rounded up: never early. */
uint64_t mb_deadline(lua_State *L, int i) {
  mb_rt *rt = mb_rt_of(L);
  lua_Number secs = luaL_checknumber(L, i);
  if (!(secs >= 0)) luaL_argerror(L, i, "duration must be a non-negative number");
  if (secs > 1e12) secs = 1e12;
  uv_update_time(&rt->loop);
  return uv_now(&rt->loop) + (uint64_t)(secs * 1000.0 + 0.999999);
}

static int mb_l_sleep(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  uint64_t when = mb_deadline(L, 1);
  mb_task *self = mb_task_of(L);
  if (!lua_isyieldable(L))
    return mb_misuse(L, "task.sleep cannot suspend here (attempt to yield across a C-call boundary)");
  self->deadline = when;
  if (mb_sleep_add(rt, self) != 0) return mb_misuse(L, "not enough memory");
  return mb_wait_yield(L, self, MB_WAIT_SLEEP, NULL, 0, mb_yield_k);
}

static int mb_exit_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  mb_wait_check(L); /* only a kill resumes it; never a normal wake-up */
  return 0;
}

/* os.exit([code [, close]]): ends the run with the code, as the process
** would end in stock Lua; the host Go process keeps running. */
static int mb_l_os_exit(lua_State *L) {
  mb_task *self = mb_task_of(L);
  int code;
  if (lua_isboolean(L, 1)) code = lua_toboolean(L, 1) ? 0 : 1;
  else code = (int)luaL_optinteger(L, 1, 0);
  self->run->exit_code = code;
  if (!lua_isyieldable(L)) {
    /* Cannot suspend here: end the run with an error carrying the code. */
    mb_error_push_exit(L, code);
    return lua_error(L);
  }
  self->run->exiting = 1;
  self->cancel = MB_CANCEL_NONE; /* nothing may interrupt the exit */
  return mb_wait_yield(L, self, MB_WAIT_NONE, NULL, 0, mb_exit_k);
}

static int mb_l_current(lua_State *L) {
  mb_task *self = mb_task_of(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, self->ref);
  return 1;
}

static const luaL_Reg mb_task_methods[] = {
    {"wait", mb_l_task_wait},
    {"done", mb_l_task_done},
    {"status", mb_l_task_status},
    {"cancel", mb_l_task_cancel},
    {"detach", mb_l_task_detach},
    {NULL, NULL}};

static const luaL_Reg mb_group_methods[] = {
    {"spawn", mb_l_group_spawn},
    {"wait", mb_l_group_wait},
    {NULL, NULL}};

static const luaL_Reg mb_task_funcs[] = {
    {"spawn", mb_l_spawn},
    {"yield", mb_l_yield},
    {"sleep", mb_l_sleep},
    {"current", mb_l_current},
    {"group", mb_l_group},
    {NULL, NULL}};

static int mb_luaopen_task(lua_State *L) {
  luaL_newlib(L, mb_task_funcs);
  mb_join_funcs(L);
  return 1;
}

int mb_task_open(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  luaL_newmetatable(L, MB_TASK_MT);
  luaL_newlib(L, mb_task_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, mb_l_task_tostring);
  lua_setfield(L, -2, "__tostring");
  rt->task_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  luaL_newmetatable(L, MB_GROUP_MT);
  luaL_newlib(L, mb_group_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, mb_l_group_close);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
  lua_newtable(L);
  rt->pool_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  mb_preload(L, "task", mb_luaopen_task);
  lua_getglobal(L, "os");
  lua_pushcfunction(L, mb_l_os_exit);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);
  lua_pushcfunction(L, mb_l_pcall);
  lua_setglobal(L, "pcall");
  lua_pushcfunction(L, mb_l_xpcall);
  lua_setglobal(L, "xpcall");
  return 0;
}
