/*
** json.h — the json Lua module (json.c): require("json").
**
** Layer: C core, a library module. It uses the error constructors
** (error.c) and the run's limits (limit.c), nothing of the scheduler.
*/
#ifndef MB_JSON_H
#define MB_JSON_H

#include <lua.h>

/* Open the module (luaopen style): push its table and return 1. */
int mb_json_open(lua_State *L);

#endif
