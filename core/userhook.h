/*
** userhook.h — debug.sethook and debug.gethook beside the scheduler's own
** count hook.
**
** Layer 2 (scheduler). A thread has one hook. The scheduler needs it for
** limits, time slices and preemption (task.c's mb_task_hook), and a script
** may want it for a profiler, a coverage tool or a trace. So the hook a
** script sets is recorded here, per thread, and the thread's real hook
** is always mb_task_hook, with the script's events added to its mask:
** mb_task_hook calls the script's function for them (as stock ldblib's
** hook does), then does its own work on count events. A script can
** neither remove the scheduler's hook nor see it (debug.gethook shows
** only the script's own). A record belongs to the run that set it: a
** coroutine or a pooled thread carries no hook into another run.
*/
#ifndef MB_USERHOOK_H
#define MB_USERHOOK_H

#include "state.h"

/* debug.sethook's arguments recorded (stock's: [thread,] hook, mask
** [, count]); returns the thread, whose hook task.c then sets. */
lua_State *mb_userhook_sethook(lua_State *L);
int mb_userhook_l_gethook(lua_State *L); /* debug.gethook */

/* The events (LUA_MASK*) the running run's script asked for on co, and
** in *count its count; 0 when it asked for none. L lends its stack. Only
** when rt->user_hooks is set: until a script sets a hook nothing is
** looked up. */
int mb_userhook_mask(lua_State *L, lua_State *co, int *count);

/* From mb_task_hook: call the script's hook of L for ar's event, if it
** asked for it. */
void mb_userhook_call(lua_State *L, lua_Debug *ar);

/* co goes back to the thread pool: it forgets its script's hook. */
void mb_userhook_forget(lua_State *L, lua_State *co);

#endif
