/*
** bridge.c — Go functions as Lua functions: calls, inline calls, streams.
**
** Layer: C core. An async call encodes its arguments into a new mb_call,
** hands it to the Go driver as an MB_EV_CALL event and suspends the task;
** the goroutine writes the results into the same record and pushes it on
** the completion queue, and the drain wakes the task, whose continuation
** decodes them. A stream is a call whose goroutine pushes chunks until it
** returns; Lua takes them with a generic for, whose closing value cancels
** the Go side when the loop is left early. Inline functions are the one
** place C calls into Go: they never block, so they run right here.
*/
#include <stdlib.h>
#include <string.h>

#include "mb.h"
#include "_cgo_export.h"

#define MB_STREAM_MT "moonbridge.Stream"

/* ---------------------------------------------------------------------
** Errors a call can raise.
** ------------------------------------------------------------------- */

/* Push the name of the function on L's top as "module.field", searching
** package.loaded as luaL_traceback does, and pop the function. Returns
** the name or NULL (nothing pushed then). */
static const char *mb_bridge_libname(lua_State *L) {
  int fn = lua_gettop(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1)) {
      lua_pushnil(L);
      while (lua_next(L, -2) != 0) {
        if (lua_rawequal(L, -1, fn) && lua_type(L, -2) == LUA_TSTRING) {
          const char *mod = lua_tostring(L, -4), *field = lua_tostring(L, -2);
          const char *name = strcmp(mod, LUA_GNAME) == 0
                                 ? lua_pushstring(L, field)
                                 : lua_pushfstring(L, "%s.%s", mod, field);
          lua_replace(L, fn);
          lua_settop(L, fn);
          return name;
        }
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  lua_settop(L, fn - 1);
  return NULL;
}

/* Lua cannot yield here: say which function is in the way. */
static int mb_bridge_cannot_yield(lua_State *L, const char *name) {
  lua_Debug ar;
  int level;
  for (level = 1; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "nSf", &ar);
    if (ar.what[0] == 'C') {
      const char *fname = mb_bridge_libname(L);
      if (fname == NULL) fname = ar.name ? ar.name : "?";
      return mb_error_throw(L, "runtime", name,
                            "%s: cannot wait for Go inside '%s', a C function Lua "
                            "cannot yield across (attempt to yield across a C-call boundary)",
                            name, fname);
    }
    lua_pop(L, 1);
    if (ar.namewhat != NULL && strcmp(ar.namewhat, "metamethod") == 0)
      return mb_error_throw(L, "runtime", name,
                            "%s: cannot wait for Go inside a '%s' metamethod "
                            "(attempt to yield across a C-call boundary)",
                            name, ar.name ? ar.name : "?");
  }
  return mb_error_throw(L, "runtime", name,
                        "%s: cannot wait for Go here (attempt to yield across a C-call boundary)",
                        name);
}

static int mb_bridge_raise(lua_State *L, const char *name, int status,
                           const char *msg, size_t len) {
  if (status == MB_PANIC)
    lua_pushfstring(L, "%s: panic: %s", name, lua_pushlstring(L, msg, len));
  else if (len == 0)
    lua_pushfstring(L, "%s: not enough memory for the result", name);
  else
    lua_pushfstring(L, "%s: %s", name, lua_pushlstring(L, msg, len));
  mb_error_push(L, "bridge", name, lua_tostring(L, -1), lua_rawlen(L, -1));
  return mb_error_raise(L);
}

/* Decode a result message onto L, or raise. */
static int mb_bridge_results(lua_State *L, const char *name, const char *data, size_t len) {
  char err[160];
  int n = mb_codec_decode(L, data, len, err, sizeof err);
  if (n < 0) return mb_error_throw(L, "bridge", name, "%s: bad result: %s", name, err);
  return n;
}

static const char *mb_bridge_encode_args(lua_State *L, const char *name, mb_buf *b) {
  char err[200];
  if (mb_codec_encode(L, 1, lua_gettop(L), b, err, sizeof err) != 0)
    return lua_pushfstring(L, "%s: %s", name, err);
  return NULL;
}

/* ---------------------------------------------------------------------
** Async calls.
** ------------------------------------------------------------------- */
/* Call records are recycled, with their buffers, by the loop (the only
** thread that creates or frees them): no allocation per call once warm.
** mb_rt_free frees the pool. */
#define MB_CALL_POOL_MAX 4096
#define MB_CALL_BUF_KEEP 4096 /* larger buffers are not kept in the pool */

mb_call *mb_call_new(mb_rt *rt) {
  mb_call *c = rt->call_pool;
  mb_buf buf = {0};
  if (c == NULL) return calloc(1, sizeof *c);
  rt->call_pool = (mb_call *)c->msg.next;
  rt->ncall_pool--;
  buf = c->buf;
  memset(c, 0, sizeof *c);
  c->buf = buf;
  c->buf.len = 0;
  return c;
}

void mb_call_free(mb_rt *rt, mb_call *c) {
  if (rt->ncall_pool >= MB_CALL_POOL_MAX || c->buf.cap > MB_CALL_BUF_KEEP) {
    mb_buf_free(&c->buf);
    free(c);
    return;
  }
  c->msg.next = (mb_msg *)rt->call_pool;
  rt->call_pool = c;
  rt->ncall_pool++;
}

/* Cancel the Go side of a call nobody waits for any more. Once Go started
** it, the slot names it; before, the event points at the record, which
** cannot be freed before Go has seen this batch of events. */
void mb_call_cancel(mb_rt *rt, mb_call *c) {
  mb_rt_event(rt, MB_EV_CANCEL, c->slot, c->slot < 0 ? c : NULL);
}

static int mb_call_k(lua_State *L, int status, lua_KContext ctx) {
  mb_rt *rt = mb_rt_of(L);
  mb_call *c = (mb_call *)ctx;
  const char *name = lua_tostring(L, lua_upvalueindex(2));
  (void)status;
  mb_wait_check(L); /* an aborted wait: the drain frees c */
  if (c->status != MB_OK) {
    /* Copy the message to Lua before freeing its buffer. */
    lua_pushlstring(L, c->buf.data ? c->buf.data : "", c->buf.len);
    status = c->status;
    mb_call_free(rt, c);
    return mb_bridge_raise(L, name, status, lua_tostring(L, -1), lua_rawlen(L, -1));
  }
  {
    char err[160];
    int n = mb_codec_decode(L, c->buf.data, c->buf.len, err, sizeof err);
    mb_call_free(rt, c);
    if (n < 0) return mb_error_throw(L, "bridge", name, "%s: bad result: %s", name, err);
    return n;
  }
}

static int mb_l_call(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  const char *name = lua_tostring(L, lua_upvalueindex(2));
  mb_task *t = rt->current;
  mb_call *c;
  const char *err;
  if (t == NULL) return luaL_error(L, "%s: not inside a task", name);
  if (!lua_isyieldable(L)) return mb_bridge_cannot_yield(L, name);
  c = mb_call_new(rt);
  if (c == NULL) return luaL_error(L, "not enough memory");
  c->fn = (int)lua_tointeger(L, lua_upvalueindex(1));
  c->slot = -1;
  if ((err = mb_bridge_encode_args(L, name, &c->buf)) != NULL) {
    mb_call_free(rt, c);
    return mb_error_throw(L, "bridge", name, "%s", err);
  }
  if (mb_rt_event(rt, MB_EV_CALL, 0, c) != 0) {
    mb_call_free(rt, c);
    return luaL_error(L, "not enough memory");
  }
  c->task = t;
  c->run = t->run->id;
  rt->inflight++;
  return mb_wait_yield(L, t, MB_WAIT_CALL, c, (lua_KContext)c, mb_call_k);
}

/* ---------------------------------------------------------------------
** Inline calls: straight into Go and back, on this thread.
** ------------------------------------------------------------------- */
static int mb_l_inline(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  const char *name = lua_tostring(L, lua_upvalueindex(2));
  const char *err;
  int status;
  rt->scratch_in.len = 0;
  if ((err = mb_bridge_encode_args(L, name, &rt->scratch_in)) != NULL)
    return mb_error_throw(L, "bridge", name, "%s", err);
  rt->scratch_out.len = 0;
  status = mbGoInline(rt->go_handle, (int)lua_tointeger(L, lua_upvalueindex(1)),
                      rt->scratch_in.data, rt->scratch_in.len, &rt->scratch_out);
  if (status != MB_OK)
    return mb_bridge_raise(L, name, status, rt->scratch_out.data, rt->scratch_out.len);
  return mb_bridge_results(L, name, rt->scratch_out.data, rt->scratch_out.len);
}

/* ---------------------------------------------------------------------
** Streams.
** ------------------------------------------------------------------- */
static void mb_chunk_free_list(mb_chunk *ch) {
  while (ch != NULL) {
    mb_chunk *next = ch->qnext;
    free(ch);
    ch = next;
  }
}

static void mb_chunk_free_all(mb_stream *s) {
  mb_chunk_free_list(s->first);
  s->first = s->last = NULL;
}

/* Hand a taken chunk back to the producer (see MB_CHUNK_RECYCLE). Only the
** loop pushes and the producer only takes the whole stack: no ABA. */
static void mb_chunk_recycle(mb_stream *s, mb_chunk *ch) {
  if (ch->cap > MB_CHUNK_RECYCLE || s->ended) {
    free(ch);
    return;
  }
  ch->qnext = __atomic_load_n(&s->spare, __ATOMIC_RELAXED);
  while (!__atomic_compare_exchange_n(&s->spare, &ch->qnext, ch, 1, __ATOMIC_RELEASE,
                                      __ATOMIC_RELAXED)) {
  }
}

static void mb_stream_release(mb_stream *s) {
  if (--s->refs > 0) return;
  mb_chunk_free_all(s);
  mb_chunk_free_list(s->spare);
  mb_chunk_free_list(s->mine);
  mb_buf_free(&s->call.buf);
  free(s);
}

/* Lua took a chunk: let a blocked producer go once Lua is within half the
** window. The exchange makes sure exactly one credit is sent per block. */
static void mb_stream_took(mb_rt *rt, mb_stream *s) {
  int64_t consumed = __atomic_add_fetch(&s->consumed, 1, __ATOMIC_SEQ_CST);
  int64_t produced;
  if (__atomic_load_n(&s->go_waiting, __ATOMIC_SEQ_CST) == 0) return;
  produced = __atomic_load_n(&s->produced, __ATOMIC_SEQ_CST);
  if (produced - consumed > MB_STREAM_WINDOW / 2) return;
  if (__atomic_exchange_n(&s->go_waiting, 0, __ATOMIC_SEQ_CST))
    mb_rt_event(rt, MB_EV_CREDIT, s->call.slot, NULL);
}

static mb_stream **mb_stream_check(lua_State *L, int idx) {
  return (mb_stream **)luaL_checkudata(L, idx, MB_STREAM_MT);
}

/* Give the next chunk, the end (nil), or the Go error; -1 when none yet. */
static int mb_stream_take(lua_State *L, mb_rt *rt, mb_stream *s, const char *name) {
  if (s->first != NULL) {
    mb_chunk *ch = s->first;
    int n;
    char err[160];
    s->first = ch->qnext;
    if (s->first == NULL) s->last = NULL;
    mb_stream_took(rt, s);
    n = mb_codec_decode(L, ch->data, ch->len, err, sizeof err);
    mb_chunk_recycle(s, ch);
    if (n < 0) return mb_error_throw(L, "bridge", name, "%s: bad chunk: %s", name, err);
    return n;
  }
  if (s->ended) {
    if (s->call.status != MB_OK) {
      int status = s->call.status;
      lua_pushlstring(L, s->call.buf.data ? s->call.buf.data : "", s->call.buf.len);
      s->call.status = MB_OK; /* raised once; the next call ends the loop */
      s->call.buf.len = 0;
      return mb_bridge_raise(L, name, status, lua_tostring(L, -1), lua_rawlen(L, -1));
    }
    lua_pushnil(L);
    return 1;
  }
  return -1;
}

static int mb_stream_next_k(lua_State *L, int status, lua_KContext ctx) {
  mb_rt *rt = mb_rt_of(L);
  mb_stream **sp = (mb_stream **)lua_touserdata(L, lua_upvalueindex(1));
  const char *name = lua_tostring(L, lua_upvalueindex(2));
  mb_stream *s = *sp;
  int n;
  (void)status;
  (void)ctx;
  mb_wait_check(L);
  if (s == NULL) {
    lua_pushnil(L);
    return 1;
  }
  n = mb_stream_take(L, rt, s, name);
  if (n >= 0) return n;
  {
    mb_task *t = rt->current;
    if (t == NULL) return luaL_error(L, "%s: not inside a task", name);
    if (!lua_isyieldable(L)) return mb_bridge_cannot_yield(L, name);
    s->waiter = t;
    return mb_wait_yield(L, t, MB_WAIT_STREAM, s, 0, mb_stream_next_k);
  }
}

static int mb_stream_next(lua_State *L) {
  lua_settop(L, 0); /* the for loop's state and control are unused */
  return mb_stream_next_k(L, LUA_OK, 0);
}

/* The for loop ended (or the iterator was collected): cancel the Go side
** if it is still running, and drop whatever it sent that Lua never took. */
static int mb_stream_close(lua_State *L) {
  mb_stream **sp = mb_stream_check(L, 1);
  mb_stream *s = *sp;
  mb_rt *rt = mb_rt_of(L);
  if (s == NULL) return 0;
  *sp = NULL;
  s->lua_closed = 1;
  if (s->waiter != NULL) s->waiter = NULL;
  if (!s->ended) mb_call_cancel(rt, &s->call);
  mb_chunk_free_all(s);
  mb_stream_release(s);
  return 0;
}

static int mb_l_stream(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  const char *name = lua_tostring(L, lua_upvalueindex(2));
  mb_stream *s, **sp;
  const char *err;
  s = calloc(1, sizeof *s);
  if (s == NULL) return luaL_error(L, "not enough memory");
  s->call.fn = (int)lua_tointeger(L, lua_upvalueindex(1));
  s->call.slot = -1;
  s->call.run = rt->current != NULL ? rt->current->run->id : 0;
  s->refs = 1;
  if ((err = mb_bridge_encode_args(L, name, &s->call.buf)) != NULL) {
    mb_stream_release(s);
    return mb_error_throw(L, "bridge", name, "%s", err);
  }
  lua_settop(L, 0);
  sp = (mb_stream **)lua_newuserdatauv(L, sizeof *sp, 0);
  *sp = s;
  luaL_setmetatable(L, MB_STREAM_MT);
  if (mb_rt_event(rt, MB_EV_CALL, 0, s) != 0) {
    *sp = NULL;
    mb_stream_release(s);
    return luaL_error(L, "not enough memory");
  }
  s->refs = 2; /* Lua's closing value and Go, until END is drained */
  rt->inflight++;
  lua_pushvalue(L, 1);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushcclosure(L, mb_stream_next, 2); /* ud iter */
  lua_insert(L, 1);                       /* iter ud */
  lua_pushnil(L);
  lua_insert(L, 2);
  lua_pushnil(L);
  lua_insert(L, 3); /* iter nil nil ud: the fourth is the closing value */
  return 4;
}

/* ---------------------------------------------------------------------
** Draining completions (called by the loop).
** ------------------------------------------------------------------- */
void mb_bridge_drain(mb_rt *rt, mb_msg *m) {
  if (m->kind == MB_MSG_CHUNK) {
    mb_chunk *ch = (mb_chunk *)m;
    mb_stream *s = ch->s;
    if (s->lua_closed) {
      free(ch);
      return;
    }
    ch->qnext = NULL;
    if (s->last != NULL) s->last->qnext = ch;
    else s->first = ch;
    s->last = ch;
    if (s->waiter != NULL && !rt->closing) {
      mb_task *t = s->waiter;
      s->waiter = NULL;
      mb_task_ready(rt, t);
    }
    return;
  }
  {
    mb_call *c = (mb_call *)m;
    rt->inflight--;
    if (!rt->closing) mb_rt_event(rt, MB_EV_FREE, c->slot, NULL);
    if (m->kind == MB_MSG_END) {
      mb_stream *s = (mb_stream *)c;
      s->ended = 1;
      if (s->waiter != NULL && !rt->closing) {
        mb_task *t = s->waiter;
        s->waiter = NULL;
        mb_task_ready(rt, t);
      }
      mb_stream_release(s);
    } else if (c->task != NULL && !rt->closing) {
      mb_task_wake(rt, c->task); /* its continuation decodes and frees */
      c->task = NULL;
    } else {
      mb_call_free(rt, c);
    }
  }
}

/* ---------------------------------------------------------------------
** Registration: "kv.get" becomes field get of module kv (require("kv")
** returns it, and so does the global kv); a name without a dot is a global.
** ------------------------------------------------------------------- */
static int mb_register_p(lua_State *L) {
  const char *name = lua_tostring(L, 1);
  int fn = (int)lua_tointeger(L, 2), flags = (int)lua_tointeger(L, 3);
  const char *dot = strrchr(name, '.');
  lua_pushinteger(L, fn);
  lua_pushvalue(L, 1);
  lua_pushcclosure(L, flags == MB_FN_INLINE ? mb_l_inline
                      : flags == MB_FN_STREAM ? mb_l_stream : mb_l_call, 2);
  if (dot == NULL) {
    lua_setglobal(L, name);
    return 0;
  }
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushlstring(L, name, (size_t)(dot - name)); /* module name */
  if (lua_getfield(L, -2, lua_tostring(L, -1)) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -2);
    lua_settable(L, -5); /* package.loaded[module] = t */
    if (strchr(lua_tostring(L, -2), '.') == NULL) {
      lua_pushvalue(L, -1);
      lua_setglobal(L, lua_tostring(L, -3));
    }
  }
  lua_pushvalue(L, -4); /* the function */
  lua_setfield(L, -2, dot + 1);
  return 0;
}

int mb_rt_register(mb_rt *rt, const char *name, int fn, int flags) {
  lua_State *L = rt->L;
  int st;
  lua_pushcfunction(L, mb_register_p);
  lua_pushstring(L, name);
  lua_pushinteger(L, fn);
  lua_pushinteger(L, flags);
  st = lua_pcall(L, 3, 0, 0);
  if (st != LUA_OK) lua_pop(L, 1);
  return st;
}

static const luaL_Reg mb_stream_meta[] = {
    {"__close", mb_stream_close}, {"__gc", mb_stream_close}, {NULL, NULL}};

void mb_bridge_open(lua_State *L) {
  luaL_newmetatable(L, MB_STREAM_MT);
  luaL_setfuncs(L, mb_stream_meta, 0);
  lua_pop(L, 1);
}
