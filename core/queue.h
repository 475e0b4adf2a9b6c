/*
** queue.h — the completion queue: messages from any thread to the loop,
** and the one exchange that tells a producer whether to wake the driver.
**
** Layer 0 (base). Vyukov's intrusive multi-producer single-consumer queue:
** producers exchange the head, the loop alone pops at the tail. No lock,
** no allocation: each message is embedded in its record.
*/
#ifndef MB_QUEUE_H
#define MB_QUEUE_H

#include <stdint.h>

#include <uv.h>

/* What a message is; its record's module drains it. */
enum {
  MB_MSG_RESULT = 1, /* a bridge call finished (mb_call, call.c) */
  MB_MSG_CHUNK,      /* a stream has chunks for a waiting Lua: its doorbell (mb_stream, stream.c) */
  MB_MSG_END,        /* a stream's Go function returned (mb_stream, stream.c) */
  MB_MSG_RUN,        /* Go asks to run a chunk or call a global (mb_run, run.c) */
  MB_MSG_CANCEL,     /* Go cancels a run (mb_run_cancel, run.c) */
  MB_MSG_REGISTER,   /* Go registered a function (mb_call_reg, call.c) */
  MB_MSG_CLOSE,      /* the runtime is closing (embedded in mb_rt) */
  MB_MSG_TRIM        /* the loop idled with a surplus of threads (embedded in mb_rt) */
};

typedef struct mb_msg {
  struct mb_msg *next;
  int kind;
} mb_msg;

/* How the loop's driver waits: the flag producers exchange. */
enum { MB_SLEEP_NONE = 0, MB_SLEEP_GO = 1, MB_SLEEP_UV = 2 };

typedef struct mb_queue {
  mb_msg *head; /* last pushed; producers exchange it */
  char pad0_[64 - sizeof(mb_msg *)];
  mb_msg *tail; /* next to pop; the consumer's alone */
  mb_msg stub;
  int32_t sleeping; /* MB_SLEEP_*: how the driver waits (atomic) */
  char pad1_[60];
  uv_async_t async; /* wakes the loop while it sleeps in libuv */
} mb_queue;

/* Life cycle (the loop's thread). init returns 0 or a libuv error. */
int mb_queue_init(mb_queue *q, uv_loop_t *loop);
void mb_queue_close(mb_queue *q);

/* Any thread. Returns 1 when the driver parked Go-side and the caller
** must wake it (a driver asleep in libuv is woken here). */
int mb_queue_push(mb_queue *q, mb_msg *m);

/* The goroutine holding the loop's token: push, nobody to wake. */
void mb_queue_push_driver(mb_queue *q, mb_msg *m);

/* The loop's thread: the consumer. */
mb_msg *mb_queue_pop(mb_queue *q);
int mb_queue_empty(mb_queue *q);
int mb_queue_park_go(mb_queue *q);
void mb_queue_sleep_uv(mb_queue *q, uv_loop_t *loop);

#endif
