/*
** dbglib.c — the debug library's writers, guarded (see dbglib.h).
*/
#include <string.h>

#include <lauxlib.h>

#include "dbglib.h"
#include "errors.h"

/* Whether the table at idx is the metatable of one of the runtime's own
** classes (a Task, a channel, a promise...): the registry holds it under
** its "moonbridge." __name. */
static int mb_dbglib_class_mt(lua_State *L, int idx) {
  int ours = 0;
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TTABLE) return 0;
  lua_pushliteral(L, "__name");
  if (lua_rawget(L, idx) == LUA_TSTRING && /* raw: no metamethod runs here */
      strncmp(lua_tostring(L, -1), "moonbridge.", 11) == 0 &&
      lua_rawget(L, LUA_REGISTRYINDEX) != LUA_TNIL) /* replaces the name */
    ours = lua_rawequal(L, -1, idx);
  lua_pop(L, 1);
  return ours;
}

/* Whether the value at idx is an object of one of the runtime's classes. */
static int mb_dbglib_class_obj(lua_State *L, int idx) {
  int ours;
  if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx)) return 0;
  ours = mb_dbglib_class_mt(L, -1);
  lua_pop(L, 1);
  return ours;
}

/* debug.setuservalue(udata, value [, n]) and debug.setmetatable(value, mt)
** as stock's, refused for the runtime's own objects: their user values
** anchor what the C core points to (a task's thread), and their metatable
** says what the core takes them for. A script outside the sandbox that
** replaced either left the core a dangling pointer or a wrong type; one
** that gave another value a class's metatable, a forged object. */
static int mb_dbglib_l_setuservalue(lua_State *L) {
  int n = (int)luaL_optinteger(L, 3, 1);
  luaL_checktype(L, 1, LUA_TUSERDATA);
  luaL_checkany(L, 2);
  lua_settop(L, 2);
  if (mb_dbglib_class_obj(L, 1))
    return mb_errors_misuse(L, "debug.setuservalue: the user values of the runtime's objects are its own");
  if (!lua_setiuservalue(L, 1, n)) luaL_pushfail(L);
  return 1;
}

static int mb_dbglib_l_setmetatable(lua_State *L) {
  int t = lua_type(L, 2);
  luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
  lua_settop(L, 2);
  if (mb_dbglib_class_obj(L, 1) || mb_dbglib_class_mt(L, 2))
    return mb_errors_misuse(L, "debug.setmetatable: the metatables of the runtime's objects are its own");
  lua_setmetatable(L, 1);
  return 1;
}

/* debug.setupvalue(f, n, value) as stock's for Lua functions, refused for
** C functions: their upvalues are what their C code trusts (a bridge
** function's index in the Go side's table, a library's state), and one a
** script replaced made the Go side index past its table and panic, or a
** C library read a wrong type. */
static int mb_dbglib_l_setupvalue(lua_State *L) {
  const char *name;
  int n;
  luaL_checkany(L, 3);
  n = (int)luaL_checkinteger(L, 2);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  if (lua_iscfunction(L, 1))
    return mb_errors_misuse(L, "debug.setupvalue: the upvalues of a C function are its own");
  lua_settop(L, 3);
  name = lua_setupvalue(L, 1, n);
  if (name == NULL) return 0;
  lua_pushstring(L, name);
  return 1;
}

/* debug.setlocal([thread,] level, n, value) as stock's for Lua functions,
** refused for a C function's slots: the core keeps what a waiting task's
** C frame points to there (a select's registrations), and a slot a script
** cleared would be freed under it. */
static int mb_dbglib_l_setlocal(lua_State *L) {
  int arg = lua_isthread(L, 1) ? 1 : 0, level, nvar;
  lua_State *L1 = arg ? lua_tothread(L, 1) : L;
  const char *name;
  lua_Debug ar;
  level = (int)luaL_checkinteger(L, arg + 1);
  nvar = (int)luaL_checkinteger(L, arg + 2);
  if (!lua_getstack(L1, level, &ar)) return luaL_argerror(L, arg + 1, "level out of range");
  lua_getinfo(L1, "S", &ar);
  if (*ar.what == 'C')
    return mb_errors_misuse(L, "debug.setlocal: the slots of a C function are its own");
  if (L != L1 && !lua_checkstack(L1, 1)) return luaL_error(L, "stack overflow");
  lua_xmove(L, L1, 1);
  name = lua_setlocal(L1, &ar, nvar);
  if (name == NULL) lua_pop(L1, 1); /* not popped by lua_setlocal */
  lua_pushstring(L, name);
  return 1;
}

/* Replace the writers in the debug table on L's top. */
void mb_dbglib_guard(lua_State *L) {
  static const luaL_Reg guarded[] = {
      {"setuservalue", mb_dbglib_l_setuservalue},
      {"setmetatable", mb_dbglib_l_setmetatable},
      {"setupvalue", mb_dbglib_l_setupvalue},
      {"setlocal", mb_dbglib_l_setlocal},
      {NULL, NULL}};
  luaL_setfuncs(L, guarded, 0);
}
