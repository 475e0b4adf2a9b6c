package core

// Test seam for lbug.c: a private stock Lua state (no runtime) where a
// chunk can be dumped, patched, reloaded and run, so tests can see what
// mb_lbug_patch and mb_lbug_fix do to it. Nothing here is reachable from
// a Runtime's scripts.

/*
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "lbug.h"

typedef struct { char *p; size_t len; } mb_lbugt_out;

static int mb_lbugt_writer(lua_State *L, const void *p, size_t n, void *ud) {
  mb_lbugt_out *o = (mb_lbugt_out *)ud;
  char *q = realloc(o->p, o->len + n);
  (void)L;
  if (q == NULL) return 1;
  memcpy(q + o->len, p, n);
  o->p = q;
  o->len += n;
  return 0;
}

// Dump the function on the top (with debug info) into a malloc'd buffer.
static int mb_lbugt_dump(lua_State *L, mb_lbugt_out *o) {
  o->p = NULL;
  o->len = 0;
  return lua_dump(L, mb_lbugt_writer, o, 0);
}

// A fresh state with the stock libraries; print and io.write collect what
// they print in the global __out, read back by mb_lbugt_output.
static lua_State *mb_lbugt_new(void) {
  static const char prelude[] =
      "local out = {}\n"
      "__out = out\n"
      "function print(...)\n"
      "  local t = table.pack(...)\n"
      "  for i = 1, t.n do t[i] = tostring(t[i]) end\n"
      "  out[#out + 1] = table.concat(t, '\\t', 1, t.n) .. '\\n'\n"
      "end\n"
      "function io.write(...)\n"
      "  for _, v in ipairs({...}) do out[#out + 1] = tostring(v) end\n"
      "end\n";
  lua_State *L = luaL_newstate();
  if (L == NULL) return NULL;
  luaL_openlibs(L);
  if (luaL_dostring(L, prelude) != LUA_OK) {
    lua_close(L);
    return NULL;
  }
  return L;
}

// Run the function on the top; leave what it printed (or its error) on
// the top. 0 if it ran.
static int mb_lbugt_run(lua_State *L) {
  int st = lua_pcall(L, 0, 0, 0);
  if (st != LUA_OK) return -1;
  return luaL_dostring(L, "return table.concat(__out)");
}
// Load src and apply the fix as how says (0: none, 1: mb_lbug_fix_text,
// 2: mb_lbug_fix); pop the function. 1 if the fix replaced it, 0 if not,
// -1 on an error (its message on the top).
static int mb_lbugt_loadfix(lua_State *L, const char *src, size_t len, int how) {
  const void *before;
  int st = luaL_loadbufferx(L, src, len, "=bench", "t");
  if (st != LUA_OK) return -1;
  before = lua_topointer(L, -1);
  if (how == 1) st = mb_lbug_fix_text(L, -1, src, len);
  if (how == 2) st = mb_lbug_fix(L, -1);
  if (st != LUA_OK) return -1;
  st = lua_topointer(L, -1) != before;
  lua_settop(L, -2);
  return st;
}
*/
import "C"

import (
	"errors"
	"unsafe"
)

// lbugState is a private stock Lua state. One goroutine at a time.
type lbugState struct{ L *C.lua_State }

func newLbugState() (*lbugState, error) {
	L := C.mb_lbugt_new()
	if L == nil {
		return nil, errors.New("cannot create a Lua state")
	}
	return &lbugState{L: L}, nil
}

func (s *lbugState) close() { C.lua_close(s.L) }

func (s *lbugState) topError() error {
	var n C.size_t
	p := C.lua_tolstring(s.L, -1, &n)
	msg := "(no message)"
	if p != nil {
		msg = C.GoStringN(p, C.int(n))
	}
	C.lua_settop(s.L, -2)
	return errors.New(msg)
}

// load pushes src loaded as text (or binary, mode "b") named name.
func (s *lbugState) load(name, src, mode string) error {
	csrc, cname, cmode := C.CString(src), C.CString(name), C.CString(mode)
	defer C.free(unsafe.Pointer(csrc))
	defer C.free(unsafe.Pointer(cname))
	defer C.free(unsafe.Pointer(cmode))
	if C.luaL_loadbufferx(s.L, csrc, C.size_t(len(src)), cname, cmode) != C.LUA_OK {
		return s.topError()
	}
	return nil
}

// dump returns the dump of the function on the top (which stays).
func (s *lbugState) dump() ([]byte, error) {
	var o C.mb_lbugt_out
	st := C.mb_lbugt_dump(s.L, &o)
	defer C.free(unsafe.Pointer(o.p))
	if st != 0 {
		return nil, errors.New("lua_dump failed")
	}
	return C.GoBytes(unsafe.Pointer(o.p), C.int(o.len)), nil
}

// lbugPatch runs mb_lbug_patch on a copy of chunk: the patched copy and
// how many instructions it rewrote (-1: not a chunk it can walk).
func lbugPatch(chunk []byte) ([]byte, int) {
	p := C.CBytes(chunk)
	defer C.free(p)
	n := int(C.mb_lbug_patch((*C.uchar)(p), C.size_t(len(chunk))))
	return C.GoBytes(p, C.int(len(chunk))), n
}

// fix runs mb_lbug_fix on the function on the top; it reports whether the
// function there is still the same object.
func (s *lbugState) fix() (same bool, err error) {
	before := C.lua_topointer(s.L, -1)
	if C.mb_lbug_fix(s.L, -1) != C.LUA_OK {
		return false, s.topError()
	}
	return C.lua_topointer(s.L, -1) == before, nil
}

// run calls the function on the top and returns what it printed.
func (s *lbugState) run() (string, error) {
	if C.mb_lbugt_run(s.L) != 0 {
		return "", s.topError()
	}
	var n C.size_t
	p := C.lua_tolstring(s.L, -1, &n)
	out := C.GoStringN(p, C.int(n))
	C.lua_settop(s.L, -2)
	return out, nil
}

// lbugLoader loads one text over and over (for the benchmark).
type lbugLoader struct {
	s   *lbugState
	src *C.char
	n   C.size_t
}

func (s *lbugState) loader(src string) *lbugLoader {
	return &lbugLoader{s: s, src: C.CString(src), n: C.size_t(len(src))}
}

func (l *lbugLoader) free() { C.free(unsafe.Pointer(l.src)) }

// load loads the text and fixes it as how says (0 none, 1 mb_lbug_fix_text,
// 2 mb_lbug_fix): whether the function was replaced.
func (l *lbugLoader) load(how int) (bool, error) {
	switch C.mb_lbugt_loadfix(l.s.L, l.src, l.n, C.int(how)) {
	case -1:
		return false, l.s.topError()
	case 1:
		return true, nil
	}
	return false, nil
}
