/*
** inspect.h — introspection: task.list() and the snapshot of every task
** Go's rt.Tasks() takes (a run of kind MB_RUN_TASKS). t:info()'s table
** itself is task.c's (mb_task_push_info).
**
** Layer 4: it asks env.c whether runs are sandboxed (then a script lists
** only its own run's tasks).
*/
#ifndef MB_INSPECT_H
#define MB_INSPECT_H

#include <lua.h>

#include "buf.h"
#include "state.h"

void mb_inspect_lib(lua_State *L); /* task.list, into the module on top */
int mb_inspect_snapshot(mb_rt *rt, mb_buf *out, char *err, size_t errlen);

#endif
