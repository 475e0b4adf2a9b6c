/*
** call.h — a bridge call in flight: the record a Go function's goroutine
** fills, and its whole life.
**
** Layer 3 (objects). new -> start (MB_EV_CALL to Go) -> complete (any
** thread: results into the record, record onto the queue) -> drain (the
** loop wakes the task; its continuation decodes and frees). cancel, when
** the task stops waiting first: the completion is then dropped at drain.
** As libuv's handles, each state change has one function, all here.
*/
#ifndef MB_CALL_H
#define MB_CALL_H

#include <stdint.h>

#include "buf.h"
#include "codec.h"
#include "state.h"

/* A call's outcome, written by Go. MB_ERR_GO: an error Go keeps for the
** run, the data its id, kind, op and text (see mb_call_raise). */
enum { MB_OK = 0, MB_ERR = 1, MB_PANIC = 2, MB_ERR_GO = 3 };

/* Kinds of registered functions (mb_bridge_register). */
enum { MB_FN_ASYNC = 0, MB_FN_INLINE = 1, MB_FN_STREAM = 2 };

/* Created by the loop, handed to Go in an MB_EV_CALL event, completed by
** a goroutine (mb_call_complete), freed by the loop when it drains the
** completion. `task` is NULL once nobody waits (the task was killed or
** the runtime is closing): the result is dropped. */
typedef struct mb_call {
  mb_msg msg;            /* queue node, first member */
  mb_task *task;         /* the waiting task, or NULL */
  int fn;                /* index of the Go function */
  int slot;              /* Go-side state, assigned by the driver; -1 before */
  int64_t run;           /* id of the run whose context bounds the call */
  int status;            /* MB_OK, MB_ERR or MB_PANIC, written by Go */
  mb_buf buf;            /* arguments, then (reused) results or error text */
} mb_call;

/* The loop's thread. */
int mb_call_l_call(lua_State *L); /* the Lua function of an async Go function */
int mb_call_start(lua_State *L, mb_call *c);
void mb_call_cancel(mb_rt *rt, mb_call *c);
void mb_call_done(mb_rt *rt, mb_call *c);
void mb_call_drain(mb_rt *rt, mb_call *c);
void mb_call_pool_free(mb_rt *rt);
/* Encode the arguments on L's stack into b; returns NULL, or the error
** message (pushed on L). */
static inline const char *mb_call_encode_args(lua_State *L, const char *name, mb_buf *b) {
  char err[200];
  if (mb_codec_encode(L, 1, lua_gettop(L), b, err, sizeof err) != 0)
    return lua_pushfstring(L, "%s: %s", name, err);
  return NULL;
}

/* Store the Go side's results (or error text) in the record. The argument
** buffer is reused: no allocation when the results fit. Any thread. */
static inline void mb_call_store(mb_call *c, int kind, int status, const char *data, size_t len) {
  c->status = status;
  if (mb_buf_set(&c->buf, data, len) != 0)
    c->status = MB_ERR; /* an empty error message means out of memory */
  c->msg.kind = kind;
}
MB_NORETURN int mb_call_raise(lua_State *L, const char *name, int status,
                              const char *msg, size_t len);

/* Any thread: Go's side. complete returns 1 when the caller must wake the
** driver. (A call's goroutine stores its outcome and pushes the record
** itself, in Go: loop.go's store and push do what these do, with no C
** call; complete is for records Go fails without running them.) */
int mb_call_complete(mb_rt *rt, mb_call *c, int status, const char *data, size_t len);

#endif
