/*
** dbglib.h — the debug library's writers, guarded.
**
** Layer 2 (scheduler), beside userhook. Outside the sandbox a script has
** Lua's whole debug library, and its writers reach what the core trusts:
** a Task's user values anchor its thread, a class's metatable says what the
** core takes an object for, a C function's upvalues and stack slots hold
** its state (a bridge function's index in the Go side's table, a waiting
** task's select registrations). These replacements behave as stock's,
** error messages included, but refuse those. debug.getregistry still
** hands over everything; scripts you do not trust run under the sandbox,
** which has no debug library.
*/
#ifndef MB_DBGLIB_H
#define MB_DBGLIB_H

#include <lua.h>

/* Replace setuservalue, setmetatable, setupvalue and setlocal in the
** debug table on L's top. */
void mb_dbglib_guard(lua_State *L);

#endif
