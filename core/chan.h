/*
** chan.h — channels: Go-style bounded queues between tasks.
**
** Layer 3 (objects).
*/
#ifndef MB_CHAN_H
#define MB_CHAN_H

#include "state.h"

typedef struct mb_chan mb_chan;

void mb_chan_open(lua_State *L);
mb_chan *mb_chan_test(lua_State *L, int idx);
int mb_chan_recv_ready(mb_chan *c);
int mb_chan_recv_now(lua_State *L, int idx);
int mb_chan_await(lua_State *L, int idx);
void mb_chan_enqueue(mb_chan *c, mb_waiter *w);

#endif
