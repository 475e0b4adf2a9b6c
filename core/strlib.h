/*
** strlib.h — string library functions that charge their work to the
** run's limits (strlib.c).
*/
#ifndef MB_STRLIB_H
#define MB_STRLIB_H

#include <lua.h>

/* Replace the stock string and utf8 functions that can run long inside C
** (pattern matching, string.rep, sub, byte, upper, lower, reverse,
** utf8.len, codepoint, offset) in L's string and utf8 tables. Called once,
** after luaL_openlibs. */
void mb_strlib_open(lua_State *L);

#endif
