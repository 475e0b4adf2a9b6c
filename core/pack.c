/*
** pack.c — a list of values as one table {n = k, v1..vk}.
**
** Layer 0 (base).
*/
#include <lauxlib.h>

#include "pack.h"

/* Pack the n values on the top into {n = n, ...}. */
void mb_pack_values(lua_State *L, int n) {
  int i;
  lua_createtable(L, n, 1);
  lua_insert(L, -(n + 1));
  for (i = n; i >= 1; i--) lua_rawseti(L, -(i + 1), i);
  lua_pushinteger(L, n);
  lua_setfield(L, -2, "n");
}

/* Push the values of a packed table; returns how many. */
int mb_pack_unpack(lua_State *L, int idx) {
  int i, n;
  idx = lua_absindex(L, idx);
  lua_pushliteral(L, "n"); /* raw: the table may have reached a script */
  lua_rawget(L, idx);
  n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  luaL_checkstack(L, n, "too many results");
  for (i = 1; i <= n; i++) lua_rawgeti(L, idx, i);
  return n;
}
