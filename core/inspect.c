/*
** inspect.c — introspection: task.list() for scripts and the task table
** for Go (rt.Tasks, moonbridge run's SIGQUIT dump).
**
** Layer 4. Both read the runs' task lists on the loop's thread, between
** or inside tasks' turns: Go never reads this memory itself, it gets an
** encoded copy as a run's result.
*/
#include <lauxlib.h>

#include "codec.h"
#include "env.h"
#include "inspect.h"
#include "task.h"

/* Append the Tasks of run r to the list at idx (its length is *n). */
static void mb_inspect_push_tasks(lua_State *L, int idx, mb_run *r, lua_Integer *n) {
  mb_link *l;
  mb_list_foreach(l, &r->tasks) {
    mb_task *t = mb_container_of(l, mb_task, run_link);
    if (t->ref == LUA_NOREF) continue;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
    lua_rawseti(L, idx, ++*n);
  }
}

/* task.list(): the live tasks of every run, run by run in the order they
** were spawned; under the sandbox only the calling run's, as runs must
** not see each other. */
static int mb_inspect_l_list(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  mb_task *self = mb_task_current(L, "task.list");
  lua_Integer n = 0;
  mb_link *l;
  rt->accounting = 1; /* t:info() on these will want their CPU time */
  lua_newtable(L);
  if (mb_env_sandboxed(L)) {
    mb_inspect_push_tasks(L, lua_gettop(L), self->run, &n);
    return 1;
  }
  mb_list_foreach(l, &rt->runs) mb_inspect_push_tasks(L, lua_gettop(L), mb_container_of(l, mb_run, link), &n);
  mb_list_foreach(l, &rt->orphans) mb_inspect_push_tasks(L, lua_gettop(L), mb_container_of(l, mb_run, link), &n);
  return 1;
}

void mb_inspect_lib(lua_State *L) {
  lua_pushcfunction(L, mb_inspect_l_list);
  lua_setfield(L, -2, "list");
}

/* Append the info tables of run r's tasks, each with its run's id, to the
** list at idx. */
static void mb_inspect_push_infos(lua_State *L, int idx, mb_run *r, lua_Integer *n) {
  mb_link *l;
  mb_list_foreach(l, &r->tasks) {
    mb_task_push_info(L, mb_container_of(l, mb_task, run_link));
    lua_pushinteger(L, (lua_Integer)r->id);
    lua_setfield(L, -2, "run");
    lua_rawseti(L, idx, ++*n);
  }
}

/* Encode every live task's info into out, as one list (for Go's
** rt.Tasks). 0, or -1 with err set. */
int mb_inspect_snapshot(mb_rt *rt, mb_buf *out, char *err, size_t errlen) {
  lua_State *L = rt->L;
  lua_Integer n = 0;
  mb_link *l;
  int st, top = lua_gettop(L);
  lua_newtable(L);
  mb_list_foreach(l, &rt->runs) mb_inspect_push_infos(L, top + 1, mb_container_of(l, mb_run, link), &n);
  mb_list_foreach(l, &rt->orphans) mb_inspect_push_infos(L, top + 1, mb_container_of(l, mb_run, link), &n);
  out->len = 0;
  st = mb_codec_encode(L, top + 1, 1, out, err, errlen);
  lua_settop(L, top);
  return st;
}
