/*
** limit.c — the limits a Runtime puts on its scripts: memory (Lua's
** allocator, in rt.c), a run's VM instruction budget and its context's
** deadline (a count hook, with task.c's time slice).
**
** Layer: C core. A run that goes over its budget or deadline is ended:
** the task running raises a "limit" error, which pcall, xpcall and
** coroutine.resume raise again (a script cannot swallow it and go on), and
** after that turn the scheduler kills the run's other tasks. Memory is
** different, as in stock Lua: "not enough memory" may be caught, and only
** an uncaught one fails the run, with kind "limit".
*/
#include <stdio.h>
#include <string.h>

#include "mb.h"

void mb_rt_set_memory_limit(mb_rt *rt, size_t bytes) { rt->mem_limit = bytes; }

/* Set by Go before the run is submitted. */
void mb_run_set_limits(mb_run *r, int64_t instructions, int64_t deadline_ns) {
  if (instructions > 0) {
    r->insn_limited = 1;
    r->insn_left = instructions;
  }
  if (deadline_ns > 0) r->deadline = uv_hrtime() + (uint64_t)deadline_ns;
}

static const char *mb_limit_op(int limit) {
  return limit == MB_LIMIT_INSN ? "instructions" : "deadline";
}

static const char *mb_limit_message(int limit) {
  return limit == MB_LIMIT_INSN ? "the run went over its instruction limit"
                                : "the run's deadline passed";
}

/* Raise the run's limit error in L. */
void mb_limit_raise(lua_State *L, mb_run *r) {
  mb_rt_of(L)->over_limit = 1;
  mb_error_throw(L, "limit", mb_limit_op(r->limit), "%s", mb_limit_message(r->limit));
}

/* From the count hook: charge the instructions since the last call, look
** at the clock, and raise if the run is over either. */
void mb_limit_check(lua_State *L, mb_rt *rt, mb_run *r) {
  if (r->limit == MB_LIMIT_NONE) {
    if (r->insn_limited && (r->insn_left -= rt->hook_count) < 0)
      r->limit = MB_LIMIT_INSN;
    else if (r->deadline > 0 && uv_hrtime() >= r->deadline)
      r->limit = MB_LIMIT_DEADLINE;
  }
  if (r->limit != MB_LIMIT_NONE) mb_limit_raise(L, r);
}

/* Charge steps of work done inside one C library call (string.find,
** table.sort...) against the running task's run, since the count hook
** cannot fire until the call returns: the instruction budget always, the
** clock only for a batch of MB_LIMIT_GRAIN steps or more (callers charge in
** such batches while they work, and the rest at the end). Raises the run's
** limit error as the hook does; nothing outside a task. */
void mb_limit_charge(lua_State *L, int64_t steps) {
  mb_task *t = mb_rt_of(L)->current;
  mb_run *r;
  if (t == NULL) return;
  r = t->run;
  if (r->limit == MB_LIMIT_NONE) {
    if (r->insn_limited && (r->insn_left -= steps) < 0)
      r->limit = MB_LIMIT_INSN;
    else if (r->deadline > 0 && steps >= MB_LIMIT_GRAIN && uv_hrtime() >= r->deadline)
      r->limit = MB_LIMIT_DEADLINE;
    else
      return;
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

/* After a turn in which some run went over a limit: end each such run. */
void mb_runs_over_limit(mb_rt *rt) {
  mb_link *l, *next;
  rt->over_limit = 0;
  for (l = rt->runs.next; l != &rt->runs; l = next) {
    mb_run *r = mb_container_of(l, mb_run, link);
    next = l->next;
    if (r->limit != MB_LIMIT_NONE && !r->done)
      mb_run_abort(rt, r, "limit", mb_limit_op(r->limit), mb_limit_message(r->limit));
  }
}

/* The kind (and op) of an error that is a bare message: Lua's own memory
** error is a "limit" when a memory limit is set. */
const char *mb_limit_kind(mb_rt *rt, const char *msg, const char **op) {
  if (rt->mem_limit > 0 && msg != NULL && strcmp(msg, "not enough memory") == 0) {
    *op = "memory";
    return "limit";
  }
  *op = NULL;
  return "runtime";
}
