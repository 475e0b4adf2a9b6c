/*
** lbug.h — Lua 5.4.4's bug "'break' may not properly exit a loop with a
** to-be-closed variable", fixed in the compiled code of every chunk the
** runtime loads from text.
**
** Layer 0 (base): it knows Lua's public API and its binary chunk format,
** not the runtime.
*/
#ifndef MB_LBUG_H
#define MB_LBUG_H

#include <stddef.h>

#include <lua.h>

/* Replace the Lua function at idx (a chunk just loaded) with a fixed copy
** when its code, or a nested function's, has the bad pattern; else leave
** it. LUA_OK, or a status with the error message at idx (LUA_ERRMEM:
** the copy did not fit). Never raises. */
int mb_lbug_fix(lua_State *L, int idx);

/* mb_lbug_fix for a chunk loaded from src: nothing to do, at the cost of
** a search, when src is text without "break" (the bug needs one); a
** binary chunk (lua5.4's, outside the sandbox) is fixed too. */
int mb_lbug_fix_text(lua_State *L, int idx, const char *src, size_t len);

/* Patch a binary chunk (lua_dump's, with debug info) in place; returns
** how many CLOSE instructions it rewrote, or -1 if the chunk is not one
** this Lua wrote. For the tests. */
int mb_lbug_patch(unsigned char *chunk, size_t len);

/* Replace the stock load, loadfile, dofile and package.searchers[2]
** with versions that behave the same and fix what they load. Called
** once, after luaL_openlibs. */
void mb_lbug_open(lua_State *L);

#endif
