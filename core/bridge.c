/*
** bridge.c — Go functions as Lua functions: registration, and inline
** calls.
**
** Layer 3 (objects). A registered function is a C closure over its index
** in the Go side's table and its name: mb_call_l_call for an async one
** (call.c), mb_stream_l_call for a stream (stream.c), mb_bridge_l_inline
** for an inline one. Inline functions are the one place C calls into Go:
** they never block, so they run right here.
*/
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "_cgo_export.h"
#include "bridge.h"
#include "call.h"
#include "codec.h"
#include "env.h"
#include "errors.h"
#include "stream.h"

/* ---------------------------------------------------------------------
** Inline calls: straight into Go and back, on this thread.
**
** Up to MB_INLINE_VALS nils, booleans, numbers and strings go to Go as
** tagged values in an mb_inline on this C stack frame, and scalar results
** come back in it: no message, no codec. Other arguments and results
** travel as messages in buffers on this C stack frame, so an
** inline call nested in another's decoding (a finalizer that calls one
** while a big result is being pushed) has buffers of its own and cannot
** move the outer call's under its decoder. Bigger ones go to the heap:
** arguments are freed before anything can raise, results are copied into
** a Lua string under a protected call, then freed, then decoded from the
** string.
** ------------------------------------------------------------------- */
#define MB_BRIDGE_INLINE_BUF 256 /* most calls' arguments and results fit */

/* Push the heap-allocated result as a Lua string; protected, so that the
** block is freed even when memory runs out. */
static int mb_bridge_push_out_p(lua_State *L) {
  mb_buf *out = (mb_buf *)lua_touserdata(L, 1);
  lua_pushlstring(L, out->data, out->len);
  return 1;
}

/* The results (or error) of an inline call, from data: raise or push.
** The name (upvalue 2) is looked up only to raise. */
static int mb_bridge_inline_results(lua_State *L, int status, const char *data, size_t len) {
  char derr[160];
  const char *name;
  int n;
  if (status == MB_OK) {
    n = mb_codec_decode(L, data, len, derr, sizeof derr);
    if (n >= 0) return n;
    name = lua_tostring(L, lua_upvalueindex(2));
    return mb_errors_throw(L, "bridge", name, "%s: bad result: %s", name, derr);
  }
  return mb_call_raise(L, lua_tostring(L, lua_upvalueindex(2)), status, data, len);
}

/* Read the n arguments into v when each is a nil, boolean, number or
** string (the common calls): 1, else 0 and the message codec takes them. */
static int mb_bridge_inline_args(lua_State *L, int n, mb_inline_val *v) {
  int i;
  for (i = 1; i <= n; i++, v++) {
    if (lua_isinteger(L, i)) { /* first: integers are the common case */
      v->tag = MB_CODEC_INT;
      v->num = (uint64_t)lua_tointeger(L, i);
      continue;
    }
    switch (lua_type(L, i)) {
      case LUA_TNIL:
        v->tag = MB_CODEC_NIL;
        break;
      case LUA_TBOOLEAN:
        v->tag = lua_toboolean(L, i) ? MB_CODEC_TRUE : MB_CODEC_FALSE;
        break;
      case LUA_TNUMBER: { /* a float: integers were taken above */
        lua_Number x = lua_tonumber(L, i);
        v->tag = MB_CODEC_FLOAT;
        memcpy(&v->num, &x, sizeof x);
        break;
      }
      case LUA_TSTRING: {
        size_t len;
        v->str = lua_tolstring(L, i, &len);
        if ((uint64_t)len > UINT32_MAX) return 0; /* the codec says why not */
        v->tag = MB_CODEC_STRING;
        v->num = len;
        break;
      }
      default:
        return 0;
    }
  }
  return 1;
}

/* Push the n scalar results Go left in v. At most MB_INLINE_VALS, fewer
** than the LUA_MINSTACK slots a C function starts with. */
static int mb_bridge_inline_push(lua_State *L, const mb_inline_val *v, int n) {
  int i;
  for (i = 0; i < n; i++, v++) {
    switch (v->tag) {
      case MB_CODEC_INT: lua_pushinteger(L, (lua_Integer)v->num); break;
      case MB_CODEC_FLOAT: {
        lua_Number x;
        memcpy(&x, &v->num, sizeof x);
        lua_pushnumber(L, x);
        break;
      }
      case MB_CODEC_TRUE: lua_pushboolean(L, 1); break;
      case MB_CODEC_FALSE: lua_pushboolean(L, 0); break;
      default: lua_pushnil(L); break;
    }
  }
  return n;
}

static int mb_bridge_l_inline(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  char in_stack[MB_BRIDGE_INLINE_BUF], out_stack[MB_BRIDGE_INLINE_BUF];
  mb_buf in = {0};
  mb_inline c;
  int status, n = lua_gettop(L);
  c.rt = rt->go_handle;
  c.fn = (int)lua_tointeger(L, lua_upvalueindex(1));
  c.nres = -1;
  c.out.data = out_stack;
  c.out.len = 0;
  c.out.cap = sizeof out_stack;
  if (n <= MB_INLINE_VALS && mb_bridge_inline_args(L, n, c.vals)) {
    c.nargs = n;
  } else if ((n = mb_codec_encode_flat(L, n, in_stack, sizeof in_stack)) >= 0) {
    c.nargs = -1;
    c.msg = in_stack;
    c.msglen = (size_t)n;
  } else { /* tables, or too big for the stack buffer */
    char err[200];
    if (mb_codec_encode(L, 1, lua_gettop(L), &in, err, sizeof err) != 0) {
      const char *name = lua_tostring(L, lua_upvalueindex(2));
      mb_buf_free(&in);
      return mb_errors_throw(L, "bridge", name, "%s: %s", name, err);
    }
    c.nargs = -1;
    c.msg = in.data;
    c.msglen = in.len;
  }
  status = mbGoInline(&c);
  if (in.data != NULL) mb_buf_free(&in);
  if (c.nres >= 0) return mb_bridge_inline_push(L, c.vals, c.nres);
  if (c.out.data != out_stack) { /* Go moved the results to the heap */
    int st;
    lua_pushcfunction(L, mb_bridge_push_out_p);
    lua_pushlightuserdata(L, &c.out);
    st = lua_pcall(L, 1, 1, 0);
    free(c.out.data);
    if (st != LUA_OK) return lua_error(L);
    c.out.data = (char *)lua_tolstring(L, -1, &c.out.len); /* anchored below the results */
  }
  return mb_bridge_inline_results(L, status, c.out.data, c.out.len);
}

/* Go's side of an inline call: the results do not fit in the caller's
** stack buffer; give out need bytes on the heap instead (empty: Go copies
** the results in). 0, or -1 with out unchanged. */
int mb_bridge_out_move(mb_buf *out, size_t need) {
  char *p = malloc(need);
  if (p == NULL) return -1;
  out->data = p;
  out->len = 0;
  out->cap = need;
  return 0;
}

/* Set global name to the value on the top (popped), raw: nothing a script
** put on _G runs here, outside any task. Under the sandbox every run sees
** it, read-only. */
static void mb_bridge_set_global(lua_State *L, const char *name) {
  lua_pushglobaltable(L);
  lua_pushstring(L, name);
  lua_pushvalue(L, -3);
  lua_rawset(L, -3);
  lua_pop(L, 2);
  mb_env_publish(L, name);
}

/* ---------------------------------------------------------------------
** Registration: "kv.get" becomes field get of module kv (require("kv")
** returns it, and so does the global kv); a name without a dot is a global.
** ------------------------------------------------------------------- */
static int mb_bridge_register_p(lua_State *L) {
  mb_bridge_reg *g = (mb_bridge_reg *)lua_touserdata(L, 1);
  const char *name = lua_pushstring(L, g->name); /* 2 */
  const char *dot = strrchr(name, '.');
  lua_pushinteger(L, g->fn);
  lua_pushvalue(L, 2);
  lua_pushcclosure(L, g->flags == MB_FN_INLINE ? mb_bridge_l_inline
                      : g->flags == MB_FN_STREAM ? mb_stream_l_call : mb_call_l_call, 2);
  if (dot == NULL) {
    mb_bridge_set_global(L, name);
    return 0;
  }
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushlstring(L, name, (size_t)(dot - name)); /* module name */
  lua_pushvalue(L, -1);
  if (lua_rawget(L, -3) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -2);
    lua_rawset(L, -5); /* package.loaded[module] = t */
    if (strchr(lua_tostring(L, -2), '.') == NULL) {
      lua_pushvalue(L, -1);
      mb_bridge_set_global(L, lua_tostring(L, -3));
    }
  }
  lua_pushstring(L, dot + 1);
  lua_pushvalue(L, -5); /* the function */
  lua_rawset(L, -3);
  return 0;
}

/* Go registered a function (any thread): queue the request. Returns -1
** when out of memory (Go reports it), else as mb_queue_push. */
int mb_bridge_submit_register(mb_rt *rt, const char *name, int fn, int flags) {
  size_t n = strlen(name);
  mb_bridge_reg *g = malloc(sizeof *g + n + 1);
  if (g == NULL) return -1;
  g->msg.kind = MB_MSG_REGISTER;
  g->fn = fn;
  g->flags = flags;
  memcpy(g->name, name, n + 1);
  return mb_queue_push(&rt->q, &g->msg);
}

/* The request, drained by the loop, which frees it. Running out of memory
** here is raised on, to the step's protected call: the loop ends with
** MB_STEP_FATAL rather than leave the function silently unregistered. */
void mb_bridge_register(mb_rt *rt, mb_bridge_reg *g) {
  lua_State *L = rt->L;
  int st;
  lua_pushcfunction(L, mb_bridge_register_p);
  lua_pushlightuserdata(L, g);
  st = lua_pcall(L, 1, 0, 0);
  free(g);
  if (st != LUA_OK) lua_error(L);
}
