/*
** stream.h — a Go function Lua iterates with a generic for: the stream
** record, its two halves, and the window between them.
**
** Layer 3 (objects). The producer half (Go, any thread): mb_stream_emit,
** mb_stream_room, mb_stream_end. The consumer half (the loop): the
** iterator, the drain of chunks, the closing value. The window accounting
** both halves share is here only: Go never touches the record's fields.
*/
#ifndef MB_STREAM_H
#define MB_STREAM_H

#include <stdint.h>

#include "call.h"

/* A chunk a stream emitted: a queue message, then in the stream's FIFO. */
typedef struct mb_chunk {
  mb_msg msg;
  struct mb_stream *s;
  size_t len, cap;
  struct mb_chunk *qnext; /* the stream's FIFO once drained; its spare stack once taken */
  char data[];
} mb_chunk;

/* Owned jointly by Lua (the iterator's closing value) and Go (until the
** END message is drained); freed when both have let go. */
typedef struct mb_stream {
  mb_call call;           /* start record; call.msg is reused as the END message */
  mb_chunk *first, *last; /* drained, not yet taken by Lua */
  mb_chunk *spare;        /* taken chunks for reuse (atomic stack: loop pushes, Go takes all) */
  mb_chunk *mine;         /* spare chunks the producer took (producer only) */
  mb_task *waiter;        /* task blocked in the iterator */
  int64_t produced;       /* chunks pushed by Go (atomic: Go writes, loop reads) */
  int64_t consumed;       /* chunks taken by Lua (atomic: loop writes, Go reads) */
  int32_t go_waiting;     /* Go blocks for room (atomic; claimed by exchange) */
  uint64_t credit_step;   /* the step of the last MB_EV_CREDIT */
  int ended;              /* END drained: the Go function returned */
  int lua_closed;         /* the for loop ended or the iterator was collected */
  int refs;               /* Lua + Go owners */
} mb_stream;

/* Backpressure window: Go may run this many chunks ahead of Lua, and is
** let go again when Lua is within half of it. */
#define MB_STREAM_WINDOW 64

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
