/*
** coro.c — the coroutine library, kept stock while the runtime's own yields
** pass through it.
**
** Layer 3 (objects). A bridge call inside a user coroutine yields that
** coroutine with the runtime's mark (rt->yielding). Our resume sees the
** mark and suspends its own thread too, with a continuation, so the yield
** travels up to the scheduler and no C stack is held while it waits. When
** the wait ends the scheduler resumes the task's root; each continuation
** resumes the coroutine below it, and the innermost one receives the
** result. Any other yield is the user's and behaves as in stock Lua.
**
** Each thread's extra space tells what it is (task.h's marks): a plain
** coroutine, a task's root thread (which behaves like stock Lua's main
** thread), or a coroutine suspended inside a runtime wait (which behaves
** like a "normal" one: it is busy, and nobody else may resume it).
*/
#include <stdint.h>
#include <string.h>

#include "coro.h"
#include "limit.h"
#include "task.h"

/* co is suspended inside the running task's wait: mark it busy and put it
** at the head of the task's list. The innermost is marked first. */
static void mb_coro_wait_mark(mb_rt *rt, lua_State *co) {
  mb_task *t = rt->current;
  lua_State *inner = t != NULL ? t->coros : NULL;
  mb_task_mark(co) = (void *)((uintptr_t)inner | MB_TASK_WAITING);
  if (t != NULL) t->coros = co;
}

static lua_State *mb_coro_get(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argexpected(L, co, 1, "coroutine");
  return co;
}

enum { MB_CO_RUN, MB_CO_DEAD, MB_CO_YIELD, MB_CO_NORM };
static const char *const mb_coro_statname[] = {"running", "dead", "suspended", "normal"};

static int mb_coro_status_of(lua_State *L, lua_State *co) {
  if (L == co) return MB_CO_RUN;
  if (mb_task_mark(co) != NULL) return MB_CO_NORM; /* a task root, or busy waiting */
  switch (lua_status(co)) {
    case LUA_YIELD:
      return MB_CO_YIELD;
    case LUA_OK: {
      lua_Debug ar;
      if (lua_getstack(co, 0, &ar)) return MB_CO_NORM; /* it has frames: running */
      if (lua_gettop(co) == 0) return MB_CO_DEAD;
      return MB_CO_YIELD; /* initial state */
    }
    default:
      return MB_CO_DEAD;
  }
}

/* co is about to run the running task's code (L is the thread that
** resumes or closes it): it gets L's count hook, the one the task's run
** needs. A coroutine carries the hook of the thread that made it, which
** may be another task's or an earlier run's, with other limits or none
** (a coroutine made in a run without a deadline and resumed in one with
** it must stop at the deadline). Setting a hook restarts its count, so
** under an instruction budget the new count's last period is paid now,
** as a new coroutine's is (mb_coro_new). */
static void mb_coro_hook(lua_State *L, lua_State *co) {
  mb_rt *rt = mb_rt_of(L);
  mb_task *t = rt->current;
  lua_Hook hook = lua_gethook(L);
  int mask = lua_gethookmask(L), count = lua_gethookcount(L);
  if (rt->userhooks) { /* a script set hooks: co keeps its own */
    count = mb_task_turn_count(rt);
    if (mb_task_hook_ok(L, co, count)) return;
    if (t != NULL && mb_limit_precharge(rt, t->run)) mb_limit_raise(L, t->run);
    mb_task_hook_set(L, co, count);
    return;
  }
  if (lua_gethook(co) == hook && lua_gethookmask(co) == mask && lua_gethookcount(co) == count)
    return;
  if (t != NULL && mb_limit_precharge(rt, t->run)) mb_limit_raise(L, t->run);
  lua_sethook(co, hook, mask, count);
}

/* lua_resume, noting co as the thread that runs the task's Lua code until
** it returns: the allocator reads where a task ran out of memory there
** (mb_limit_oom_where), and that place is kept when co fails so. */
static int mb_coro_run(lua_State *L, lua_State *co, int narg, int *nres) {
  mb_rt *rt = mb_rt_of(L);
  lua_State *outer = rt->running;
  int status;
  int stuck = !lua_isyieldable(L); /* a wait in co could not go up from L */
  mb_coro_hook(L, co);
  rt->running = co;
  rt->hook_raised_in = NULL;
  rt->nonyield += stuck;
  status = lua_resume(co, L, narg, nres);
  rt->nonyield -= stuck;
  rt->running = outer;
  if (status == LUA_ERRMEM) mb_limit_oom_keep(rt); /* where co ran out */
  if (status != LUA_OK && status != LUA_YIELD && rt->hook_raised_in == co) {
    rt->hook_raised_in = NULL;
    mb_limit_died_in_hook(L, co); /* its hooks stay off: see there */
  }
  return status;
}

/* The coroutine could not carry the runtime's yield up because our own
** thread cannot yield here. End its wait with an error raised inside it,
** so it unwinds instead of staying suspended forever. */
static int mb_coro_abort_wait(lua_State *L, lua_State *co, int *nres) {
  mb_rt *rt = mb_rt_of(L);
  mb_task *t = rt->current;
  rt->yielding = 0;
  if (t != NULL && t->wait == MB_WAIT_READY) {
    mb_task_wait_end(rt, t); /* a yield or a preemption: just carry on */
  } else if (t != NULL) {
    mb_task_wait_end(rt, t);
    t->aborted = 1;
    t->wake_err =
        "cannot wait here: the coroutine's resumer is inside a C function "
        "Lua cannot yield across (attempt to yield across a C-call boundary)";
  }
  return mb_coro_run(L, co, 0, nres);
}

/* After resuming co: pass a runtime yield up (never returns), or move the
** results to L (>= 0) or the error message (-1), as stock auxresume does. */
static int mb_coro_after(lua_State *L, lua_State *co, int status, int nres,
                         lua_KFunction k) {
  mb_rt *rt = mb_rt_of(L);
  if (status == LUA_YIELD && rt->yielding) {
    lua_pop(co, nres);
    if (lua_isyieldable(L)) {
      mb_coro_wait_mark(rt, co);
      return lua_yieldk(L, 0, (lua_KContext)co, k);
    }
    status = mb_coro_abort_wait(L, co, &nres);
  }
  if (status == LUA_OK || status == LUA_YIELD) {
    if (!lua_checkstack(L, nres + 1)) {
      lua_pop(co, nres);
      lua_pushliteral(L, "too many results to resume");
      return -1;
    }
    lua_xmove(co, L, nres);
    return nres;
  }
  lua_xmove(co, L, 1);
  return -1;
}

static int mb_coro_resume_aux(lua_State *L, lua_State *co, int narg, lua_KFunction k) {
  int nres, status;
  if (mb_task_mark(co) != NULL) {
    /* A task's root or a coroutine busy in a wait: like stock's main thread
    ** or a "normal" coroutine, it is not suspended. */
    lua_pop(L, narg);
    lua_pushliteral(L, "cannot resume non-suspended coroutine");
    return -1;
  }
  if (!lua_checkstack(co, narg)) {
    lua_pushliteral(L, "too many arguments to resume");
    return -1;
  }
  lua_xmove(L, co, narg);
  status = mb_coro_run(L, co, narg, &nres);
  return mb_coro_after(L, co, status, nres, k);
}

/* The continuation shared by resume and wrap: co's wait ended. */
static int mb_coro_continue(lua_State *L, lua_State *co, lua_KFunction k) {
  mb_task *t = mb_rt_of(L)->current;
  int nres, status;
  if (t != NULL && t->coros == co) t->coros = NULL; /* the wait unwinds */
  mb_task_mark(co) = NULL;
  status = mb_coro_run(L, co, 0, &nres);
  return mb_coro_after(L, co, status, nres, k);
}

/* coroutine.resume */
static int mb_coro_resume_finish(lua_State *L, lua_State *co, int r) {
  if (r < 0) {
    mb_limit_caught(L, lua_status(co)); /* an error in co: its status */
    mb_task_caught(L, -1); /* a swallowed cancellation comes back */
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  lua_pushboolean(L, 1);
  lua_insert(L, -(r + 1));
  return r + 1;
}

static int mb_coro_resume_k(lua_State *L, int status, lua_KContext ctx) {
  lua_State *co = (lua_State *)ctx;
  (void)status;
  return mb_coro_resume_finish(L, co, mb_coro_continue(L, co, mb_coro_resume_k));
}

static int mb_coro_resume(lua_State *L) {
  lua_State *co = mb_coro_get(L);
  int r = mb_coro_resume_aux(L, co, lua_gettop(L) - 1, mb_coro_resume_k);
  return mb_coro_resume_finish(L, co, r);
}

/* coroutine.wrap */
static int mb_coro_wrap_finish(lua_State *L, lua_State *co, int r) {
  if (r < 0) {
    int stat = lua_status(co);
    if (stat != LUA_OK && stat != LUA_YIELD) { /* error in the coroutine */
      lua_pop(L, 1);                           /* the copy mb_coro_after moved */
      stat = mb_limit_closethread(L, co);      /* close its tbc variables */
    }
    /* A memory error's message is left alone: lua_error raises it with
    ** LUA_ERRMEM again, which is how the scheduler tells it. */
    if (stat != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
      luaL_where(L, 1); /* as stock: add where the wrapped function was called */
      lua_insert(L, -2);
      lua_concat(L, 2);
    }
    return lua_error(L);
  }
  return r;
}

static int mb_coro_wrap_k(lua_State *L, int status, lua_KContext ctx) {
  lua_State *co = (lua_State *)ctx;
  (void)status;
  return mb_coro_wrap_finish(L, co, mb_coro_continue(L, co, mb_coro_wrap_k));
}

static int mb_coro_wrap_call(lua_State *L) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(1));
  int r = mb_coro_resume_aux(L, co, lua_gettop(L), mb_coro_wrap_k);
  return mb_coro_wrap_finish(L, co, r);
}

/* A new coroutine running the function at 1, pushed. Its thread copies
** its creator's count hook and counts from the start of a period; under
** an instruction budget that period's end is paid now, as a task's is
** (mb_limit_precharge), so short-lived coroutines are not free. */
static void mb_coro_new(lua_State *L) {
  mb_task *t = mb_rt_of(L)->current;
  lua_State *co;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  if (t != NULL && mb_limit_precharge(mb_rt_of(L), t->run)) mb_limit_raise(L, t->run);
  co = lua_newthread(L);
  mb_task_mark(co) = NULL; /* new threads copy the main thread's extra space */
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
}

static int mb_coro_wrap(lua_State *L) {
  mb_coro_new(L);
  lua_pushcclosure(L, mb_coro_wrap_call, 1);
  return 1;
}

static int mb_coro_create(lua_State *L) {
  mb_coro_new(L);
  return 1;
}

static int mb_coro_status(lua_State *L) {
  lua_State *co = mb_coro_get(L);
  lua_pushstring(L, mb_coro_statname[mb_coro_status_of(L, co)]);
  return 1;
}

/* At a task's root, as at stock Lua's main thread, user code cannot yield. */
static int mb_coro_yield(lua_State *L) {
  if (mb_task_mark_is_root(L)) {
    lua_pushliteral(L, "attempt to yield from outside a coroutine");
    return lua_error(L);
  }
  return lua_yield(L, lua_gettop(L));
}

static int mb_coro_isyieldable(lua_State *L) {
  lua_State *co = lua_isnone(L, 1) ? L : mb_coro_get(L);
  lua_pushboolean(L, lua_isyieldable(co) && !mb_task_mark_is_root(co));
  return 1;
}

static int mb_coro_running(lua_State *L) {
  int ismain = lua_pushthread(L);
  lua_pushboolean(L, ismain || mb_task_mark_is_root(L));
  return 2;
}

/* coroutine.close, as Lua 5.4.6's: nested closes fail with "C stack
** overflow" instead of overflowing it (mb_limit_closethread), and co's
** __close handlers run under the running task's hook. A limit error they
** end with is raised on: the run is over (as pcall does). */
static int mb_coro_close(lua_State *L) {
  lua_State *co = mb_coro_get(L);
  int status = mb_coro_status_of(L, co);
  switch (status) {
    case MB_CO_DEAD:
    case MB_CO_YIELD:
      mb_coro_hook(L, co);
      status = mb_limit_closethread(L, co);
      if (status == LUA_OK) {
        lua_pushboolean(L, 1);
        return 1;
      }
      mb_limit_caught(L, status);
      mb_task_caught(L, -1);
      lua_pushboolean(L, 0);
      lua_insert(L, -2);
      return 2;
    default:
      return luaL_error(L, "cannot close a %s coroutine", mb_coro_statname[status]);
  }
}

static const luaL_Reg mb_coro_funcs[] = {
    {"create", mb_coro_create},       {"resume", mb_coro_resume},
    {"running", mb_coro_running},     {"status", mb_coro_status},
    {"wrap", mb_coro_wrap},           {"yield", mb_coro_yield},
    {"isyieldable", mb_coro_isyieldable}, {"close", mb_coro_close},
    {NULL, NULL}};

/* Replace the functions of the already opened coroutine library in place,
** so package.loaded.coroutine and the global are the same table. */
void mb_coro_open(lua_State *L) {
  lua_getglobal(L, "coroutine");
  luaL_setfuncs(L, mb_coro_funcs, 0);
  lua_pop(L, 1);
}
