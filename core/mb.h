/*
** mb.h — what every file of the C core shares, and nothing else: the
** never-returns mark, checked invariants, container_of and the preload
** helper.
**
** Layer 0 (base). The layers, and the rule that keeps them, are in
** README.md: a file includes only headers of its own layer or below.
*/
#ifndef MB_H
#define MB_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>
#include <lauxlib.h>

/* A function that never returns: it raises a Lua error (longjmp) or
** aborts. As Lua's l_noret; such a function ends with mb_unreachable()
** after a call the compiler cannot see through (lua_error). */
#define MB_NORETURN __attribute__((noreturn))
#define mb_unreachable() __builtin_unreachable()

/* An invariant, checked when built with -DMB_DEBUG (make asan does): as
** Lua's api_check, it states what the code assumes where it assumes it. */
#if defined(MB_DEBUG)
MB_NORETURN void mb_assert_fail(const char *cond, const char *msg, const char *file, int line);
#define mb_assert(c, msg) ((c) ? (void)0 : mb_assert_fail(#c, (msg), __FILE__, __LINE__))
#else
#define mb_assert(c, msg) ((void)0)
#endif

#define mb_container_of(p, T, m) ((T *)((char *)(p) - offsetof(T, m)))

/* A string literal and its length, for the (s, len) parameters. */
#define MB_LIT(s) (s), (sizeof(s) - 1)

/* Make require(name) call open: a module of the C core. */
static inline void mb_preload(lua_State *L, const char *name, lua_CFunction open) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, open);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

/* Push registry[key] (a light userdata key: a static's address), made
** when missing: a table, weak as mode says ("k", "v") unless mode is NULL. */
static inline void mb_registry_table(lua_State *L, const void *key, const char *mode) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_newtable(L);
  if (mode != NULL) {
    lua_createtable(L, 0, 1);
    lua_pushstring(L, mode);
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
  }
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

/* The metatable of a userdata class, registered as name: its methods
** are its __index, meta its other metamethods. Left on the top. */
static inline void mb_newclass(lua_State *L, const char *name, const luaL_Reg *methods,
                               const luaL_Reg *meta) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  luaL_setfuncs(L, meta, 0);
}

#endif
