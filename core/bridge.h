/*
** bridge.h — Go functions as Lua functions: registering them, and the
** inline ones, which run right on the loop's thread.
**
** Layer 3 (objects), above call.c and stream.c.
*/
#ifndef MB_BRIDGE_H
#define MB_BRIDGE_H

#include "state.h"

/* A registration from Go, queued to the loop. */
typedef struct mb_bridge_reg {
  mb_msg msg;
  int fn, flags;
  char name[];
} mb_bridge_reg;

int mb_bridge_submit_register(mb_rt *rt, const char *name, int fn, int flags);
/* Go, inside an inline call: room on the heap for the results. */
int mb_bridge_out_move(mb_buf *out, size_t need);
void mb_bridge_register(mb_rt *rt, mb_bridge_reg *g);

#endif
