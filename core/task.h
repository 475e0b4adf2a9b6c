/*
** task.h — tasks: spawning, resuming, waiting, waking and cancelling them.
**
** Layer 2 (scheduler). The records are in state.h. A wait has three parts,
** the same everywhere: the prologue (mb_task_wait_begin), the yield
** (mb_task_wait_yield, _objs, _other) and the check its continuation
** starts with (mb_task_wait_check).
*/
#ifndef MB_TASK_H
#define MB_TASK_H

#include <stdint.h>

#include "state.h"

void mb_task_open(lua_State *L);
int mb_task_luaopen(lua_State *L); /* the task module's own functions */
void mb_task_set_slice(mb_rt *rt, int instructions);
int mb_task_msgh(lua_State *L);    /* every task's message handler */

/* Life. */
mb_task *mb_task_spawn(lua_State *L, mb_run *run, int nargs, const char *name);
mb_task *mb_task_test(lua_State *L, int i);
mb_task *mb_task_current(lua_State *L, const char *name);
int mb_task_resume(mb_rt *rt, mb_task *t); /* 1: it ended (see mb_task_forget) */
void mb_task_kill(mb_rt *rt, mb_task *t, int err); /* it ends with rt->L's err (see mb_task_forget) */
void mb_task_forget(mb_rt *rt, mb_task *t);
int mb_task_results(lua_State *L, int idx); /* the Task at idx */
int mb_task_await(lua_State *L, int idx);
void mb_task_unfail(lua_State *L, mb_task *t);
int mb_task_blocked_where(mb_task *t, char *buf, size_t len);
void mb_task_push_info(lua_State *L, mb_task *t); /* t:info()'s table; inspect.c */
void mb_task_interrupt(mb_rt *rt); /* async-signal-safe: preempt the running task */

/* The pool of finished threads keeps MB_POOL_KEEP; more, after a burst,
** until no spawn took them for MB_POOL_AGE_MS. */
#define MB_POOL_KEEP 256
#define MB_POOL_AGE_MS 1000
void mb_task_pool_trim(mb_rt *rt); /* MB_MSG_TRIM: the loop idled with a surplus */

/* co's hook for a turn that counts count instructions (0: none): the
** scheduler's, with the events co's script hook asks for (userhook.h).
** _ok: co has it already (setting it again would restart its count). L
** lends its stack. */
int mb_task_hook_ok(lua_State *L, lua_State *co, int count);
/* The count the running turn's hook has: 1 while preempted, none outside
** a task. */
static inline int mb_task_turn_count(mb_rt *rt) {
  return rt->current == NULL ? 0 : rt->interrupt ? 1 : rt->hook_count;
}
void mb_task_hook_set(lua_State *L, lua_State *co, int count);

/* Errors crossing waits (see mb_task_msgh): a wait raises again in the
** running task the error value on L's top, from src (a failed task) or
** from the task at taskidx (a promise's). push_error pushes an ended
** task's failure as an error of moonbridge's; report says it on stderr. */
void mb_task_pass_error(lua_State *L, mb_task *src);
void mb_task_pass_error_at(lua_State *L, int taskidx);
void mb_task_push_error(lua_State *L, mb_task *t);
void mb_task_report(mb_rt *rt, mb_task *t);

/* Waiting and waking. */
MB_NORETURN void mb_task_wait_refuse(lua_State *L, const char *name, const char *verb);

/* Can the running task's wait yield from L up to the task's root? L must
** be able to yield, and so must every coroutine's resumer on the way:
** under one that cannot, a wait could not reach the root (coro.c counts
** them in rt->nonyield). */
static inline int mb_task_can_yield(lua_State *L) {
  return lua_isyieldable(L) && mb_rt_of(L)->nonyield == 0;
}

/* The prologue of every wait: the running task, or an error naming name
** (a misuse outside a task; where L cannot yield, the C function in the
** way). verb says what cannot be done: "suspend", "wait for Go". Inline:
** it is on every bridge call's path. */
static inline mb_task *mb_task_wait_begin_as(lua_State *L, const char *name, const char *verb) {
  mb_task *t = mb_rt_of(L)->current;
  if (t == NULL || !mb_task_can_yield(L)) mb_task_wait_refuse(L, name, verb);
  return t;
}
#define mb_task_wait_begin(L, name) mb_task_wait_begin_as((L), (name), "suspend")
int mb_task_wait_yield(lua_State *L, mb_task *t, int wait, const char *what,
                       lua_KContext ctx, lua_KFunction k);
int mb_task_wait_objs(lua_State *L, mb_task *t, mb_waiter *wv, int n, const char *what,
                      lua_KContext ctx, lua_KFunction k);
int mb_task_wait_other(lua_State *L, mb_task *t, void *obj, mb_wait_undo undo,
                       const char *what, lua_KContext ctx, lua_KFunction k);
void mb_task_wait_check(lua_State *L);
void mb_task_wait_end(mb_rt *rt, mb_task *t);
void mb_task_ready(mb_rt *rt, mb_task *t);
void mb_task_wake(mb_rt *rt, mb_task *t);

/* mb_task_wake, delivering a record the task's continuation takes (a
** call's results): the task owns it until then, so a task killed (or its
** wait aborted) before it runs frees it in mb_task_wait_end instead of
** losing it. */
static inline void mb_task_wake_holding(mb_rt *rt, mb_task *t, void *held, mb_wait_undo held_free) {
  mb_task_wake(rt, t);
  t->held = held;
  t->held_free = held_free;
}

/* The running task's continuation takes what its wake delivered. */
static inline void *mb_task_take_held(mb_rt *rt) {
  mb_task *t = rt->current;
  void *held;
  if (t == NULL) return NULL;
  held = t->held;
  t->held = NULL;
  return held;
}
int mb_task_wake_sleepers(mb_rt *rt);
void mb_task_waiter_init(mb_waiter *w, mb_task *t, lua_State *L, int index, int op);
void mb_task_waiter_fire(mb_rt *rt, mb_waiter *w, int ok);
void mb_task_waiters_fire_all(mb_rt *rt, mb_link *list);

/* Cancelling. */
int mb_task_cancel(mb_rt *rt, lua_State *L, mb_task *t);
void mb_task_cancel_error(lua_State *L, mb_task *t, int idx);
MB_NORETURN int mb_task_cancel_raise(lua_State *L, mb_task *t);
int mb_task_is_cancel(lua_State *L, mb_task *t, int idx);
void mb_task_caught(lua_State *L, int idx);

/* The task's cancellation is being raised in it. */
static inline void mb_task_cancel_delivered(mb_task *t) {
  t->cancel = MB_CANCEL_DELIVERED;
  t->cancel_seen = 1;
}

/* Each thread's extra space (LUA_EXTRASPACE) tells what it is: NULL for a
** plain coroutine, the mb_task for a task's root thread (which behaves like
** stock Lua's main thread), or, with the low bit set, a coroutine suspended
** inside a runtime wait (which behaves like a "normal" one: it is busy, and
** nobody else may resume it). The rest of such a mark links to the next
** coroutine inward in the same wait (coro.c sets them), so a task killed
** in its wait can end them all instead of leaving them busy for good. */
#define mb_task_mark(co) (*(void **)lua_getextraspace(co))
#define MB_TASK_WAITING ((uintptr_t)1)

static inline int mb_task_mark_is_root(lua_State *co) {
  void *m = mb_task_mark(co);
  return m != NULL && !((uintptr_t)m & MB_TASK_WAITING);
}

static inline lua_State *mb_task_mark_inner(lua_State *co) {
  return (lua_State *)((uintptr_t)mb_task_mark(co) & ~MB_TASK_WAITING);
}

#endif
