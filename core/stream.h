/*
** stream.h — a Go function Lua iterates with a generic for: the stream
** record, its two halves, and the window between them.
**
** Layer 3 (objects). The producer half (Go, any thread): mb_stream_emit,
** mb_stream_room, mb_stream_end; one goroutine at a time (Go serialises
** emit). The consumer half (the loop): the iterator, which takes chunks
** from the ring, the doorbell's drain, the closing value. The ring and
** window both halves share are here only: Go never touches the record's
** fields.
*/
#ifndef MB_STREAM_H
#define MB_STREAM_H

#include <stdint.h>

#include "call.h"

/* Backpressure window: Go may run this many chunks ahead of Lua, and is
** let go again when Lua is within half of it. It is also the ring's size. */
#define MB_STREAM_WINDOW 256

/* A chunk a stream emitted: in a slot of the ring, then Lua's while it is
** decoded, then back on the producer's spare stack. */
typedef struct mb_chunk {
  size_t len, cap;
  struct mb_chunk *qnext; /* the spare stack, or the chunks Lua is decoding */
  char data[];
} mb_chunk;

/* Owned jointly by Lua (the iterator's closing value) and Go (until the
** END message is drained); freed when both have let go.
**
** The ring: the producer puts chunk p in ring[p % MB_STREAM_WINDOW] and
** then publishes produced = p + 1; Lua takes chunk k out of its slot and
** then publishes consumed = k + 1. The window keeps the producer out of
** slots Lua has not emptied. The loop sees no message per chunk: the
** iterator reads the ring itself, and the producer rings the doorbell
** (bell, a queue message) only when Lua said it sleeps (lua_sleeping). */
typedef struct mb_stream {
  mb_call call;           /* start record; call.msg is reused as the END message */
  mb_msg bell;            /* the doorbell (MB_MSG_CHUNK): chunks for a sleeping Lua */
  mb_chunk *ring[MB_STREAM_WINDOW];
  mb_chunk *spare;        /* taken chunks for reuse (atomic stack: loop pushes, Go takes all) */
  mb_chunk *mine;         /* spare chunks the producer took (producer only) */
  mb_chunk *decoding;     /* chunks Lua took and is decoding (loop only) */
  mb_task *waiter;        /* task blocked in the iterator */
  int64_t reader_run;     /* the task reading the stream: its run's id and its id in the run */
  int64_t reader;
  int has_reader;         /* 0 before the first read */
  int64_t produced;       /* chunks published by Go (atomic: Go writes, loop reads) */
  int64_t consumed;       /* chunks taken by Lua (atomic: loop writes, Go reads) */
  int32_t go_waiting;     /* Go blocks for room (atomic; claimed by exchange) */
  int32_t lua_sleeping;   /* Lua waits for a chunk (atomic; claimed by exchange) */
  int bell_due;           /* the loop: Lua said it sleeps, and no bell was drained since */
  uint64_t credit_step;   /* the step of the last MB_EV_CREDIT */
  int credit_yield;       /* the loop: a credit went out; the reader ends the step (mb_stream_next_k) */
  int ended;              /* END drained: the Go function returned */
  int lua_closed;         /* the for loop ended or the iterator was collected */
  int refs;               /* Lua + Go owners */
} mb_stream;

/* Chunks up to this size are recycled: Lua hands a taken one back to the
** producer instead of freeing it, so a stream of small chunks allocates
** only its window's worth, and no memory moves between the threads'
** malloc arenas per chunk. */
#define MB_STREAM_RECYCLE 256

/* mb_stream_emit's result bits (or -1: out of memory). */
enum { MB_STREAM_WAKE = 1, MB_STREAM_FULL = 2 };

/* The producer: Go's goroutine. */
int mb_stream_emit(mb_rt *rt, mb_stream *s, const char *data, size_t len);
int mb_stream_room(mb_stream *s);
int mb_stream_end(mb_rt *rt, mb_stream *s, int status, const char *data, size_t len);

/* The consumer: the loop. */
void mb_stream_open(lua_State *L);
int mb_stream_l_call(lua_State *L); /* the Lua function of a Go stream */
void mb_stream_drain(mb_rt *rt, mb_msg *m);

#endif
