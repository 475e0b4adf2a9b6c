/*
** coro.h — the coroutine library, kept stock while the runtime's own
** yields pass through it.
**
** Layer 3 (objects).
*/
#ifndef MB_CORO_H
#define MB_CORO_H

#include <lua.h>

void mb_coro_open(lua_State *L);

#endif
