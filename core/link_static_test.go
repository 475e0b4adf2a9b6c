//go:build !moonbridge_shared

package core

import (
	"os"
	"strings"
	"testing"
)

// The default build carries Lua and libuv in the program: neither shared
// library is mapped into the process.
func TestLuaAndLibuvAreLinkedStatically(t *testing.T) {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	for _, lib := range []string{"liblua5.4", "libuv.so"} {
		if strings.Contains(string(maps), lib) {
			t.Errorf("%s is mapped into the process: Lua and libuv should be linked statically", lib)
		}
	}
}
