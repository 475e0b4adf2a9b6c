/*
** timer.c — the browser-style timer globals: setTimeout, clearTimeout,
** setInterval, clearInterval (milliseconds).
**
** Layer 3 (objects). A timer is a task (its id is the Task, so it is also an
** awaitable) whose body sleeps in the scheduler's heap and then spawns
** the callback as a task of its own, queued in deadline order with every
** other timer's: setTimeout's timer then waits for its callback (so
** await(id) returns its results), and setInterval's goes back to sleep, so
** a slow callback never delays the next tick. clear* cancels the timer and
** a callback that is due but has not started; one already running is left
** to finish, as in browsers.
*/
#include "errors.h"
#include "task.h"
#include "timer.h"

/* The timer task's stack: 1 ms, 2 repeat (once it ticked: the Task of
** its latest callback), 3 fn, 4.. args. */
enum { MB_TM_MS = 1, MB_TM_REPEAT, MB_TM_FN };
enum { MB_TIMER_ONCE = 1, MB_TIMER_EVERY = 2 }; /* mb_task.timer */

static int mb_timer_tick_k(lua_State *L, int status, lua_KContext ctx);

static int mb_timer_sleep(lua_State *L, mb_task *self) {
  mb_rt *rt = mb_rt_of(L);
  if (mb_sleep_add(&rt->sleepers, &self->sleep) != 0) return mb_errors_nomem(L, "timer");
  return mb_task_wait_yield(L, self, MB_WAIT_SLEEP, "a timer", 0, mb_timer_tick_k);
}

static int mb_timer_tick_k(lua_State *L, int status, lua_KContext ctx) {
  mb_rt *rt = mb_rt_of(L);
  mb_task *self = rt->current;
  int nargs = lua_gettop(L) - MB_TM_FN;
  uint64_t ms = (uint64_t)lua_tointeger(L, MB_TM_MS), now;
  (void)status;
  (void)ctx;
  mb_task_wait_check(L);
  luaL_checkstack(L, nargs + 2, "timer");
  for (int i = MB_TM_FN; i <= MB_TM_FN + nargs; i++) lua_pushvalue(L, i);
  if (self->timer == MB_TIMER_ONCE) {
    /* The callback is a task queued in deadline order with every other
    ** timer's; the timer waits for it, so await(id) gets its results. */
    mb_task_spawn(L, self->run, nargs, "setTimeout callback");
    lua_replace(L, MB_TM_REPEAT);
    lua_settop(L, MB_TM_REPEAT);
    return mb_task_await(L, MB_TM_REPEAT);
  }
  mb_task_spawn(L, self->run, nargs, "setInterval callback");
  lua_replace(L, MB_TM_REPEAT); /* clearInterval finds it there */
  /* Keep the rhythm; after a stall, skip the missed ticks. */
  uv_update_time(&rt->loop);
  now = uv_now(&rt->loop);
  self->sleep.deadline += ms;
  if (self->sleep.deadline <= now) self->sleep.deadline = now + ms;
  return mb_timer_sleep(L, self);
}

static int mb_timer_body(lua_State *L) {
  return mb_timer_sleep(L, mb_rt_of(L)->current);
}

static int mb_timer_start(lua_State *L, int repeat, const char *what) {
  mb_rt *rt = mb_rt_of(L);
  mb_task *self = mb_task_current(L, what), *t;
  lua_Number ms;
  lua_Integer ims;
  int nargs;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  ms = luaL_optnumber(L, 2, 0);
  if (!(ms >= 0)) return luaL_argerror(L, 2, "delay must be a non-negative number of milliseconds");
  if (ms > 1e12) ms = 1e12;
  ims = (lua_Integer)(ms + 0.999999);
  if (repeat && ims < 1) ims = 1; /* an interval of 0 would never yield the loop */
  nargs = lua_gettop(L) < 2 ? 0 : lua_gettop(L) - 2;
  lua_settop(L, nargs + 2);
  luaL_checkstack(L, 4, what);
  /* body, ms, repeat, fn, args... */
  lua_pushcfunction(L, mb_timer_body);
  lua_pushinteger(L, ims);
  lua_pushboolean(L, repeat);
  lua_pushvalue(L, 1);
  lua_rotate(L, 3, 4);
  lua_remove(L, 1);
  lua_remove(L, 1);
  t = mb_task_spawn(L, self->run, nargs + 3, what);
  t->timer = repeat ? MB_TIMER_EVERY : MB_TIMER_ONCE;
  uv_update_time(&rt->loop);
  t->sleep.deadline = uv_now(&rt->loop) + (uint64_t)ims;
  return 1;
}

static int mb_timer_l_set_timeout(lua_State *L) { return mb_timer_start(L, 0, "setTimeout"); }
static int mb_timer_l_set_interval(lua_State *L) { return mb_timer_start(L, 1, "setInterval"); }

/* clearTimeout(id), clearInterval(id): anything else than a live timer is
** ignored, as in browsers. */
static int mb_timer_l_clear(lua_State *L) {
  mb_task *t = mb_task_test(L, 1);
  mb_task *cb;
  if (t == NULL || !t->timer || t->status >= MB_TASK_DONE) return 0;
  if (lua_status(t->co) == LUA_YIELD) {
    lua_pushvalue(t->co, MB_TM_REPEAT);
    lua_xmove(t->co, L, 1);
    cb = mb_task_test(L, -1);
    if (cb != NULL && cb->status != MB_TASK_PENDING && t->timer == MB_TIMER_ONCE) {
      lua_pop(L, 1);
      return 0; /* its callback runs: too late to clear */
    }
    if (cb != NULL && cb->status == MB_TASK_PENDING) {
      /* Due, but not started: it does not run, as in browsers. */
      mb_task_cancel_error(L, cb, 0);
      mb_task_cancel(mb_rt_of(L), L, cb);
    }
    lua_pop(L, 1);
  }
  mb_task_cancel_error(L, t, 0);
  mb_task_cancel(mb_rt_of(L), L, t);
  return 0;
}

void mb_timer_open(lua_State *L) {
  lua_pushcfunction(L, mb_timer_l_set_timeout);
  lua_setglobal(L, "setTimeout");
  lua_pushcfunction(L, mb_timer_l_set_interval);
  lua_setglobal(L, "setInterval");
  lua_pushcfunction(L, mb_timer_l_clear);
  lua_setglobal(L, "clearTimeout");
  lua_pushcfunction(L, mb_timer_l_clear);
  lua_setglobal(L, "clearInterval");
}
