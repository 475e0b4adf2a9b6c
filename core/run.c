/*
** run.c — runs: what Go asked the loop to do (run a chunk, call a global,
** set a global), from the request to the result, and the bookkeeping of
** the tasks that belong to one.
**
** Layer 5 (life cycle). A run's result is decided once (mb_run_finish):
** by its main task's end, a task's uncaught running out of memory, its
** first unawaited failure, os.exit, a limit, a deadlock, a cancellation
** or the runtime's close. Then it goes on the done list, where Go takes
** it after the step; no allocation is needed to tell Go, so no result is
** ever lost. A run is freed here when Go has released it and its last
** task has ended.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "env.h"
#include "errors.h"
#include "inspect.h"
#include "lbug.h"
#include "limit.h"
#include "output.h"
#include "run.h"
#include "task.h"

/* ---------------------------------------------------------------------
** Go's side.
** ------------------------------------------------------------------- */

/* A run named name (a chunk's name, or the global to call or set), with
** data (the chunk's message, or the arguments, or the value). With
** cancellable, the request to cancel it is allocated now, so cancelling
** never needs memory (see mb_run_cancel). NULL when out of memory. */
mb_run *mb_run_new(int64_t id, int kind, const char *name, size_t namelen,
                   const char *data, size_t len, int cancellable) {
  mb_run *r = calloc(1, sizeof *r);
  if (r == NULL) goto fail;
  r->id = id;
  r->kind = kind;
  r->namelen = namelen;
  r->env_ref = LUA_NOREF;
  mb_list_init(&r->tasks);
  mb_list_init(&r->failed);
  mb_list_init(&r->link);
  mb_list_init(&r->done_link);
  if (mb_buf_reserve(&r->in, namelen + 1 + len) != 0) goto fail_run;
  if (cancellable) {
    r->cancel = malloc(sizeof *r->cancel);
    if (r->cancel == NULL) goto fail_in;
    r->cancel->msg.kind = MB_MSG_CANCEL;
    r->cancel->id = id;
    r->cancel->deadline = 0;
  }
  memcpy(r->in.data, name, namelen);
  r->in.data[namelen] = '\0';
  if (len > 0) memcpy(r->in.data + namelen + 1, data, len);
  r->in.len = namelen + 1 + len;
  return r;
fail_in:
  mb_buf_free(&r->in);
fail_run:
  free(r);
fail:
  return NULL;
}

/* Set by Go before the run is submitted. */
void mb_run_set_limits(mb_run *r, int64_t instructions, int64_t deadline_ns) {
  if (instructions > 0) {
    r->insn_limited = 1;
    r->insn_left = instructions;
  }
  if (deadline_ns > 0) r->deadline = uv_hrtime() + (uint64_t)deadline_ns;
}

/* Set by Go before the run is submitted: where its globals live (env.c).
** script: a Call of a function of that Script, or the Script to drop;
** keep: keep the chunk's globals as a Script (Runtime.Load); internal:
** moonbridge's own Lua (a prelude), in its private environment. */
void mb_run_set_env(mb_run *r, int64_t script, int keep, int internal) {
  r->script = script;
  r->keep_env = keep != 0;
  r->internal = internal != 0;
}

/* Free the record. Its cancellation request is Go's to free (or push). */
void mb_run_free(mb_run *r) {
  if (r == NULL) return;
  mb_buf_free(&r->in);
  mb_buf_free(&r->out);
  free(r);
}

int mb_run_submit(mb_rt *rt, mb_run *r) {
  r->msg.kind = MB_MSG_RUN;
  return mb_queue_push(&rt->q, &r->msg);
}

void mb_run_submit_driver(mb_rt *rt, mb_run *r) {
  r->msg.kind = MB_MSG_RUN;
  mb_queue_push_driver(&rt->q, &r->msg);
}

/* Push the run's cancellation request (the loop frees it). */
int mb_run_cancel(mb_rt *rt, mb_run_cancel_msg *c, int deadline) {
  c->deadline = deadline;
  return mb_queue_push(&rt->q, &c->msg);
}

/* Free a cancellation request that was never pushed. */
void mb_run_cancel_free(mb_run_cancel_msg *c) { free(c); }

/* The next run whose result is ready, or NULL. */
mb_run *mb_run_take_done(mb_rt *rt) {
  mb_run *r;
  if (mb_list_empty(&rt->done)) return NULL;
  r = mb_list_first(&rt->done, mb_run, done_link);
  mb_list_remove(&r->done_link);
  return r;
}

/* Go has taken the run's result. A finished Call's tasks may still run:
** then the last of them frees the run. */
void mb_run_release(mb_rt *rt, mb_run *r) {
  mb_assert(r->done && !r->released, "releasing a run twice or before its result");
  mb_list_remove(&r->link);
  r->released = 1;
  if (r->ntasks == 0) {
    mb_env_release_run(rt->L, r);
    mb_run_free(r);
    return;
  }
  mb_list_push(&rt->orphans, &r->link);
}

static void mb_run_task_ended(mb_rt *rt, mb_run *r, mb_task *t);

/* ---------------------------------------------------------------------
** Deciding the result.
** ------------------------------------------------------------------- */
static void mb_run_finish(mb_rt *rt, mb_run *r) {
  if (r->done) return;
  r->done = 1;
  mb_list_push(&rt->done, &r->done_link);
}

/* Finish the run with the error value on L's top (popped). */
static void mb_run_fail_top(mb_rt *rt, mb_run *r) {
  if (!r->done) {
    mb_errors_fields(rt->L, -1, &r->out);
    r->status = MB_RUNST_ERROR;
    mb_run_finish(rt, r);
  }
  lua_pop(rt->L, 1);
}

static void mb_run_fail(mb_rt *rt, mb_run *r, const char *kind, const char *op,
                        const char *msg) {
  mb_errors_push(rt->L, kind, op, msg, strlen(msg));
  mb_run_fail_top(rt, r);
}

/* Kill every live task of the run. Its result must be decided first, so
** the kills do not decide it. They share one error, as detached tasks
** share theirs (mb_run_reap_detached): it is made in the scheduler's
** reserve, and one per task let a run that filled its memory with
** thousands of waiting tasks exhaust the reserve and fail the scheduler. */
static void mb_run_kill_all(mb_rt *rt, mb_run *r) {
  lua_State *L = rt->L;
  mb_task *t;
  int err;
  if (mb_list_empty(&r->tasks)) return;
  r->killing++;
  mb_errors_push(L, "cancelled", NULL, MB_LIT("the task's run ended"));
  err = lua_gettop(L);
  while (!mb_list_empty(&r->tasks)) {
    t = mb_list_first(&r->tasks, mb_task, run_link);
    mb_task_kill(rt, t, err);
    mb_run_task_end(rt, r, t);
  }
  lua_remove(L, err);
  r->killing--;
}

/* End the run now with this error: every task of it is killed. */
static void mb_run_abort(mb_rt *rt, mb_run *r, const char *kind, const char *op, const char *msg) {
  mb_run_fail(rt, r, kind, op, msg);
  mb_run_kill_all(rt, r);
}

/* os.exit(code): the run ends now with its code, and every task of it is
** killed (their to-be-closed variables closed). The host process lives on. */
void mb_run_exit(mb_rt *rt, mb_run *r) {
  r->exiting = 0;
  mb_errors_push_exit(rt->L, r->exit_code);
  mb_run_fail_top(rt, r);
  mb_run_kill_all(rt, r);
}

/* ---------------------------------------------------------------------
** Starting.
** ------------------------------------------------------------------- */

/* Push field name of the table on the top, raw, in its place; returns its
** type. */
static int mb_run_field(lua_State *L, const char *name) {
  lua_pushstring(L, name);
  lua_rawget(L, -2);
  lua_remove(L, -2);
  return lua_type(L, -1);
}

/* Push the function a Call names, read raw (no metamethod a script put on
** its globals runs here, outside any task), and return its type: a
** Script's Call looks in the script's globals, then the global table; a
** Runtime's Call in the global table (the host's functions and the
** libraries: no run can shadow them), then, under the sandbox, in the
** globals of the last run that defined a function. */
static int mb_run_push_function(lua_State *L, mb_run *r, const char *name) {
  if (r->script != 0) {
    if (!mb_env_push_script(L, r->script)) return LUA_TNONE; /* dropped */
    if (mb_run_field(L, name) != LUA_TNIL) return lua_type(L, -1);
    lua_pop(L, 1);
  }
  lua_pushglobaltable(L);
  if (mb_run_field(L, name) != LUA_TNIL || r->script != 0 || !mb_env_push_last(L))
    return lua_type(L, -1);
  lua_remove(L, -2);
  return mb_run_field(L, name);
}

/* The Call's function is missing: its value, of type type, is on the top
** (popped), or nothing when the Script was dropped (LUA_TNONE). Say what
** there is, and what to do under the sandbox, where each run's globals
** are its own. */
static void mb_run_not_a_function(mb_rt *rt, mb_run *r, const char *name, int type) {
  lua_State *L = rt->L;
  char err[400];
  if (type == LUA_TNONE) {
    mb_run_fail(rt, r, "closed", NULL, "Call: the script was closed");
    return;
  }
  if (lua_isnil(L, -1) && r->script == 0 && mb_env_sandboxed(L))
    snprintf(err, sizeof err, "Call: global '%s' is not a function (a nil value); under "
             "Options.Sandbox each run's globals are its own, and Call looks only in the last "
             "run's that defined a function: load a script with Runtime.Load to call its "
             "functions with Script.Call",
             name);
  else
    snprintf(err, sizeof err, "Call: %s '%s' is not a function (a %s value)",
             r->script != 0 ? "the script's global" : "global", name, luaL_typename(L, -1));
  lua_pop(L, 1);
  mb_run_fail(rt, r, "runtime", NULL, err);
}
/* ---------------------------------------------------------------------
** A run's own data: its chunk and its values, of whatever size a host
** sends, are loaded and decoded held to MemoryLimit itself, not the
** scheduler's reserve, and protected: out of memory, the run fails with
** a "limit" error (of op "memory"), and the loop serves on.
** ------------------------------------------------------------------- */
#define MB_RUN_NOMEM (-2) /* mb_run_values: out of memory, the run failed */

typedef struct mb_run_data {
  const char *data, *name;
  size_t len;
  char *err;
  size_t errlen;
  int n;
} mb_run_data;

static int mb_run_values_p(lua_State *L) {
  mb_run_data *d = (mb_run_data *)lua_touserdata(L, 1);
  lua_pop(L, 1);
  d->n = mb_codec_decode(L, d->data, d->len, d->err, d->errlen);
  return d->n < 0 ? 0 : d->n;
}

/* Load a run's chunk: text, or a precompiled chunk as lua5.4 loads one
** (what dofile and load accept too), except under the sandbox, where a
** binary chunk (which can crash Lua's VM) is refused naming the chunk. */
static int mb_run_load_p(lua_State *L) {
  mb_run_data *d = (mb_run_data *)lua_touserdata(L, 1);
  int sandboxed = mb_env_sandboxed(L);
  lua_pop(L, 1);
  if (sandboxed && d->len > 0 && d->data[0] == LUA_SIGNATURE[0])
    return luaL_error(L, "%s: attempt to load a binary chunk (the sandbox loads text chunks only)",
                      d->name + (d->name[0] == '=' || d->name[0] == '@'));
  if (luaL_loadbufferx(L, d->data, d->len, d->name, sandboxed ? "t" : "bt") != LUA_OK ||
      mb_lbug_fix_text(L, -1, d->data, d->len) != LUA_OK)
    lua_error(L);
  return 1;
}

/* The run ran out of memory before it started: its error on rt->L's top. */
static void mb_run_fail_nomem(mb_rt *rt, mb_run *r, int st) {
  if (st == LUA_ERRMEM) {
    lua_pop(rt->L, 1);
    if (rt->mem_limit > 0)
      mb_run_fail(rt, r, "limit", "memory", "not enough memory for the run's chunk or values");
    else
      mb_run_fail(rt, r, "runtime", NULL, "not enough memory for the run's chunk or values");
  } else {
    mb_run_fail_top(rt, r);
  }
}

/* Decode the run's values onto rt->L: how many, -1 (err says why), or
** MB_RUN_NOMEM (the run has failed). */
static int mb_run_values(mb_rt *rt, mb_run *r, const char *data, size_t len, char *err,
                         size_t errlen) {
  mb_run_data d = {data, NULL, len, err, errlen, 0};
  int st = mb_limit_pcall_strict(rt->L, mb_run_values_p, &d, LUA_MULTRET);
  if (st == LUA_OK) return d.n;
  mb_run_fail_nomem(rt, r, st);
  return MB_RUN_NOMEM;
}

/* Load the run's chunk onto rt->L; on failure the run has failed. */
static int mb_run_load(mb_rt *rt, mb_run *r, const char *src, size_t len) {
  mb_run_data d = {src, r->in.data, len, NULL, 0, 0};
  int st = mb_limit_pcall_strict(rt->L, mb_run_load_p, &d, 1);
  if (st != LUA_OK) mb_run_fail_nomem(rt, r, st);
  return st;
}

void mb_run_start(mb_rt *rt, mb_run *r) {
  lua_State *L = rt->L;
  const char *name = r->in.data;
  const char *data = r->in.data + r->namelen + 1;
  size_t len = r->in.len - r->namelen - 1;
  int nargs = 0, type;
  char err[256];
  mb_list_push(&rt->runs, &r->link);
  if (rt->closing) {
    mb_run_fail(rt, r, "closed", NULL, "the runtime is closed");
    return;
  }
  if (r->kind == MB_RUN_SET) {
    nargs = mb_run_values(rt, r, data, len, err, sizeof err);
    if (nargs != 1) {
      if (nargs == MB_RUN_NOMEM) return;
      lua_settop(L, 0);
      mb_run_fail(rt, r, "runtime", NULL, nargs < 0 ? err : "SetGlobal takes one value");
      return;
    }
    /* Raw, as Get reads: a script's __newindex on _G must not run here,
    ** outside any task (an error in it would end the loop). */
    lua_pushglobaltable(L);
    lua_pushstring(L, name);
    lua_pushvalue(L, -3);
    lua_rawset(L, -3);
    lua_pop(L, 2);
    mb_env_publish(L, name); /* under the sandbox, every run sees it read-only */
    r->out.len = 0;
    mb_run_finish(rt, r);
    return;
  }
  if (r->kind == MB_RUN_DROP) {
    mb_env_drop_script(L, r->script);
    r->out.len = 0;
    mb_run_finish(rt, r);
    return;
  }
  if (r->kind == MB_RUN_TASKS) {
    if (mb_inspect_snapshot(rt, &r->out, err, sizeof err) != 0) {
      mb_run_fail(rt, r, "runtime", NULL, err);
      return;
    }
    mb_run_finish(rt, r);
    return;
  }
  if (r->kind == MB_RUN_GET) {
    /* Raw: a script's __index on _G must not run here, outside any task
    ** and its limits. */
    lua_pushglobaltable(L);
    lua_pushstring(L, name);
    lua_rawget(L, -2);
    r->out.len = 0;
    if (mb_codec_encode(L, lua_gettop(L), 1, &r->out, err, sizeof err) != 0) {
      char msg[320];
      const char *rest = strncmp(err, "argument #1", 11) == 0 ? err + 11 : err;
      snprintf(msg, sizeof msg, "Get '%s'%s%s", name, rest == err ? ": " : "", rest);
      lua_pop(L, 2);
      mb_run_fail(rt, r, "runtime", NULL, msg);
      return;
    }
    lua_pop(L, 2);
    mb_run_finish(rt, r);
    return;
  }
  if (r->kind == MB_RUN_CHUNK) {
    /* The source's length (8 bytes, little-endian), the source, then the
    ** arguments the chunk gets as "...". */
    uint64_t srclen = 0;
    int i;
    for (i = 7; i >= 0 && len >= 8; i--) srclen = srclen << 8 | (unsigned char)data[i];
    if (len < 8 || srclen > len - 8) {
      mb_run_fail(rt, r, "runtime", NULL, "malformed chunk message");
      return;
    }
    if (mb_run_load(rt, r, data + 8, (size_t)srclen) != LUA_OK) return;
    mb_env_push_run(L, r); /* its globals: its own under the sandbox */
    lua_setupvalue(L, -2, 1);
    data += 8 + srclen;
    len -= 8 + (size_t)srclen;
  } else if ((type = mb_run_push_function(L, r, name)) != LUA_TFUNCTION) {
    mb_run_not_a_function(rt, r, name, type);
    return;
  }
  nargs = mb_run_values(rt, r, data, len, err, sizeof err);
  if (nargs < 0) {
    lua_pop(L, 1);
    if (nargs != MB_RUN_NOMEM) mb_run_fail(rt, r, "runtime", NULL, err);
    return;
  }
  /* Chunk names carry Lua's "=" or "@" prefix; the task's name does not. */
  r->main = mb_task_spawn(L, r, nargs, name + (name[0] == '=' || name[0] == '@'));
  lua_pop(L, 1); /* the Task: anchored in the registry while it lives */
}

/* ---------------------------------------------------------------------
** Its tasks.
** ------------------------------------------------------------------- */

/* Only detached tasks are left: cancel them, so their cleanup runs; the
** run ends when the last of them has. They share one cancellation error:
** it is made in the scheduler's reserve, and one per task would let a
** script that detached thousands of tasks exhaust it. */
static void mb_run_reap_detached(mb_rt *rt, mb_run *r) {
  lua_State *L = rt->L;
  int err = 0;
  mb_link *l;
  mb_list_foreach(l, &r->tasks) {
    mb_task *t = mb_container_of(l, mb_task, run_link);
    if (t->cancel != MB_CANCEL_NONE) continue;
    if (err == 0) {
      mb_errors_push(L, "cancelled", NULL,
                     MB_LIT("a detached task was cancelled: the rest of its run is over"));
      err = lua_gettop(L);
    }
    lua_pushvalue(L, err);
    mb_task_cancel(rt, L, t);
  }
  if (err != 0) lua_remove(L, err);
}

/* One of the run's tasks ended (its Task is on rt->L's top, anchoring it). */
static void mb_run_task_ended(mb_rt *rt, mb_run *r, mb_task *t) {
  lua_State *L = rt->L;
  int is_main = t == r->main;
  if (is_main) r->main = NULL; /* its record may be freed, and reused by a later task */
  if (is_main && !r->done) {
    if (t->status == MB_TASK_FAILED) {
      mb_task_push_error(L, t); /* the error stays for the task's waiters */
      mb_run_fail_top(rt, r);
      mb_run_kill_all(rt, r); /* as a process ends with its main chunk */
    } else if (t->status == MB_TASK_CANCELLED) {
      mb_run_fail(rt, r, "cancelled", NULL, "the run's main task was cancelled");
      mb_run_kill_all(rt, r); /* its result is decided: nothing of it runs on */
    } else if (r->kind == MB_RUN_CALL) {
      char err[256];
      r->out.len = 0;
      if (mb_codec_encode(t->co, 1, t->nres, &r->out, err, sizeof err) != 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "Call '%s': %s", r->in.data, err);
        mb_run_fail(rt, r, "runtime", NULL, msg);
      } else {
        mb_run_finish(rt, r);
      }
    } else if (r->keep_env) { /* Runtime.Load: the chunk ran; keep its globals */
      mb_env_keep_script(L, r);
    } else {
      mb_env_keep_last(L, r); /* under the sandbox, what a later Call finds */
    }
  } else if (t->status == MB_TASK_FAILED && t->oom && !t->detached && !r->done) {
    /* Out of memory, and not caught in the task that ran out: the run
    ** ends now with that error, as on any other limit, rather than leave
    ** the others waiting for what the failed task will never do (they
    ** would end in a deadlock report, or fail on the same shortage). */
    t->observed = 1;
    mb_task_push_error(L, t);
    mb_run_fail_top(rt, r);
    mb_task_unfail(L, t); /* its Task is on L's stack: still alive */
    mb_run_kill_all(rt, r);
  }
  if (t->status == MB_TASK_FAILED && !t->observed && r->done && r->limit == MB_LIMIT_NONE) {
    /* The run's result is decided (a Call returned): say it on stderr.
    ** Not when the run went over a limit: that is its error already. */
    mb_task_report(rt, t);
  }
  if (r->ntasks > r->ndetached) return;
  if (r->ndetached > 0) {
    /* Not while every task is being killed: each would get a cancellation
    ** error (in the scheduler's reserve, which thousands of them exhaust)
    ** only to be killed the next moment. */
    if (!r->killing) mb_run_reap_detached(rt, r);
    return;
  }
  /* The run is over. A task that failed with nobody waiting fails the run;
  ** any further ones are reported, not lost. */
  while (!mb_list_empty(&r->failed)) {
    mb_task *f = mb_list_first(&r->failed, mb_task, fail_link);
    if (!r->done) {
      mb_task_push_error(L, f);
      mb_run_fail_top(rt, r);
    } else if (r->limit == MB_LIMIT_NONE) {
      mb_task_report(rt, f);
    }
    mb_task_unfail(L, f); /* after its last use: this may free it */
  }
  mb_run_finish(rt, r);
  if (r->released) {
    mb_list_remove(&r->link); /* from rt->orphans */
    mb_env_release_run(L, r);
    mb_run_free(r);
  }
}

/* t ended (mb_task_resume or mb_task_kill said so; its Task is on rt->L's
** top): the run's bookkeeping, then the task is forgotten. */
void mb_run_task_end(mb_rt *rt, mb_run *r, mb_task *t) {
  mb_run_task_ended(rt, r, t);
  mb_task_forget(rt, t);
}

/* ---------------------------------------------------------------------
** Ending runs from outside: Go's cancellation, the close, the limits,
** deadlock.
** ------------------------------------------------------------------- */
static mb_run *mb_run_find(mb_rt *rt, int64_t id) {
  mb_link *l;
  mb_list_foreach(l, &rt->runs) {
    mb_run *r = mb_container_of(l, mb_run, link);
    if (r->id == id && !r->done) return r;
  }
  return NULL;
}

/* Go cancelled a run (its context ended); the request is freed here. */
void mb_run_drain_cancel(mb_rt *rt, mb_run_cancel_msg *c) {
  mb_run *r = mb_run_find(rt, c->id);
  int deadline = c->deadline;
  free(c);
  if (r != NULL && deadline) {
    r->limit = MB_LIMIT_DEADLINE; /* its killed tasks' cleanup is over it too */
    mb_run_abort(rt, r, "limit", "deadline", "the run's deadline passed");
  } else if (r != NULL) {
    mb_run_abort(rt, r, "cancelled", NULL, "the run's context was cancelled");
  }
}

/* The runtime is closing: every run ends, its tasks killed. */
void mb_run_close_all(mb_rt *rt) {
  mb_link *l;
  mb_list_foreach(l, &rt->runs)
    mb_run_abort(rt, mb_container_of(l, mb_run, link), "closed", NULL, "the runtime was closed");
}

/* After a turn in which some run went over a limit: end each such run. */
void mb_run_end_over_limit(mb_rt *rt) {
  mb_link *l;
  rt->over_limit = 0;
  mb_list_foreach(l, &rt->runs) {
    mb_run *r = mb_container_of(l, mb_run, link);
    if (r->limit != MB_LIMIT_NONE && !r->done)
      mb_run_abort(rt, r, "limit", mb_limit_op(r->limit), mb_limit_message(r->limit));
  }
}

int mb_run_has_live_tasks(mb_rt *rt) {
  mb_link *l;
  mb_list_foreach(l, &rt->runs) {
    mb_run *r = mb_container_of(l, mb_run, link);
    if (!r->done && r->ntasks > 0) return 1;
  }
  return 0;
}

/* Deadlock: nothing ready, no sleeper, no Go work in flight, nothing in
** the queue, yet some runs still have tasks. None of them can ever move:
** each such run fails, listing where each of its tasks waits. */
void mb_run_deadlock(mb_rt *rt) {
  lua_State *L = rt->L;
  mb_link *l, *tl;
  mb_list_foreach(l, &rt->runs) {
    mb_run *r = mb_container_of(l, mb_run, link);
    luaL_Buffer b;
    char line[512];
    if (r->done || r->ntasks == 0) continue;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "deadlock: all tasks are blocked and nothing can wake them");
    mb_list_foreach(tl, &r->tasks) {
      mb_task_blocked_where(mb_container_of(tl, mb_task, run_link), line, sizeof line);
      luaL_addchar(&b, '\n');
      luaL_addstring(&b, line);
    }
    luaL_pushresult(&b);
    mb_run_abort(rt, r, "deadlock", NULL, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

/* The runtime is being freed (its Lua state is closed): free every run
** record left, those Go never took and those whose tasks never ended. */
void mb_run_free_all(mb_rt *rt) {
  mb_link *l, *n;
  mb_list_foreach_safe(l, n, &rt->runs) mb_run_free(mb_container_of(l, mb_run, link));
  mb_list_foreach_safe(l, n, &rt->orphans) mb_run_free(mb_container_of(l, mb_run, link));
  mb_list_init(&rt->runs);
  mb_list_init(&rt->done);
  mb_list_init(&rt->orphans);
}
