/*
** pack.h — a list of values as one table {n = k, v1..vk}: a task's or a
** promise's results kept while they wait for a taker.
**
** Layer 0 (base).
*/
#ifndef MB_PACK_H
#define MB_PACK_H

#include <lua.h>

void mb_pack_values(lua_State *L, int n); /* the n values on the top -> one table */
int mb_pack_unpack(lua_State *L, int idx); /* push them back; returns how many */

#endif
