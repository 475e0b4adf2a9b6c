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
** Arguments and results travel in buffers on this C stack frame, so an
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

static int mb_bridge_l_inline(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  char in_stack[MB_BRIDGE_INLINE_BUF], out_stack[MB_BRIDGE_INLINE_BUF];
  mb_buf in = {0};
  mb_buf out = {out_stack, 0, sizeof out_stack};
  const char *args = in_stack;
  int fn = (int)lua_tointeger(L, lua_upvalueindex(1));
  int status, n = mb_codec_encode_flat(L, lua_gettop(L), in_stack, sizeof in_stack);
  size_t nargs = (size_t)n;
  if (n < 0) { /* tables, or too big for the stack buffer */
    char err[200];
    if (mb_codec_encode(L, 1, lua_gettop(L), &in, err, sizeof err) != 0) {
      const char *name = lua_tostring(L, lua_upvalueindex(2));
      mb_buf_free(&in);
      return mb_errors_throw(L, "bridge", name, "%s: %s", name, err);
    }
    args = in.data;
    nargs = in.len;
  }
  status = mbGoInline(rt->go_handle, fn, (char *)args, nargs, &out);
  mb_buf_free(&in);
  if (out.data != out_stack) { /* Go moved the results to the heap */
    int st;
    lua_pushcfunction(L, mb_bridge_push_out_p);
    lua_pushlightuserdata(L, &out);
    st = lua_pcall(L, 1, 1, 0);
    free(out.data);
    if (st != LUA_OK) return lua_error(L);
    out.data = (char *)lua_tolstring(L, -1, &out.len); /* anchored below the results */
  }
  return mb_bridge_inline_results(L, status, out.data, out.len);
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
