/*
** json.h — the json Lua module (json.c): require("json").
**
** Layer 3 (objects), a library module. It uses the error constructors
** (errors.c) and the run's limits (limit.c), nothing else of the core.
*/
#ifndef MB_JSON_H
#define MB_JSON_H

#include <lua.h>

/* Open the module (luaopen style): push its table and return 1. */
int mb_json_open(lua_State *L);

#endif
