/*
** output.h — print, writes to io.stdout/io.stderr and Lua's warnings go to
** the Go writers.
**
** Layer 1.
*/
#ifndef MB_OUTPUT_H
#define MB_OUTPUT_H

#include <lua.h>

void mb_output_open(lua_State *L);
void mb_output_report(lua_State *L, int idx);

#endif
