/*
** await.h — awaitables and the ways to wait for several: the global
** `await`, and task.all, task.race, task.select and task.timeout.
**
** Layer 4 (combinators).
*/
#ifndef MB_AWAIT_H
#define MB_AWAIT_H

#include <lua.h>

void mb_await_open(lua_State *L);
void mb_await_lib(lua_State *L);

#endif
