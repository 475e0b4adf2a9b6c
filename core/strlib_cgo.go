package core

// Test seam for strlib.c and tablib.c: a private lua_State where both the
// stock Lua 5.4 string and table functions (kept in the registry before
// ours replace them: only this seam can reach them) and moonbridge's own
// are callable, so tests and fuzz targets can compare them call by call.
// Nothing here is reachable from a Runtime's scripts.

/*
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "state.h"
#include "strlib.h"
#include "tablib.h"

// The registry key of the stock functions: {string = {...}, table = {...}, utf8 = {...}}.
#define MB_CMP_STOCK "moonbridge.test.stock"

static void *mb_cmp_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

// Copy every function of library lib into a new table, stock[lib].
static void mb_cmp_keep(lua_State *L, int stock, const char *lib) {
  lua_newtable(L);
  lua_getglobal(L, lib);
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -5);
  }
  lua_pop(L, 1);
  lua_setfield(L, stock, lib);
}

static int mb_cmp_open(lua_State *L) {
  int stock;
  luaL_openlibs(L);
  lua_newtable(L);
  stock = lua_gettop(L);
  mb_cmp_keep(L, stock, LUA_STRLIBNAME);
  mb_cmp_keep(L, stock, LUA_TABLIBNAME);
  mb_cmp_keep(L, stock, LUA_UTF8LIBNAME);
  lua_setfield(L, LUA_REGISTRYINDEX, MB_CMP_STOCK);
  mb_strlib_open(L);
  mb_tablib_open(L);
  return 0;
}

// A state whose allocator's user data is rt, as mb_rt_of expects: with no
// task current, the functions charge nothing. NULL with err set on failure.
static lua_State *mb_cmp_new(mb_rt *rt, char *err, size_t errlen) {
  lua_State *L = lua_newstate(mb_cmp_alloc, rt);
  if (L == NULL) {
    strncpy(err, "cannot create a Lua state", errlen - 1);
    return NULL;
  }
  lua_pushcfunction(L, mb_cmp_open);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    strncpy(err, lua_tostring(L, -1), errlen - 1);
    lua_close(L);
    return NULL;
  }
  return L;
}

// Load src (cached in the registry under its own text), call it with the
// stock table and the n strings args[i] (lens[i] bytes), and leave its
// results on the stack. Returns the number of results, or -1 with the
// error message on the stack.
static int mb_cmp_call(lua_State *L, const char *src, size_t srclen,
                       char **args, size_t *lens, int n) {
  int i, top = lua_gettop(L);
  lua_pushlstring(L, src, srclen);
  if (lua_rawget(L, LUA_REGISTRYINDEX) != LUA_TFUNCTION) {
    lua_pop(L, 1);
    if (luaL_loadbuffer(L, src, srclen, "=harness") != LUA_OK) return -1;
    lua_pushlstring(L, src, srclen);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  lua_getfield(L, LUA_REGISTRYINDEX, MB_CMP_STOCK);
  if (!lua_checkstack(L, n)) return -1;
  for (i = 0; i < n; i++) lua_pushlstring(L, args[i], lens[i]);
  if (lua_pcall(L, n + 1, LUA_MULTRET, 0) != LUA_OK) return -1;
  return lua_gettop(L) - top;
}
*/
import "C"

import (
	"errors"
	"unsafe"
)

// strlibState is a private Lua state with the stock string and table
// functions kept aside and moonbridge's installed. One goroutine at a time.
type strlibState struct {
	rt *C.mb_rt
	L  *C.lua_State
}

func newStrlibState() (*strlibState, error) {
	rt := (*C.mb_rt)(C.calloc(1, C.size_t(unsafe.Sizeof(C.mb_rt{}))))
	if rt == nil {
		return nil, errors.New("out of memory")
	}
	var err [256]C.char
	L := C.mb_cmp_new(rt, &err[0], C.size_t(len(err)))
	if L == nil {
		C.free(unsafe.Pointer(rt))
		return nil, errors.New(C.GoString(&err[0]))
	}
	return &strlibState{rt: rt, L: L}, nil
}

func (s *strlibState) close() {
	C.lua_close(s.L)
	C.free(unsafe.Pointer(s.rt))
}

// call runs the Lua chunk src with (stock, args...), where stock holds the
// stock functions as stock.string.find, stock.table.sort, ...; it returns
// the chunk's results converted with tostring, or its error.
func (s *strlibState) call(src string, args ...string) ([]string, error) {
	n := len(args)
	cargs := (**C.char)(C.malloc(C.size_t(n+1) * C.size_t(unsafe.Sizeof((*C.char)(nil)))))
	clens := (*C.size_t)(C.malloc(C.size_t(n+1) * C.size_t(unsafe.Sizeof(C.size_t(0)))))
	defer C.free(unsafe.Pointer(cargs))
	defer C.free(unsafe.Pointer(clens))
	ps := unsafe.Slice(cargs, n+1)
	ls := unsafe.Slice(clens, n+1)
	for i, a := range args {
		ps[i] = C.CString(a) // with a '\0' after: fine, the length says where a ends
		ls[i] = C.size_t(len(a))
	}
	defer func() {
		for i := range args {
			C.free(unsafe.Pointer(ps[i]))
		}
	}()
	csrc := C.CString(src)
	defer C.free(unsafe.Pointer(csrc))
	top := C.lua_gettop(s.L)
	defer C.lua_settop(s.L, top)
	nres := int(C.mb_cmp_call(s.L, csrc, C.size_t(len(src)), cargs, clens, C.int(n)))
	if nres < 0 {
		var l C.size_t
		msg := C.luaL_tolstring(s.L, -1, &l)
		return nil, errors.New(C.GoStringN(msg, C.int(l)))
	}
	out := make([]string, nres)
	for i := range out {
		var l C.size_t
		v := C.luaL_tolstring(s.L, top+1+C.int(i), &l)
		out[i] = C.GoStringN(v, C.int(l))
		C.lua_settop(s.L, -2)
	}
	return out, nil
}
