/*
** ir.c — one workload of work.lua with the stock Lua 5.4 string/table
** functions or with moonbridge's (core/strlib.c, core/tablib.c, charging
** through the real core/limit.c as inside a task of a run without limits),
** for ir.sh to count its instructions under valgrind: a comparison the
** load of a shared machine cannot blur.
**
** Usage: ir stock|ours WORKLOAD N
*/
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lualib.h>

#include "mb.h"
#include "strlib.h"
#include "tablib.h"

/* limit.c's neighbours, never reached without a limit. */
int mb_error_throw(lua_State *L, const char *kind, const char *op, const char *fmt, ...) {
  (void)L, (void)kind, (void)op, (void)fmt;
  abort();
}
void mb_run_abort(mb_rt *rt, mb_run *r, const char *kind, const char *op, const char *msg) {
  (void)rt, (void)r, (void)kind, (void)op, (void)msg;
  abort();
}

static void *ir_alloc(void *ud, void *p, size_t osize, size_t nsize) {
  (void)ud, (void)osize;
  if (nsize == 0) {
    free(p);
    return NULL;
  }
  return realloc(p, nsize);
}

/* STOCK[lib] = a copy of the library's functions, before ours replace them. */
static void ir_keep(lua_State *L, const char *lib) {
  lua_newtable(L);
  lua_getglobal(L, lib);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -5);
  }
  lua_pop(L, 1);
  lua_setfield(L, -2, lib);
}

int main(int argc, char **argv) {
  static mb_rt rt;
  static mb_run run;  /* no limits */
  static mb_task task;
  lua_State *L;
  if (argc != 4) {
    fprintf(stderr, "usage: ir stock|ours WORKLOAD N\n");
    return 2;
  }
  task.run = &run;
  rt.current = &task;
  L = lua_newstate(ir_alloc, &rt);
  luaL_openlibs(L);
  lua_newtable(L);
  ir_keep(L, "string");
  ir_keep(L, "table");
  ir_keep(L, "utf8");
  lua_setglobal(L, "STOCK");
  mb_strlib_open(L);
  mb_tablib_open(L);
  lua_pushstring(L, argv[1]);
  lua_setglobal(L, "WHICH");
  lua_pushstring(L, argv[2]);
  lua_setglobal(L, "WORK");
  lua_pushinteger(L, atoi(argv[3]));
  lua_setglobal(L, "N");
  if (luaL_dofile(L, "work.lua") != LUA_OK) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    return 1;
  }
  lua_close(L);
  return 0;
}
