/*
** rt.h — the runtime's life cycle and its step: what the Go seam calls.
**
** Layer 5 (life cycle), the top. The record is in state.h; each other
** module's header says what else Go may call (run.h, call.h, stream.h,
** bridge.h, limit.h, task.h, sandbox.h).
*/
#ifndef MB_RT_H
#define MB_RT_H

#include <stddef.h>

#include "state.h"

/* What a step tells the Go driver. */
enum {
  MB_STEP_EVENTS = 1,      /* handle rt->ev and rt->done, then step again */
  MB_STEP_EVENTS_PARK = 2, /* handle them, then park until woken */
  MB_STEP_PARK = 3,        /* park until woken */
  MB_STEP_CLOSED = 4,
  MB_STEP_FATAL = 5        /* rt->fatal says why */
};

mb_rt *mb_rt_new(uintptr_t go_handle);
int mb_rt_preload(mb_rt *rt, const char *name, const char *src, size_t len, int global);
int mb_rt_step(mb_rt *rt);
int mb_rt_close(mb_rt *rt);
int mb_rt_trim(mb_rt *rt);
void mb_rt_free(mb_rt *rt, int64_t *leaked_lua_bytes, int *leaked_loop);

#endif
