package core

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// A Lua C module loaded with require finds the Lua API in the program
// itself, however Lua was linked (cgo.go: the static archive, its symbols
// exported with --export-dynamic; cgo_shared.go: liblua5.4.so). The module
// is built here with gcc, the compiler cgo uses anyway, so the test needs
// no package beyond the build's own.
func TestLuaCModulesFindTheLuaAPI(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "twice.c")
	err := os.WriteFile(src, []byte(`#include <lua.h>
#include <lauxlib.h>
static int twice(lua_State *L) {
  lua_pushinteger(L, 2 * luaL_checkinteger(L, 1));
  return 1;
}
int luaopen_twice(lua_State *L) {
  luaL_checkversion(L);
  lua_newtable(L);
  lua_pushcfunction(L, twice);
  lua_setfield(L, -2, "twice");
  return 1;
}
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	so := filepath.Join(dir, "twice.so")
	// The module leaves lua_* undefined, as Debian's Lua modules do: the
	// loader must find them in the process.
	out, err := exec.Command("gcc", "-shared", "-fPIC", "-I/usr/include/lua5.4", "-o", so, src).CombinedOutput()
	if err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	l, _ := newTestLoop(t, Options{})
	err = l.RunChunk(context.Background(), "=test",
		[]byte(`package.cpath = ... function twice21() return require("twice").twice(21) end`),
		[]any{filepath.Join(dir, "?.so")})
	if err != nil {
		t.Fatal(err)
	}
	vals, err := l.CallGlobal(context.Background(), "twice21", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(vals) != 1 || vals[0] != int64(42) {
		t.Fatalf("twice(21) = %v, want 42", vals)
	}
}
