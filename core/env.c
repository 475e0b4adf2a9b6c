/*
** env.c — environments: what a script's globals are, and what it may
** change.
**
** Layer 3 (objects). Without the sandbox, scripts share the global table,
** as chunks of one Lua state do. Under the sandbox nothing a script can
** reach is shared writable: every library table, module table and class
** metatable is seen through a read-only proxy (an empty table whose
** metatable reads the real one and refuses writes), and each run gets its
** own globals over a base of those proxies, so no run can change what
** another run's code sees. moonbridge's own Lua modules (luamod/) run in a
** private environment whose require also finds the internal modules
** ("moonbridge.*"), which no script can require.
**
** The core keeps its tables in the registry under the addresses of the
** static keys below: no script can name them.
*/
#include <string.h>

#include "env.h"
#include "lbug.h"

static const char mb_env_key_proxy;     /* real table -> its proxy (weak keys) */
static const char mb_env_key_real;      /* proxy -> its real table (weak keys) */
static const char mb_env_key_base;      /* sandbox: the globals every run reads */
static const char mb_env_key_baseview;  /* sandbox: the base's proxy */
static const char mb_env_key_private;   /* the environment of moonbridge's Lua */
static const char mb_env_key_internal;  /* internal module name -> loader */
static const char mb_env_key_ienv_done; /* internal module name -> its value */
static const char mb_env_key_scripts;   /* Script id -> its kept globals */
static const char mb_env_key_loaded;    /* sandbox: a run's globals -> its own package.loaded */
static const char mb_env_key_last;      /* sandbox: the globals of the last chunk run that ended well */

#define MB_ENV_INTERNAL_PREFIX "moonbridge."

/* ---------------------------------------------------------------------
** Read-only proxies. A proxy's metatable reads its real table: straight
** (__index is the table, as fast as Lua's own lookup) when the real table
** holds no tables, else through a function that hands out the proxies of
** the tables it holds (package.loaded, say), so nothing mutable leaks.
** Writes raise; __pairs and __len see the real table; __metatable hides
** the metatable and refuses setmetatable.
** ------------------------------------------------------------------- */
static int mb_env_ro_newindex(lua_State *L) {
  luaL_where(L, 2); /* the Lua code that wrote, not this function */
  lua_pushliteral(L, "attempt to modify a read-only table (under the sandbox the libraries, "
                     "modules and their metatables are shared by every run)");
  lua_concat(L, 2);
  return lua_error(L);
}

/* __index of a deep proxy: upvalue 1 is the real table. */
static int mb_env_ro_index(lua_State *L) {
  lua_settop(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  mb_env_readonly(L, -1);
  return 1;
}

static int mb_env_ro_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)lua_rawlen(L, lua_upvalueindex(1)));
  return 1;
}

/* The iterator __pairs hands out: next over the real table (upvalue 1),
** values read-only. The proxy is the loop's state, never the real table. */
static int mb_env_ro_next(lua_State *L) {
  lua_settop(L, 2);
  if (lua_next(L, lua_upvalueindex(1)) == 0) return 0;
  mb_env_readonly(L, -1);
  lua_replace(L, -2);
  return 2;
}

static int mb_env_ro_pairs(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, mb_env_ro_next, 1);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

/* Whether the table at idx holds a table among its values. */
static int mb_env_holds_tables(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    int t = lua_type(L, -1);
    lua_pop(L, 1);
    if (t == LUA_TTABLE) {
      lua_pop(L, 1);
      return 1;
    }
  }
  return 0;
}

/* Make the proxy of the real table at idx (not a proxy), remember it both
** ways, and push it. */
static void mb_env_new_proxy(lua_State *L, int idx) {
  int deep = mb_env_holds_tables(L, idx);
  idx = lua_absindex(L, idx);
  lua_newtable(L); /* the proxy */
  lua_createtable(L, 0, 5);
  if (deep) {
    lua_pushvalue(L, idx);
    lua_pushcclosure(L, mb_env_ro_index, 1);
  } else {
    lua_pushvalue(L, idx);
  }
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, mb_env_ro_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_pushvalue(L, idx);
  lua_pushcclosure(L, mb_env_ro_len, 1);
  lua_setfield(L, -2, "__len");
  lua_pushvalue(L, idx);
  lua_pushcclosure(L, mb_env_ro_pairs, 1);
  lua_setfield(L, -2, "__pairs");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
  mb_registry_table(L, &mb_env_key_proxy, "k");
  lua_pushvalue(L, idx);
  lua_pushvalue(L, -3);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  mb_registry_table(L, &mb_env_key_real, "k");
  lua_pushvalue(L, -2);
  lua_pushvalue(L, idx);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

int mb_env_is_readonly(lua_State *L, int idx) {
  int is;
  if (!lua_istable(L, idx)) return 0;
  idx = lua_absindex(L, idx);
  mb_registry_table(L, &mb_env_key_real, "k");
  lua_pushvalue(L, idx);
  is = lua_rawget(L, -2) != LUA_TNIL;
  lua_pop(L, 2);
  return is;
}

void mb_env_readonly(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx) || mb_env_is_readonly(L, idx)) {
    lua_pushvalue(L, idx);
    return;
  }
  mb_registry_table(L, &mb_env_key_proxy, "k");
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) == LUA_TTABLE) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 2);
  mb_env_new_proxy(L, idx);
}

/* Push the real table behind the proxy at idx, or the value itself. */
static void mb_env_real(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx)) {
    lua_pushvalue(L, idx);
    return;
  }
  mb_registry_table(L, &mb_env_key_real, "k");
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) == LUA_TNIL) {
    lua_pop(L, 1);
    lua_pushvalue(L, idx);
  }
  lua_remove(L, -2);
}

/* ---------------------------------------------------------------------
** The raw functions, under the sandbox: rawset cannot write a proxy;
** rawget, rawlen and next read through one (so next(string) is not empty);
** setmetatable refuses __gc, since Lua runs finalizers with hooks off and
** no limit could stop one (Luau makes the same choice).
** ------------------------------------------------------------------- */
static int mb_env_rawset(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkany(L, 2);
  luaL_checkany(L, 3);
  if (mb_env_is_readonly(L, 1)) return mb_env_ro_newindex(L);
  lua_settop(L, 3);
  lua_rawset(L, 1);
  return 1;
}

static int mb_env_rawget(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkany(L, 2);
  mb_env_real(L, 1);
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  mb_env_readonly(L, -1);
  return 1;
}

static int mb_env_rawlen(lua_State *L) {
  int t = lua_type(L, 1);
  luaL_argexpected(L, t == LUA_TTABLE || t == LUA_TSTRING, 1, "table or string");
  mb_env_real(L, 1);
  lua_pushinteger(L, (lua_Integer)lua_rawlen(L, -1));
  return 1;
}

static int mb_env_next(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  mb_env_real(L, 1);
  lua_pushvalue(L, 2);
  if (lua_next(L, -2) == 0) {
    lua_pushnil(L);
    return 1;
  }
  mb_env_readonly(L, -1);
  lua_replace(L, -2);
  return 2;
}

/* setmetatable(t, mt): upvalue 1 is stock setmetatable. */
static int mb_env_setmetatable(lua_State *L) {
  if (lua_istable(L, 2)) {
    lua_pushliteral(L, "__gc");
    if (lua_rawget(L, 2) != LUA_TNIL)
      return luaL_error(L, "setmetatable: __gc metamethods are not allowed in the sandbox "
                           "(Lua runs finalizers with hooks off: no limit could stop one)");
    lua_pop(L, 1);
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  return 1;
}

/* ---------------------------------------------------------------------
** The sandbox's base: the global table's entries, read-only.
** ------------------------------------------------------------------- */
int mb_env_sandboxed(lua_State *L) {
  int on = lua_rawgetp(L, LUA_REGISTRYINDEX, &mb_env_key_base) == LUA_TTABLE;
  lua_pop(L, 1);
  return on;
}

/* Put the read-only view of the global table's field name (on the stack
** at g) into the base (at base). */
static void mb_env_base_set(lua_State *L, int base, int g, const char *name) {
  lua_pushstring(L, name);
  lua_pushvalue(L, -1);
  lua_rawget(L, g);
  mb_env_readonly(L, -1);
  lua_replace(L, -2);
  lua_rawset(L, base);
}

/* Lock a metatable: getmetatable hands out its read-only proxy, and
** setmetatable refuses to change it. */
static void mb_env_lock_metatable(lua_State *L, int mt) {
  mt = lua_absindex(L, mt);
  lua_pushliteral(L, "__metatable");
  if (lua_rawget(L, mt) != LUA_TNIL) { /* locked already (json's marks) */
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  lua_pushliteral(L, "__metatable");
  mb_env_readonly(L, mt);
  lua_rawset(L, mt);
}

/* The metatables of the runtime's classes (luaL_newmetatable's, which
** carry their own registry name as __name) and of strings. */
static void mb_env_lock_metatables(lua_State *L) {
  /* The proxies' own tables exist before the walk: it may add no key. */
  mb_registry_table(L, &mb_env_key_proxy, "k");
  mb_registry_table(L, &mb_env_key_real, "k");
  lua_pop(L, 2);
  lua_pushnil(L);
  while (lua_next(L, LUA_REGISTRYINDEX) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1)) {
      lua_pushliteral(L, "__name");
      lua_rawget(L, -2);
      if (lua_rawequal(L, -1, -3)) mb_env_lock_metatable(L, -2);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_pushliteral(L, "");
  if (lua_getmetatable(L, -1)) {
    mb_env_lock_metatable(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  /* The error tables' two metatables are held by reference, not by name. */
  lua_rawgeti(L, LUA_REGISTRYINDEX, mb_rt_of(L)->error_mt_ref);
  mb_env_lock_metatable(L, -1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, mb_rt_of(L)->error_fresh_mt_ref);
  mb_env_lock_metatable(L, -1);
  lua_pop(L, 2);
}

void mb_env_sandbox(lua_State *L) {
  static const luaL_Reg raw[] = {{"rawset", mb_env_rawset}, {"rawget", mb_env_rawget},
                                 {"rawlen", mb_env_rawlen}, {"next", mb_env_next},
                                 {NULL, NULL}};
  int g, base;
  lua_pushglobaltable(L);
  g = lua_gettop(L);
  lua_newtable(L);
  base = g + 1;
  lua_pushnil(L);
  while (lua_next(L, g) != 0) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "_G") != 0)
      mb_env_base_set(L, base, g, lua_tostring(L, -1));
  }
  luaL_setfuncs(L, raw, 0);
  lua_getfield(L, g, "setmetatable");
  lua_pushcclosure(L, mb_env_setmetatable, 1);
  lua_setfield(L, base, "setmetatable");
  lua_pushvalue(L, base);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &mb_env_key_base);
  mb_env_readonly(L, base);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &mb_env_key_baseview);
  mb_env_lock_metatables(L);
  lua_settop(L, g - 1);
}

void mb_env_publish(lua_State *L, const char *name) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &mb_env_key_base) != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  lua_pushglobaltable(L);
  mb_env_base_set(L, lua_gettop(L) - 1, lua_gettop(L), name);
  lua_pop(L, 2);
}

/* ---------------------------------------------------------------------
** moonbridge's own Lua: a private environment over the global table,
** whose require also finds the internal modules.
** ------------------------------------------------------------------- */

/* require in the private environment: internal modules first (loaded
** once), else the stock require (upvalue 1). */
static int mb_env_private_require(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_settop(L, 1);
  mb_registry_table(L, &mb_env_key_ienv_done, NULL); /* 2 */
  if (lua_getfield(L, 2, name) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  mb_registry_table(L, &mb_env_key_internal, NULL); /* 3 */
  if (lua_getfield(L, 3, name) != LUA_TFUNCTION) {
    lua_settop(L, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 1, 1);
    return 1;
  }
  lua_pushvalue(L, 1);
  lua_pushliteral(L, ":internal:");
  lua_call(L, 2, 1);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, 2, name);
  return 1;
}

/* Push the private environment, made on first use (before the sandbox
** replaces anything, so its require is the stock one). */
static void mb_env_push_private(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &mb_env_key_private) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 1);
  lua_pushglobaltable(L);
  lua_getfield(L, -1, "require"); /* at startup: no script has touched _G */
  lua_remove(L, -2);
  lua_pushcclosure(L, mb_env_private_require, 1);
  lua_setfield(L, -2, "require");
  lua_createtable(L, 0, 1);
  lua_pushglobaltable(L);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &mb_env_key_private);
}

/* Move the internal modules package.preload holds (the C core's
** "moonbridge.errors", say) to the private loaders. */
static void mb_env_hide_internal(lua_State *L) {
  int preload, internal;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  preload = lua_gettop(L);
  mb_registry_table(L, &mb_env_key_internal, NULL);
  internal = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, preload) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING &&
        strncmp(lua_tostring(L, -2), MB_ENV_INTERNAL_PREFIX, sizeof MB_ENV_INTERNAL_PREFIX - 1) == 0) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, internal);
      lua_pushvalue(L, -1);
      lua_pushnil(L);
      lua_rawset(L, preload); /* clearing a field during next is allowed */
    } else {
      lua_pop(L, 1);
    }
  }
  lua_settop(L, preload - 1);
}

int mb_env_preload_lua(lua_State *L, const char *name, const char *src, size_t len) {
  int internal = strncmp(name, MB_ENV_INTERNAL_PREFIX, sizeof MB_ENV_INTERNAL_PREFIX - 1) == 0;
  lua_pushfstring(L, "@%s.lua", name);
  if (luaL_loadbuffer(L, src, len, lua_tostring(L, -1)) != LUA_OK ||
      mb_lbug_fix_text(L, -1, src, len) != LUA_OK) {
    lua_remove(L, -2);
    return -1;
  }
  lua_remove(L, -2);
  mb_env_push_private(L);
  lua_setupvalue(L, -2, 1);
  if (internal) {
    mb_registry_table(L, &mb_env_key_internal, NULL);
  } else {
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  }
  lua_insert(L, -2);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
  mb_env_hide_internal(L);
  return 0;
}

/* ---------------------------------------------------------------------
** A run's environment.
** ------------------------------------------------------------------- */

/* Under the sandbox, a run's own package table: path and cpath it may set
** (the sandbox's require looks only in SandboxDirs anyway), and its own
** package.loaded, over the runtime's (read-only), where require keeps the
** run's modules from files and where a script may put its own. Pushes the
** run's loaded table, for env (at index env) and require. */
static void mb_env_push_loaded_of(lua_State *L, int env) {
  env = lua_absindex(L, env);
  mb_registry_table(L, &mb_env_key_loaded, "k");
  lua_pushvalue(L, env);
  if (lua_rawget(L, -2) == LUA_TTABLE) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  lua_newtable(L); /* the run's loaded */
  lua_createtable(L, 0, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  mb_env_readonly(L, -1);
  lua_remove(L, -2);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, env);
  lua_pushvalue(L, -2);
  lua_rawset(L, -4);
  lua_remove(L, -2);
}

static void mb_env_new_package(lua_State *L, int env) {
  env = lua_absindex(L, env);
  lua_createtable(L, 0, 6);
  lua_pushliteral(L, "");
  lua_setfield(L, -2, "path");
  lua_pushliteral(L, "");
  lua_setfield(L, -2, "cpath");
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "package") == LUA_TTABLE) { /* the library's, raw */
    lua_pushliteral(L, "config");
    lua_rawget(L, -2);
    lua_setfield(L, -4, "config");
  }
  lua_pop(L, 2);
  mb_env_push_loaded_of(L, env);
  lua_setfield(L, -2, "loaded");
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  mb_env_readonly(L, -1);
  lua_setfield(L, -3, "preload");
  lua_pop(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "package") == LUA_TTABLE) {
    lua_pushliteral(L, "searchers");
    lua_rawget(L, -2);
    mb_env_readonly(L, -1);
    lua_setfield(L, -5, "searchers");
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  lua_setfield(L, env, "package");
}

/* Push fresh globals over the base (under the sandbox) or over the global
** table (a Script without it). Its _G is itself. */
static void mb_env_push_fresh(lua_State *L) {
  int sandboxed;
  lua_createtable(L, 0, 2);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "_G");
  lua_createtable(L, 0, 1);
  sandboxed = lua_rawgetp(L, LUA_REGISTRYINDEX, &mb_env_key_baseview) == LUA_TTABLE;
  if (!sandboxed) {
    lua_pop(L, 1);
    lua_pushglobaltable(L);
  }
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  if (sandboxed) mb_env_new_package(L, -1);
}

void mb_env_push_loaded(lua_State *L) {
  mb_env_push_current(L);
  mb_env_push_loaded_of(L, -1);
  lua_remove(L, -2);
}

int mb_env_push_script(lua_State *L, int64_t id) {
  mb_registry_table(L, &mb_env_key_scripts, NULL);
  lua_rawgeti(L, -1, (lua_Integer)id);
  lua_remove(L, -2);
  return !lua_isnil(L, -1);
}

void mb_env_push_run(lua_State *L, mb_run *r) {
  if (r->env_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->env_ref);
    return;
  }
  if (r->internal) {
    mb_env_push_private(L);
    return;
  }
  if (r->script != 0 && mb_env_push_script(L, r->script)) {
    lua_pushvalue(L, -1);
    r->env_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return;
  }
  if (r->script != 0) lua_pop(L, 1);
  if (!r->keep_env && !mb_env_sandboxed(L)) {
    lua_pushglobaltable(L);
    return;
  }
  mb_env_push_fresh(L);
  lua_pushvalue(L, -1);
  r->env_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

void mb_env_push_current(lua_State *L) {
  mb_task *t = mb_rt_of(L)->current;
  if (t != NULL && t->run != NULL) {
    mb_env_push_run(L, t->run);
  } else if (mb_env_sandboxed(L)) {
    mb_env_push_fresh(L);
  } else {
    lua_pushglobaltable(L);
  }
}

void mb_env_release_run(lua_State *L, mb_run *r) {
  if (r->env_ref == LUA_NOREF) return;
  luaL_unref(L, LUA_REGISTRYINDEX, r->env_ref);
  r->env_ref = LUA_NOREF;
}

void mb_env_keep_script(lua_State *L, mb_run *r) {
  mb_registry_table(L, &mb_env_key_scripts, NULL);
  mb_env_push_run(L, r);
  lua_rawseti(L, -2, (lua_Integer)r->id);
  lua_pop(L, 1);
}

/* Whether the table on the top holds a function among its values. */
static int mb_env_holds_functions(lua_State *L) {
  int t = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    if (lua_isfunction(L, -1)) {
      lua_pop(L, 2);
      return 1;
    }
    lua_pop(L, 1);
  }
  return 0;
}

void mb_env_keep_last(lua_State *L, mb_run *r) {
  if (r->env_ref == LUA_NOREF || r->internal || r->keep_env || r->script != 0) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->env_ref);
  if (mb_env_holds_functions(L)) /* a run that defined none leaves the last one be */
    lua_rawsetp(L, LUA_REGISTRYINDEX, &mb_env_key_last);
  else
    lua_pop(L, 1);
}

int mb_env_push_last(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &mb_env_key_last) == LUA_TTABLE) return 1;
  lua_pop(L, 1);
  return 0;
}

void mb_env_drop_script(lua_State *L, int64_t id) {
  mb_registry_table(L, &mb_env_key_scripts, NULL);
  lua_pushnil(L);
  lua_rawseti(L, -2, (lua_Integer)id);
  lua_pop(L, 1);
}

void mb_env_open(lua_State *L) {
  mb_env_push_private(L);
  lua_pop(L, 1);
  mb_env_hide_internal(L);
}
