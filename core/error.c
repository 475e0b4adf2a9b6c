/*
** error.c — moonbridge's error objects.
**
** Layer: C core. An error raised by the runtime, or one that ended a task,
** is a table {message, kind, op, traceback, cause} whose __tostring is its
** message. A task's message handler turns any other error value into one
** (keeping the original as `cause`) and stamps the traceback while the
** failing stack is still there; when the error is re-raised in a task that
** waited for the failed one, that task's traceback is appended, so the
** traceback shows every hop the error crossed.
*/
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "mb.h"

/* 0: not one of ours; 1: an error; 2: a fresh one (see mb_error_raise). */
static int mb_error_is(lua_State *L, int idx) {
  mb_rt *rt = mb_rt_of(L);
  int is;
  if (!lua_istable(L, idx) || !lua_getmetatable(L, idx)) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->error_mt_ref);
  is = lua_rawequal(L, -1, -2);
  if (!is) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->error_fresh_mt_ref);
    is = lua_rawequal(L, -1, -3) ? 2 : 0;
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  return is;
}

/* luaL_traceback's text without its search of package.loaded for each
** function's global name (which costs microseconds a frame: it walks
** every loaded module's fields): a function is named as the calling code
** names it ("field 'sleep'", "method 'wait'"). For cancellations, which
** races, timeouts and group failures deliver as a matter of course. */
#define MB_TB_HEAD 10 /* frames shown before a "skipping" line... */
#define MB_TB_TAIL 11 /* ...and after it, as luaL_traceback shows */

/* The deepest level of L's stack: a doubling then a binary search, since
** lua_getstack walks the frames from the top each time. */
static int mb_traceback_last(lua_State *L) {
  lua_Debug ar;
  int lo = 1, hi = 1;
  while (lua_getstack(L, hi, &ar)) {
    lo = hi;
    hi *= 2;
  }
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    if (lua_getstack(L, mid, &ar))
      lo = mid + 1;
    else
      hi = mid;
  }
  return hi - 1;
}

static void mb_traceback_cheap(lua_State *L, const char *msg, int level) {
  luaL_Buffer b;
  lua_Debug ar;
  int last = mb_traceback_last(L), skip;
  skip = last - level > MB_TB_HEAD + MB_TB_TAIL ? last - level - MB_TB_HEAD - MB_TB_TAIL + 1 : 0;
  luaL_buffinit(L, &b);
  if (msg != NULL) {
    luaL_addstring(&b, msg);
    luaL_addchar(&b, '\n');
  }
  luaL_addstring(&b, "stack traceback:");
  for (; lua_getstack(L, level, &ar); level++) {
    if (skip > 0 && level == last - MB_TB_TAIL - skip + 1) {
      lua_pushfstring(L, "\n\t...\t(skipping %d levels)", skip);
      luaL_addvalue(&b);
      level += skip - 1;
      continue;
    }
    lua_getinfo(L, "Slnt", &ar);
    if (ar.currentline <= 0)
      lua_pushfstring(L, "\n\t%s: in ", ar.short_src);
    else
      lua_pushfstring(L, "\n\t%s:%d: in ", ar.short_src, ar.currentline);
    luaL_addvalue(&b);
    if (*ar.namewhat != '\0')
      lua_pushfstring(L, "%s '%s'", ar.namewhat, ar.name);
    else if (*ar.what == 'm')
      lua_pushliteral(L, "main chunk");
    else if (*ar.what != 'C')
      lua_pushfstring(L, "function <%s:%d>", ar.short_src, ar.linedefined);
    else
      lua_pushliteral(L, "?");
    luaL_addvalue(&b);
    if (ar.istailcall) luaL_addstring(&b, "\n\t(...tail calls...)");
  }
  luaL_pushresult(&b);
}

/* Push the traceback of L from level 1 under msg: the cheap one for a
** cancellation (the error table at idx has kind "cancelled"). */
static void mb_traceback(lua_State *L, int idx, const char *msg) {
  int cancelled;
  lua_getfield(L, idx, "kind");
  cancelled = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "cancelled") == 0;
  lua_pop(L, 1);
  if (cancelled)
    mb_traceback_cheap(L, msg, 1);
  else
    luaL_traceback(L, L, msg, 1);
}

/* Raise the error on the top, stamping the traceback of where it is
** raised, so that one caught by pcall in the same task has it too. It is
** marked fresh (its own metatable, same behaviour): a task's message
** handler replaces a fresh traceback by its own, which is the same stack
** with the task's name, instead of appending a second copy. */
int mb_error_raise(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  mb_traceback(L, lua_gettop(L), NULL);
  lua_setfield(L, -2, "traceback");
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->error_fresh_mt_ref);
  lua_setmetatable(L, -2);
  return lua_error(L);
}

void mb_error_push(lua_State *L, const char *kind, const char *op,
                   const char *msg, size_t msglen) {
  mb_rt *rt = mb_rt_of(L);
  lua_createtable(L, 0, 5);
  lua_pushlstring(L, msg, msglen);
  lua_setfield(L, -2, "message");
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  if (op != NULL) {
    lua_pushstring(L, op);
    lua_setfield(L, -2, "op");
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->error_mt_ref);
  lua_setmetatable(L, -2);
}

int mb_error_throw(lua_State *L, const char *kind, const char *op,
                   const char *fmt, ...) {
  const char *msg;
  va_list ap;
  va_start(ap, fmt);
  msg = lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  mb_error_push(L, kind, op, msg, strlen(msg));
  return mb_error_raise(L);
}

/* Replace the error on the top by a shallow copy when it is one of ours:
** each waiter that re-raises a task's error appends its own hop to the
** traceback, and must not append it to the other waiters' copies. */
void mb_error_fork(lua_State *L) {
  if (!mb_error_is(L, -1)) return;
  lua_createtable(L, 0, 6);
  lua_pushnil(L);
  while (lua_next(L, -3) != 0) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, mb_rt_of(L)->error_mt_ref);
  lua_setmetatable(L, -2);
  lua_remove(L, -2);
}

/* A misuse of the library (a closed channel closed again, a bad option):
** an error of kind "runtime" whose message starts with the caller's
** position, as luaL_error's does. */
int mb_misuse(lua_State *L, const char *fmt, ...) {
  va_list ap;
  luaL_where(L, 1);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_concat(L, 2);
  mb_error_push(L, "runtime", NULL, lua_tostring(L, -1), lua_rawlen(L, -1));
  return mb_error_raise(L);
}

/* The message handler of every task: see the file comment. */
int mb_error_handler(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  mb_task *t = rt->current;
  char head[96];
  if (t != NULL && t->name != NULL)
    snprintf(head, sizeof head, "in task '%s'", t->name);
  else if (t != NULL)
    snprintf(head, sizeof head, "in task #%lld", (long long)t->id);
  else
    snprintf(head, sizeof head, "in the runtime");
  if (t != NULL && t->reraise) { /* passed on as it is, traceback and all */
    t->reraise = 0;
    lua_settop(L, 1);
    return 1;
  }
  if (!mb_error_is(L, 1)) {
    const char *msg;
    if (lua_type(L, 1) == LUA_TSTRING || lua_type(L, 1) == LUA_TNUMBER)
      msg = lua_tostring(L, 1);
    else if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      msg = lua_tostring(L, -1);
    else
      msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    {
      const char *op, *kind = mb_limit_kind(rt, msg, &op);
      mb_error_push(L, kind, op, msg, strlen(msg));
    }
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "cause");
    lua_replace(L, 1);
    lua_settop(L, 1);
  }
  lua_settop(L, 1);
  if (mb_error_is(L, 1) == 2) { /* fresh: this stack's own traceback wins */
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->error_mt_ref);
    lua_setmetatable(L, 1);
    lua_pushnil(L);
    lua_setfield(L, 1, "traceback");
  }
  mb_traceback(L, 1, head);
  if (lua_getfield(L, 1, "traceback") == LUA_TSTRING) {
    /* Re-raised after an await: the older hops come first. */
    lua_insert(L, -2); /* old new */
    lua_pushliteral(L, "\n");
    lua_insert(L, -2); /* old "\n" new */
    lua_concat(L, 3);
  } else {
    lua_pop(L, 1);
  }
  lua_setfield(L, 1, "traceback");
  return 1;
}

static int mb_error_tostring(lua_State *L) {
  lua_getfield(L, 1, "message");
  if (!lua_isstring(L, -1)) lua_pushliteral(L, "error");
  return 1;
}

/* Encode an error value as four strings for Go: message, kind, op,
** traceback. Any value is accepted; non-error values become "runtime". */
int mb_error_fields(lua_State *L, int idx, mb_buf *out) {
  static const char *const names[] = {"message", "kind", "op", "traceback"};
  char err[128];
  int i, top = lua_gettop(L);
  idx = lua_absindex(L, idx);
  out->len = 0;
  if (mb_error_is(L, idx)) {
    for (i = 0; i < 4; i++) {
      lua_getfield(L, idx, names[i]);
      if (!lua_isstring(L, -1)) {
        lua_pop(L, 1);
        lua_pushstring(L, i == 1 ? "runtime" : "");
      }
    }
  } else {
    const char *op, *kind, *s = lua_tostring(L, idx);
    if (s == NULL) s = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, idx));
    lua_pushstring(L, s);
    if (lua_gettop(L) > top + 1) lua_remove(L, -2);
    kind = mb_limit_kind(mb_rt_of(L), s, &op);
    lua_pushstring(L, kind);
    lua_pushstring(L, op != NULL ? op : "");
    lua_pushliteral(L, "");
  }
  i = mb_codec_encode(L, top + 1, 4, out, err, sizeof err);
  lua_settop(L, top);
  return i;
}

/* The error that ends a run for os.exit: kind "exit", with its code. The
** Go side reads the code back from the message. */
void mb_error_push_exit(lua_State *L, int code) {
  const char *msg = lua_pushfstring(L, "os.exit(%d)", code);
  mb_error_push(L, "exit", NULL, msg, strlen(msg));
  lua_remove(L, -2);
  lua_pushinteger(L, code);
  lua_setfield(L, -2, "code");
}

/* moonbridge.errors.new(fields): make the table an error (kind defaults
** to "runtime"); for errors raised by Lua modules such as pipeline. */
static int mb_l_errors_new(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  if (lua_getfield(L, 1, "message") != LUA_TSTRING)
    return luaL_error(L, "errors.new: field 'message' must be a string");
  if (lua_getfield(L, 1, "kind") == LUA_TNIL) {
    lua_pushliteral(L, "runtime");
    lua_setfield(L, 1, "kind");
  }
  lua_settop(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->error_mt_ref);
  lua_setmetatable(L, 1);
  return 1;
}

static int mb_l_errors_is(lua_State *L) {
  lua_pushboolean(L, mb_error_is(L, 1));
  return 1;
}

/* errors.rawpcall(fn, ...): pcall that leaves a caught cancellation
** delivered, so the caller's cleanup may await before deciding (try). */
static int mb_rawpcall_k(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  if (status != LUA_OK && status != LUA_YIELD) {
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  return lua_gettop(L);
}

static int mb_l_rawpcall(lua_State *L) {
  luaL_checkany(L, 1);
  lua_pushboolean(L, 1);
  lua_insert(L, 1);
  return mb_rawpcall_k(L, lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, mb_rawpcall_k), 0);
}

/* errors.swallowed(err): the caller dropped err; if it was the running
** task's cancellation, it is raised again at the next suspension point. */
static int mb_l_swallowed(lua_State *L) {
  mb_cancel_caught(L, 1);
  return 0;
}

static int mb_luaopen_errors(lua_State *L) {
  static const luaL_Reg funcs[] = {{"new", mb_l_errors_new}, {"is", mb_l_errors_is},
                                   {"rawpcall", mb_l_rawpcall}, {"swallowed", mb_l_swallowed},
                                   {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}

static const luaL_Reg mb_error_meta[] = {{"__tostring", mb_error_tostring}, {NULL, NULL}};

void mb_error_open(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  luaL_newmetatable(L, "moonbridge.Error");
  luaL_setfuncs(L, mb_error_meta, 0);
  rt->error_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  luaL_setfuncs(L, mb_error_meta, 0);
  rt->error_fresh_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  mb_preload(L, "moonbridge.errors", mb_luaopen_errors);
}
