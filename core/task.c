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
void mb_task_ready(mb_rt *rt, mb_task *t) {
  t->wait = MB_WAIT_READY;
  t->wait_obj = NULL;
  mb_list_push(&rt->ready, &t->ready);
}

/* Suspend the running task (L is its root thread or a user coroutine it
** resumed) until whatever it now waits for wakes it. */
int mb_wait_yield(lua_State *L, mb_task *t, int wait, void *obj,
                  lua_KContext ctx, lua_KFunction k) {
  mb_rt *rt = mb_rt_of(L);
  t->wait = wait;
  t->wait_obj = obj;
  rt->yielding = 1;
  return lua_yieldk(L, 0, ctx, k);
}

/* First thing a waiting continuation does: raise if the wait was aborted. */
void mb_wait_check(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  mb_task *t = rt->current;
  if (t != NULL && t->wake_err != NULL) {
    const char *why = t->wake_err;
    t->wake_err = NULL;
    mb_error_throw(L, "cancelled", NULL, "%s", why);
  }
}

mb_task *mb_task_of(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  if (rt->current == NULL) luaL_error(L, "not inside a task");
  return rt->current;
}

/* Undo whatever the task waits for, so nothing will wake it later. */
void mb_task_wait_end(mb_rt *rt, mb_task *t) {
  switch (t->wait) {
    case MB_WAIT_READY:
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
    case MB_WAIT_TASK:
      mb_list_remove(&t->wait_link);
      break;
    case MB_WAIT_SLEEP:
      mb_sleep_remove(rt, t);
      break;
  }
  t->wait = MB_WAIT_NONE;
  t->wait_obj = NULL;
}

/* ---------------------------------------------------------------------
** Sleepers: one binary min-heap by deadline and one libuv timer armed at
** the earliest, instead of a timer handle per task.
** ------------------------------------------------------------------- */
static void mb_heap_set(mb_rt *rt, int i, mb_task *t) {
  rt->heap[i] = t;
  t->heap_idx = i;
}

static void mb_heap_up(mb_rt *rt, int i) {
  mb_task *t = rt->heap[i];
  while (i > 0) {
    int p = (i - 1) / 2;
    if (rt->heap[p]->deadline <= t->deadline) break;
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
    if (c + 1 < rt->nheap && rt->heap[c + 1]->deadline < rt->heap[c]->deadline) c++;
    if (t->deadline <= rt->heap[c]->deadline) break;
    mb_heap_set(rt, i, rt->heap[c]);
    i = c;
  }
  mb_heap_set(rt, i, t);
}

static int mb_sleep_add(mb_rt *rt, mb_task *t) {
  if (rt->nheap == rt->capheap) {
    int cap = rt->capheap ? rt->capheap * 2 : 64;
    mb_task **h = realloc(rt->heap, (size_t)cap * sizeof *h);
    if (h == NULL) return -1;
    rt->heap = h;
    rt->capheap = cap;
  }
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

/* The timer fired: wake every sleeper whose deadline has passed. */
void mb_sleep_fire(mb_rt *rt) {
  uint64_t now = uv_now(&rt->loop);
  int woke = 0;
  while (rt->nheap > 0 && rt->heap[0]->deadline <= now) {
    mb_task *t = rt->heap[0];
    mb_sleep_remove(rt, t);
    mb_task_ready(rt, t);
    woke = 1;
  }
  mb_timer_arm(rt);
  /* Return from uv_run now: the tasks are ready, the loop must not poll. */
  if (woke) uv_stop(&rt->loop);
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
  t = (mb_task *)lua_newuserdatauv(L, sizeof *t, 2);
  memset(t, 0, sizeof *t);
  t->co = co;
  t->run = run;
  t->id = ++rt->ntask_ids;
  t->heap_idx = -1;
  mb_list_init(&t->ready);
  mb_list_init(&t->waiters);
  mb_list_init(&t->wait_link);
  mb_list_init(&t->fail_link);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->task_mt_ref);
  lua_setmetatable(L, -2);
  lua_rotate(L, -2, 1); /* fn args task thread */
  lua_setiuservalue(L, -2, 1);
  if (name != NULL) {
    t->name = lua_pushstring(L, name);
    lua_setiuservalue(L, -2, 2);
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
  while (!mb_list_empty(&t->waiters)) {
    mb_task *w = mb_container_of(t->waiters.next, mb_task, wait_link);
    mb_list_remove(&w->wait_link);
    mb_task_ready(rt, w);
    t->observed = 1;
  }
  mb_list_remove(&t->run_link);
  r->ntasks--;
  if (t == r->main) t->observed = 1; /* its outcome is the run's */
  if (status == MB_TASK_FAILED && !t->observed && !r->done)
    mb_list_push(&r->failed, &t->fail_link);
  luaL_unref(rt->L, LUA_REGISTRYINDEX, t->ref);
  t->ref = LUA_NOREF;
  mb_run_task_ended(rt, r, t);
}

/* Forget the finished task's thread when it holds nothing worth keeping. */
static void mb_task_recycle(mb_rt *rt, mb_task *t) {
  if (t->status != MB_TASK_DONE || t->nres != 0 || t->ref != LUA_NOREF) return;
  mb_thread_put(rt, t);
  t->co = NULL; /* the Task's uservalue still anchors the thread; harmless */
}

void mb_task_resume(mb_rt *rt, mb_task *t) {
  lua_State *co = t->co;
  int nres, st, nargs = t->nres;
  t->nres = 0;
  t->status = MB_TASK_RUNNING;
  rt->current = t;
  st = lua_resume(co, rt->L, nargs, &nres);
  rt->current = NULL;
  if (st == LUA_YIELD) {
    lua_pop(co, nres);
    if (!rt->yielding) mb_task_ready(rt, t); /* a preemption: run again later */
    rt->yielding = 0;
    t->status = MB_TASK_SUSPENDED;
    if (t->run->exiting) mb_run_exit(rt, t->run);
    return;
  }
  if (st == LUA_OK && lua_toboolean(co, -nres)) {
    lua_rotate(co, -nres, -1); /* the status to the top, then drop it */
    lua_pop(co, 1);
    t->nres = nres - 1;
    mb_task_end(rt, t, MB_TASK_DONE);
    mb_task_recycle(rt, t);
    lua_pop(rt->L, 1);
    return;
  }
  /* false, error (from mb_task_main): keep only the error. Any other status
  ** is an error that escaped the task's pcall (a memory error in the
  ** handler), already alone on top. */
  if (st == LUA_OK) lua_replace(co, -2);
  mb_task_end(rt, t, MB_TASK_FAILED);
  lua_pop(rt->L, 1);
}

/* End a task that will not run again: the run is being torn down. Its
** to-be-closed variables are closed; they cannot wait. */
void mb_task_kill(mb_rt *rt, mb_task *t) {
  mb_task_wait_end(rt, t);
  if (t->co != NULL && lua_status(t->co) != LUA_OK) lua_resetthread(t->co);
  else if (t->co != NULL) lua_settop(t->co, 0);
  t->nres = 0;
  t->observed = 1;
  mb_task_end(rt, t, MB_TASK_CANCELLED);
  lua_pop(rt->L, 1);
}

/* "task 'name' (file:line) waits for <what>": for deadlock reports. */
int mb_task_blocked_where(mb_task *t, char *buf, size_t len) {
  static const char *const what[] = {"nothing", "its turn", "a bridge call",
                                     "a stream", "another task", "a timer"};
  lua_Debug ar;
  char where[160] = "?";
  int level;
  for (level = 0; t->co && lua_getstack(t->co, level, &ar); level++) {
    lua_getinfo(t->co, "Sl", &ar);
    if (ar.currentline > 0) {
      snprintf(where, sizeof where, "%s:%d", ar.short_src, ar.currentline);
      break;
    }
  }
  if (t->name != NULL)
    return snprintf(buf, len, "  task '%s' (%s) waits for %s", t->name, where, what[t->wait]);
  return snprintf(buf, len, "  task #%lld (%s) waits for %s", (long long)t->id, where,
                  what[t->wait]);
}

/* ---------------------------------------------------------------------
** The Lua API: task.spawn, Task:wait and friends.
** ------------------------------------------------------------------- */
static mb_task *mb_task_check(lua_State *L, int i) {
  return (mb_task *)luaL_checkudata(L, i, MB_TASK_MT);
}

/* Push the finished task's results, or raise its error. */
static int mb_task_results(lua_State *L, mb_task *t) {
  lua_State *co = t->co;
  int i, n = t->nres;
  t->observed = 1;
  mb_list_remove(&t->fail_link);
  if (t->status == MB_TASK_CANCELLED)
    return mb_error_throw(L, "cancelled", NULL, "task #%lld was cancelled", (long long)t->id);
  if (t->status == MB_TASK_FAILED) {
    lua_pushvalue(co, -1);
    lua_xmove(co, L, 1);
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

static int mb_l_task_wait(lua_State *L) {
  mb_task *t = mb_task_check(L, 1);
  mb_task *self;
  if (mb_task_finished(t)) return mb_task_results(L, t);
  self = mb_task_of(L);
  if (self == t) return luaL_error(L, "a task cannot wait for itself");
  if (!lua_isyieldable(L))
    return luaL_error(L, "Task:wait cannot suspend here (attempt to yield across a C-call boundary)");
  lua_settop(L, 1); /* keeps the awaited Task anchored on our stack */
  mb_list_push(&t->waiters, &self->wait_link);
  return mb_wait_yield(L, self, MB_WAIT_TASK, t, (lua_KContext)t, mb_task_wait_k);
}

static int mb_l_task_done(lua_State *L) {
  lua_pushboolean(L, mb_task_finished(mb_task_check(L, 1)));
  return 1;
}

static int mb_l_task_status(lua_State *L) {
  lua_pushstring(L, mb_status_names[mb_task_check(L, 1)->status]);
  return 1;
}

static int mb_l_task_tostring(lua_State *L) {
  mb_task *t = mb_task_check(L, 1);
  if (lua_getiuservalue(L, 1, 2) == LUA_TSTRING)
    lua_pushfstring(L, "Task '%s' (%s)", lua_tostring(L, -1), mb_status_names[t->status]);
  else
    lua_pushfstring(L, "Task #%I (%s)", (lua_Integer)t->id, mb_status_names[t->status]);
  return 1;
}

static int mb_l_spawn(lua_State *L) {
  mb_task *self = mb_task_of(L);
  int n = lua_gettop(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  mb_task_spawn(L, self->run, n - 1, NULL);
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
    return luaL_error(L, "task.yield cannot suspend here (attempt to yield across a C-call boundary)");
  mb_task_ready(rt, self);
  return mb_wait_yield(L, self, MB_WAIT_READY, NULL, 0, mb_yield_k);
}

static int mb_l_sleep(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  lua_Number secs = luaL_checknumber(L, 1);
  mb_task *self = mb_task_of(L);
  uint64_t ms;
  if (!(secs >= 0)) return luaL_argerror(L, 1, "duration must be a non-negative number");
  if (secs > 1e12) secs = 1e12;
  if (!lua_isyieldable(L))
    return luaL_error(L, "task.sleep cannot suspend here (attempt to yield across a C-call boundary)");
  ms = (uint64_t)(secs * 1000.0 + 0.999999); /* round up: never wake early */
  uv_update_time(&rt->loop);
  self->deadline = uv_now(&rt->loop) + ms;
  if (mb_sleep_add(rt, self) != 0) return luaL_error(L, "not enough memory");
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
    {NULL, NULL}};

static const luaL_Reg mb_task_funcs[] = {
    {"spawn", mb_l_spawn},
    {"yield", mb_l_yield},
    {"sleep", mb_l_sleep},
    {"current", mb_l_current},
    {NULL, NULL}};

static int mb_luaopen_task(lua_State *L) {
  luaL_newlib(L, mb_task_funcs);
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
  lua_newtable(L);
  rt->pool_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, mb_luaopen_task);
  lua_setfield(L, -2, "task");
  lua_pop(L, 1);
  lua_getglobal(L, "os");
  lua_pushcfunction(L, mb_l_os_exit);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);
  return 0;
}
