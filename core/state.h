/*
** state.h — the records every layer shares: the runtime (mb_rt), a run
** (mb_run), a task (mb_task) and a task's registration on an awaitable's
** waiter list (mb_waiter).
**
** Layer 1. As Lua's lstate.h: the types are here, their operations are
** each in the file that owns them (run.c for runs, task.c for tasks, rt.c
** for the runtime's life cycle). One mb_rt owns one lua_State and one
** uv_loop_t; exactly one thread at a time calls into it (the Go loop
** driver), except the completion path (mb_queue_push and the functions
** built on it), which any thread may call.
*/
#ifndef MB_STATE_H
#define MB_STATE_H

#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <lua.h>
#include <uv.h>

#include "buf.h"
#include "event.h"
#include "heap.h"
#include "list.h"
#include "mb.h"
#include "queue.h"
#include "sleep.h"

struct mb_call;
struct mb_rt;
struct mb_group;

/* ---------------------------------------------------------------------
** Runs: RunString/RunFile (wait for every task), Call (wait for the
** function's task), or SetGlobal and Get (no task). Created at Go's request
** (mb_run_new), started and ended by the loop, freed by run.c once Go
** took the result and its last task ended.
** ------------------------------------------------------------------- */
enum { MB_RUN_CHUNK = 0, MB_RUN_CALL = 1, MB_RUN_SET = 2, MB_RUN_GET = 3, MB_RUN_DROP = 4,
       MB_RUN_TASKS = 5 /* Go's rt.Tasks: a snapshot of every task (inspect.c) */ };
enum { MB_RUNST_OK = 0, MB_RUNST_ERROR = 1 };

/* The limits a run can go over (its limit field), besides memory. A run
** over one is ended at once: its error cannot be caught (pcall, xpcall and
** coroutine.resume raise it again). */
enum { MB_LIMIT_NONE = 0, MB_LIMIT_INSN, MB_LIMIT_DEADLINE, MB_LIMIT_OUTPUT };

/* A request to cancel a run, allocated with the run (when its context can
** end) so that cancelling never allocates: Go pushes it, or frees it. */
typedef struct mb_run_cancel_msg {
  mb_msg msg;
  int64_t id;
  int deadline; /* the context's deadline passed: a limit, not a cancellation */
} mb_run_cancel_msg;

typedef struct mb_run {
  mb_msg msg;
  int64_t id;      /* Go's id */
  int kind;        /* MB_RUN_* */
  int status;      /* MB_RUNST_* once done */
  int ntasks;      /* live tasks */
  int ndetached;   /* of which detached */
  int done;        /* result reported (in rt->done until Go takes it) */
  int released;    /* Go took the result */
  int killing;     /* mb_run_kill_all is ending its tasks (run.c) */
  int exiting;     /* os.exit was called: end the run at once */
  int exit_code;
  int limit;           /* MB_LIMIT_*: the limit the run went over */
  int64_t insn_left;   /* VM instructions left, when insn_limited */
  int insn_limited;
  uint64_t deadline;   /* uv_hrtime() by which the run must end, or 0 */
  mb_run_cancel_msg *cancel; /* Go's cancellation request, or NULL; Go owns it */
  struct mb_task *main;
  mb_link tasks;   /* live tasks of this run */
  mb_link failed;  /* failed tasks nobody has waited on yet */
  mb_link link;    /* in rt->runs; once Go took the result, in rt->orphans */
  mb_link done_link; /* in rt->done while Go has not taken the result */
  mb_buf in;       /* chunk name + source, or function name + arguments */
  size_t namelen;
  mb_buf out;      /* results (Call) or error: [message, kind, op, traceback, code] */
  int64_t output;  /* bytes its tasks wrote (print, io.write), for OutputLimit */
  int64_t ntask_ids; /* tasks it spawned so far: its main task is #0, the next #1 */
  int env_ref;     /* registry ref of the run's own globals (env.c), or LUA_NOREF */
  int64_t script;  /* Call: the Script whose globals hold the function, or 0 */
  unsigned char keep_env; /* Runtime.Load: keep the globals as Script id */
  unsigned char internal; /* moonbridge's own Lua (a prelude): the private env */
} mb_run;

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
  MB_WAIT_OBJS,   /* on the waiter lists of tasks, channels or promises
                  ** (t->wv[0..nw-1]) */
  MB_WAIT_SLEEP,  /* in the sleep heap */
  MB_WAIT_OTHER   /* on an object of a higher layer (a bridge call, a
                  ** stream): t->wait_undo(rt, t->wait_obj) undoes it */
};

/* Undo a MB_WAIT_OTHER wait: the object forgets the task. */
typedef void (*mb_wait_undo)(struct mb_rt *rt, void *obj);

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

typedef struct mb_task {
  lua_State *co;        /* the task's root thread */
  mb_run *run;
  int ref;              /* registry ref anchoring the Task userdata while alive */
  int status;           /* MB_TASK_* */
  int wait;             /* MB_WAIT_* */
  void *wait_obj;       /* what it waits on (MB_WAIT_OTHER) */
  const char *wait_what; /* what it waits for, in words, for deadlock reports */
  mb_wait_undo wait_undo; /* MB_WAIT_OTHER */
  void *held;           /* what its woken continuation takes (a call's record) */
  mb_wait_undo held_free; /* frees held if the task is killed before it runs */
  int nres;             /* DONE: results on co's stack (1..nres); FAILED: error at top */
  int observed;         /* someone took its result or error */
  int64_t id;           /* sequence number, for names */
  const char *name;     /* or NULL; anchored as the Task's second user value */
  const char *wake_err; /* set to make the waiting continuation raise instead */
  mb_sleeper sleep;     /* MB_WAIT_SLEEP, and a join's deadline */
  unsigned char cancel;   /* MB_CANCEL_* */
  unsigned char cancel_seen; /* the cancellation was raised in it at least once */
  unsigned char aborted;  /* the wait was ended without its result: raise */
  unsigned char detached;
  unsigned char priority; /* resumes per round while it keeps yielding */
  unsigned char timer;    /* a timer task before its callback: clear* cancels it */
  unsigned char reraise;  /* the error being raised already has its traceback */
  unsigned char oom;      /* it failed out of memory under the memory limit */
  unsigned char killed;   /* its run is being torn down: its cleanup runs (mb_task_kill) */
  int slice_used;       /* instructions run in this turn (with a slice set) */
  uint64_t created;     /* uv_hrtime() scale: when it was spawned (inspect.c) */
  uint64_t cpu;         /* ns spent in its turns, counted once rt->accounting */
  int64_t resumes;      /* turns it was given */
  int fired;            /* MB_WAIT_OBJS: index of the waiter that fired */
  int fired_ok;         /* and whether it completed (0: channel closed) */
  mb_waiter *wv;        /* MB_WAIT_OBJS: the registrations */
  int nw;
  struct mb_group *group; /* the group that owns it, or NULL */
  lua_State *coros;     /* user coroutines suspended in its wait, outermost first */
  mb_waiter w1;         /* the registration of a single wait */
  mb_link ready;        /* run queue link */
  mb_link waiters;      /* waiters for this task to end */
  mb_link run_link;     /* in run->tasks */
  mb_link fail_link;    /* in run->failed */
  mb_link group_link;   /* in group->tasks */
} mb_task;

/* ---------------------------------------------------------------------
** The runtime.
** ------------------------------------------------------------------- */
/* Lua's warnings (output.c): off, on, or in the middle of a warning sent
** in pieces. */
enum { MB_WARN_OFF = 0, MB_WARN_ON, MB_WARN_CONT };

typedef struct mb_rt {
  mb_queue q;           /* completions and requests from any thread */
  lua_State *L;
  uv_loop_t loop;
  mb_sleepers sleepers; /* sleeping tasks, and the timer at the earliest */
  mb_link ready;        /* run queue */
  int inflight;         /* calls and streams whose Go side has not finished */
  mb_events ev;         /* events of the current step, for Go */
  uint64_t step;        /* steps so far */
  mb_link runs;         /* runs Go waits for */
  mb_link done;         /* of which those whose result is ready for Go */
  mb_link orphans;      /* runs Go is done with whose tasks still run */
  struct mb_call *call_pool; /* finished call records (call.c) */
  int ncall_pool;
  mb_task *current;     /* task being resumed, or NULL */
  lua_State *running;   /* the thread running its Lua code: its root, or a
                        ** coroutine it resumed (coro.c); NULL between turns */
  mb_task *oom_task;    /* the task oom_where was read in, or NULL */
  int oom_kept;         /* oom_where stays until the error is caught (limit.c) */
  char oom_where[1024]; /* traceback where the allocator last refused a task */
  uint64_t alloc_failed; /* allocations refused by the limit or failed */
  int64_t oom_caught;   /* out-of-memory errors scripts caught (limit.c), for tests */
  int yielding;         /* the yield in progress is the runtime's, not the user's */
  int nonyield;         /* coroutines running under a resumer that cannot yield
                        ** (a __close run by coroutine.close, a C function's
                        ** callback), nested: no task may wait in them (coro.c) */
  lua_State *hook_raised_in; /* the thread the count hook last raised in, until a
                        ** pcall there catches it (coro.c, limit.c) */
  int hook_raised;      /* the count hook raised an error, which message handlers
                        ** see with hooks off (task.c) */
  int closing;
  int slice;            /* preemption time slice in VM instructions, or 0 */
  int warn;             /* MB_WARN_*: Lua's warnings (output.c) */
  int hook_count;       /* the count hook's period for the task being resumed */
  int hook_part;        /* instructions counted towards hook_count under a
                        ** script's shorter count hook (task.c) */
  int userhooks;        /* a script called debug.sethook: its records exist;
                        ** until then no hook but the scheduler's (userhook.c) */
  int accounting;       /* time tasks' turns: on once someone asked (inspect.c) */
  volatile sig_atomic_t interrupt; /* preempt the running task (interrupt.c) */
  _Atomic int in_step;  /* a thread is inside mb_rt_step: step_thread */
  _Atomic int close_asked; /* Go called Close: the message is on its way (task.c) */
  _Atomic int trim_asked; /* trim_msg is queued (mb_rt_trim) */
  _Atomic int64_t interrupt_run; /* the cancelled run Go last preempted for (task.c) */
  _Atomic unsigned long step_thread; /* its pthread_t (interrupt.c) */
  int over_limit;       /* some run went over a limit: end it after this turn */
  size_t mem_used;      /* bytes held by Lua's allocator */
  size_t mem_limit;     /* MemoryLimit: Lua's allocations fail beyond it; 0: none */
  size_t mem_reserve;   /* how far past it the scheduler's own may go (limit.c) */
  int64_t alloc_watch;  /* bytes a task allocates before the allocator looks at
                        ** its run's deadline and budget (limit.c) */
  int64_t output_limit; /* OutputLimit: bytes each run may write; 0: none */
  uint32_t rand;        /* xorshift state: fair choices among ready cases */
  int pool_ref;         /* registry ref of the pool of finished threads */
  int npool;
  int pool_low;         /* the fewest threads in the pool since pool_since */
  uint64_t pool_since;  /* uv_now() when the pool last let idle threads go */
  int task_mt_ref;      /* registry refs of the metatables */
  int error_mt_ref;
  int error_fresh_mt_ref; /* errors raised here, not yet through a handler */
  uintptr_t go_handle;  /* the Go Runtime, for inline calls and writes */
  mb_buf scratch_in;    /* inline calls: arguments, then results */
  mb_buf scratch_out;
  char fatal[256];      /* why the loop cannot continue (MB_STEP_FATAL) */
  mb_msg close_msg;
  mb_msg trim_msg;
  mb_heap heap;         /* Lua's small blocks (heap.c), freed after lua_close */
} mb_rt;

/* The runtime a Lua state belongs to: it is the allocator's user data. */
static inline mb_rt *mb_rt_of(lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  return (mb_rt *)ud;
}

/* xorshift32: fair, cheap choices among ready cases. */
static inline uint32_t mb_rt_rand(mb_rt *rt) {
  uint32_t x = rt->rand;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return rt->rand = x;
}

#endif
