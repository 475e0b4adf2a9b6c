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
** ------------------------------------------------------------------- */
static int mb_bridge_l_inline(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  const char *name = lua_tostring(L, lua_upvalueindex(2));
  const char *err;
  char derr[160];
  int status, n;
  rt->scratch_in.len = 0;
  if ((err = mb_call_encode_args(L, name, &rt->scratch_in)) != NULL)
    return mb_errors_throw(L, "bridge", name, "%s", err);
  rt->scratch_out.len = 0;
  status = mbGoInline(rt->go_handle, (int)lua_tointeger(L, lua_upvalueindex(1)),
                      rt->scratch_in.data, rt->scratch_in.len, &rt->scratch_out);
  if (status != MB_OK)
    return mb_call_raise(L, name, status, rt->scratch_out.data, rt->scratch_out.len);
  n = mb_codec_decode(L, rt->scratch_out.data, rt->scratch_out.len, derr, sizeof derr);
  if (n < 0) return mb_errors_throw(L, "bridge", name, "%s: bad result: %s", name, derr);
  return n;
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
