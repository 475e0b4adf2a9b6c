/*
** sandbox.c — Options.Sandbox: take away what lets a script reach outside
** its Runtime.
**
** Layer: C core. Applied once to a fresh state, before any script runs.
** What goes: the io library (print stays: it writes to Options.Stdout), the
** os functions that touch the process, its environment or the file system
** (execute, exit, getenv, remove, rename, tmpname, setlocale), debug,
** dofile and loadfile, package.loadlib and every searcher but the preload
** one (so registered modules and moonbridge's own still load, files and C
** libraries do not). load takes text chunks only: a binary chunk can crash
** the VM, by design of Lua's undumper.
*/
#include <stdio.h>
#include <string.h>

#include <lualib.h>

#include "mb.h"

/* load(chunk [, chunkname [, mode [, env]]]) with the mode forced to "t".
** Whether env was given at all matters to load, so it is never added. */
static int mb_sandbox_load(lua_State *L) {
  const char *mode = luaL_optstring(L, 3, "t");
  if (strchr(mode, 'b') != NULL)
    return luaL_error(L, "load: binary chunks are not allowed in the sandbox");
  if (lua_gettop(L) > 4) lua_settop(L, 4);
  while (lua_gettop(L) < 3) lua_pushnil(L);
  lua_pushliteral(L, "t");
  lua_replace(L, 3);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

static void mb_sandbox_drop(lua_State *L, int t, const char *const *names) {
  t = lua_absindex(L, t);
  for (; *names != NULL; names++) {
    lua_pushnil(L);
    lua_setfield(L, t, *names);
  }
}

static int mb_sandbox_apply(lua_State *L) {
  static const char *const globals[] = {"io", "debug", "dofile", "loadfile", NULL};
  static const char *const os[] = {"execute", "exit", "getenv", "remove", "rename",
                                   "tmpname", "setlocale", NULL};
  static const char *const loaded[] = {"io", "debug", NULL};
  lua_pushglobaltable(L);
  mb_sandbox_drop(L, -1, globals);
  lua_getfield(L, -1, "os");
  mb_sandbox_drop(L, -1, os);
  lua_pop(L, 1);
  lua_getfield(L, -1, "load");
  lua_pushcclosure(L, mb_sandbox_load, 1);
  lua_setfield(L, -2, "load");

  lua_getfield(L, -1, "package");
  lua_pushnil(L);
  lua_setfield(L, -2, "loadlib");
  lua_pushliteral(L, "");
  lua_setfield(L, -2, "path");
  lua_pushliteral(L, "");
  lua_setfield(L, -2, "cpath");
  lua_getfield(L, -1, "loaded");
  mb_sandbox_drop(L, -1, loaded);
  lua_pop(L, 1);
  lua_getfield(L, -1, "searchers"); /* keep searchers[1], the preload one */
  for (lua_Integer i = luaL_len(L, -1); i > 1; i--) {
    lua_pushnil(L);
    lua_rawseti(L, -2, i);
  }
  return 0;
}

int mb_rt_sandbox(mb_rt *rt) {
  lua_State *L = rt->L;
  lua_pushcfunction(L, mb_sandbox_apply);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    snprintf(rt->fatal, sizeof rt->fatal, "sandbox: %s", msg ? msg : "error");
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}
