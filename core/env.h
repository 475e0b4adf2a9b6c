/*
** env.h — environments: what a script's globals are, and what it may
** change. The read-only proxies the sandbox shows every run, each run's own
** globals over them, the private modules only moonbridge's own Lua code
** can require, and the kept globals of a loaded Script.
**
** Layer 3 (objects). run.c asks for a run's environment; sandbox.c builds
** the base; bridge.c and run.c publish the globals they write.
*/
#ifndef MB_ENV_H
#define MB_ENV_H

#include "state.h"

/* Push a read-only view of the value at idx: a table becomes its proxy
** (the same proxy every time), anything else is pushed as it is. */
void mb_env_readonly(lua_State *L, int idx);

/* Whether the value at idx is a read-only proxy. */
int mb_env_is_readonly(lua_State *L, int idx);

/* Under the sandbox: build the base every run reads its globals from, out
** of the global table as it is now, and lock the metatables of the
** runtime's classes and of strings. */
void mb_env_sandbox(lua_State *L);

/* Under the sandbox, after the core wrote global name: show it in the base
** too (read-only). Without the sandbox, nothing to do. */
void mb_env_publish(lua_State *L, const char *name);

/* Push the environment of run r, made on first use: under the sandbox its
** own globals over the base; a Script's kept globals; moonbridge's private
** environment for an internal run; else the global table. */
void mb_env_push_run(lua_State *L, mb_run *r);

/* Push the environment scripts running now load code into (load, dofile,
** require of a file): the current task's run's. */
void mb_env_push_current(lua_State *L);

/* Under the sandbox: push the current run's own package.loaded (its
** modules from files, and what the script put there). */
void mb_env_push_loaded(lua_State *L);

/* Release what a run holds of environments (it is being freed). */
void mb_env_release_run(lua_State *L, mb_run *r);

/* Keep run r's environment as Script r->id (Runtime.Load); drop Script id. */
void mb_env_keep_script(lua_State *L, mb_run *r);
void mb_env_drop_script(lua_State *L, int64_t id);

/* Under the sandbox, where Runtime.Call looks after the global table: the globals of the
** last chunk run that ended well and defined a global function (the
** load-once-then-Call pattern of a host that runs its handler script with
** RunString). Only one is kept, so tenants' runs do not pile up.
** keep_last remembers run r's; push_last pushes them and returns 1, or
** pushes nothing and returns 0 when there are none. */
void mb_env_keep_last(lua_State *L, mb_run *r);
int mb_env_push_last(lua_State *L);

/* Push Script id's environment, or nil when it was dropped. */
int mb_env_push_script(lua_State *L, int64_t id);

/* Make src (moonbridge's own Lua, luamod/) the loader of module name:
** private when the name starts with "moonbridge." (only moonbridge's own
** code can require it), else in package.preload; it runs in the private
** environment either way. Leaves an error message and returns -1 when the
** source does not compile. */
int mb_env_preload_lua(lua_State *L, const char *name, const char *src, size_t len);

/* After the libraries are open: make the private environment, and move
** the internal modules out of package.preload. */
void mb_env_open(lua_State *L);

/* Whether the sandbox is on (the base exists). */
int mb_env_sandboxed(lua_State *L);

#endif
