/*
** timer.h — the browser-style timer globals (milliseconds).
**
** Layer 3 (objects).
*/
#ifndef MB_TIMER_H
#define MB_TIMER_H

#include <lua.h>

void mb_timer_open(lua_State *L);

#endif
