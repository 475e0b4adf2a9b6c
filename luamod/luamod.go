// Package luamod holds moonbridge's modules written in Lua (pipeline, try,
// moonbridge.llm: the Lua half of the llm module),
// embedded in the program and preloaded into every Runtime, and, under
// meta/, LuaLS annotations for the modules the C core implements.
//
// Layer: Lua modules. Put luamod/ on your language server's
// workspace.library to get completion for require("task") and friends.
package luamod

import (
	"embed"
	"io/fs"
	"strings"
)

//go:embed *.lua
var files embed.FS

// Module is one preloaded Lua module: require(Name) runs Source.
type Module struct {
	Name   string
	Source []byte
}

// Modules returns the embedded modules in name order.
func Modules() []Module {
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		panic(err) // embedded: cannot fail
	}
	mods := make([]Module, 0, len(entries))
	for _, e := range entries {
		src, err := files.ReadFile(e.Name())
		if err != nil {
			panic(err)
		}
		mods = append(mods, Module{Name: strings.TrimSuffix(e.Name(), ".lua"), Source: src})
	}
	return mods
}
