/*
** errors.h — moonbridge's error objects: constructing, raising and
** reading them.
**
** Layer 1. An error is a table {message, kind, op, traceback, cause[,
** code]} whose __tostring is its message; see errors.c.
*/
#ifndef MB_ERRORS_H
#define MB_ERRORS_H

#include <stddef.h>

#include <lua.h>

#include "buf.h"
#include "mb.h"

void mb_errors_open(lua_State *L);

void mb_errors_push(lua_State *L, const char *kind, const char *op,
                   const char *msg, size_t msglen);
void mb_errors_push_exit(lua_State *L, int code);
void mb_errors_fork(lua_State *L);

/* The stack slots raising an error takes (a table, its fields, a
** traceback): each raise below makes sure of them first. */
#define MB_ERRORS_ROOM LUA_MINSTACK

/* Raise: each never returns (the int is for `return mb_errors_...(L)`). */
MB_NORETURN int mb_errors_raise(lua_State *L);
MB_NORETURN int mb_errors_throw(lua_State *L, const char *kind, const char *op,
                               const char *fmt, ...);
MB_NORETURN int mb_errors_misuse(lua_State *L, const char *fmt, ...);
MB_NORETURN int mb_errors_nomem(lua_State *L, const char *what);
MB_NORETURN int mb_errors_cannot_yield(lua_State *L, const char *name, const char *verb);

/* Whether the value at idx is an error of ours (a table with our
** metatable): moonbridge's own errors; a script's values are passed on
** unchanged. */
int mb_errors_ours(lua_State *L, int idx);

/* The body of a message handler for an error of ours at index 1: it gets
** the traceback of L under head (see mb_task_msgh). */
void mb_errors_stamp(lua_State *L, const char *head);

/* The error on L's top ended a task without its message handler (a
** memory error, an error in the handler): make it one of ours. */
void mb_errors_adopt(lua_State *L, const char *kind, const char *op, const char *head,
                     const char *where);

/* The name of the function on the top as "module.field", replacing it
** (NULL, and it is popped, when it has none). */
const char *mb_errors_funcname(lua_State *L);

/* Is the value at idx an error of ours of kind (and op, unless NULL)? */
int mb_errors_has(lua_State *L, int idx, const char *kind, const char *op);

/* [message, kind, op, traceback, code] of the error at idx, for Go. */
int mb_errors_fields(lua_State *L, int idx, mb_buf *out);

/* errors.new and errors.is, for the moonbridge.errors module (task.c). */
int mb_errors_l_new(lua_State *L);
int mb_errors_l_is(lua_State *L);

#endif
