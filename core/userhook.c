/*
** userhook.c — debug.sethook and debug.gethook beside the scheduler's own
** count hook (see userhook.h).
**
** The records: a table with weak keys, in the registry from the first
** debug.sethook on (rt->userhooks says so; until then nothing here runs), maps
** a thread to {function, mask, count, run}: what the script asked for,
** and the run it asked in. The registry's _HOOKKEY table, stock ldblib's,
** maps the thread to the function too, as it does in stock Lua.
*/
#include <string.h>

#include "userhook.h"

enum { MB_UH_FN = 1, MB_UH_MASK, MB_UH_COUNT, MB_UH_RUN, MB_UH_PART };

static const char *const mb_userhook_events[] = {"call", "return", "line", "count",
                                                 "tail call"};

static int64_t mb_userhook_run(mb_rt *rt) {
  return rt->current != NULL ? rt->current->run->id : 0;
}

static const char mb_userhook_key;

/* Push the records, made at the first call with create set; 0 (nothing
** pushed) when there are none yet. */
static int mb_userhook_records(lua_State *L, int create) {
  mb_rt *rt = mb_rt_of(L);
  if (!rt->userhooks && !create) return 0;
  mb_registry_table(L, &mb_userhook_key, "k");
  rt->userhooks = 1;
  return 1;
}

/* Stock ldblib's table of hooks: thread -> function, weak keys. Set
** co's entry to the value on L's top (popped). Only debug.sethook makes
** the table (create): the scheduler's calls allocate nothing. */
static void mb_userhook_stock(lua_State *L, lua_State *co, int create);

/* Push co (a thread of L's state) on L: it goes by co's own stack. */
static int mb_userhook_pushthread(lua_State *L, lua_State *co) {
  if (co != L && !lua_checkstack(co, 1)) return 0;
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  return 1;
}

/* Push co's record for the running run and return 1, or push nothing and
** return 0. A record another run made is dropped: its function is that
** run's, and must not run in this one. */
static int mb_userhook_get(lua_State *L, lua_State *co) {
  if (!lua_checkstack(L, 4) || !mb_userhook_records(L, 0)) return 0;
  if (!mb_userhook_pushthread(L, co)) {
    lua_pop(L, 1);
    return 0;
  }
  if (lua_rawget(L, -2) != LUA_TTABLE) {
    lua_pop(L, 2);
    return 0;
  }
  lua_rawgeti(L, -1, MB_UH_RUN);
  if (lua_tointeger(L, -1) != mb_userhook_run(mb_rt_of(L))) {
    lua_pop(L, 3); /* the run, the record, the records */
    mb_userhook_forget(L, co);
    return 0;
  }
  lua_pop(L, 1);
  lua_remove(L, -2); /* the records */
  return 1;
}

static int mb_userhook_field(lua_State *L, int i) {
  int v;
  lua_rawgeti(L, -1, i);
  v = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

static void mb_userhook_stock(lua_State *L, lua_State *co, int create) {
  if (!lua_checkstack(L, 3)) {
    lua_pop(L, 1);
    return;
  }
  if (!create) {
    if (lua_getfield(L, LUA_REGISTRYINDEX, "_HOOKKEY") != LUA_TTABLE) {
      lua_pop(L, 2);
      return;
    }
  } else if (!luaL_getsubtable(L, LUA_REGISTRYINDEX, "_HOOKKEY")) {
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
  }
  if (mb_userhook_pushthread(L, co)) {
    lua_pushvalue(L, -3);
    lua_rawset(L, -3);
  }
  lua_pop(L, 2);
}

int mb_userhook_mask(lua_State *L, lua_State *co, int *count) {
  int mask;
  *count = 0;
  if (!mb_userhook_get(L, co)) return 0;
  mask = mb_userhook_field(L, MB_UH_MASK);
  *count = mb_userhook_field(L, MB_UH_COUNT);
  lua_pop(L, 1);
  return mask;
}

/* As stock ldblib's hook: the function, with the event's name and the
** current line (or nil). Lua runs hooks with hooks off. */
void mb_userhook_call(lua_State *L, lua_Debug *ar) {
  int want = ar->event == LUA_HOOKTAILCALL ? LUA_MASKCALL : 1 << ar->event;
  if (!mb_userhook_get(L, L)) return;
  if ((mb_userhook_field(L, MB_UH_MASK) & want) == 0) {
    lua_pop(L, 1);
    return;
  }
  if (ar->event == LUA_HOOKCOUNT) {
    /* The hook may count a turn's shorter period: the script's count
    ** events come every count instructions all the same. */
    int count = mb_userhook_field(L, MB_UH_COUNT), n = lua_gethookcount(L);
    if (n < count) {
      int part = mb_userhook_field(L, MB_UH_PART) + n;
      lua_pushinteger(L, part < count ? part : 0);
      lua_rawseti(L, -2, MB_UH_PART);
      if (part < count) {
        lua_pop(L, 1);
        return;
      }
    }
  }
  lua_rawgeti(L, -1, MB_UH_FN);
  lua_remove(L, -2);
  lua_pushstring(L, mb_userhook_events[ar->event]);
  if (ar->currentline >= 0)
    lua_pushinteger(L, ar->currentline);
  else
    lua_pushnil(L);
  lua_call(L, 2, 0);
}

void mb_userhook_forget(lua_State *L, lua_State *co) {
  if (!lua_checkstack(L, 3) || !mb_userhook_records(L, 0)) return;
  if (mb_userhook_pushthread(L, co)) {
    lua_pushnil(L);
    lua_rawset(L, -3);
  }
  lua_pop(L, 1);
  lua_pushnil(L);
  mb_userhook_stock(L, co, 0);
}

/* ---------------------------------------------------------------------
** The library functions: stock's arguments and results.
** ------------------------------------------------------------------- */
static lua_State *mb_userhook_thread(lua_State *L, int *arg) {
  if (lua_isthread(L, 1)) {
    *arg = 1;
    return lua_tothread(L, 1);
  }
  *arg = 0;
  return L;
}

static int mb_userhook_makemask(const char *s, int count) {
  int mask = 0;
  if (strchr(s, 'c')) mask |= LUA_MASKCALL;
  if (strchr(s, 'r')) mask |= LUA_MASKRET;
  if (strchr(s, 'l')) mask |= LUA_MASKLINE;
  if (count > 0) mask |= LUA_MASKCOUNT;
  return mask;
}

/* debug.sethook([thread,] hook, mask [, count])'s arguments, recorded for
** the thread, which is returned: task.c gives it its hook. */
lua_State *mb_userhook_sethook(lua_State *L) {
  int arg, mask = 0, count = 0;
  lua_State *L1 = mb_userhook_thread(L, &arg);
  if (lua_isnoneornil(L, arg + 1)) {
    lua_settop(L, arg + 1);
  } else {
    const char *smask = luaL_checkstring(L, arg + 2);
    luaL_checktype(L, arg + 1, LUA_TFUNCTION);
    count = (int)luaL_optinteger(L, arg + 3, 0);
    mask = mb_userhook_makemask(smask, count);
  }
  mb_userhook_records(L, 1);
  if (!mb_userhook_pushthread(L, L1)) luaL_error(L, "not enough memory");
  if (mask == 0) {
    lua_pushnil(L);
  } else {
    lua_createtable(L, MB_UH_PART, 0); /* every field: none added in a hook */
    lua_pushinteger(L, 0);
    lua_rawseti(L, -2, MB_UH_PART);
    lua_pushvalue(L, arg + 1);
    lua_rawseti(L, -2, MB_UH_FN);
    lua_pushinteger(L, mask);
    lua_rawseti(L, -2, MB_UH_MASK);
    lua_pushinteger(L, count);
    lua_rawseti(L, -2, MB_UH_COUNT);
    lua_pushinteger(L, mb_userhook_run(mb_rt_of(L)));
    lua_rawseti(L, -2, MB_UH_RUN);
  }
  lua_rawset(L, -3);
  lua_pop(L, 1);
  if (mask == 0)
    lua_pushnil(L);
  else
    lua_pushvalue(L, arg + 1);
  mb_userhook_stock(L, L1, 1);
  return L1;
}

/* debug.gethook([thread]): the script's own hook, as stock shows it. */
int mb_userhook_l_gethook(lua_State *L) {
  int arg, mask, count;
  char s[4], *p = s;
  lua_State *L1 = mb_userhook_thread(L, &arg);
  if (!mb_userhook_get(L, L1)) {
    luaL_pushfail(L);
    return 1;
  }
  mask = mb_userhook_field(L, MB_UH_MASK);
  count = mb_userhook_field(L, MB_UH_COUNT);
  lua_rawgeti(L, -1, MB_UH_FN);
  lua_remove(L, -2);
  if (mask & LUA_MASKCALL) *p++ = 'c';
  if (mask & LUA_MASKRET) *p++ = 'r';
  if (mask & LUA_MASKLINE) *p++ = 'l';
  *p = '\0';
  lua_pushstring(L, s);
  lua_pushinteger(L, count);
  return 3;
}
