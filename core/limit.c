/*
** limit.c — the limits a Runtime puts on its scripts: memory (Lua's
** allocator, in rt.c), a run's VM instruction budget and its context's
** deadline (a count hook, with task.c's time slice).
**
** Layer 2 (scheduler). A run that goes over its budget or deadline is
** ended: the task running raises a "limit" error, which pcall, xpcall and
** coroutine.resume raise again (a script cannot swallow it and go on), and
** after that turn run.c kills the run's other tasks. Memory is different,
** as in stock Lua: "not enough memory" may be caught, and only an uncaught
** one fails the run, with kind "limit": at once, when the task that ran
** out ends with it (run.c). It is told by its status (LUA_ERRMEM), never
** by its text; as Lua calls no message handler for it, the allocator
** notes where the task was when it refused (mb_limit_oom_where).
*/
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "errors.h"
#include "limit.h"

#define MB_LIMIT_OOM_FRAMES 16 /* frames shown where a task ran out of memory */

/* MemoryLimit. The scheduler's own allocations (rt->current NULL: a run's
** start, its result, a deadlock report, and whatever finalizers the
** collector runs meanwhile) may go an eighth past it, at least 1 MiB and
** at most 64 MiB, so that a run that hit the limit can still be reported
** and the Runtime keeps serving; everything a task runs, and finalizers
** run by Close, get the limit itself. */
void mb_limit_set_memory(mb_rt *rt, size_t bytes) {
  size_t reserve = bytes / 8;
  if (reserve < MB_LIMIT_RESERVE_MIN) reserve = MB_LIMIT_RESERVE_MIN;
  if (reserve > MB_LIMIT_RESERVE_MAX) reserve = MB_LIMIT_RESERVE_MAX;
  rt->mem_limit = bytes;
  rt->mem_reserve = bytes > 0 ? reserve : 0;
}

void mb_limit_set_output(mb_rt *rt, int64_t bytes) { rt->output_limit = bytes; }

const char *mb_limit_op(int limit) {
  mb_assert(limit != MB_LIMIT_NONE, "no limit to name");
  switch (limit) {
    case MB_LIMIT_INSN: return "instructions";
    case MB_LIMIT_OUTPUT: return "output";
    default: return "deadline";
  }
}

const char *mb_limit_message(int limit) {
  switch (limit) {
    case MB_LIMIT_INSN: return "the run went over its instruction limit";
    case MB_LIMIT_OUTPUT: return "the run wrote more than its output limit";
    default: return "the run's deadline passed";
  }
}

/* Raise the run's limit error in L. */
void mb_limit_raise(lua_State *L, mb_run *r) {
  mb_rt_of(L)->over_limit = 1;
  mb_errors_throw(L, "limit", mb_limit_op(r->limit), "%s", mb_limit_message(r->limit));
}

/* Call f(ud) protected, as lua_pcall(L, 1, nresults, 0) would, with what
** it allocates held to MemoryLimit itself rather than the scheduler's
** reserve: for the scheduler's work on a run's own data (its chunk, a
** Call's arguments, SetGlobal's value), of any size a host sends. Out of
** memory, the caller fails the run (status LUA_ERRMEM), and the reserve
** is left for reporting it. */
int mb_limit_pcall_strict(lua_State *L, lua_CFunction f, void *ud, int nresults) {
  mb_rt *rt = mb_rt_of(L);
  size_t reserve = rt->mem_reserve;
  int st;
  lua_pushcfunction(L, f);
  lua_pushlightuserdata(L, ud);
  rt->mem_reserve = 0;
  st = lua_pcall(L, 1, nresults, 0);
  rt->mem_reserve = reserve;
  return st;
}

/* From the count hook: charge r the instructions since the last call and
** look at the clock. Returns nonzero when the run is over either (or
** another limit): the hook raises its error. */
int mb_limit_tick(mb_rt *rt, mb_run *r) {
  if (r->limit == MB_LIMIT_NONE) {
    if (r->insn_limited && (r->insn_left -= rt->hook_count) < 0)
      r->limit = MB_LIMIT_INSN;
    else if (r->deadline > 0 && uv_hrtime() >= r->deadline)
      r->limit = MB_LIMIT_DEADLINE;
  }
  return r->limit != MB_LIMIT_NONE;
}

/* The allocator's look at the running task's run, every
** MB_LIMIT_ALLOC_WATCH bytes (mb_limit_alloc_refuses): refuse (1) once
** the run is over its deadline or budget, or another limit. The refusal
** is Lua's memory error in the task, told apart by the field set here
** (r->limit): whatever catches it raises the run's limit error instead
** (mb_task_caught), and a task it ends fails with that error. alloc_watch
** stays spent, so the task's next allocations are looked at, and refused,
** too. */
int mb_limit_alloc_over(mb_rt *rt) {
  mb_task *t = rt->current;
  mb_run *r;
  if (t != NULL) {
    r = t->run;
    if (r->limit == MB_LIMIT_NONE) {
      if (r->insn_limited && r->insn_left < 0)
        r->limit = MB_LIMIT_INSN;
      else if (r->deadline > 0 && uv_hrtime() >= r->deadline)
        r->limit = MB_LIMIT_DEADLINE;
    }
    if (r->limit != MB_LIMIT_NONE) {
      rt->over_limit = 1;
      return 1;
    }
  }
  rt->alloc_watch = MB_LIMIT_ALLOC_WATCH;
  return 0;
}

/* Charge steps of work done inside one C library call (string.find,
** table.sort, json.encode...) against the running task's run, since the
** count hook cannot fire until the call returns: the instruction budget
** always, the clock only for a batch of MB_LIMIT_GRAIN steps or more
** (callers charge in such batches while they work, and the rest at the
** end). Raises the run's limit error as the hook does. Returns 0 when
** there is nothing to charge (no task, or a run with no budget and no
** deadline), so a caller may stop charging. */
int mb_limit_charge(lua_State *L, int64_t steps) {
  mb_task *t = mb_rt_of(L)->current;
  mb_run *r;
  if (t == NULL) return 0;
  r = t->run;
  if (r->limit == MB_LIMIT_NONE) {
    if (!r->insn_limited && r->deadline == 0) return 0;
    if (r->insn_limited && (r->insn_left -= steps) < 0)
      r->limit = MB_LIMIT_INSN;
    else if (r->deadline > 0 && steps >= MB_LIMIT_GRAIN && uv_hrtime() >= r->deadline)
      r->limit = MB_LIMIT_DEADLINE;
    else
      return 1;
  }
  mb_limit_raise(L, r);
}

/* The count hook's period for a task of r: the slice, or shorter with a
** budget or deadline to watch; 0 for no hook. */
int mb_limit_hook_count(mb_rt *rt, mb_run *r) {
  int count = rt->slice;
  if (r->insn_limited || r->deadline > 0)
    count = count > 0 && count < MB_LIMIT_GRAIN ? count : MB_LIMIT_GRAIN;
  return count;
}

/* A memory error came out of a coroutine of the running task (coro.c):
** the traceback noted is where it ran out. Keep it until the error is
** caught or ends the task, so allocations refused while it travels on (a
** wrapped coroutine's reset) do not replace it with a place that raised
** nothing. */
void mb_limit_oom_keep(mb_rt *rt) {
  if (rt->oom_task == rt->current && rt->current != NULL) rt->oom_kept = 1;
}

/* A task or a coroutine of r is about to run on a fresh count: a thread
** counts its instructions down from the hook's period, and the last
** period it starts is never seen by the hook if the thread ends first (a
** count hook cannot be asked how far it got). So that period is paid now,
** in full: a run is charged at least every instruction it ran, and 2,000
** tasks of 600 instructions cost 2,000,000, not nothing. Returns nonzero
** when the run is (now) over its budget; the caller raises or, between
** turns, lets run.c end the run after the turn. */
int mb_limit_precharge(mb_rt *rt, mb_run *r) {
  if (r->insn_limited && r->limit == MB_LIMIT_NONE &&
      (r->insn_left -= mb_limit_hook_count(rt, r)) < 0) {
    r->limit = MB_LIMIT_INSN;
    rt->over_limit = 1;
  }
  return r->limit != MB_LIMIT_NONE;
}

/* The allocator refuses the running task an allocation: note where its
** Lua code is, for the memory error Lua raises next without calling any
** message handler (mb_limit_memerr reads it once the task has failed).
** lua_getstack and lua_getinfo allocate nothing, so this is safe inside
** the allocator; rt->running is the thread whose code runs (the task's
** root, or a coroutine it resumed). */
void mb_limit_oom_where(mb_rt *rt) {
  lua_State *L = rt->running;
  lua_Debug ar;
  char *b = rt->oom_where;
  size_t cap = sizeof rt->oom_where, n;
  int level;
  if (rt->oom_kept && rt->oom_task == rt->current && rt->current != NULL) return;
  rt->oom_task = NULL;
  rt->oom_kept = 0;
  if (L == NULL || rt->current == NULL) return;
  n = (size_t)snprintf(b, cap, "stack traceback:");
  for (level = 0; n < cap && lua_getstack(L, level, &ar); level++) {
    const char *name = "?";
    char fn[96];
    if (level == MB_LIMIT_OOM_FRAMES) {
      snprintf(b + n, cap - n, "\n\t...");
      break;
    }
    lua_getinfo(L, "Sln", &ar);
    if (*ar.namewhat != '\0') {
      snprintf(fn, sizeof fn, "%s '%s'", ar.namewhat, ar.name);
      name = fn;
    } else if (*ar.what == 'm') {
      name = "main chunk";
    } else if (*ar.what != 'C') {
      snprintf(fn, sizeof fn, "function <%s:%d>", ar.short_src, ar.linedefined);
      name = fn;
    }
    if (ar.currentline > 0)
      n += (size_t)snprintf(b + n, cap - n, "\n\t%s:%d: in %s", ar.short_src, ar.currentline, name);
    else
      n += (size_t)snprintf(b + n, cap - n, "\n\t%s: in %s", ar.short_src, name);
  }
  rt->oom_task = rt->current;
}

/* lua_checkstack(L, n) for a C function that reports its own "stack
** overflow": 1 when L has room for n more values. lua_checkstack says 0
** both when the stack is at Lua's size limit (LUAI_MAXSTACK), the
** caller's error to report (0), and when the stack could not grow (the
** memory limit refused, or malloc failed): then Lua's own memory error is
** raised, as for any failed allocation (lua_error raises its message with LUA_ERRMEM),
** so the run ends or pcall catches it as "not enough memory", and the
** script is not told its stack overflowed. */
int mb_limit_checkstack(lua_State *L, int n) {
  mb_rt *rt = mb_rt_of(L);
  uint64_t failed = rt->alloc_failed;
  if (lua_checkstack(L, n)) return 1;
  if (rt->alloc_failed != failed) {
    lua_pushliteral(L, "not enough memory"); /* interned already: no allocation */
    lua_error(L);
  }
  return 0;
}

/* Task t ended with status LUA_ERRMEM (Lua's lua_error also raises its
** memory message so, when a script raises a caught one again): make Lua's
** message on L's top the error it stands for, "limit"/"memory" when a
** memory limit is set (the allocator refused), else "runtime", with the
** message as cause and, as traceback, where the allocator refused t under
** head (the task's name). Called by the scheduler, between turns: no
** limit refuses these allocations. Returns whether it is the limit's. */
int mb_limit_memerr(mb_rt *rt, lua_State *L, mb_task *t, const char *head) {
  int limited = rt->mem_limit > 0;
  const char *where = rt->oom_task == t ? rt->oom_where : NULL;
  mb_errors_adopt(L, limited ? "limit" : "runtime", limited ? "memory" : NULL, head, where);
  rt->oom_task = NULL;
  rt->oom_kept = 0;
  return limited;
}

/* Task t ends: a traceback noted in it will not be asked for. */
void mb_limit_forget(mb_rt *rt, mb_task *t) {
  if (rt->oom_task != t) return;
  rt->oom_task = NULL;
  rt->oom_kept = 0;
}

/* An error was caught (pcall, xpcall, errors.rawpcall, coroutine.resume)
** with status, its value on L's top: count it if it is running out of
** memory under the limit, Lua's own (status LUA_ERRMEM) or a task's passed
** on by a wait (the error mb_limit_memerr made). A run that caught one
** may go on another way: tests that run scripts under tight limits ask
** (Go reads the count when the runtime is freed: internal/oom). */
void mb_limit_caught(lua_State *L, int status) {
  mb_rt *rt = mb_rt_of(L);
  if (status == LUA_ERRMEM) rt->oom_kept = 0; /* the next one notes its own place */
  if (rt->current != NULL && rt->current->run->limit != MB_LIMIT_NONE)
    return; /* the run is over a limit: that is what the error is */
  if (rt->mem_limit > 0 && (status == LUA_ERRMEM || mb_errors_has(L, -1, "limit", "memory")))
    rt->oom_caught++;
}

/* ---------------------------------------------------------------------
** Closing a coroutine, as Lua 5.4.6 does it. In 5.4.4 lua_resetthread
** runs the coroutine's __close handlers with the coroutine's own count of
** nested C calls, not its closer's, so a chain of coroutines each closing
** the previous one from a __close handler nests without bound and
** overflows the C stack (a bug on lua.org's list for 5.4.4: stock lua5.4
** crashes at about 14,000). 5.4.6's lua_closethread(co, from) counts the
** closer's calls and fails with "C stack overflow". The closes nested on
** this thread's C stack are counted here, and its C stack is measured
** as well (what runs inside each close may nest C calls of its own).
** ------------------------------------------------------------------- */
#define MB_LIMIT_CLOSE_DEPTH 200           /* LUAI_MAXCCALLS, as 5.4.6 counts */
#define MB_LIMIT_CSTACK_SPARE (512 * 1024) /* C stack kept free below a close */

static __thread int mb_limit_nclosing;       /* closes in progress on this thread */
static __thread uintptr_t mb_limit_cstack_low; /* its stack's lowest address, 1: unknown */

/* Whether this thread's C stack has MB_LIMIT_CSTACK_SPARE left. Its
** bounds are read once per thread (the loop's driver goroutines run on
** a few). The stack grows down. */
static int mb_limit_cstack_room(void) {
  char here;
  if (mb_limit_cstack_low == 0) {
    pthread_attr_t a;
    void *addr;
    size_t size;
    mb_limit_cstack_low = 1;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
      if (pthread_attr_getstack(&a, &addr, &size) == 0) mb_limit_cstack_low = (uintptr_t)addr;
      pthread_attr_destroy(&a);
    }
  }
  return mb_limit_cstack_low == 1 || (uintptr_t)&here - mb_limit_cstack_low > MB_LIMIT_CSTACK_SPARE;
}

/* The threads that died of an error the count hook raised in them (weak
** keys). Lua turns a thread's hooks off while it calls a hook and turns
** them on again only when the hook returns, or when a pcall inside the
** thread catches the error: such a thread runs its __close handlers, when
** it is closed, with no hook at all, and nothing could stop one that
** loops. So they are not run (mb_limit_closethread). */
static const char mb_limit_key_hooksoff;

void mb_limit_died_in_hook(lua_State *L, lua_State *co) {
  mb_registry_table(L, &mb_limit_key_hooksoff, "k");
  if (!lua_checkstack(co, 1)) { /* no room to name it: its handlers run, as stock */
    lua_pop(L, 1);
    return;
  }
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* Whether co died of an error the count hook raised in it. */
static int mb_limit_hooks_off(lua_State *L, lua_State *co) {
  int off = 0;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &mb_limit_key_hooksoff) == LUA_TTABLE &&
      lua_checkstack(co, 2)) {
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    off = lua_rawget(L, -2) != LUA_TNIL;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return off;
}

/* Close co (reset it, running its pending __close handlers) for L, as
** 5.4.6's lua_closethread(co, L): too deeply nested, it fails with "C
** stack overflow" and leaves co as it was. Returns the status; an error's
** value is moved to L's top. co runs its handlers as the running thread
** (rt->running: where the allocator notes a memory error). A thread that
** died of an error the count hook raised keeps its handlers unrun and its
** error (see mb_limit_died_in_hook). */
int mb_limit_closethread(lua_State *L, lua_State *co) {
  mb_rt *rt = mb_rt_of(L);
  lua_State *outer = rt->running;
  int status = lua_status(co);
  if (status != LUA_OK && status != LUA_YIELD && mb_limit_hooks_off(L, co)) {
    lua_pushvalue(co, -1); /* its error: Lua left a copy below what a resume moved */
    lua_xmove(co, L, 1);
    return status;
  }
  if (mb_limit_nclosing >= MB_LIMIT_CLOSE_DEPTH || !mb_limit_cstack_room()) {
    lua_pushliteral(L, "C stack overflow");
    return LUA_ERRRUN;
  }
  mb_limit_nclosing++;
  rt->running = co;
  status = lua_resetthread(co);
  rt->running = outer;
  mb_limit_nclosing--;
  if (status != LUA_OK) lua_xmove(co, L, 1);
  return status;
}
