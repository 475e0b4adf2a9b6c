/*
** limit.h — the limits a Runtime puts on its scripts: memory, a run's
** instruction budget and its context's deadline.
**
** Layer 2 (scheduler), below task.c, whose count hook calls in here.
*/
#ifndef MB_LIMIT_H
#define MB_LIMIT_H

#include <stddef.h>

#include "state.h"

/* With an instruction budget or a deadline, the count hook runs every
** this many VM instructions (or the time slice, if shorter). */
#define MB_LIMIT_GRAIN 1000

/* A task allocates this many bytes between two looks of the allocator at
** its run's deadline and budget (mb_limit_alloc_refuses). */
#define MB_LIMIT_ALLOC_WATCH (256 * 1024)

/* The scheduler's own allocations may go this far past MemoryLimit (an
** eighth of it, from 1 MiB to 64 MiB): see mb_limit_set_memory. */
#define MB_LIMIT_RESERVE_MIN ((size_t)1 << 20)
#define MB_LIMIT_RESERVE_MAX ((size_t)64 << 20)

void mb_limit_set_memory(mb_rt *rt, size_t bytes);
void mb_limit_set_output(mb_rt *rt, int64_t bytes);
int mb_limit_hook_count(mb_rt *rt, mb_run *r);
int mb_limit_tick(mb_rt *rt, mb_run *r);
int mb_limit_alloc_over(mb_rt *rt);
int mb_limit_closethread(lua_State *L, lua_State *co);
void mb_limit_died_in_hook(lua_State *L, lua_State *co);
int mb_limit_pcall_strict(lua_State *L, lua_CFunction f, void *ud, int nresults);
int mb_limit_charge(lua_State *L, int64_t n);
int mb_limit_precharge(mb_rt *rt, mb_run *r);
int mb_limit_checkstack(lua_State *L, int n);
MB_NORETURN void mb_limit_raise(lua_State *L, mb_run *r);
const char *mb_limit_op(int limit);
const char *mb_limit_message(int limit);
void mb_limit_oom_where(mb_rt *rt); /* the allocator, as it refuses */
void mb_limit_oom_keep(mb_rt *rt);
int mb_limit_memerr(mb_rt *rt, lua_State *L, mb_task *t, const char *head);
void mb_limit_forget(mb_rt *rt, mb_task *t);
void mb_limit_caught(lua_State *L, int status);

/* Whether Lua's allocator (rt.c) refuses to grow what Lua holds by n
** bytes: past MemoryLimit, for a task (its code, its cleanup when it is
** killed, its message handlers) or for Lua code the scheduler runs, such
** as finalizers, with the scheduler's reserve (mem_reserve; none once the
** runtime is being freed); or, for a task, once its run is over its
** deadline or instruction budget, looked at every MB_LIMIT_ALLOC_WATCH
** bytes: a VM operation that is one instruction however long ('..' of
** huge strings, string.format, string.pack) allocates as it goes, and so
** stops at the deadline although the count hook cannot see it. On the path
** of every allocation: a compare, a subtraction, a branch. */
static inline int mb_limit_alloc_refuses(mb_rt *rt, size_t n) {
  if (rt->mem_limit > 0 &&
      rt->mem_used + n > rt->mem_limit + (rt->current != NULL ? 0 : rt->mem_reserve))
    return 1;
  if ((rt->alloc_watch -= (int64_t)n) >= 0) return 0;
  return mb_limit_alloc_over(rt);
}

#endif
