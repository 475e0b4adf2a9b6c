/*
** chan.c — channels: Go-style bounded queues between tasks, and
** channel.select.
**
** Layer 3 (objects). A Channel is a userdata holding its ring buffer's indices
** and two queues of waiting tasks (mb_waiter); the buffered values live in
** its user value table. A rendezvous hands the value straight from one
** task's stack to the other's: a waiting sender keeps its value on its own
** suspended stack (w->slot), and a sender that finds a waiting receiver
** pushes the value onto the receiver's suspended stack, where its
** continuation finds it on top.
*/
#include <string.h>

#include "chan.h"
#include "errors.h"
#include "task.h"

#define MB_CHAN_MT "moonbridge.Channel"

struct mb_chan {
  lua_Integer cap;   /* 0: unbuffered rendezvous */
  lua_Integer count; /* values in the buffer */
  lua_Integer head;  /* ring index (0-based) of the oldest */
  int closed;
  mb_link recvq;     /* waiting receivers, oldest first */
  mb_link sendq;     /* waiting senders, oldest first */
};

mb_chan *mb_chan_test(lua_State *L, int idx) {
  return (mb_chan *)luaL_testudata(L, idx, MB_CHAN_MT);
}

static mb_chan *mb_chan_check(lua_State *L, int idx) {
  return (mb_chan *)luaL_checkudata(L, idx, MB_CHAN_MT);
}

int mb_chan_recv_ready(mb_chan *c) {
  return c->count > 0 || !mb_list_empty(&c->sendq) || c->closed;
}

static int mb_chan_send_ready(mb_chan *c) {
  return c->closed || !mb_list_empty(&c->recvq) || c->count < c->cap;
}

void mb_chan_enqueue(mb_chan *c, mb_waiter *w) {
  mb_list_push(w->op == MB_OP_SEND ? &c->sendq : &c->recvq, &w->link);
}

/* Ring buffer in the user value table: slot (head + i) % cap, 1-based. */
static void mb_chan_push_buf(lua_State *L, int idx, mb_chan *c) {
  lua_getiuservalue(L, idx, 1);
  lua_insert(L, -2);
  lua_rawseti(L, -2, (c->head + c->count) % c->cap + 1);
  lua_pop(L, 1);
  c->count++;
}

static void mb_chan_pop_buf(lua_State *L, int idx, mb_chan *c) {
  lua_getiuservalue(L, idx, 1);
  lua_rawgeti(L, -1, c->head + 1);
  lua_pushnil(L);
  lua_rawseti(L, -3, c->head + 1); /* let the value be collected */
  lua_remove(L, -2);
  c->head = (c->head + 1) % c->cap;
  c->count--;
}

/* Push a copy of a waiting sender's value onto L. */
static void mb_chan_sender_value(lua_State *L, mb_waiter *w) {
  lua_pushvalue(w->L, w->slot);
  lua_xmove(w->L, L, 1);
}

/* Receive now (mb_chan_recv_ready holds): push v, true or nil, false. */
int mb_chan_recv_now(lua_State *L, int idx) {
  mb_rt *rt = mb_rt_of(L);
  mb_chan *c = (mb_chan *)lua_touserdata(L, idx);
  luaL_checkstack(L, 3, "channel receive");
  if (c->count > 0) {
    mb_chan_pop_buf(L, idx, c);
    if (!mb_list_empty(&c->sendq)) { /* a sender waits for the room */
      mb_waiter *w = mb_list_first(&c->sendq, mb_waiter, link);
      mb_chan_sender_value(L, w);
      mb_chan_push_buf(L, idx, c);
      mb_task_waiter_fire(rt, w, 1);
    }
  } else if (!mb_list_empty(&c->sendq)) {
    mb_waiter *w = mb_list_first(&c->sendq, mb_waiter, link);
    mb_chan_sender_value(L, w);
    mb_task_waiter_fire(rt, w, 1);
  } else {
    lua_pushnil(L);
    lua_pushboolean(L, 0);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 2;
}

/* Send the value at vidx now (mb_chan_send_ready holds): push true, or
** nil, "closed". */
static int mb_chan_send_now(lua_State *L, int idx, int vidx) {
  mb_rt *rt = mb_rt_of(L);
  mb_chan *c = (mb_chan *)lua_touserdata(L, idx);
  luaL_checkstack(L, 3, "channel send");
  if (c->closed) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
  }
  if (!mb_list_empty(&c->recvq)) { /* hand it over: onto its stack */
    mb_waiter *w = mb_list_first(&c->recvq, mb_waiter, link);
    if (!lua_checkstack(w->L, 2)) return mb_errors_misuse(L, "channel:send: stack overflow");
    lua_pushvalue(L, vidx);
    lua_xmove(L, w->L, 1);
    mb_task_waiter_fire(rt, w, 1);
  } else {
    lua_pushvalue(L, vidx);
    mb_chan_push_buf(L, idx, c);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static void mb_chan_check_value(lua_State *L, int vidx, const char *op) {
  if (lua_isnoneornil(L, vidx)) mb_errors_misuse(L, "%s: cannot send nil on a channel", op);
}

/* ---------------------------------------------------------------------
** Blocking operations.
** ------------------------------------------------------------------- */
static int mb_chan_recv_k(lua_State *L, int status, lua_KContext ctx) {
  mb_task *t = mb_rt_of(L)->current;
  (void)status;
  (void)ctx;
  mb_task_wait_check(L);
  if (!t->fired_ok) { /* closed while we waited */
    lua_pushnil(L);
    lua_pushboolean(L, 0);
    return 2;
  }
  lua_pushboolean(L, 1); /* the value was pushed onto our stack */
  return 2;
}

static int mb_chan_recv(lua_State *L, int idx, const char *op) {
  mb_chan *c = (mb_chan *)lua_touserdata(L, idx);
  mb_task *self;
  if (mb_chan_recv_ready(c)) return mb_chan_recv_now(L, idx);
  self = mb_task_wait_begin(L, op);
  lua_settop(L, idx); /* the channel stays anchored on our stack */
  mb_task_waiter_init(&self->w1, self, L, 1, MB_OP_RECV);
  mb_chan_enqueue(c, &self->w1);
  return mb_task_wait_objs(L, self, &self->w1, 1, "a channel receive", 0, mb_chan_recv_k);
}

static int mb_chan_l_recv(lua_State *L) {
  mb_chan_check(L, 1);
  return mb_chan_recv(L, 1, "channel:recv");
}

/* Await a channel: a receive. */
int mb_chan_await(lua_State *L, int idx) {
  return mb_chan_recv(L, idx, "await");
}

static int mb_chan_send_k(lua_State *L, int status, lua_KContext ctx) {
  mb_task *t = mb_rt_of(L)->current;
  (void)status;
  (void)ctx;
  mb_task_wait_check(L);
  if (!t->fired_ok) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int mb_chan_l_send(lua_State *L) {
  mb_chan *c = mb_chan_check(L, 1);
  mb_task *self;
  mb_chan_check_value(L, 2, "channel:send");
  lua_settop(L, 2);
  if (mb_chan_send_ready(c)) return mb_chan_send_now(L, 1, 2);
  self = mb_task_wait_begin(L, "channel:send");
  mb_task_waiter_init(&self->w1, self, L, 1, MB_OP_SEND);
  self->w1.slot = 2;
  mb_chan_enqueue(c, &self->w1);
  return mb_task_wait_objs(L, self, &self->w1, 1, "a channel send", 0, mb_chan_send_k);
}

static int mb_chan_l_try_send(lua_State *L) {
  mb_chan *c = mb_chan_check(L, 1);
  mb_chan_check_value(L, 2, "channel:try_send");
  lua_settop(L, 2);
  if (c->closed) {
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "closed");
    return 2;
  }
  if (!mb_chan_send_ready(c)) {
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "full");
    return 2;
  }
  return mb_chan_send_now(L, 1, 2);
}

static int mb_chan_l_try_recv(lua_State *L) {
  mb_chan *c = mb_chan_check(L, 1);
  if (c->count > 0 || !mb_list_empty(&c->sendq)) return mb_chan_recv_now(L, 1);
  lua_pushnil(L);
  lua_pushboolean(L, 0);
  if (c->closed) lua_pushliteral(L, "closed");
  else lua_pushliteral(L, "empty");
  return 3;
}

/* Close: waiting receivers get nil, false (the buffer is empty when any
** wait); waiting senders get nil, "closed". Buffered values stay. */
static int mb_chan_l_close(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  mb_chan *c = mb_chan_check(L, 1);
  if (c->closed) return mb_errors_misuse(L, "channel:close: the channel is already closed");
  c->closed = 1;
  while (!mb_list_empty(&c->recvq)) mb_task_waiter_fire(rt, mb_list_first(&c->recvq, mb_waiter, link), 0);
  while (!mb_list_empty(&c->sendq)) mb_task_waiter_fire(rt, mb_list_first(&c->sendq, mb_waiter, link), 0);
  return 0;
}

static int mb_chan_l_len(lua_State *L) {
  lua_pushinteger(L, mb_chan_check(L, 1)->count);
  return 1;
}

static int mb_chan_l_cap(lua_State *L) {
  lua_pushinteger(L, mb_chan_check(L, 1)->cap);
  return 1;
}

static int mb_chan_l_closed(lua_State *L) {
  lua_pushboolean(L, mb_chan_check(L, 1)->closed);
  return 1;
}

/* for v in ch:iter(): receive until closed and drained. */
static int mb_chan_iter_k(lua_State *L, int status, lua_KContext ctx) {
  int n = mb_chan_recv_k(L, status, ctx);
  lua_pop(L, n - 1); /* v, or nil once closed */
  return 1;
}

static int mb_chan_iter_next(lua_State *L) {
  mb_chan *c;
  mb_task *self;
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(1));
  c = (mb_chan *)lua_touserdata(L, 1);
  if (mb_chan_recv_ready(c)) {
    mb_chan_recv_now(L, 1);
    lua_pop(L, 1);
    return 1;
  }
  self = mb_task_wait_begin(L, "channel iterator");
  mb_task_waiter_init(&self->w1, self, L, 1, MB_OP_RECV);
  mb_chan_enqueue(c, &self->w1);
  return mb_task_wait_objs(L, self, &self->w1, 1, "a channel receive", 0, mb_chan_iter_k);
}

static int mb_chan_l_iter(lua_State *L) {
  mb_chan_check(L, 1);
  lua_settop(L, 1);
  lua_pushcclosure(L, mb_chan_iter_next, 1);
  return 1;
}

static int mb_chan_l_tostring(lua_State *L) {
  mb_chan *c = mb_chan_check(L, 1);
  lua_pushfstring(L, "Channel (%I/%I%s)", (lua_Integer)c->count, (lua_Integer)c->cap,
                  c->closed ? ", closed" : "");
  return 1;
}

static int mb_chan_l_new(lua_State *L) {
  lua_Integer cap = luaL_optinteger(L, 1, 0);
  mb_chan *c;
  if (cap < 0) return luaL_argerror(L, 1, "capacity must be 0 or more");
  c = (mb_chan *)lua_newuserdatauv(L, sizeof *c, 1);
  memset(c, 0, sizeof *c);
  c->cap = cap;
  mb_list_init(&c->recvq);
  mb_list_init(&c->sendq);
  luaL_setmetatable(L, MB_CHAN_MT);
  lua_createtable(L, cap < 64 ? (int)cap : 64, 0);
  lua_setiuservalue(L, -2, 1);
  return 1;
}

/* ---------------------------------------------------------------------
** channel.select(cases): cases {ch, "recv"}, {ch, "send", v}, "default".
** Stack while it runs: cases, then per case its channel and value, then
** the waiters' array.
** ------------------------------------------------------------------- */
#define MB_CHAN_SEL_CH(i) (2 * (i))      /* stack index of case i's channel */
#define MB_CHAN_SEL_V(i) (2 * (i) + 1)   /* and of its value (send) or mark */

static char mb_chan_sel_recv_mark; /* in a case's value slot: a receive */

static int mb_chan_sel_is_recv(lua_State *L, int i) {
  return lua_touserdata(L, MB_CHAN_SEL_V(i)) == &mb_chan_sel_recv_mark;
}

static int mb_chan_select_result(lua_State *L, int i, int op, int ok, int delivered) {
  lua_pushinteger(L, i);
  if (op == MB_OP_RECV) {
    if (delivered) {
      lua_rotate(L, -2, 1); /* index below the delivered value */
    } else {
      lua_pushnil(L);
    }
    lua_pushboolean(L, ok);
    return 3;
  }
  if (ok) {
    lua_pushboolean(L, 1);
    return 2;
  }
  lua_pushnil(L);
  lua_pushliteral(L, "closed");
  return 3;
}

/* Woken: the case that fired is t->fired; a receive's value, when one
** was delivered, is on our stack's top. */
static int mb_chan_select_k(lua_State *L, int status, lua_KContext ctx) {
  mb_task *t = mb_rt_of(L)->current;
  int i, recv;
  (void)status;
  (void)ctx;
  mb_task_wait_check(L);
  i = t->fired;
  recv = mb_chan_sel_is_recv(L, i);
  return mb_chan_select_result(L, i, recv ? MB_OP_RECV : MB_OP_SEND, t->fired_ok,
                          recv && t->fired_ok);
}

static int mb_chan_l_select(lua_State *L) {
  mb_rt *rt = mb_rt_of(L);
  int n, i, dflt = 0, nready = 0, nwait = 0;
  mb_waiter *wv;
  mb_task *self;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  n = (int)luaL_len(L, 1);
  if (n == 0) return mb_errors_misuse(L, "channel.select: no cases");
  luaL_checkstack(L, 2 * n + 8, "channel.select: too many cases");
  for (i = 1; i <= n; i++) {
    int op;
    const char *s;
    if (lua_rawgeti(L, 1, i) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "default") == 0) {
      if (dflt) return mb_errors_misuse(L, "channel.select: more than one \"default\" case");
      dflt = i;
      lua_pop(L, 1);
      lua_pushnil(L);
      lua_pushnil(L);
      continue;
    }
    if (!lua_istable(L, -1))
      return mb_errors_misuse(L, "channel.select: case %d must be {ch, \"recv\"}, {ch, \"send\", v} or \"default\"", i);
    lua_rawgeti(L, -1, 1);
    if (mb_chan_test(L, -1) == NULL)
      return mb_errors_misuse(L, "channel.select: case %d: expected a Channel (got %s)", i, luaL_typename(L, -1));
    lua_rawgeti(L, -2, 2);
    s = lua_tostring(L, -1);
    if (s != NULL && strcmp(s, "recv") == 0) op = MB_OP_RECV;
    else if (s != NULL && strcmp(s, "send") == 0) op = MB_OP_SEND;
    else return mb_errors_misuse(L, "channel.select: case %d: operation must be \"recv\" or \"send\"", i);
    lua_pop(L, 1);
    if (op == MB_OP_SEND) {
      lua_rawgeti(L, -2, 3);
      if (lua_isnil(L, -1)) return mb_errors_misuse(L, "channel.select: case %d: cannot send nil", i);
    } else {
      lua_pushlightuserdata(L, &mb_chan_sel_recv_mark);
    }
    lua_remove(L, -3); /* the case table */
    if (op == MB_OP_RECV ? mb_chan_recv_ready(mb_chan_test(L, -2))
                         : mb_chan_send_ready(mb_chan_test(L, -2)))
      nready++;
  }
  if (nready > 0) { /* pick one of the ready cases at random: fairness */
    int k = (int)(mb_rt_rand(rt) % (uint32_t)nready);
    for (i = 1; i <= n; i++) {
      mb_chan *c;
      int recv;
      if (i == dflt) continue;
      c = (mb_chan *)lua_touserdata(L, MB_CHAN_SEL_CH(i));
      recv = mb_chan_sel_is_recv(L, i);
      if (!(recv ? mb_chan_recv_ready(c) : mb_chan_send_ready(c)) || k-- > 0) continue;
      if (recv) {
        int ok;
        mb_chan_recv_now(L, MB_CHAN_SEL_CH(i));
        ok = lua_toboolean(L, -1);
        lua_pop(L, 1);
        return mb_chan_select_result(L, i, MB_OP_RECV, ok, 1);
      }
      {
        int ok = mb_chan_send_now(L, MB_CHAN_SEL_CH(i), MB_CHAN_SEL_V(i)) == 1;
        lua_pop(L, ok ? 1 : 2);
        return mb_chan_select_result(L, i, MB_OP_SEND, ok, 0);
      }
    }
  }
  if (dflt) {
    lua_pushinteger(L, dflt);
    return 1;
  }
  self = mb_task_wait_begin(L, "channel.select");
  wv = (mb_waiter *)lua_newuserdatauv(L, (size_t)n * sizeof *wv, 0);
  for (i = 1; i <= n; i++) {
    int recv;
    if (i == dflt) continue;
    recv = mb_chan_sel_is_recv(L, i);
    mb_task_waiter_init(&wv[nwait], self, L, i, recv ? MB_OP_RECV : MB_OP_SEND);
    wv[nwait].slot = MB_CHAN_SEL_V(i);
    mb_chan_enqueue((mb_chan *)lua_touserdata(L, MB_CHAN_SEL_CH(i)), &wv[nwait]);
    nwait++;
  }
  return mb_task_wait_objs(L, self, wv, nwait, "a channel select", 0, mb_chan_select_k);
}

static const luaL_Reg mb_chan_methods[] = {
    {"send", mb_chan_l_send},         {"recv", mb_chan_l_recv},
    {"try_send", mb_chan_l_try_send}, {"try_recv", mb_chan_l_try_recv},
    {"close", mb_chan_l_close},       {"len", mb_chan_l_len},
    {"cap", mb_chan_l_cap},           {"closed", mb_chan_l_closed},
    {"iter", mb_chan_l_iter},         {NULL, NULL}};

static const luaL_Reg mb_chan_funcs[] = {
    {"new", mb_chan_l_new}, {"select", mb_chan_l_select}, {NULL, NULL}};

static int mb_chan_luaopen(lua_State *L) {
  luaL_newlib(L, mb_chan_funcs);
  return 1;
}

static const luaL_Reg mb_chan_meta[] = {{"__tostring", mb_chan_l_tostring}, {NULL, NULL}};

void mb_chan_open(lua_State *L) {
  mb_newclass(L, MB_CHAN_MT, mb_chan_methods, mb_chan_meta);
  lua_pop(L, 1);
  mb_preload(L, "channel", mb_chan_luaopen);
}
