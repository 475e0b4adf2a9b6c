/*
** tablib.h — table library functions that charge their work to the run's
** limits (tablib.c).
*/
#ifndef MB_TABLIB_H
#define MB_TABLIB_H

#include <lua.h>

/* Replace the stock table functions whose loops a script sizes
** (table.move, concat, unpack, sort, insert, remove) in L's table library.
** Called once, after luaL_openlibs. */
void mb_tablib_open(lua_State *L);

#endif
