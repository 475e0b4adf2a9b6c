/*
** sandbox.c — Options.Sandbox: take away what lets a script reach outside
** its Runtime.
**
** Layer 3 (objects). Applied once to a fresh state, before any script runs.
** What goes: the io library (print stays: it writes to Options.Stdout), the
** os functions that touch the process, its environment or the file system
** (execute, exit, getenv, remove, rename, tmpname, setlocale), debug,
** package.loadlib and the C searchers. load takes text chunks only: a
** binary chunk can crash the VM, by design of Lua's undumper. dofile,
** loadfile and require's file searcher remain only for the directories the
** host allows (none by default): each file's real path must lie inside one
** of them, whatever package.path says, and it must be text.
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "env.h"
#include "lbug.h"
#include "sandbox.h"
#include "state.h"

/* Make the function on the top (a chunk just loaded) see the globals of
** the run that loaded it, not the global table: under the sandbox no chunk
** a script loads ever gets the real one. */
static void mb_sandbox_set_env(lua_State *L) {
  mb_env_push_current(L);
  if (lua_setupvalue(L, -2, 1) == NULL) lua_pop(L, 1);
}

/* load(chunk [, chunkname [, mode [, env]]]) with the mode forced to "t",
** and without env, the run's own globals. (Whether env was given at all
** matters to load, so it is never added.) */
static int mb_sandbox_load(lua_State *L) {
  const char *mode = luaL_optstring(L, 3, "t");
  int has_env = lua_gettop(L) >= 4;
  if (strchr(mode, 'b') != NULL)
    return luaL_error(L, "load: binary chunks are not allowed in the sandbox");
  if (lua_gettop(L) > 4) lua_settop(L, 4);
  while (lua_gettop(L) < 3) lua_pushnil(L);
  lua_pushliteral(L, "t");
  lua_replace(L, 3);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  if (!has_env && lua_type(L, 1) == LUA_TFUNCTION) {
    lua_settop(L, 1);
    mb_sandbox_set_env(L);
  }
  return lua_gettop(L);
}

static void mb_sandbox_drop(lua_State *L, int t, const char *const *names) {
  t = lua_absindex(L, t);
  for (; *names != NULL; names++) {
    lua_pushnil(L);
    lua_setfield(L, t, *names);
  }
}

/* The one message for a file a script may not read: the same whether it
** is missing or lies outside the allowed directories, so a script cannot
** learn which files exist elsewhere. */
static void mb_sandbox_cannot_open(lua_State *L, const char *file) {
  lua_pushfstring(L, "cannot open %s (no such file in the directories the sandbox allows)", file);
}

/* Push the real path of file if it lies inside one of the allowed
** directories (upvalue 1: their real paths); else push an error message.
** Returns whether it is allowed. */
static int mb_sandbox_resolve(lua_State *L, const char *file) {
  char *real = realpath(file, NULL);
  lua_Integer i, n = (lua_Integer)lua_rawlen(L, lua_upvalueindex(1));
  if (real == NULL) {
    mb_sandbox_cannot_open(L, file);
    return 0;
  }
  for (i = 1; i <= n; i++) {
    size_t dl;
    const char *dir;
    lua_rawgeti(L, lua_upvalueindex(1), i);
    dir = lua_tolstring(L, -1, &dl);
    lua_pop(L, 1); /* the list keeps it */
    if (strncmp(real, dir, dl) == 0 && (real[dl] == '/' || (dl == 1 && dir[0] == '/'))) {
      lua_pushstring(L, real);
      free(real);
      return 1;
    }
  }
  free(real);
  mb_sandbox_cannot_open(L, file);
  return 0;
}

/* Load the allowed file (its real path on top, replaced by the chunk or a
** message); text only. */
static int mb_sandbox_loadpath(lua_State *L) {
  const char *real = lua_tostring(L, -1);
  int st = luaL_loadfilex(L, real, "t");
  if (st == LUA_OK) st = mb_lbug_fix(L, -1); /* lbug.c */
  lua_remove(L, -2);
  return st;
}

/* loadfile(filename [, mode [, env]]) within the allowed directories. */
static int mb_sandbox_loadfile(lua_State *L) {
  const char *file = luaL_checkstring(L, 1);
  const char *mode = luaL_optstring(L, 2, "t");
  int env = !lua_isnone(L, 3) ? 3 : 0;
  if (strchr(mode, 'b') != NULL)
    return luaL_error(L, "loadfile: binary chunks are not allowed in the sandbox");
  if (!mb_sandbox_resolve(L, file) || mb_sandbox_loadpath(L) != LUA_OK) {
    luaL_pushfail(L);
    lua_insert(L, -2);
    return 2;
  }
  if (env != 0) { /* as stock: env becomes the chunk's first upvalue */
    lua_pushvalue(L, env);
    if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
  } else {
    mb_sandbox_set_env(L);
  }
  return 1;
}

static int mb_sandbox_dofile_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return lua_gettop(L) - 1;
}

/* dofile(filename) within the allowed directories; the chunk may suspend. */
static int mb_sandbox_dofile(lua_State *L) {
  const char *file = luaL_checkstring(L, 1);
  lua_settop(L, 1);
  if (!mb_sandbox_resolve(L, file) || mb_sandbox_loadpath(L) != LUA_OK) return lua_error(L);
  mb_sandbox_set_env(L);
  lua_callk(L, 0, LUA_MULTRET, 0, mb_sandbox_dofile_k);
  return mb_sandbox_dofile_k(L, LUA_OK, 0);
}

/* require's file searcher: name.lua or name/init.lua in each allowed
** directory, in order; package.path is not consulted. */
static int mb_sandbox_searcher(lua_State *L) {
  static const char *const forms[] = {"%s/%s.lua", "%s/%s/init.lua"};
  lua_Integer i, n = (lua_Integer)lua_rawlen(L, lua_upvalueindex(1));
  const char *name = luaL_checkstring(L, 1);
  lua_settop(L, 1);
  name = luaL_gsub(L, name, ".", "/"); /* 2 */
  lua_pushliteral(L, "");              /* 3: the files tried */
  for (i = 1; i <= n; i++) {
    for (int f = 0; f < 2; f++) {
      const char *file;
      lua_rawgeti(L, lua_upvalueindex(1), i);
      file = lua_pushfstring(L, forms[f], lua_tostring(L, -1), name);
      lua_remove(L, 4); /* the directory: file is 4 */
      if (mb_sandbox_resolve(L, file)) {
        if (mb_sandbox_loadpath(L) != LUA_OK)
          return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s",
                            lua_tostring(L, 1), file, lua_tostring(L, -1));
        lua_pushvalue(L, 4);
        return 2; /* the chunk and its file name */
      }
      lua_pushfstring(L, "%s\n\tno file '%s'", lua_tostring(L, 3), file);
      lua_replace(L, 3);
      lua_settop(L, 3);
    }
  }
  return 1;
}

/* Run a loader as require does, the loader and its extra value on the top
** of the stack (the module's name is at 1): loader(name, extra), with a
** nil result counting as true. The value is stored in table t under the
** name, and left on the top. */
static void mb_sandbox_run_loader(lua_State *L, int t) {
  lua_pushvalue(L, 1);
  lua_insert(L, -2); /* loader name extra */
  lua_call(L, 2, 1);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
  }
  lua_pushvalue(L, 1);
  lua_pushvalue(L, -2);
  lua_rawset(L, t);
}

/* require(name) under the sandbox. A module the runtime provides (loaded,
** or preloaded: moonbridge's and the host's) is shared, read-only. A Lua
** file from the allowed directories is the run's own: loaded in the run's
** globals, once per run. moonbridge's internal modules are not found.
** Upvalue 1: the file searcher, or nil. */
static int mb_sandbox_require(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_settop(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE); /* 2 */
  mb_env_push_loaded(L); /* 3: the run's own */
  lua_pushvalue(L, 1);
  if (lua_rawget(L, 3) != LUA_TNIL) return 1;
  lua_pushvalue(L, 1);
  if (lua_rawget(L, 2) != LUA_TNIL) {
    mb_env_readonly(L, -1);
    return 1;
  }
  lua_pop(L, 2);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE); /* 4 */
  lua_pushvalue(L, 1);
  if (lua_rawget(L, 4) == LUA_TFUNCTION) { /* the runtime's: shared */
    lua_pushliteral(L, ":preload:");
    mb_sandbox_run_loader(L, 2);
    mb_env_readonly(L, -1);
    lua_pushliteral(L, ":preload:");
    return 2;
  }
  lua_settop(L, 4);
  lua_pushfstring(L, "module '%s' not found:\n\tno field package.preload['%s']", name, name); /* 5 */
  if (!lua_isnil(L, lua_upvalueindex(1))) {
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    lua_call(L, 1, 2); /* the chunk and its file, or the files tried */
    if (lua_isfunction(L, -2)) {
      lua_pushvalue(L, -2);
      mb_sandbox_set_env(L);
      lua_pushvalue(L, -2); /* the file */
      mb_sandbox_run_loader(L, 3);
      lua_pushvalue(L, -2); /* the file */
      return 2;
    }
    lua_pop(L, 1);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

/* Argument 1: the list of allowed directories (real paths). The global
** table itself is changed (only moonbridge's own code sees it), then env.c
** makes the read-only base every run's globals stand on. */
static int mb_sandbox_apply_p(lua_State *L) {
  static const char *const globals[] = {"io", "debug", "dofile", "loadfile", NULL};
  static const char *const os[] = {"execute", "exit", "getenv", "remove", "rename",
                                   "tmpname", "setlocale", NULL};
  static const char *const loaded[] = {"io", "debug", "_G", NULL};
  static const char *const package[] = {"loadlib", "searchpath", NULL};
  lua_pushglobaltable(L);
  mb_sandbox_drop(L, -1, globals);
  lua_getfield(L, -1, "os");
  mb_sandbox_drop(L, -1, os);
  lua_pop(L, 1);
  lua_getfield(L, -1, "load");
  lua_pushcclosure(L, mb_sandbox_load, 1);
  lua_setfield(L, -2, "load");

  lua_getfield(L, -1, "package");
  mb_sandbox_drop(L, -1, package);
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
  lua_pop(L, 2); /* searchers, package */
  if (lua_rawlen(L, 1) > 0) { /* allowed directories: their file loaders */
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, mb_sandbox_searcher, 1);
    lua_pushcclosure(L, mb_sandbox_require, 1);
    lua_setfield(L, 2, "require");
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, mb_sandbox_loadfile, 1);
    lua_setfield(L, 2, "loadfile");
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, mb_sandbox_dofile, 1);
    lua_setfield(L, 2, "dofile");
  } else {
    lua_pushnil(L);
    lua_pushcclosure(L, mb_sandbox_require, 1);
    lua_setfield(L, 2, "require");
  }
  mb_env_sandbox(L);
  return 0;
}

/* dirs: the allowed directories' real paths, each ended by a zero byte. */
int mb_sandbox_apply(mb_rt *rt, const char *dirs, size_t len) {
  lua_State *L = rt->L;
  size_t at = 0;
  lua_Integer n = 0;
  lua_pushcfunction(L, mb_sandbox_apply_p);
  lua_newtable(L);
  while (at < len) {
    size_t dl = strlen(dirs + at);
    lua_pushlstring(L, dirs + at, dl);
    lua_rawseti(L, -2, ++n);
    at += dl + 1;
  }
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    snprintf(rt->fatal, sizeof rt->fatal, "sandbox: %s", msg ? msg : "error");
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}
