/*
** await.c — awaitables and the ways to wait for several: the global
** `await`, and task.all, task.race, task.select and task.timeout.
**
** Layer 4 (combinators). An awaitable is a Task, a Promise or a Channel (a
** receive). The combinators share one state machine, the join: its items
** (functions are spawned as tasks first), one waiter per item registered
** on each item's list, and the outcome collected so far. Structured
** combinators (all, race, timeout) cancel what they no longer need and
** then drain: they return only once every task they cancelled has ended,
** even when the waiting task is itself cancelled meanwhile (it raises its
** cancellation after the drain).
*/
#include <string.h>

#include "await.h"
#include "chan.h"
#include "errors.h"
#include "pack.h"
#include "promise.h"
#include "task.h"

enum { MB_AW_NONE = 0, MB_AW_TASK, MB_AW_PROMISE, MB_AW_CHAN };
enum { MB_JOIN_ALL = 0, MB_JOIN_RACE, MB_JOIN_SELECT, MB_JOIN_TIMEOUT };

/* Stack slots of a join. */
enum { MB_J_ITEMS = 1, MB_J_STATE, MB_J_RESULTS, MB_J_OUTCOME, MB_J_TOP = MB_J_OUTCOME };

typedef struct mb_await_join {
  int mode, n;
  int draining;   /* the rest was cancelled: waiting for those tasks to end */
  int decided;    /* the outcome is known (and, if draining, waits for the drain) */
  int winner;     /* RACE/SELECT/TIMEOUT: the item that finished; ALL: the failed one */
  int won_ok;     /* the winner succeeded: MB_J_OUTCOME holds its results */
  int cancelled;  /* the waiting task was cancelled: raise that after the drain */
  int timed_out;
  int left;       /* ALL: items without an outcome yet */
  int first;      /* the item whose completion woke the waiter, or 0 */
  uint64_t deadline;
  lua_Number seconds; /* TIMEOUT: as given, for the error */
  unsigned char *kind; /* per item, 0-based: MB_AW_* */
  unsigned char *got;  /* per item: its outcome was taken */
  mb_waiter wv[];
} mb_await_join;

/* ---------------------------------------------------------------------
** One awaitable.
** ------------------------------------------------------------------- */
static int mb_await_kind(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TUSERDATA) return MB_AW_NONE;
  if (mb_task_test(L, idx) != NULL) return MB_AW_TASK;
  if (mb_promise_test(L, idx) != NULL) return MB_AW_PROMISE;
  if (mb_chan_test(L, idx) != NULL) return MB_AW_CHAN;
  return MB_AW_NONE;
}

static int mb_await_ready(lua_State *L, int idx, int kind) {
  void *p = lua_touserdata(L, idx);
  switch (kind) {
    case MB_AW_TASK: return ((mb_task *)p)->status >= MB_TASK_DONE;
    case MB_AW_PROMISE: return mb_promise_state((mb_promise *)p) != MB_PROM_PENDING;
    default: return mb_chan_recv_ready((mb_chan *)p);
  }
}

/* The ready awaitable's outcome: pushes {n=, ...} and returns 1, or pushes
** its error and returns 0. A channel's value is received (taken). */
static int mb_await_outcome(lua_State *L, int idx, int kind) {
  idx = lua_absindex(L, idx);
  if (kind == MB_AW_TASK) {
    mb_task *t = (mb_task *)lua_touserdata(L, idx);
    if (t->status != MB_TASK_DONE) {
      t->observed = 1;
      mb_task_unfail(L, t);
      lua_pushvalue(t->co, -1);
      lua_xmove(t->co, L, 1);
      mb_task_pass_error(L, t);
      return 0;
    }
    mb_pack_values(L, mb_task_results(L, idx));
    return 1;
  }
  if (kind == MB_AW_PROMISE) {
    if (mb_promise_outcome(L, idx)) return 1;
    lua_rawgeti(L, -1, 1);
    lua_remove(L, -2);
    mb_promise_pass_error(L, idx);
    return 0;
  }
  mb_chan_recv_now(L, idx);
  mb_pack_values(L, 2);
  return 1;
}

static void mb_await_register(lua_State *L, int idx, int kind, mb_waiter *w) {
  void *p = lua_touserdata(L, idx);
  switch (kind) {
    case MB_AW_TASK: mb_list_push(&((mb_task *)p)->waiters, &w->link); break;
    case MB_AW_PROMISE: mb_list_push(mb_promise_waiters((mb_promise *)p), &w->link); break;
    default:
      w->op = MB_OP_RECV;
      mb_chan_enqueue((mb_chan *)p, w);
  }
}

static void mb_await_cancel(lua_State *L, int idx, int kind) {
  if (kind == MB_AW_TASK) {
    mb_task *t = (mb_task *)lua_touserdata(L, idx);
    if (t->status >= MB_TASK_DONE) return;
    mb_task_cancel_error(L, t, 0);
    mb_task_cancel(mb_rt_of(L), L, t);
  } else if (kind == MB_AW_PROMISE) {
    mb_promise_cancel(L, idx);
  }
}

/* ---------------------------------------------------------------------
** await(x)
** ------------------------------------------------------------------- */
static int mb_await_l_await(lua_State *L) {
  lua_settop(L, 1);
  switch (mb_await_kind(L, 1)) {
    case MB_AW_TASK: return mb_task_await(L, 1);
    case MB_AW_PROMISE: return mb_promise_await(L, 1);
    case MB_AW_CHAN: return mb_chan_await(L, 1);
  }
  return mb_errors_misuse(L, "await: expected a Task, Promise or Channel (got %s)", luaL_typename(L, 1));
}

/* ---------------------------------------------------------------------
** The join.
** ------------------------------------------------------------------- */
static mb_await_join *mb_await_join_get(lua_State *L) {
  return (mb_await_join *)lua_touserdata(L, MB_J_STATE);
}

static void mb_await_join_cancel_rest(lua_State *L, mb_await_join *j) {
  int i;
  j->draining = 1;
  for (i = 1; i <= j->n; i++) {
    if (j->got[i - 1] || i == j->winner) continue;
    lua_rawgeti(L, MB_J_ITEMS, i);
    mb_await_cancel(L, -1, j->kind[i - 1]);
    lua_pop(L, 1);
  }
}

/* Item i's outcome is on the top (popped): record it. */
static void mb_await_join_take(lua_State *L, mb_await_join *j, int i, int ok) {
  j->got[i - 1] = 1;
  if (j->mode == MB_JOIN_ALL && ok) {
    lua_rawseti(L, MB_J_RESULTS, i);
    if (--j->left == 0) j->decided = 1;
    return;
  }
  lua_replace(L, MB_J_OUTCOME);
  j->winner = i;
  j->won_ok = ok;
  j->decided = 1;
  if (j->mode == MB_JOIN_ALL || j->mode == MB_JOIN_RACE) mb_await_join_cancel_rest(L, j);
}

/* The task behind item i: the Task itself, or the task producing a
** Promise (async, a handler); NULL for anything else. Anchored by the item. */
static mb_task *mb_await_join_item_task(lua_State *L, mb_await_join *j, int i) {
  mb_task *t = NULL;
  lua_rawgeti(L, MB_J_ITEMS, i);
  if (j->kind[i - 1] == MB_AW_TASK) t = (mb_task *)lua_touserdata(L, -1);
  else if (j->kind[i - 1] == MB_AW_PROMISE) t = mb_promise_task(L, -1);
  lua_pop(L, 1);
  return t;
}

/* Do tasks the join cancelled (or those producing promises it cancelled)
** still run? Register on the first such. */
static int mb_await_join_drain_wait(lua_State *L, mb_await_join *j, mb_task *self) {
  int i;
  for (i = 1; i <= j->n; i++) {
    mb_task *t = mb_await_join_item_task(L, j, i);
    if (t == NULL || t->status >= MB_TASK_DONE) continue;
    mb_task_waiter_init(&j->wv[0], self, L, i, MB_OP_DONE);
    mb_list_push(&t->waiters, &j->wv[0].link);
    return 1;
  }
  return 0;
}

static int mb_await_join_k(lua_State *L, int status, lua_KContext ctx);

/* A structured join answers for the tasks it ended: their failures after
** the one it raises are its to drop, not the run's to report. */
static void mb_await_join_observe(lua_State *L, mb_await_join *j) {
  int i;
  for (i = 1; i <= j->n; i++) {
    mb_task *t = mb_await_join_item_task(L, j, i);
    if (t == NULL || t->status < MB_TASK_DONE) continue;
    t->observed = 1;
    mb_task_unfail(L, t);
  }
}

/* Push what a task.timeout waited for, in words, for its error: the
** function it ran (kept as items[0]) or the awaitable. */
static const char *mb_await_timeout_what(lua_State *L) {
  lua_Debug ar;
  lua_rawgeti(L, MB_J_ITEMS, 0);
  if (lua_type(L, -1) == LUA_TFUNCTION) {
    const char *name;
    lua_pushvalue(L, -1);
    lua_getinfo(L, ">S", &ar);
    if (*ar.what != 'C') return lua_pushfstring(L, "function <%s:%d>", ar.short_src, ar.linedefined);
    if ((name = mb_errors_funcname(L)) != NULL) return lua_pushfstring(L, "function '%s'", name);
    return lua_pushliteral(L, "a C function");
  }
  switch (mb_await_kind(L, -1)) {
    case MB_AW_TASK: {
      mb_task *t = (mb_task *)lua_touserdata(L, -1);
      if (t->name != NULL) return lua_pushfstring(L, "task '%s'", t->name);
      return lua_pushfstring(L, "task #%I", (lua_Integer)t->id);
    }
    case MB_AW_PROMISE: return lua_pushliteral(L, "a promise");
    default: return lua_pushliteral(L, "a channel receive");
  }
}

static int mb_await_join_finish(lua_State *L, mb_await_join *j, mb_task *self) {
  if (j->mode != MB_JOIN_SELECT) mb_await_join_observe(L, j);
  if (j->cancelled) return mb_task_cancel_raise(L, self);
  if (j->timed_out)
    return mb_errors_throw(L, "timeout", "task.timeout", "task.timeout: %s timed out after %f s",
                           mb_await_timeout_what(L), j->seconds);
  if (j->mode == MB_JOIN_ALL) {
    if (j->winner) {
      lua_pushvalue(L, MB_J_OUTCOME);
      return lua_error(L);
    }
    lua_pushvalue(L, MB_J_RESULTS);
    return 1;
  }
  if (!j->won_ok) {
    lua_pushvalue(L, MB_J_OUTCOME);
    return lua_error(L);
  }
  if (j->mode == MB_JOIN_TIMEOUT) return mb_pack_unpack(L, MB_J_OUTCOME);
  lua_pushinteger(L, j->winner);
  return 1 + mb_pack_unpack(L, MB_J_OUTCOME);
}

/* Take every ready outcome, then finish or wait again. */
static int mb_await_join_step(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  mb_task *self = rt->current;
  mb_await_join *j = mb_await_join_get(L);
  int i, k, nw = 0;
  /* The item that woke us finished first: it goes first, then the rest
  ** in list order. */
  for (k = 0; k <= j->n && !j->decided && !j->draining; k++) {
    int ok;
    i = k == 0 ? j->first : k;
    if (i == 0 || j->got[i - 1] || (k > 0 && i == j->first)) continue;
    lua_rawgeti(L, MB_J_ITEMS, i);
    if (!mb_await_ready(L, -1, j->kind[i - 1])) {
      lua_pop(L, 1);
      continue;
    }
    ok = mb_await_outcome(L, -1, j->kind[i - 1]);
    lua_remove(L, -2);
    mb_await_join_take(L, j, i, ok);
  }
  j->first = 0;
  if (!j->draining && !j->decided && j->mode != MB_JOIN_SELECT &&
      self->cancel == MB_CANCEL_PENDING) {
    /* A cancellation waits for this suspension point: drain first. */
    mb_task_cancel_delivered(self);
    j->cancelled = 1;
    mb_await_join_cancel_rest(L, j);
  }
  if (j->draining) {
    if (!mb_await_join_drain_wait(L, j, self)) return mb_await_join_finish(L, j, self);
    return mb_task_wait_objs(L, self, j->wv, 1, "tasks it cancelled to end", 0, mb_await_join_k);
  }
  if (j->decided) return mb_await_join_finish(L, j, self);
  for (i = 1; i <= j->n; i++) {
    if (j->got[i - 1]) continue;
    lua_rawgeti(L, MB_J_ITEMS, i);
    mb_task_waiter_init(&j->wv[nw], self, L, i, MB_OP_DONE);
    mb_await_register(L, -1, j->kind[i - 1], &j->wv[nw]);
    lua_pop(L, 1);
    nw++;
  }
  if (j->mode == MB_JOIN_TIMEOUT) {
    self->sleep.deadline = j->deadline;
    if (mb_sleep_add(&rt->sleepers, &self->sleep) != 0) {
      for (i = 0; i < nw; i++) mb_list_remove(&j->wv[i].link);
      return mb_errors_nomem(L, "task.timeout");
    }
  }
  return mb_task_wait_objs(L, self, j->wv, nw, "several awaitables", 0, mb_await_join_k);
}

static int mb_await_join_k(lua_State *L, int status, lua_KContext ctx) {
  mb_task *self = mb_rt_of(L)->current;
  mb_await_join *j = mb_await_join_get(L);
  (void)status;
  (void)ctx;
  if (self->aborted) {
    if (self->cancel == MB_CANCEL_PENDING && self->wake_err == NULL &&
        j->mode != MB_JOIN_SELECT) {
      self->aborted = 0;
      mb_task_cancel_delivered(self);
      j->cancelled = 1;
      if (!j->draining) mb_await_join_cancel_rest(L, j);
    } else {
      mb_task_wait_check(L); /* raises */
    }
  } else if (self->fired == 0 && j->mode == MB_JOIN_TIMEOUT && !j->draining) {
    /* the deadline passed */
    j->timed_out = 1;
    j->decided = 1;
    mb_await_join_cancel_rest(L, j);
  } else if (!j->draining && j->kind[self->fired - 1] == MB_AW_CHAN) {
    /* A receive completed: the value, if any, is on our top. */
    if (!self->fired_ok) lua_pushnil(L);
    lua_pushboolean(L, self->fired_ok);
    mb_pack_values(L, 2);
    mb_await_join_take(L, j, self->fired, 1);
  } else if (!j->draining && self->fired > 0) {
    j->first = self->fired;
  }
  lua_settop(L, MB_J_TOP);
  return mb_await_join_step(L);
}

/* Set up a join over the list at index 1 (functions are spawned) and run
** it. The stack becomes the join's slots. */
static int mb_await_join_start(lua_State *L, int mode, const char *what, uint64_t deadline,
                               lua_Number seconds) {
  mb_task *self = mb_task_current(L, what);
  mb_await_join *j;
  int i, n;
  size_t size;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  n = (int)luaL_len(L, 1);
  if (n == 0 && mode == MB_JOIN_SELECT) return mb_errors_misuse(L, "%s: no awaitables", what);
  if (n > 100000) return mb_errors_misuse(L, "%s: too many awaitables (%d)", what, n);
  if (n > 0) mb_task_wait_begin(L, what);
  for (i = 1; i <= n; i++) { /* check everything before spawning anything */
    lua_rawgeti(L, 1, i);
    if (lua_type(L, -1) != LUA_TFUNCTION && mb_await_kind(L, -1) == MB_AW_NONE)
      return mb_errors_misuse(L, "%s: entry %d must be a function, Task, Promise or Channel (got %s)",
                        what, i, luaL_typename(L, -1));
    lua_pop(L, 1);
  }
  size = sizeof *j + (size_t)(n > 0 ? n : 1) * (sizeof(mb_waiter) + 2);
  j = (mb_await_join *)lua_newuserdatauv(L, size, 0); /* 2 */
  memset(j, 0, size);
  j->mode = mode;
  j->n = n;
  j->left = n;
  j->deadline = deadline;
  j->seconds = seconds;
  j->kind = (unsigned char *)&j->wv[n > 0 ? n : 1];
  j->got = j->kind + n;
  lua_createtable(L, n, 0); /* 3: the items, with functions spawned */
  if (mode == MB_JOIN_TIMEOUT) { /* and what it waits for, for its error */
    lua_rawgeti(L, 1, 0);
    lua_rawseti(L, -2, 0);
  }
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    if (lua_type(L, -1) == LUA_TFUNCTION) {
      mb_task_spawn(L, self->run, 0, NULL);
    }
    j->kind[i - 1] = (unsigned char)mb_await_kind(L, -1);
    lua_rawseti(L, -2, i);
  }
  lua_replace(L, MB_J_ITEMS);
  lua_createtable(L, mode == MB_JOIN_ALL ? n : 0, 0); /* MB_J_RESULTS */
  lua_pushnil(L);                                     /* MB_J_OUTCOME */
  if (n == 0) { /* all({}) and race({}) */
    j->decided = 1;
    if (mode == MB_JOIN_RACE) return 0;
  }
  return mb_await_join_step(L);
}

static int mb_await_l_all(lua_State *L) { return mb_await_join_start(L, MB_JOIN_ALL, "task.all", 0, 0); }
static int mb_await_l_race(lua_State *L) { return mb_await_join_start(L, MB_JOIN_RACE, "task.race", 0, 0); }
static int mb_await_l_select(lua_State *L) { return mb_await_join_start(L, MB_JOIN_SELECT, "task.select", 0, 0); }

/* task.timeout(seconds, fn, ...) or task.timeout(seconds, awaitable). */
static int mb_await_l_timeout(lua_State *L) {
  uint64_t deadline = mb_sleep_deadline(L, 1, &mb_rt_of(L)->loop);
  lua_Number seconds = lua_tonumber(L, 1);
  mb_task *self = mb_task_current(L, "task.timeout");
  luaL_checkstack(L, 3, "task.timeout");
  lua_pushvalue(L, 2); /* what it waits for, kept for its error */
  lua_insert(L, 1);
  if (lua_type(L, 3) == LUA_TFUNCTION) {
    mb_task_spawn(L, self->run, lua_gettop(L) - 3, NULL);
  } else if (mb_await_kind(L, 3) == MB_AW_NONE) {
    return mb_errors_misuse(L, "task.timeout: expected a function or an awaitable (got %s)",
                      luaL_typename(L, 3));
  } else {
    lua_settop(L, 3);
  }
  lua_createtable(L, 1, 0); /* {[0] = what, the task or awaitable} */
  lua_insert(L, -2);
  lua_rawseti(L, -2, 1);
  lua_replace(L, 2);
  lua_insert(L, 1);
  lua_rawseti(L, 1, 0);
  return mb_await_join_start(L, MB_JOIN_TIMEOUT, "task.timeout", deadline, seconds);
}

static const luaL_Reg mb_await_funcs[] = {
    {"all", mb_await_l_all}, {"race", mb_await_l_race}, {"select", mb_await_l_select},
    {"timeout", mb_await_l_timeout}, {NULL, NULL}};

/* Add the combinators to the task module on the top (rt.c assembles it). */
void mb_await_lib(lua_State *L) {
  luaL_setfuncs(L, mb_await_funcs, 0);
}

void mb_await_open(lua_State *L) {
  lua_pushcfunction(L, mb_await_l_await);
  lua_setglobal(L, "await");
}
