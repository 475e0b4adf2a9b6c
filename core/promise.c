/*
** promise.c — promises, their combinators, and the global `async`.
**
** Layer 3 (objects). A Promise is a userdata with its state and the tasks
** awaiting it (mb_waiter); its user values hold the outcome, the reactions
** registered before it settled, and, for async(fn), the task producing it.
** An outcome is a table: {n = k, v1..vk} once fulfilled, {n = 1, err} once
** rejected or cancelled. Settling fires the waiters and runs the reactions:
** andThen/catch/finally handlers each run as a task of their own (so they
** may await), while adoption and the combinators' bookkeeping, which run no
** user code, happen at once.
*/
#include <string.h>

#include "errors.h"
#include "pack.h"
#include "promise.h"
#include "task.h"

#define MB_PROMISE_MT "moonbridge.Promise"
#define MB_AGG_MT "moonbridge.PromiseAggregate"

struct mb_promise {
  int state;    /* MB_PROM_* */
  int locked;   /* resolved with another promise: waits for that one */
  int handled;  /* someone awaited it or attached a reaction */
  mb_link waiters;
};

enum { MB_P_UV_OUTCOME = 1, MB_P_UV_REACTIONS, MB_P_UV_TASK, MB_P_NUV = MB_P_UV_TASK };

/* A reaction is a table {kind, a, b, target}. */
enum {
  MB_R_THEN = 1, /* a: onFulfilled, b: onRejected, target: the derived promise */
  MB_R_FINALLY,  /* a: fn, target */
  MB_R_ADOPT,    /* target took this promise as its resolution */
  MB_R_AGG       /* a: the aggregate, b: the item's index */
};

/* promise.all & co: what is still missing, and where results go. */
enum { MB_AGG_ALL = 0, MB_AGG_RACE, MB_AGG_ANY, MB_AGG_SETTLED };
typedef struct mb_promise_agg {
  int mode;
  lua_Integer left;
} mb_promise_agg;

static const char *const mb_promise_names[] = {"pending", "fulfilled", "rejected", "cancelled"};

static void mb_promise_settle(lua_State *L, int pidx, int state);
static void mb_promise_settle_value(lua_State *L, int pidx, int state);
static void mb_promise_adopt(lua_State *L, int pidx, int qidx);

mb_promise *mb_promise_test(lua_State *L, int idx) {
  return (mb_promise *)luaL_testudata(L, idx, MB_PROMISE_MT);
}

static mb_promise *mb_promise_check(lua_State *L, int idx) {
  return (mb_promise *)luaL_checkudata(L, idx, MB_PROMISE_MT);
}

int mb_promise_state(const mb_promise *p) { return p->state; }

mb_link *mb_promise_waiters(mb_promise *p) { return &p->waiters; }

static mb_promise *mb_promise_push_new(lua_State *L) {
  mb_promise *p = (mb_promise *)lua_newuserdatauv(L, sizeof *p, MB_P_NUV);
  memset(p, 0, sizeof *p);
  mb_list_init(&p->waiters);
  luaL_setmetatable(L, MB_PROMISE_MT);
  return p;
}

/* Someone takes the promise's outcome. If its async task failed because
** nobody had (the failure waits in the run's list of unobserved errors),
** the failure is handled after all. */
static void mb_promise_observe(lua_State *L, int idx) {
  mb_promise *p = (mb_promise *)lua_touserdata(L, idx);
  mb_task *t;
  if (p->handled) return;
  p->handled = 1;
  if (lua_getiuservalue(L, idx, MB_P_UV_TASK) == LUA_TUSERDATA &&
      (t = mb_task_test(L, -1)) != NULL) {
    t->observed = 1;
    mb_task_unfail(L, t);
  }
  lua_pop(L, 1);
}

/* The task producing the promise (async, or a handler's), or NULL. The
** promise's user value anchors it. */
mb_task *mb_promise_task(lua_State *L, int idx) {
  mb_task *t;
  lua_getiuservalue(L, idx, MB_P_UV_TASK);
  t = mb_task_test(L, -1);
  lua_pop(L, 1);
  return t;
}

/* Push the outcome; returns 1 when fulfilled. */
int mb_promise_outcome(lua_State *L, int idx) {
  mb_promise *p = (mb_promise *)lua_touserdata(L, idx);
  mb_promise_observe(L, idx);
  lua_getiuservalue(L, idx, MB_P_UV_OUTCOME);
  return p->state == MB_PROM_FULFILLED;
}

/* The rejection on the top, of the promise at idx, is raised again by a
** wait: it goes on as task.c passes errors, with the traceback of the
** task that produced it (mb_task_pass_error_at). */
void mb_promise_pass_error(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_getiuservalue(L, idx, MB_P_UV_TASK);
  lua_insert(L, -2);
  mb_task_pass_error_at(L, -2);
  lua_remove(L, -2);
}

/* Push the settled promise's values, or raise its error. */
static int mb_promise_results(lua_State *L, int idx) {
  if (!mb_promise_outcome(L, idx)) {
    lua_rawgeti(L, -1, 1);
    mb_promise_pass_error(L, idx);
    return lua_error(L);
  }
  return mb_pack_unpack(L, -1);
}

/* ---------------------------------------------------------------------
** Reactions.
** ------------------------------------------------------------------- */
static void mb_promise_agg_update(lua_State *L, int agg, lua_Integer i, int state, int outcome);

/* Running out of memory in a handler, an executor or an async function
** does not reject the promise: the memory error is raised on (lua_error
** raises Lua's memory message with LUA_ERRMEM again) in the task that ran
** it, like any out-of-memory error a script did not catch itself, and
** ends the run with a "limit" error (run.c). A rejection would instead
** hand it to whoever awaits the promise as a bare message to catch, and
** let the run go on short of memory. */

/* The reaction's task: stack is the settled promise, then the reaction. */
static int mb_promise_reaction_k(lua_State *L, int status, lua_KContext ctx);

static int mb_promise_reaction_body(lua_State *L) {
  mb_promise *p = (mb_promise *)lua_touserdata(L, 1);
  int kind, nargs = 0;
  lua_settop(L, 2);
  lua_rawgeti(L, 2, 1);
  kind = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  lua_getiuservalue(L, 1, MB_P_UV_OUTCOME); /* 3 */
  lua_rawgeti(L, 2, 4);                      /* 4: the target */
  lua_pushcfunction(L, mb_task_msgh);    /* 5 */
  if (kind == MB_R_FINALLY) {
    lua_rawgeti(L, 2, 2);
  } else {
    lua_rawgeti(L, 2, p->state == MB_PROM_FULFILLED ? 2 : 3);
    if (lua_isnil(L, -1)) { /* no handler for this outcome: pass it on */
      lua_pushvalue(L, 3);
      mb_promise_settle(L, 4, p->state == MB_PROM_FULFILLED ? MB_PROM_FULFILLED : MB_PROM_REJECTED);
      return 0;
    }
    if (p->state == MB_PROM_FULFILLED) {
      nargs = mb_pack_unpack(L, 3);
    } else {
      lua_rawgeti(L, 3, 1);
      nargs = 1;
    }
  }
  return mb_promise_reaction_k(L, lua_pcallk(L, nargs, LUA_MULTRET, 5, kind, mb_promise_reaction_k), kind);
}

static int mb_promise_reaction_k(lua_State *L, int status, lua_KContext ctx) {
  mb_promise *p = (mb_promise *)lua_touserdata(L, 1);
  mb_task *self = mb_rt_of(L)->current;
  int n = lua_gettop(L) - 5;
  if (status == LUA_ERRMEM) return lua_error(L); /* see above */
  if (status != LUA_OK && status != LUA_YIELD) {
    int cancelled = self != NULL && mb_task_is_cancel(L, self, -1);
    lua_pushvalue(L, -1);
    mb_promise_settle_value(L, 4, cancelled ? MB_PROM_CANCELLED : MB_PROM_REJECTED);
    /* Raised again when cancelled, or when nothing awaits the derived
    ** promise yet: then the run reports the failure unless someone takes
    ** the promise's outcome before the run ends. */
    if (!cancelled && ((mb_promise *)lua_touserdata(L, 4))->handled) return 0;
    if (self != NULL) self->reraise = 1;
    return lua_error(L);
  }
  luaL_checkstack(L, 3, "too many results"); /* the handler's may fill the stack */
  if ((int)ctx == MB_R_FINALLY) { /* its results do not matter */
    lua_pushvalue(L, 3);
    mb_promise_settle(L, 4, p->state == MB_PROM_FULFILLED ? MB_PROM_FULFILLED : MB_PROM_REJECTED);
    return 0;
  }
  if (n >= 1 && mb_promise_test(L, 6) != NULL) { /* adopt the returned promise */
    mb_promise *target = (mb_promise *)lua_touserdata(L, 4);
    lua_settop(L, 6);
    if (target->state == MB_PROM_PENDING && !target->locked) mb_promise_adopt(L, 4, 6);
    return 0;
  }
  mb_pack_values(L, n);
  mb_promise_settle(L, 4, MB_PROM_FULFILLED);
  return 0;
}

/* Run reaction ridx for the settled promise at pidx. */
static void mb_promise_reaction_run(lua_State *L, int pidx, int ridx) {
  mb_rt *rt = mb_rt_of(L);
  mb_promise *p = (mb_promise *)lua_touserdata(L, pidx);
  int kind;
  pidx = lua_absindex(L, pidx);
  ridx = lua_absindex(L, ridx);
  luaL_checkstack(L, 6, "promise reaction");
  lua_rawgeti(L, ridx, 1);
  kind = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  switch (kind) {
    case MB_R_ADOPT:
      lua_rawgeti(L, ridx, 4);
      lua_getiuservalue(L, pidx, MB_P_UV_OUTCOME);
      mb_promise_settle(L, -2, p->state);
      lua_pop(L, 1);
      break;
    case MB_R_AGG:
      lua_rawgeti(L, ridx, 2);
      lua_rawgeti(L, ridx, 3);
      lua_getiuservalue(L, pidx, MB_P_UV_OUTCOME);
      mb_promise_agg_update(L, -3, lua_tointeger(L, -2), p->state, lua_absindex(L, -1));
      lua_pop(L, 3);
      break;
    default: {
      mb_task *self = rt->current;
      if (self == NULL) mb_errors_misuse(L, "promise: settled outside a task");
      lua_pushcfunction(L, mb_promise_reaction_body);
      lua_pushvalue(L, pidx);
      lua_pushvalue(L, ridx);
      mb_task_spawn(L, self->run, 2, NULL);
      lua_rawgeti(L, ridx, 4); /* the derived promise is the task's work */
      lua_insert(L, -2);
      lua_setiuservalue(L, -2, MB_P_UV_TASK);
      lua_pop(L, 1);
    }
  }
}

/* Run the reaction now if p is settled, else keep it for later. The
** reaction is on the top (popped). */
static void mb_promise_reaction_add(lua_State *L, int pidx) {
  mb_promise *p = (mb_promise *)lua_touserdata(L, pidx);
  pidx = lua_absindex(L, pidx);
  mb_promise_observe(L, pidx);
  if (p->state != MB_PROM_PENDING) {
    mb_promise_reaction_run(L, pidx, -1);
    lua_pop(L, 1);
    return;
  }
  if (lua_getiuservalue(L, pidx, MB_P_UV_REACTIONS) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, pidx, MB_P_UV_REACTIONS);
  }
  lua_insert(L, -2);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_pop(L, 1);
}

static void mb_promise_reaction_push(lua_State *L, int kind, int a, int b, int target) {
  a = a ? lua_absindex(L, a) : 0;
  b = b ? lua_absindex(L, b) : 0;
  target = target ? lua_absindex(L, target) : 0;
  lua_createtable(L, 4, 0);
  lua_pushinteger(L, kind);
  lua_rawseti(L, -2, 1);
  if (a) { lua_pushvalue(L, a); lua_rawseti(L, -2, 2); }
  if (b) { lua_pushvalue(L, b); lua_rawseti(L, -2, 3); }
  if (target) { lua_pushvalue(L, target); lua_rawseti(L, -2, 4); }
}

/* Settle the promise at pidx with the one value on the top (popped): a
** rejection's error, a cancellation's, or a single fulfilment value. */
static void mb_promise_settle_value(lua_State *L, int pidx, int state) {
  mb_pack_values(L, 1); /* the stack keeps its height: relative pidx stays valid */
  mb_promise_settle(L, pidx, state);
}

/* Settle the promise at pidx with the outcome on the top (popped). A
** promise settles once; later attempts are ignored. */
static void mb_promise_settle(lua_State *L, int pidx, int state) {
  mb_rt *rt = mb_rt_of(L);
  mb_promise *p = (mb_promise *)lua_touserdata(L, pidx);
  lua_Integer i, n;
  pidx = lua_absindex(L, pidx);
  if (p->state != MB_PROM_PENDING) {
    lua_pop(L, 1);
    return;
  }
  p->state = state;
  lua_setiuservalue(L, pidx, MB_P_UV_OUTCOME);
  if (!mb_list_empty(&p->waiters)) p->handled = 1;
  mb_task_waiters_fire_all(rt, &p->waiters);
  if (lua_getiuservalue(L, pidx, MB_P_UV_REACTIONS) != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  lua_pushnil(L);
  lua_setiuservalue(L, pidx, MB_P_UV_REACTIONS);
  n = (lua_Integer)lua_rawlen(L, -1);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    mb_promise_reaction_run(L, pidx, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* p (pidx) takes q (qidx) as its resolution: it settles as q does. */
static void mb_promise_adopt(lua_State *L, int pidx, int qidx) {
  mb_promise *p = (mb_promise *)lua_touserdata(L, pidx);
  pidx = lua_absindex(L, pidx);
  qidx = lua_absindex(L, qidx);
  if (lua_rawequal(L, pidx, qidx)) {
    mb_errors_push(L, "runtime", NULL, MB_LIT("a promise cannot be resolved with itself"));
    mb_promise_settle_value(L, pidx, MB_PROM_REJECTED);
    return;
  }
  p->locked = 1;
  mb_promise_reaction_push(L, MB_R_ADOPT, 0, 0, pidx);
  mb_promise_reaction_add(L, qidx);
}

/* Resolve the promise at pidx with the n values on the top (popped). */
static void mb_promise_resolve_values(lua_State *L, int pidx, int n) {
  pidx = lua_absindex(L, pidx);
  luaL_checkstack(L, 3, "too many results"); /* a handler's may fill the stack */
  if (n >= 1 && mb_promise_test(L, -n) != NULL) {
    lua_pop(L, n - 1);
    mb_promise_adopt(L, pidx, -1);
    lua_pop(L, 1);
    return;
  }
  mb_pack_values(L, n);
  mb_promise_settle(L, pidx, MB_PROM_FULFILLED);
}

/* Cancel the promise at idx: it settles as cancelled, and the task of an
** async promise is cancelled too. Returns 0 when already settled. */
int mb_promise_cancel(lua_State *L, int idx) {
  mb_promise *p = (mb_promise *)lua_touserdata(L, idx);
  mb_task *t;
  idx = lua_absindex(L, idx);
  if (p->state != MB_PROM_PENDING) return 0;
  if (lua_getiuservalue(L, idx, MB_P_UV_TASK) == LUA_TUSERDATA &&
      (t = mb_task_test(L, -1)) != NULL) {
    mb_task_cancel_error(L, t, 0);
    mb_task_cancel(mb_rt_of(L), L, t);
  }
  lua_pop(L, 1);
  mb_errors_push(L, "cancelled", NULL, MB_LIT("the promise was cancelled"));
  mb_promise_settle_value(L, idx, MB_PROM_CANCELLED);
  return 1;
}

/* ---------------------------------------------------------------------
** Awaiting.
** ------------------------------------------------------------------- */
static int mb_promise_await_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  mb_task_wait_check(L);
  return mb_promise_results(L, (int)ctx);
}

int mb_promise_await(lua_State *L, int idx) {
  mb_promise *p = (mb_promise *)lua_touserdata(L, idx);
  mb_task *self;
  if (p->state != MB_PROM_PENDING) return mb_promise_results(L, idx);
  self = mb_task_wait_begin(L, "await");
  lua_settop(L, idx); /* the promise stays anchored on our stack */
  mb_task_waiter_init(&self->w1, self, L, 1, MB_OP_DONE);
  mb_list_push(&p->waiters, &self->w1.link);
  return mb_task_wait_objs(L, self, &self->w1, 1, "a promise", idx, mb_promise_await_k);
}

/* ---------------------------------------------------------------------
** The Lua API.
** ------------------------------------------------------------------- */
static int mb_promise_l_resolve_fn(lua_State *L) {
  mb_promise *p = (mb_promise *)lua_touserdata(L, lua_upvalueindex(1));
  if (p->state != MB_PROM_PENDING || p->locked) return 0;
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  mb_promise_resolve_values(L, 1, lua_gettop(L) - 1);
  return 0;
}

static int mb_promise_l_reject_fn(lua_State *L) {
  mb_promise *p = (mb_promise *)lua_touserdata(L, lua_upvalueindex(1));
  if (p->state != MB_PROM_PENDING || p->locked) return 0;
  lua_settop(L, 1);
  mb_promise_settle_value(L, lua_upvalueindex(1), MB_PROM_REJECTED);
  return 0;
}

/* promise.new(executor): executor(resolve, reject) runs now, in the
** caller's task (it may await); an error it raises rejects. */
static int mb_promise_new_k(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  if (status == LUA_ERRMEM) return lua_error(L); /* not a rejection: see the reactions */
  if (status != LUA_OK && status != LUA_YIELD) {
    mb_promise *p = (mb_promise *)lua_touserdata(L, 2);
    mb_task *self = mb_rt_of(L)->current;
    if (self != NULL && mb_task_is_cancel(L, self, -1)) return lua_error(L);
    if (p->state == MB_PROM_PENDING && !p->locked) {
      mb_promise_settle_value(L, 2, MB_PROM_REJECTED);
    }
  }
  lua_settop(L, 2);
  return 1;
}

static int mb_promise_l_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  mb_promise_push_new(L);                  /* 2 */
  lua_pushcfunction(L, mb_task_msgh); /* 3 */
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_pushcclosure(L, mb_promise_l_resolve_fn, 1);
  lua_pushvalue(L, 2);
  lua_pushcclosure(L, mb_promise_l_reject_fn, 1);
  return mb_promise_new_k(L, lua_pcallk(L, 2, 0, 3, 0, mb_promise_new_k), 0);
}

static int mb_promise_l_resolve(lua_State *L) {
  int n = lua_gettop(L);
  if (n >= 1 && mb_promise_test(L, 1) != NULL) {
    lua_settop(L, 1);
    return 1;
  }
  mb_promise_push_new(L);
  lua_insert(L, 1);
  mb_promise_resolve_values(L, 1, n);
  return 1;
}

static int mb_promise_l_reject(lua_State *L) {
  lua_settop(L, 1);
  mb_promise_push_new(L);
  lua_insert(L, 1);
  mb_promise_settle_value(L, 1, MB_PROM_REJECTED);
  return 1;
}

static void mb_promise_check_handler(lua_State *L, int i, const char *what) {
  if (!lua_isnoneornil(L, i) && lua_type(L, i) != LUA_TFUNCTION)
    mb_errors_misuse(L, "%s: handler must be a function (got %s)", what, luaL_typename(L, i));
}

static int mb_promise_l_then(lua_State *L) {
  mb_promise_check(L, 1);
  mb_promise_check_handler(L, 2, "promise:andThen");
  mb_promise_check_handler(L, 3, "promise:andThen");
  lua_settop(L, 3);
  mb_promise_push_new(L); /* 4 */
  mb_promise_reaction_push(L, MB_R_THEN, 2, 3, 4);
  mb_promise_reaction_add(L, 1);
  return 1;
}

static int mb_promise_l_catch(lua_State *L) {
  mb_promise_check(L, 1);
  mb_promise_check_handler(L, 2, "promise:catch");
  lua_settop(L, 2);
  lua_pushnil(L);
  lua_insert(L, 2); /* p, nil, fn */
  mb_promise_push_new(L);
  mb_promise_reaction_push(L, MB_R_THEN, 2, 3, 4);
  mb_promise_reaction_add(L, 1);
  return 1;
}

static int mb_promise_l_finally(lua_State *L) {
  mb_promise_check(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  mb_promise_push_new(L); /* 3 */
  mb_promise_reaction_push(L, MB_R_FINALLY, 2, 0, 3);
  mb_promise_reaction_add(L, 1);
  return 1;
}

static int mb_promise_l_await(lua_State *L) {
  mb_promise_check(L, 1);
  lua_settop(L, 1);
  return mb_promise_await(L, 1);
}

static int mb_promise_l_status(lua_State *L) {
  lua_pushstring(L, mb_promise_names[mb_promise_check(L, 1)->state]);
  return 1;
}

static int mb_promise_l_cancel(lua_State *L) {
  mb_promise_check(L, 1);
  lua_pushboolean(L, mb_promise_cancel(L, 1));
  return 1;
}

static int mb_promise_l_tostring(lua_State *L) {
  lua_pushfstring(L, "Promise (%s)", mb_promise_names[mb_promise_check(L, 1)->state]);
  return 1;
}

/* ---------------------------------------------------------------------
** Combinators: an aggregate (user values: its results, its target)
** collects the items' outcomes as they settle.
** ------------------------------------------------------------------- */
static void mb_promise_agg_fulfil(lua_State *L, int agg) {
  lua_getiuservalue(L, agg, 2);
  lua_getiuservalue(L, agg, 1);
  mb_promise_settle_value(L, -2, MB_PROM_FULFILLED);
  lua_pop(L, 1);
}

static void mb_promise_agg_settle_with(lua_State *L, int agg, int state, int outcome) {
  lua_getiuservalue(L, agg, 2);
  lua_pushvalue(L, outcome);
  mb_promise_settle(L, -2, state);
  lua_pop(L, 1);
}

static void mb_promise_agg_update(lua_State *L, int agg, lua_Integer i, int state, int outcome) {
  mb_promise_agg *a = (mb_promise_agg *)lua_touserdata(L, agg);
  int ok = state == MB_PROM_FULFILLED;
  agg = lua_absindex(L, agg);
  outcome = lua_absindex(L, outcome);
  switch (a->mode) {
    case MB_AGG_RACE:
      mb_promise_agg_settle_with(L, agg, ok ? MB_PROM_FULFILLED : MB_PROM_REJECTED, outcome);
      return;
    case MB_AGG_ALL:
      if (!ok) {
        mb_promise_agg_settle_with(L, agg, MB_PROM_REJECTED, outcome);
        return;
      }
      lua_getiuservalue(L, agg, 1);
      lua_rawgeti(L, outcome, 1);
      lua_rawseti(L, -2, i);
      lua_pop(L, 1);
      break;
    case MB_AGG_ANY:
      if (ok) {
        mb_promise_agg_settle_with(L, agg, MB_PROM_FULFILLED, outcome);
        return;
      }
      lua_getiuservalue(L, agg, 1);
      lua_rawgeti(L, outcome, 1);
      lua_rawseti(L, -2, i);
      lua_pop(L, 1);
      break;
    case MB_AGG_SETTLED:
      lua_getiuservalue(L, agg, 1);
      lua_createtable(L, 0, 2);
      lua_pushstring(L, mb_promise_names[state]);
      lua_setfield(L, -2, "status");
      lua_rawgeti(L, outcome, 1);
      lua_setfield(L, -2, ok ? "value" : "reason");
      lua_rawseti(L, -2, i);
      lua_pop(L, 1);
      break;
  }
  if (--a->left > 0) return;
  if (a->mode != MB_AGG_ANY) {
    mb_promise_agg_fulfil(L, agg);
    return;
  }
  lua_getiuservalue(L, agg, 2);
  mb_errors_push(L, "runtime", "promise.any", MB_LIT("promise.any: every promise was rejected"));
  lua_getiuservalue(L, agg, 1);
  lua_setfield(L, -2, "errors");
  mb_promise_settle_value(L, -2, MB_PROM_REJECTED);
  lua_pop(L, 1);
}

static int mb_promise_combine(lua_State *L, int mode) {
  static const char *const names[] = {"promise.all", "promise.race", "promise.any",
                                      "promise.allSettled"};
  lua_Integer i, n;
  mb_promise_agg *a;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  n = luaL_len(L, 1);
  a = (mb_promise_agg *)lua_newuserdatauv(L, sizeof *a, 2); /* 2 */
  a->mode = mode;
  a->left = n;
  luaL_setmetatable(L, MB_AGG_MT);
  lua_createtable(L, (int)(n < 1024 ? n : 1024), 0);
  lua_setiuservalue(L, 2, 1);
  mb_promise_push_new(L); /* 3 */
  lua_pushvalue(L, 3);
  lua_setiuservalue(L, 2, 2);
  if (n == 0) {
    if (mode == MB_AGG_ALL || mode == MB_AGG_SETTLED) {
      mb_promise_agg_fulfil(L, 2);
    } else if (mode == MB_AGG_ANY) {
      lua_pushfstring(L, "%s: no promises given", names[mode]);
      mb_errors_push(L, "runtime", names[mode], lua_tostring(L, -1), lua_rawlen(L, -1));
      mb_promise_settle_value(L, 3, MB_PROM_REJECTED);
    }
    return 1;
  }
  for (i = 1; i <= n; i++) {
    lua_pushinteger(L, i);
    if (lua_geti(L, 1, i) == LUA_TUSERDATA && mb_promise_test(L, -1) != NULL) {
      mb_promise_reaction_push(L, MB_R_AGG, 2, -2, 0);
      mb_promise_reaction_add(L, -2);
      lua_pop(L, 2);
    } else { /* a plain value counts as fulfilled with it */
      mb_pack_values(L, 1);
      mb_promise_agg_update(L, 2, i, MB_PROM_FULFILLED, -1);
      lua_pop(L, 2);
    }
  }
  lua_settop(L, 3);
  return 1;
}

static int mb_promise_l_all(lua_State *L) { return mb_promise_combine(L, MB_AGG_ALL); }
static int mb_promise_l_race(lua_State *L) { return mb_promise_combine(L, MB_AGG_RACE); }
static int mb_promise_l_any(lua_State *L) { return mb_promise_combine(L, MB_AGG_ANY); }
static int mb_promise_l_settled(lua_State *L) { return mb_promise_combine(L, MB_AGG_SETTLED); }

/* ---------------------------------------------------------------------
** async(fn): a function that runs fn as a task and returns its Promise.
** ------------------------------------------------------------------- */
static int mb_promise_async_k(lua_State *L, int status, lua_KContext ctx) {
  mb_task *self = mb_rt_of(L)->current;
  (void)ctx;
  if (status == LUA_OK || status == LUA_YIELD) {
    mb_promise_resolve_values(L, 1, lua_gettop(L) - 2);
    return 0;
  }
  if (status == LUA_ERRMEM) return lua_error(L); /* not a rejection: see the reactions */
  mb_pack_values(L, 1);
  if (self != NULL && self->cancel != MB_CANCEL_NONE) {
    lua_rawgeti(L, -1, 1);
    if (mb_task_is_cancel(L, self, -1)) {
      lua_pop(L, 1);
      mb_promise_settle(L, 1, MB_PROM_CANCELLED);
      return 0; /* the task ends cancelled all the same */
    }
    lua_pop(L, 1);
  }
  mb_promise_settle(L, 1, MB_PROM_REJECTED);
  if (((mb_promise *)lua_touserdata(L, 1))->handled) return 0;
  /* Nobody awaits the promise yet: the task fails with the error, so the
  ** run reports it unless someone takes the outcome before the run ends. */
  lua_getiuservalue(L, 1, MB_P_UV_OUTCOME);
  lua_rawgeti(L, -1, 1);
  if (self != NULL) self->reraise = 1;
  return lua_error(L);
}

/* The async task: stack is the promise, fn, args... */
static int mb_promise_async_body(lua_State *L) {
  lua_pushcfunction(L, mb_task_msgh);
  lua_insert(L, 2);
  return mb_promise_async_k(L, lua_pcallk(L, lua_gettop(L) - 3, LUA_MULTRET, 2, 0, mb_promise_async_k), 0);
}

static int mb_promise_async_call(lua_State *L) {
  mb_task *self = mb_task_current(L, "async");
  int n = lua_gettop(L);
  luaL_checkstack(L, 4, "async");
  mb_promise_push_new(L);
  lua_insert(L, 1);                      /* p args */
  lua_pushcfunction(L, mb_promise_async_body);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1)); /* p args body p fn */
  lua_rotate(L, 2, 3);                   /* p body p fn args */
  mb_task_spawn(L, self->run, n + 2, NULL);
  lua_setiuservalue(L, 1, MB_P_UV_TASK);
  lua_settop(L, 1);
  return 1;
}

static int mb_promise_l_async(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_pushcclosure(L, mb_promise_async_call, 1);
  return 1;
}

static const luaL_Reg mb_promise_methods[] = {
    {"andThen", mb_promise_l_then}, {"catch", mb_promise_l_catch},
    {"finally", mb_promise_l_finally}, {"await", mb_promise_l_await},
    {"status", mb_promise_l_status}, {"cancel", mb_promise_l_cancel},
    {NULL, NULL}};

static const luaL_Reg mb_promise_funcs[] = {
    {"new", mb_promise_l_new},   {"resolve", mb_promise_l_resolve},
    {"reject", mb_promise_l_reject}, {"all", mb_promise_l_all},
    {"race", mb_promise_l_race}, {"any", mb_promise_l_any},
    {"allSettled", mb_promise_l_settled}, {NULL, NULL}};

static int mb_promise_luaopen(lua_State *L) {
  luaL_newlib(L, mb_promise_funcs);
  return 1;
}

static const luaL_Reg mb_promise_meta[] = {{"__tostring", mb_promise_l_tostring}, {NULL, NULL}};

void mb_promise_open(lua_State *L) {
  mb_newclass(L, MB_PROMISE_MT, mb_promise_methods, mb_promise_meta);
  lua_pop(L, 1);
  luaL_newmetatable(L, MB_AGG_MT);
  lua_pop(L, 1);
  mb_preload(L, "promise", mb_promise_luaopen);
  lua_pushcfunction(L, mb_promise_l_async);
  lua_setglobal(L, "async");
}
