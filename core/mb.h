/*
** mb.h — the C core's internal header: the runtime, tasks, the completion
** queue and the events handed to the Go driver.
**
** Layer: C core. Only the C files of core and its cgo seam include this.
** One mb_rt owns one lua_State and one uv_loop_t; exactly one thread at a
** time calls into it (the Go loop driver), except mb_rt_push*, which any
** thread may call (the completion path).
*/
#ifndef MB_H
#define MB_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>
#include <lauxlib.h>
#include <uv.h>

#include "codec.h"

/* ---------------------------------------------------------------------
** Intrusive doubly linked list (libuv's queue.h shape). A head is a link
** pointing at itself when empty; an unlinked node also points at itself,
** so removing twice is harmless.
** ------------------------------------------------------------------- */
typedef struct mb_link {
  struct mb_link *next, *prev;
} mb_link;

#define mb_container_of(p, T, m) ((T *)((char *)(p) - offsetof(T, m)))

static inline void mb_list_init(mb_link *h) { h->next = h->prev = h; }
static inline int mb_list_empty(const mb_link *h) { return h->next == h; }
static inline void mb_list_push(mb_link *h, mb_link *n) {
  n->prev = h->prev;
  n->next = h;
  h->prev->next = n;
  h->prev = n;
}
static inline void mb_list_remove(mb_link *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->next = n->prev = n;
}

/* ---------------------------------------------------------------------
** Completion queue: Vyukov's intrusive multi-producer single-consumer
** queue. Producers (any thread) exchange the head; the loop alone pops at
** the tail. No lock, no allocation: the message is embedded in its record.
** ------------------------------------------------------------------- */
enum {
  MB_MSG_RESULT = 1, /* a bridge call finished (mb_call) */
  MB_MSG_CHUNK,      /* a stream emitted a value (mb_chunk) */
  MB_MSG_END,        /* a stream's Go function returned (mb_stream) */
  MB_MSG_RUN,        /* Go asks to run a chunk or call a global (mb_run) */
  MB_MSG_CANCEL,     /* Go cancels a run (mb_cancel) */
  MB_MSG_REGISTER,   /* Go registered a function (mb_reg) */
  MB_MSG_CLOSE       /* the runtime is closing (embedded in mb_rt) */
};

typedef struct mb_msg {
  struct mb_msg *next;
  int kind;
} mb_msg;

typedef struct mb_mpsc {
  mb_msg *head; /* last pushed; producers exchange it */
  char pad_[64 - sizeof(mb_msg *)];
  mb_msg *tail; /* next to pop; the consumer's alone */
  mb_msg stub;
} mb_mpsc;

void mb_mpsc_init(mb_mpsc *q);
void mb_mpsc_push(mb_mpsc *q, mb_msg *m);
mb_msg *mb_mpsc_pop(mb_mpsc *q);
int mb_mpsc_empty(mb_mpsc *q);

/* ---------------------------------------------------------------------
** Records that cross between Go and the loop.
** ------------------------------------------------------------------- */
enum { MB_OK = 0, MB_ERR = 1, MB_PANIC = 2 };

struct mb_task;

/* A bridge call in flight. Created by the loop, handed to Go in an
** MB_EV_CALL event, completed by a goroutine (mb_call_complete), freed by
** the loop when it drains the completion. `task` is NULL once nobody waits
** (the task was killed or the runtime is closing): the result is dropped. */
typedef struct mb_call {
  mb_msg msg;            /* queue node, first member */
  struct mb_task *task;  /* the waiting task, or NULL */
  int fn;                /* index of the Go function */
  int slot;              /* Go-side state, assigned by the driver */
  int64_t run;           /* id of the run whose context bounds the call */
  int status;            /* MB_OK, MB_ERR or MB_PANIC, written by Go */
  mb_buf buf;            /* arguments, then (reused) results or error text */
} mb_call;

/* A stream: like a call, plus the chunks it emitted that Lua has not yet
** taken. Owned jointly by Lua (the iterator's closing value) and Go (until
** the END message is drained); freed when both have let go. */
typedef struct mb_chunk {
  mb_msg msg;
  struct mb_stream *s;
  size_t len, cap;
  struct mb_chunk *qnext; /* the stream's FIFO once drained; its spare stack once taken */
  char data[];
} mb_chunk;

/* Chunks up to this size are recycled: Lua hands a taken one back to the
** producer instead of freeing it, so a stream of small chunks allocates
** only its window's worth, and no memory moves between the threads'
** malloc arenas per chunk. */
#define MB_CHUNK_RECYCLE 256

typedef struct mb_stream {
  mb_call call;          /* start record; call.msg is reused as the END message */
  mb_chunk *first, *last; /* drained, not yet taken by Lua */
  mb_chunk *spare;       /* taken chunks for reuse (atomic stack: loop pushes, Go takes all) */
  mb_chunk *mine;        /* spare chunks the producer took (producer only) */
  struct mb_task *waiter; /* task blocked in the iterator */
  int64_t produced;      /* chunks pushed by Go (atomic: Go writes, loop reads) */
  int64_t consumed;      /* chunks taken by Lua (atomic: loop writes, Go reads) */
  int32_t go_waiting;    /* Go blocks for room (atomic; claimed by exchange) */
  int ended;             /* END drained: the Go function returned */
  int lua_closed;        /* the for loop ended or the iterator was collected */
  int refs;              /* Lua + Go owners */
} mb_stream;

/* Backpressure window: Go may run this many chunks ahead of Lua, and is
** let go again when Lua is within half of it. */
#define MB_STREAM_WINDOW 64

/* A run: RunString/RunFile (wait for every task), Call (wait for the
** function's task), or SetGlobal (no task). Allocated by Go's request, freed by Go after the
** MB_EV_RUN_DONE event. */
enum { MB_RUN_CHUNK = 0, MB_RUN_CALL = 1, MB_RUN_SET = 2 };
enum { MB_RUNST_OK = 0, MB_RUNST_ERROR = 1 };

typedef struct mb_run {
  mb_msg msg;
  int64_t id;      /* Go's id */
  int kind;        /* MB_RUN_CHUNK or MB_RUN_CALL */
  int status;      /* MB_RUNST_* once done */
  int ntasks;      /* live tasks */
  int ndetached;   /* of which detached */
  int done;        /* result reported */
  int released;    /* Go took the result */
  int exiting;     /* os.exit was called: end the run at once */
  int exit_code;
  int limit;           /* MB_LIMIT_*: the limit the run went over */
  int64_t insn_left;   /* VM instructions left, when insn_limited */
  int insn_limited;
  uint64_t deadline;   /* uv_hrtime() by which the run must end, or 0 */
  struct mb_task *main;
  mb_link tasks;   /* live tasks of this run */
  mb_link failed;  /* failed tasks nobody has waited on yet */
  mb_link link;    /* in rt->runs */
  mb_buf in;       /* chunk name + source, or function name + arguments */
  size_t namelen;
  mb_buf out;      /* results (Call) or error: [message, kind, op, traceback] */
} mb_run;

/* The limits a run can go over (its limit field), besides memory. A run
** over one is ended at once: its error cannot be caught (pcall, xpcall and
** coroutine.resume raise it again). */
enum { MB_LIMIT_NONE = 0, MB_LIMIT_INSN, MB_LIMIT_DEADLINE };

/* With an instruction budget or a deadline, the count hook runs every
** this many VM instructions (or the time slice, if shorter). */
#define MB_LIMIT_GRAIN 1000

typedef struct mb_reg {
  mb_msg msg;
  int fn, flags;
  char name[];
} mb_reg;

typedef struct mb_cancel {
  mb_msg msg;
  int64_t id;
  int deadline; /* the context's deadline passed: a limit, not a cancellation */
} mb_cancel;

/* Events handed to the Go driver when a step returns. */
enum {
  MB_EV_CALL = 1, /* ptr: mb_call* (or mb_stream*) to start in a goroutine */
  MB_EV_CANCEL,   /* slot; or, before Go assigned one, ptr: the mb_call */
  MB_EV_FREE,     /* slot: the call is finished and its record gone */
  MB_EV_CREDIT,   /* slot: a stream has room again */
  MB_EV_RUN_DONE  /* ptr: mb_run* with its result */
};

typedef struct mb_event {
  int kind;
  int slot;
  void *ptr;
} mb_event;

/* ---------------------------------------------------------------------
** Tasks.
** ------------------------------------------------------------------- */
enum {
  MB_TASK_PENDING = 0, /* spawned, not yet started */
  MB_TASK_RUNNING,
  MB_TASK_SUSPENDED,
  MB_TASK_DONE,
  MB_TASK_FAILED,
  MB_TASK_CANCELLED
};

/* What a suspended task waits for: the one place to undo when it is
** woken another way (cancelled, killed, or its wait aborted). */
enum {
  MB_WAIT_NONE = 0,
  MB_WAIT_READY,  /* in the run queue, nothing delivered: cancel may abort it */
  MB_WAIT_WOKEN,  /* in the run queue with a result delivered: cancel waits */
  MB_WAIT_CALL,   /* wait_obj: mb_call* */
  MB_WAIT_STREAM, /* wait_obj: mb_stream* */
  MB_WAIT_OBJS,   /* on the waiter lists of tasks, channels or promises
                  ** (t->wv[0..nw-1]); wait_obj: what, for deadlock reports */
  MB_WAIT_SLEEP   /* in the sleep heap */
};

/* One registration of a waiting task on an awaitable's waiter list. A task
** waiting for one thing uses the waiter embedded in it; select and friends
** keep an array in a userdata on the waiting thread's stack, which anchors
** it for exactly as long as the wait lasts. */
enum { MB_OP_DONE = 0, MB_OP_RECV, MB_OP_SEND };

typedef struct mb_waiter {
  mb_link link;          /* in the awaitable's list */
  struct mb_task *task;
  lua_State *L;          /* the thread suspended in the wait */
  int index;             /* case number, 1-based */
  int op;                /* MB_OP_* */
  int slot;              /* MB_OP_SEND: stack index of the value in L */
} mb_waiter;

/* Cancellation: requested (raise at the next suspension point), or
** delivered (the error is unwinding; cleanup may await freely). */
enum { MB_CANCEL_NONE = 0, MB_CANCEL_PENDING, MB_CANCEL_DELIVERED };

/* The task's cancellation is being raised in it. */
#define mb_cancel_delivered(t) ((t)->cancel = MB_CANCEL_DELIVERED, (t)->cancel_seen = 1)

typedef struct mb_task {
  lua_State *co;        /* the task's root thread */
  mb_run *run;
  int ref;              /* registry ref anchoring the Task userdata while alive */
  int status;           /* MB_TASK_* */
  int wait;             /* MB_WAIT_* */
  void *wait_obj;
  int nres;             /* DONE: results on co's stack (1..nres); FAILED: error at top */
  int observed;         /* someone took its result or error */
  int64_t id;           /* sequence number, for names */
  const char *name;     /* or NULL; anchored as the Task's second user value */
  const char *wake_err; /* set to make the waiting continuation raise instead */
  uint64_t deadline;    /* MB_WAIT_SLEEP: loop time (ms) to wake */
  uint32_t sleep_seq;   /* ties between equal deadlines go in arrival order */
  int heap_idx;
  unsigned char cancel;   /* MB_CANCEL_* */
  unsigned char cancel_seen; /* the cancellation was raised in it at least once */
  unsigned char aborted;  /* the wait was ended without its result: raise */
  unsigned char detached;
  unsigned char priority; /* resumes per round while it keeps yielding */
  unsigned char timer;    /* a timer task before its callback: clear* cancels it */
  unsigned char reraise;  /* the error being raised already has its traceback */
  int slice_used;       /* instructions run in this turn (with a slice set) */
  int fired;            /* MB_WAIT_OBJS: index of the waiter that fired */
  int fired_ok;         /* and whether it completed (0: channel closed) */
  mb_waiter *wv;        /* MB_WAIT_OBJS: the registrations */
  int nw;
  struct mb_group *group; /* the group that owns it, or NULL */
  lua_State *coros;     /* user coroutines suspended in its wait, outermost first (coro.c) */
  mb_waiter w1;         /* the registration of a single wait */
  mb_link ready;        /* run queue link */
  mb_link waiters;      /* waiters for this task to end */
  mb_link run_link;     /* in run->tasks */
  mb_link fail_link;    /* in run->failed */
  mb_link group_link;   /* in group->tasks */
} mb_task;

/* A task group (task.group()): its live children and who waits for them. */
typedef struct mb_group {
  mb_link tasks;   /* children still running */
  mb_link waiters; /* g:wait callers */
  int failed;      /* a child failed: its error is the group's user value */
  int closed;      /* waited for: no more spawns */
} mb_group;

/* ---------------------------------------------------------------------
** The runtime.
** ------------------------------------------------------------------- */
enum { MB_SLEEP_NONE = 0, MB_SLEEP_GO = 1, MB_SLEEP_UV = 2 };
enum {
  MB_STEP_EVENTS = 1,      /* handle rt->ev, then step again */
  MB_STEP_EVENTS_PARK = 2, /* handle rt->ev, then park until woken */
  MB_STEP_PARK = 3,        /* park until woken */
  MB_STEP_CLOSED = 4,
  MB_STEP_FATAL = 5
};

typedef struct mb_rt {
  mb_mpsc q;            /* completions and requests from any thread */
  int32_t sleeping;     /* MB_SLEEP_*: how the driver waits (atomic) */
  char pad_[60];
  lua_State *L;
  uv_loop_t loop;
  uv_async_t async;     /* wakes the loop while it sleeps in libuv */
  uv_timer_t timer;     /* armed at the earliest sleeper's deadline */
  int timer_armed;
  mb_link ready;        /* run queue */
  mb_task **heap;       /* sleepers, min-heap by deadline */
  int nheap, capheap;
  int inflight;         /* calls and streams whose Go side has not finished */
  mb_event *ev;         /* events of the current step */
  int nev, capev;
  mb_link runs;         /* live runs */
  mb_call *call_pool;   /* finished call records, linked by msg.next */
  int ncall_pool;
  mb_task *current;     /* task being resumed, or NULL */
  int yielding;         /* the yield in progress is the runtime's, not the user's */
  int closing;
  int slice;            /* preemption time slice in VM instructions, or 0 */
  int hook_count;       /* the count hook's period for the task being resumed */
  int over_limit;       /* some run went over a limit: end it after this turn */
  size_t mem_used;      /* bytes held by Lua's allocator */
  size_t mem_limit;     /* MemoryLimit: tasks' allocations fail beyond it; 0: none */
  uint32_t rand;        /* xorshift state: fair choices among ready cases */
  uint32_t sleep_seq;   /* sleepers added so far (wraps; compared serially) */
  int64_t ntask_ids;
  int pool_ref;         /* registry ref of the pool of finished threads */
  int npool;
  int task_mt_ref;      /* registry refs of the metatables */
  int error_mt_ref;
  int error_fresh_mt_ref; /* errors raised here, not yet through a handler */
  uintptr_t go_handle;  /* the Go Runtime, for inline calls */
  mb_buf scratch_in;    /* inline calls: arguments, then results */
  mb_buf scratch_out;
  char fatal[256];      /* why the loop cannot continue (MB_STEP_FATAL) */
  mb_msg close_msg;
} mb_rt;

/* Runtime life cycle and stepping (rt.c). */
mb_rt *mb_rt_new(void);
int mb_rt_step(mb_rt *rt);
void mb_rt_free(mb_rt *rt);
void mb_preload(lua_State *L, const char *name, lua_CFunction open);
int mb_rt_preload(mb_rt *rt, const char *name, const char *src, size_t len, int global);
int mb_rt_sandbox(mb_rt *rt, const char *dirs, size_t len);
extern int64_t mb_leaked_lua_bytes, mb_leaked_loops;
void mb_run_release(mb_rt *rt, mb_run *r);
void mb_run_exit(mb_rt *rt, mb_run *r);
void mb_timer_arm(mb_rt *rt);
int mb_rt_event(mb_rt *rt, int kind, int slot, void *ptr);

/* The completion path, callable from any thread (rt.c). Each returns 1 when
** the driver parked Go-side and must be woken by the caller. */
int mb_rt_push(mb_rt *rt, mb_msg *m);
int mb_call_complete(mb_rt *rt, mb_call *c, int status, const char *data, size_t len);
void mb_call_complete_driver(mb_rt *rt, mb_call *c, int status, const char *data, size_t len);
int mb_stream_emit(mb_rt *rt, mb_stream *s, const char *data, size_t len);
int mb_stream_end(mb_rt *rt, mb_stream *s, int status, const char *data, size_t len);
int mb_rt_submit_run(mb_rt *rt, mb_run *r);
void mb_rt_submit_run_driver(mb_rt *rt, mb_run *r);
void mb_rt_push_driver(mb_rt *rt, mb_msg *m);
int mb_rt_cancel_run(mb_rt *rt, int64_t id, int deadline);
void mb_run_abort(mb_rt *rt, mb_run *r, const char *kind, const char *op, const char *msg);
int mb_rt_close(mb_rt *rt);
int mb_rt_submit_register(mb_rt *rt, const char *name, int fn, int flags);
mb_run *mb_run_new(int64_t id, int kind, const char *name, size_t namelen,
                   const char *data, size_t len);
void mb_run_free(mb_run *r);

static inline mb_rt *mb_rt_of(lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  return (mb_rt *)ud;
}

/* Tasks and the scheduler (task.c). */
int mb_task_open(lua_State *L);
mb_task *mb_task_spawn(lua_State *L, mb_run *run, int nargs, const char *name);
mb_task *mb_task_test(lua_State *L, int i);
void mb_task_ready(mb_rt *rt, mb_task *t);
void mb_task_wake(mb_rt *rt, mb_task *t);
void mb_task_abort(mb_rt *rt, mb_task *t);
void mb_task_resume(mb_rt *rt, mb_task *t);
void mb_task_kill(mb_rt *rt, mb_task *t);
void mb_task_wait_end(mb_rt *rt, mb_task *t);
int mb_task_results(lua_State *L, mb_task *t);
int mb_task_await(lua_State *L, mb_task *t);
int mb_task_cancel(mb_rt *rt, lua_State *L, mb_task *t);
void mb_cancel_error_push(lua_State *L, mb_task *t, int idx);
int mb_cancel_raise(lua_State *L, mb_task *t);
void mb_cancel_caught(lua_State *L, int idx);
void mb_task_unfail(lua_State *L, mb_task *t);
int mb_cancel_is(lua_State *L, mb_task *t, int idx);
int mb_wait_yield(lua_State *L, mb_task *t, int wait, void *obj,
                  lua_KContext ctx, lua_KFunction k);
void mb_wait_check(lua_State *L);
void mb_waiter_init(mb_waiter *w, mb_task *t, lua_State *L, int index, int op);
void mb_waiter_fire(mb_rt *rt, mb_waiter *w, int ok);
void mb_waiters_fire_all(mb_rt *rt, mb_link *list);
int mb_wait_objs(lua_State *L, mb_task *t, mb_waiter *wv, int n, const char *what,
                 lua_KContext ctx, lua_KFunction k);
mb_task *mb_task_of(lua_State *L);
int mb_task_blocked_where(mb_task *t, char *buf, size_t len);
uint64_t mb_deadline(lua_State *L, int i);
int mb_sleep_add(mb_rt *rt, mb_task *t);
int mb_sleep_fire(mb_rt *rt);
void mb_sleep_remove(mb_rt *rt, mb_task *t);
void mb_group_child_ended(mb_rt *rt, mb_task *t);
void mb_preempt_hook(lua_State *L, lua_Debug *ar);
void mb_rt_set_slice(mb_rt *rt, int instructions);
void mb_rt_set_memory_limit(mb_rt *rt, size_t bytes);
void mb_run_set_limits(mb_run *r, int64_t instructions, int64_t deadline_ns);
void mb_limit_raise(lua_State *L, mb_run *r);
void mb_runs_over_limit(mb_rt *rt);
void mb_limit_check(lua_State *L, mb_rt *rt, mb_run *r);
void mb_limit_charge(lua_State *L, int64_t steps);
int mb_limit_hook_count(mb_rt *rt, mb_run *r);
const char *mb_limit_kind(mb_rt *rt, const char *msg, const char **op);

/* Awaitables, select and the combinators (await.c). */
void mb_join_funcs(lua_State *L);
void mb_await_open(lua_State *L);
uint32_t mb_rand(mb_rt *rt);
void mb_pack(lua_State *L, int n);
int mb_unpack(lua_State *L, int idx);

/* Channels (chan.c). */
typedef struct mb_chan mb_chan;
void mb_chan_open(lua_State *L);
mb_chan *mb_chan_test(lua_State *L, int idx);
int mb_chan_recv_ready(mb_chan *c);
int mb_chan_send_ready(mb_chan *c);
int mb_chan_recv_now(lua_State *L, int idx);
int mb_chan_send_now(lua_State *L, int idx, int vidx);
int mb_chan_await(lua_State *L, int idx);
void mb_chan_enqueue(mb_chan *c, mb_waiter *w);

/* Promises (promise.c). */
typedef struct mb_promise mb_promise;
enum { MB_PROM_PENDING = 0, MB_PROM_FULFILLED, MB_PROM_REJECTED, MB_PROM_CANCELLED };
void mb_promise_open(lua_State *L);
mb_promise *mb_promise_test(lua_State *L, int idx);
int mb_promise_state(const mb_promise *p);
mb_link *mb_promise_waiters(mb_promise *p);
int mb_promise_outcome(lua_State *L, int idx);
int mb_promise_results(lua_State *L, int idx);
int mb_promise_await(lua_State *L, int idx);
int mb_promise_cancel(lua_State *L, int idx);
mb_task *mb_promise_task(lua_State *L, int idx);

/* Timers (timer.c). */
void mb_timer_open(lua_State *L);

/* Coroutine library overrides (coro.c). */
void mb_coro_open(lua_State *L);
void mb_coro_kill(mb_task *t);

/* Bridge functions and streams (bridge.c). */
void mb_bridge_open(lua_State *L);
int mb_rt_register(mb_rt *rt, const char *name, int fn, int flags);
void mb_bridge_drain(mb_rt *rt, mb_msg *m);
void mb_call_free(mb_rt *rt, mb_call *c);
mb_call *mb_call_new(mb_rt *rt);
void mb_call_cancel(mb_rt *rt, mb_call *c);
enum { MB_FN_ASYNC = 0, MB_FN_INLINE = 1, MB_FN_STREAM = 2 };

/* print and io writes to Go (stdio.c). */
void mb_stdio_open(lua_State *L);
void mb_stdio_report(lua_State *L, int idx);

/* Errors (error.c). */
void mb_error_open(lua_State *L);
void mb_error_push(lua_State *L, const char *kind, const char *op,
                   const char *msg, size_t msglen);
int mb_error_throw(lua_State *L, const char *kind, const char *op,
                   const char *fmt, ...);
int mb_error_raise(lua_State *L);
int mb_error_handler(lua_State *L);
int mb_misuse(lua_State *L, const char *fmt, ...);
void mb_error_fork(lua_State *L);
int mb_error_fields(lua_State *L, int idx, mb_buf *out);
void mb_error_push_exit(lua_State *L, int code);

#endif
