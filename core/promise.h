/*
** promise.h — promises, their combinators, and the global `async`.
**
** Layer 3 (objects).
*/
#ifndef MB_PROMISE_H
#define MB_PROMISE_H

#include "state.h"

typedef struct mb_promise mb_promise;
enum { MB_PROM_PENDING = 0, MB_PROM_FULFILLED, MB_PROM_REJECTED, MB_PROM_CANCELLED };

void mb_promise_open(lua_State *L);
mb_promise *mb_promise_test(lua_State *L, int idx);
int mb_promise_state(const mb_promise *p);
mb_link *mb_promise_waiters(mb_promise *p);
int mb_promise_outcome(lua_State *L, int idx);
void mb_promise_pass_error(lua_State *L, int idx);
int mb_promise_await(lua_State *L, int idx);
int mb_promise_cancel(lua_State *L, int idx);
mb_task *mb_promise_task(lua_State *L, int idx);

#endif
