/*
** errors.c — moonbridge's error objects.
**
** Layer 1. An error raised by the runtime (cancelled, timeout, deadlock,
** bridge, limit, a misuse) is a table {message, kind, op, traceback,
** cause} whose __tostring is its message. A task's message handler stamps
** the traceback while the failing stack is still there; when the error is
** re-raised in a task that waited for the failed one, that task's
** traceback is appended, so the traceback shows every hop the error
** crossed. Any other error value (a script's string or table) is passed
** on unchanged, as stock Lua does; task.c keeps its traceback beside it.
*/
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "errors.h"
#include "state.h"

/* An error's fields are read and written raw: the core never runs a
** metamethod a script could set (outside the sandbox the error
** metatable can be changed), which might loop where no limit holds (in
** the scheduler, or in a message handler with hooks off). */
static int mb_errors_get(lua_State *L, int idx, const char *k) {
  idx = lua_absindex(L, idx);
  lua_pushstring(L, k);
  return lua_rawget(L, idx);
}

/* t[k] = the value on the top, popped; t at idx. */
static void mb_errors_set(lua_State *L, int idx, const char *k) {
  idx = lua_absindex(L, idx);
  lua_pushstring(L, k);
  lua_insert(L, -2);
  lua_rawset(L, idx);
}

/* 0: not one of ours; 1: an error; 2: a fresh one (see mb_errors_raise). */
static int mb_errors_is(lua_State *L, int idx) {
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
static int mb_errors_tb_last(lua_State *L) {
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

static void mb_errors_tb_cheap(lua_State *L, const char *msg, int level) {
  luaL_Buffer b;
  lua_Debug ar;
  int last = mb_errors_tb_last(L), skip;
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
static void mb_errors_traceback(lua_State *L, int idx, const char *msg) {
  int cancelled;
  mb_errors_get(L, idx, "kind");
  cancelled = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "cancelled") == 0;
  lua_pop(L, 1);
  if (cancelled)
    mb_errors_tb_cheap(L, msg, 1);
  else
    luaL_traceback(L, L, msg, 1);
}

/* Raising builds a table and a traceback, about a dozen slots, which a C
** function that filled its stack (with results, say) may not have left.
** Lua keeps a few slots past the limit: room for this message. */
static void mb_errors_room(lua_State *L) {
  if (!lua_checkstack(L, MB_ERRORS_ROOM)) {
    lua_pushliteral(L, "stack overflow (no room left to raise an error)");
    lua_error(L);
  }
}

/* Raise the error on the top, stamping the traceback of where it is
** raised, so that one caught by pcall in the same task has it too. It is
** marked fresh (its own metatable, same behaviour): a task's message
** handler replaces a fresh traceback by its own, which is the same stack
** with the task's name, instead of appending a second copy. */
int mb_errors_raise(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  mb_errors_room(L);
  mb_errors_traceback(L, lua_gettop(L), NULL);
  mb_errors_set(L, -2, "traceback");
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->error_fresh_mt_ref);
  lua_setmetatable(L, -2);
  lua_error(L);
  mb_unreachable();
}

void mb_errors_push(lua_State *L, const char *kind, const char *op,
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

int mb_errors_throw(lua_State *L, const char *kind, const char *op,
                   const char *fmt, ...) {
  const char *msg;
  va_list ap;
  mb_errors_room(L);
  va_start(ap, fmt);
  msg = lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  mb_errors_push(L, kind, op, msg, strlen(msg));
  mb_errors_raise(L);
}

/* Replace the error on the top by a shallow copy when it is one of ours:
** each waiter that re-raises a task's error appends its own hop to the
** traceback, and must not append it to the other waiters' copies. */
void mb_errors_fork(lua_State *L) {
  if (!mb_errors_is(L, -1)) return;
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
int mb_errors_misuse(lua_State *L, const char *fmt, ...) {
  va_list ap;
  mb_errors_room(L);
  luaL_where(L, 1);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_concat(L, 2);
  mb_errors_push(L, "runtime", NULL, lua_tostring(L, -1), lua_rawlen(L, -1));
  mb_errors_raise(L);
}

/* A C allocation failed (a record, a buffer): kind "runtime", op what.
** Not Lua's memory error, whose status says so (see mb_limit_memerr). */
int mb_errors_nomem(lua_State *L, const char *what) {
  mb_errors_throw(L, "runtime", what, "%s: out of memory", what);
}

/* Push the name of the function on L's top as "module.field", searching
** package.loaded as luaL_traceback does, and pop the function. Returns
** the name or NULL (nothing pushed then). For error messages only: it
** walks every loaded module's fields. */
const char *mb_errors_funcname(lua_State *L) {
  int fn = lua_gettop(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1)) {
      lua_pushnil(L);
      while (lua_next(L, -2) != 0) {
        if (lua_rawequal(L, -1, fn) && lua_type(L, -2) == LUA_TSTRING) {
          const char *mod = lua_tostring(L, -4), *field = lua_tostring(L, -2);
          const char *name = strcmp(mod, LUA_GNAME) == 0
                                 ? lua_pushstring(L, field)
                                 : lua_pushfstring(L, "%s.%s", mod, field);
          lua_replace(L, fn);
          lua_settop(L, fn);
          return name;
        }
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  lua_settop(L, fn - 1);
  return NULL;
}

/* name cannot suspend L (verb: "suspend", "wait for Go"): Lua cannot
** yield here. Say which function is in the way, the most reported
** complaint about async Lua being an error that does not. */
int mb_errors_cannot_yield(lua_State *L, const char *name, const char *verb) {
  lua_Debug ar;
  int level;
  for (level = 1; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "nSf", &ar);
    if (ar.what[0] == 'C') {
      const char *fname = mb_errors_funcname(L);
      if (fname == NULL) fname = ar.name ? ar.name : "?";
      mb_errors_throw(L, "runtime", name,
                     "%s: cannot %s inside '%s', a C function Lua cannot yield "
                     "across (attempt to yield across a C-call boundary)",
                     name, verb, fname);
    }
    lua_pop(L, 1);
    if (ar.namewhat != NULL && strcmp(ar.namewhat, "metamethod") == 0)
      mb_errors_throw(L, "runtime", name,
                     "%s: cannot %s inside a '%s' metamethod "
                     "(attempt to yield across a C-call boundary)",
                     name, verb, ar.name ? ar.name : "?");
  }
  mb_errors_throw(L, "runtime", name,
                 "%s: cannot %s here (attempt to yield across a C-call boundary)", name, verb);
}

/* Every task's message handler (mb_task_msgh), for an error of ours at
** index 1: it gets the traceback of L under head, after any traceback it
** already had (an error re-raised after an await keeps the older hops
** first). Leaves the error alone on the stack. Other values are passed on
** unchanged (task.c notes their tracebacks). */
void mb_errors_stamp(lua_State *L, const char *head) {
  mb_rt *rt = mb_rt_of(L);
  lua_settop(L, 1);
  mb_assert(mb_errors_is(L, 1), "stamping a value that is not one of our errors");
  if (mb_errors_is(L, 1) == 2) { /* fresh: this stack's own traceback wins */
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->error_mt_ref);
    lua_setmetatable(L, 1);
    lua_pushnil(L);
    mb_errors_set(L, 1, "traceback");
  }
  mb_errors_traceback(L, 1, head);
  if (mb_errors_get(L, 1, "traceback") == LUA_TSTRING) {
    lua_insert(L, -2); /* old new */
    lua_pushliteral(L, "\n");
    lua_insert(L, -2); /* old "\n" new */
    lua_concat(L, 3);
  } else {
    lua_pop(L, 1);
  }
  mb_errors_set(L, 1, "traceback");
}

/* The error on L's top ended a task without going through its message
** handler: Lua raises a memory error (LUA_ERRMEM) without calling one, and
** an error inside the handler itself ends as LUA_ERRERR. Make it one of
** ours as the handler would: kind and op as given, the value as cause,
** and a traceback under head. The failing stack is unwound by now, so the
** traceback is where, read before it was (see mb_limit_oom_where), or a
** note saying why there is none. An error of ours is left alone. L may
** be a thread that died of the error, whose frame then has no free slot:
** room is made first (without it, the error stays as it was raised). */
void mb_errors_adopt(lua_State *L, const char *kind, const char *op, const char *head,
                     const char *where) {
  const char *msg;
  int e = lua_absindex(L, -1);
  if (!lua_checkstack(L, MB_ERRORS_ROOM) || mb_errors_is(L, e)) return;
  if (lua_type(L, e) == LUA_TSTRING || lua_type(L, e) == LUA_TNUMBER) {
    lua_pushvalue(L, e);
    msg = lua_tostring(L, -1); /* converts the copy, if a number */
  } else {
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, e));
  }
  mb_errors_push(L, kind, op, msg, strlen(msg)); /* e msg err */
  lua_remove(L, -2);
  lua_pushvalue(L, e);
  mb_errors_set(L, -2, "cause");
  if (where != NULL)
    lua_pushfstring(L, "%s\n%s", head, where);
  else
    lua_pushfstring(L, "%s (no stack traceback: Lua unwinds the stack before any "
                       "message handler runs for this error)", head);
  mb_errors_set(L, -2, "traceback");
  lua_replace(L, e);
}

/* Is the value at idx an error of ours (a table with one of our
** metatables)? */
int mb_errors_ours(lua_State *L, int idx) {
  return mb_errors_is(L, idx) != 0;
}

/* Is the value at idx an error of ours of this kind (and op, unless
** NULL)? The fields are read raw; they are set where the error is made. */
int mb_errors_has(lua_State *L, int idx, const char *kind, const char *op) {
  int has;
  idx = lua_absindex(L, idx);
  if (!mb_errors_is(L, idx)) return 0;
  lua_pushliteral(L, "kind");
  lua_rawget(L, idx);
  lua_pushliteral(L, "op");
  lua_rawget(L, idx);
  has = lua_type(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -2), kind) == 0 &&
        (op == NULL || (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), op) == 0));
  lua_pop(L, 2);
  return has;
}

static int mb_errors_tostring(lua_State *L) {
  if (!lua_istable(L, 1)) return luaL_typeerror(L, 1, "error");
  mb_errors_get(L, 1, "message");
  if (!lua_isstring(L, -1)) lua_pushliteral(L, "error");
  return 1;
}

/* The id of the Go error the error of ours at idx carries (a bridge
** call's: call.c), or that its cause, or its cause's, carries (a Lua
** module such as pipeline wraps an error as cause); 0 for none. Read raw. */
static lua_Integer mb_errors_goerror(lua_State *L, int idx) {
  lua_Integer id = 0;
  int depth, top = lua_gettop(L);
  lua_pushvalue(L, idx);
  for (depth = 0; depth < 8 && mb_errors_is(L, -1); depth++) {
    lua_pushliteral(L, "goerror");
    if (lua_rawget(L, -2) == LUA_TNUMBER && lua_isinteger(L, -1)) {
      id = lua_tointeger(L, -1);
      break;
    }
    lua_pop(L, 1);
    lua_pushliteral(L, "cause");
    lua_rawget(L, -2);
    lua_remove(L, -2);
  }
  lua_settop(L, top);
  return id;
}

/* Encode an error value for Go: message, kind, op and traceback (strings),
** code (an integer: os.exit's, else 0) and the id of the Go error it
** carries (0: none). Any value is accepted; one that is not an error of
** ours is a "runtime" error with its text. */
int mb_errors_fields(lua_State *L, int idx, mb_buf *out) {
  static const char *const names[] = {"message", "kind", "op", "traceback"};
  char err[128];
  int i, top = lua_gettop(L);
  idx = lua_absindex(L, idx);
  out->len = 0;
  luaL_checkstack(L, 10, "error fields");
  if (mb_errors_is(L, idx)) {
    for (i = 0; i < 4; i++) {
      mb_errors_get(L, idx, names[i]);
      if (!lua_isstring(L, -1)) {
        lua_pop(L, 1);
        lua_pushstring(L, i == 1 ? "runtime" : "");
      }
    }
    mb_errors_get(L, idx, "code");
    lua_pushinteger(L, lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0);
    lua_remove(L, -2);
    lua_pushinteger(L, mb_errors_goerror(L, idx));
  } else {
    const char *s = lua_tostring(L, idx);
    if (s == NULL) s = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, idx));
    lua_pushstring(L, s);
    if (lua_gettop(L) > top + 1) lua_remove(L, -2);
    lua_pushliteral(L, "runtime");
    lua_pushliteral(L, "");
    lua_pushliteral(L, "");
    lua_pushinteger(L, 0);
    lua_pushinteger(L, 0);
  }
  i = mb_codec_encode(L, top + 1, 6, out, err, sizeof err);
  lua_settop(L, top);
  return i;
}

/* The error that ends a run for os.exit: kind "exit", with its code in
** the field the Go side reads (mb_errors_fields). */
void mb_errors_push_exit(lua_State *L, int code) {
  const char *msg = lua_pushfstring(L, "os.exit(%d)", code);
  mb_errors_push(L, "exit", NULL, msg, strlen(msg));
  lua_remove(L, -2);
  lua_pushinteger(L, code);
  mb_errors_set(L, -2, "code");
}

/* errors.new(fields): make the table an error (kind defaults to
** "runtime"); for errors raised by Lua modules such as pipeline. */
int mb_errors_l_new(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  if (mb_errors_get(L, 1, "message") != LUA_TSTRING)
    return mb_errors_misuse(L, "errors.new: field 'message' must be a string");
  if (mb_errors_get(L, 1, "kind") == LUA_TNIL) {
    lua_pushliteral(L, "runtime");
    mb_errors_set(L, 1, "kind");
  }
  lua_settop(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->error_mt_ref);
  lua_setmetatable(L, 1);
  return 1;
}

/* errors.is(v): whether v is one of ours. */
int mb_errors_l_is(lua_State *L) {
  lua_pushboolean(L, mb_errors_is(L, 1));
  return 1;
}

static const luaL_Reg mb_errors_meta[] = {{"__tostring", mb_errors_tostring}, {NULL, NULL}};

void mb_errors_open(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  luaL_newmetatable(L, "moonbridge.Error");
  luaL_setfuncs(L, mb_errors_meta, 0);
  rt->error_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  luaL_setfuncs(L, mb_errors_meta, 0);
  rt->error_fresh_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}
