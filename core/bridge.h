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

/* An inline call whose values are few and simple crosses without the
** message codec: Go reads the arguments from vals and writes scalar
** results back into them. Anything else travels as a message (msg, out). */
#define MB_INLINE_VALS 8

typedef struct mb_inline_val {
  uint64_t num;    /* an integer, a float's bits; a string's length */
  const char *str; /* a string argument's bytes: Lua's, on the stack */
  int tag;         /* MB_CODEC_NIL .. MB_CODEC_STRING (codec.h) */
} mb_inline_val;

typedef struct mb_inline {
  uintptr_t rt;    /* the runtime's Loop (rt->go_handle) */
  int fn;          /* the function's index in the Loop's table */
  int nargs;       /* arguments in vals, or -1: the message msg */
  int nres;        /* set by Go: results in vals, or -1: the message out */
  const char *msg;
  size_t msglen;
  mb_buf out;      /* the results' message, or the error */
  mb_inline_val vals[MB_INLINE_VALS];
} mb_inline;

int mb_bridge_submit_register(mb_rt *rt, const char *name, int fn, int flags);
/* Go, inside an inline call: room on the heap for the results. */
int mb_bridge_out_move(mb_buf *out, size_t need);
void mb_bridge_register(mb_rt *rt, mb_bridge_reg *g);

#endif
