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

void mb_limit_set_memory(mb_rt *rt, size_t bytes);
void mb_limit_set_output(mb_rt *rt, int64_t bytes);
int mb_limit_hook_count(mb_rt *rt, mb_run *r);
void mb_limit_check(lua_State *L, mb_rt *rt, mb_run *r);
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

#endif
