/*
** output.c — print, writes to io.stdout/io.stderr and Lua's warnings go to
** the Go writers.
**
** Layer 1. A Runtime's output belongs to its Options.Stdout and
** Options.Stderr, so a host (or a test) gets what the script printed, in
** order with its own output. Files other than the standard ones, and all
** reading, stay stock.
*/
#include <stdio.h>
#include <string.h>

#include <lualib.h>

#include "_cgo_export.h"
#include "errors.h"
#include "output.h"
#include "state.h"

/* The running task's run is over Options.OutputLimit: it ends, as with
** its other limits (limit.c re-raises the error where a script would
** catch it, and the scheduler ends the run after this turn). */
MB_NORETURN static void mb_output_over(lua_State *L, mb_rt *rt, mb_run *r) {
  r->limit = MB_LIMIT_OUTPUT;
  rt->over_limit = 1;
  mb_errors_throw(L, "limit", "output", "the run wrote more than its output limit (%I bytes)",
                  (lua_Integer)rt->output_limit);
  mb_unreachable();
}

static int mb_output_send(lua_State *L, int fd, const char *s, size_t len) {
  mb_rt *rt = mb_rt_of(L);
  mb_run *r = rt->current != NULL ? rt->current->run : NULL;
  int over = 0;
  if (r != NULL && rt->output_limit > 0) {
    /* Write up to the limit, then end the run. */
    int64_t room = rt->output_limit - r->output;
    if (room < 0) room = 0;
    if ((int64_t)len > room) {
      len = (size_t)room;
      over = 1;
    }
    r->output += (int64_t)len;
  }
  if (len > 0 && mbGoWrite(rt->go_handle, fd, (char *)s, len) != 0)
    return luaL_error(L, "writing to %s failed", fd == 1 ? "stdout" : "stderr");
  if (over) mb_output_over(L, rt, r);
  return 0;
}

/* The standard stream a file handle stands for: 1, 2, or 0 for others. */
static int mb_output_fd(lua_State *L, int idx) {
  luaL_Stream *p = (luaL_Stream *)luaL_testudata(L, idx, LUA_FILEHANDLE);
  if (p == NULL || p->closef == NULL) return 0;
  return p->f == stdout ? 1 : p->f == stderr ? 2 : 0;
}

/* As stock print: tostring of each argument, tab separated, newline. The
** tab goes in before the value is pushed: a buffer may only grow with its
** box on top (growing at the tab with the value above it crashed). */
static int mb_output_print(lua_State *L) {
  int i, n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (i = 1; i <= n; i++) {
    if (i > 1) luaL_addchar(&b, '\t');
    luaL_tolstring(L, i, NULL);
    luaL_addvalue(&b);
  }
  luaL_addchar(&b, '\n');
  luaL_pushresult(&b);
  {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    mb_output_send(L, 1, s, len);
  }
  return 0;
}

/* As stock g_write: strings and numbers, in order; returns the file. */
static int mb_output_write_to(lua_State *L, int fd, int first, int file) {
  int i, n = lua_gettop(L);
  for (i = first; i <= n; i++) {
    size_t len;
    const char *s;
    if (lua_type(L, i) == LUA_TNUMBER) {
      lua_pushvalue(L, i);
      s = lua_tolstring(L, -1, &len); /* numbers format as stock's %.14g / %d */
      mb_output_send(L, fd, s, len);
      lua_pop(L, 1);
    } else {
      s = luaL_checklstring(L, i, &len);
      mb_output_send(L, fd, s, len);
    }
  }
  lua_pushvalue(L, file);
  return 1;
}

/* file:write — the method shared by every file handle. */
static int mb_output_fwrite(lua_State *L) {
  int fd = mb_output_fd(L, 1);
  if (fd == 0) {
    lua_pushvalue(L, lua_upvalueindex(1)); /* the stock method */
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
  }
  return mb_output_write_to(L, fd, 2, 1);
}

/* io.write — writes to the default output file. */
static int mb_output_iowrite(lua_State *L) {
  int fd;
  lua_getfield(L, LUA_REGISTRYINDEX, "_IO_output");
  fd = mb_output_fd(L, -1);
  if (fd == 0) {
    lua_pop(L, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
  }
  lua_insert(L, 1);
  return mb_output_write_to(L, fd, 2, 1);
}

/* file:flush and io.flush on the standard streams: Go writes unbuffered. */
static int mb_output_fflush(lua_State *L) {
  if (mb_output_fd(L, 1) == 0) {
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
  }
  lua_pushvalue(L, 1);
  return 1;
}

/* Report an error nobody will see otherwise (a task that failed with no
** one waiting, after its run's result was decided) on the Go stderr. The
** scheduler calls this, outside any task: the error is read raw, and no
** metamethod (__index, __tostring) a script may have set runs. */
void mb_output_report(lua_State *L, int idx) {
  mb_rt *rt = mb_rt_of(L);
  const char *msg, *tb = "", *s;
  int top = lua_gettop(L);
  idx = lua_absindex(L, idx);
  lua_pushliteral(L, "message");
  if (lua_istable(L, idx) && lua_rawget(L, idx) == LUA_TSTRING) {
    msg = lua_tostring(L, -1);
    lua_pushliteral(L, "traceback");
    if (lua_rawget(L, idx) == LUA_TSTRING) tb = lua_tostring(L, -1);
  } else if (lua_type(L, idx) == LUA_TSTRING || lua_type(L, idx) == LUA_TNUMBER) {
    lua_pushvalue(L, idx);
    msg = lua_tostring(L, -1);
  } else {
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, idx));
  }
  s = lua_pushfstring(L, "moonbridge: a task failed and nobody waited for it: %s\n%s\n", msg, tb);
  mbGoWrite(rt->go_handle, 2, (char *)s, lua_rawlen(L, -1));
  lua_settop(L, top);
}

/* Lua's warnings, warn(...) and errors in __gc metamethods, as stock
** lua5.4 shows them (lauxlib's warnfoff/warnfon/warnfcont): off until
** warn("@on") (a control message is a single piece starting with '@':
** "@on", "@off"), then each warning written to stderr as "Lua warning: ",
** its pieces, and a newline. Lua calls this from anywhere, a finalizer in
** the middle of a collection included: it uses no Lua API and allocates
** nothing. Its state is rt->warn. */
static void mb_output_warn(void *ud, const char *msg, int tocont) {
  mb_rt *rt = (mb_rt *)ud;
  if (rt->warn != MB_WARN_CONT && !tocont && msg[0] == '@') {
    if (strcmp(msg + 1, "on") == 0)
      rt->warn = MB_WARN_ON;
    else if (strcmp(msg + 1, "off") == 0)
      rt->warn = MB_WARN_OFF;
    return;
  }
  if (rt->warn == MB_WARN_OFF || rt->go_handle == 0) return;
  if (rt->warn == MB_WARN_ON) mbGoWrite(rt->go_handle, 2, (char *)"Lua warning: ", 13);
  mbGoWrite(rt->go_handle, 2, (char *)msg, strlen(msg));
  if (tocont) {
    rt->warn = MB_WARN_CONT;
  } else {
    mbGoWrite(rt->go_handle, 2, (char *)"\n", 1);
    rt->warn = MB_WARN_ON;
  }
}

void mb_output_open(lua_State *L) {
  lua_setwarnf(L, mb_output_warn, mb_rt_of(L));
  lua_pushcfunction(L, mb_output_print);
  lua_setglobal(L, "print");
  lua_getglobal(L, "io");
  lua_getfield(L, -1, "write");
  lua_pushcclosure(L, mb_output_iowrite, 1);
  lua_setfield(L, -2, "write");
  lua_pop(L, 1);
  luaL_getmetatable(L, LUA_FILEHANDLE);
  lua_getfield(L, -1, "__index"); /* the methods table */
  lua_getfield(L, -1, "write");
  lua_pushcclosure(L, mb_output_fwrite, 1);
  lua_setfield(L, -2, "write");
  lua_getfield(L, -1, "flush");
  lua_pushcclosure(L, mb_output_fflush, 1);
  lua_setfield(L, -2, "flush");
  lua_pop(L, 2);
}
