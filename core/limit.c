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
** one fails the run, with kind "limit". It is told by its status
** (LUA_ERRMEM), never by its text.
*/
#include <string.h>

#include "errors.h"
#include "limit.h"

void mb_limit_set_memory(mb_rt *rt, size_t bytes) { rt->mem_limit = bytes; }

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

/* Charge n instructions to r, look at the clock, and raise if the run is
** over either. */
static void mb_limit_spend(lua_State *L, mb_run *r, int64_t n) {
  if (r->limit == MB_LIMIT_NONE) {
    if (r->insn_limited && (r->insn_left -= n) < 0)
      r->limit = MB_LIMIT_INSN;
    else if (r->deadline > 0 && uv_hrtime() >= r->deadline)
      r->limit = MB_LIMIT_DEADLINE;
  }
  if (r->limit != MB_LIMIT_NONE) mb_limit_raise(L, r);
}

/* From the count hook: charge the instructions since the last call. */
void mb_limit_check(lua_State *L, mb_rt *rt, mb_run *r) {
  mb_limit_spend(L, r, rt->hook_count);
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

/* A task ended with status LUA_ERRMEM (Lua's lua_error also raises its
** memory message so, when a script raises a caught one again): replace Lua's message on L's top by the error it stands for,
** "limit"/"memory" when a memory limit is set (the allocator refused),
** else "runtime". Inside a task this may itself run out of memory: that
** error has the same status, and the scheduler converts it. */
void mb_limit_memerr(mb_rt *rt, lua_State *L) {
  lua_pop(L, 1);
  if (rt->mem_limit > 0)
    mb_errors_push(L, "limit", "memory", MB_LIT("not enough memory"));
  else
    mb_errors_push(L, "runtime", NULL, MB_LIT("not enough memory"));
}
