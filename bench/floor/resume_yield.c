/* Floor for the Lua side of a task switch, on PUC Lua 5.4 (C API only):
 *   lua_resume_yield      one lua_resume of a coroutine that runs a Lua loop
 *                         calling a C function that lua_yield()s (ns/cycle)
 *   lua_thread_new_finish lua_newthread + run an empty Lua function to
 *                         completion; the thread is then garbage (ns/op,
 *                         GC amortized)
 *   lua_thread_reuse      run an empty function to completion on one
 *                         finished thread reset with lua_resetthread/
 *                         lua_closethread (ns/op)
 *   lua_thread_suspended  bytes per thread parked in a yielding C call
 *                         (10,000 threads, lua_gc count delta after full GC)
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "floor.h"

#if LUA_VERSION_RELEASE_NUM >= 50406
#define RESET_THREAD(T, L) lua_closethread((T), (L))
#else
#define RESET_THREAD(T, L) lua_resetthread(T)
#endif

static int cyield(lua_State *L) { return lua_yield(L, 0); }

static void die(lua_State *L, const char *what) {
  fprintf(stderr, "%s: %s\n", what, lua_tostring(L, -1));
  exit(1);
}

struct ctx {
  lua_State *L;
  lua_State *T;    /* the cycling / reused thread */
  int body_ref;    /* loop body: while true do cyield() end */
  int empty_ref;   /* empty function */
};

static uint64_t bench_cycle(void *p, uint64_t n) {
  struct ctx *c = p;
  int nres;
  uint64_t t0 = now_ns();
  for (uint64_t i = 0; i < n; i++) {
    if (lua_resume(c->T, c->L, 0, &nres) != LUA_YIELD) die(c->T, "resume");
  }
  return now_ns() - t0;
}

static uint64_t bench_new_finish(void *p, uint64_t n) {
  struct ctx *c = p;
  lua_State *L = c->L;
  int nres;
  uint64_t t0 = now_ns();
  for (uint64_t i = 0; i < n; i++) {
    lua_State *T = lua_newthread(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->empty_ref);
    lua_xmove(L, T, 1);
    if (lua_resume(T, L, 0, &nres) != LUA_OK) die(T, "resume");
    lua_pop(L, 1);
  }
  return now_ns() - t0;
}

static uint64_t bench_reuse(void *p, uint64_t n) {
  struct ctx *c = p;
  lua_State *T = c->T;
  int nres;
  uint64_t t0 = now_ns();
  for (uint64_t i = 0; i < n; i++) {
    RESET_THREAD(T, c->L);
    lua_rawgeti(T, LUA_REGISTRYINDEX, c->empty_ref);
    if (lua_resume(T, c->L, 0, &nres) != LUA_OK) die(T, "resume");
    lua_settop(T, 0);
  }
  return now_ns() - t0;
}

static size_t lua_bytes(lua_State *L) {
  return (size_t)lua_gc(L, LUA_GCCOUNT) * 1024u + (size_t)lua_gc(L, LUA_GCCOUNTB);
}

int main(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_register(L, "cyield", cyield);
  struct ctx c = {.L = L};

  if (luaL_loadstring(L, "local y = cyield while true do y() end")) die(L, "load");
  c.body_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (luaL_loadstring(L, "")) die(L, "load");
  c.empty_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  /* resume/yield cycle */
  c.T = lua_newthread(L);
  int thread_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_rawgeti(c.T, LUA_REGISTRYINDEX, c.body_ref);
  report("lua_resume_yield", measure_ns(bench_cycle, &c, 1000), "ns/cycle");

  report("lua_thread_new_finish", measure_ns(bench_new_finish, &c, 1000), "ns/op");

  /* reuse: start from a finished thread */
  lua_settop(c.T, 0);
  RESET_THREAD(c.T, L);
  report("lua_thread_reuse", measure_ns(bench_reuse, &c, 1000), "ns/op");
  luaL_unref(L, LUA_REGISTRYINDEX, thread_ref);

  /* memory of suspended threads */
  enum { TASKS = 10000 };
  lua_createtable(L, TASKS, 0);
  lua_gc(L, LUA_GCCOLLECT);
  lua_gc(L, LUA_GCCOLLECT);
  size_t before = lua_bytes(L);
  for (int i = 1; i <= TASKS; i++) {
    int nres;
    lua_State *T = lua_newthread(L);
    lua_rawgeti(T, LUA_REGISTRYINDEX, c.body_ref);
    if (lua_resume(T, L, 0, &nres) != LUA_YIELD) die(T, "resume");
    lua_rawseti(L, -2, i);
  }
  lua_gc(L, LUA_GCCOLLECT);
  lua_gc(L, LUA_GCCOLLECT);
  size_t after = lua_bytes(L);
  report("lua_thread_suspended", (double)(after - before) / TASKS, "B/task");
  lua_pop(L, 1);

  lua_close(L);
  return 0;
}
