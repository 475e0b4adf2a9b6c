package bridge_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moonbridge/moonbridge/bridge"
)

// TestSandboxRefusesEachEscape tries every way out the sandbox closes and
// sees each refused, then checks what a script still has.
func TestSandboxRefusesEachEscape(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim.txt")
	if err := os.WriteFile(victim, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "mod.lua"), []byte("return 42"), 0o644); err != nil {
		t.Fatal(err)
	}
	sandboxed := func() (*bridge.Runtime, *syncBuffer) {
		out := &syncBuffer{}
		rt, err := bridge.New(bridge.Options{Stdout: out, Stderr: out, Sandbox: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rt.Close() })
		return rt, out
	}

	for _, escape := range []struct{ name, src string }{
		{"io.open", `return io.open(VICTIM, "w")`},
		{"require io", `return require("io").open(VICTIM)`},
		{"os.execute", `return os.execute("touch " .. VICTIM .. ".2")`},
		{"os.exit", `os.exit(3)`},
		{"os.remove", `return os.remove(VICTIM)`},
		{"os.rename", `return os.rename(VICTIM, VICTIM .. ".3")`},
		{"os.getenv", `return os.getenv("HOME")`},
		{"os.tmpname", `return os.tmpname()`},
		{"debug", `return debug.getinfo(1)`},
		{"require debug", `return require("debug").getinfo(1)`},
		{"dofile", `return dofile(VICTIM)`},
		{"loadfile", `return loadfile(VICTIM)`},
		{"binary load", `return load(string.dump(function() return 1 end))()`},
		{"binary load, mode b", `return load(string.dump(function() return 1 end), "x", "b")()`},
		{"binary load, mode bt", `return load(string.dump(function() return 1 end), "x", "bt")()`},
		{"package.loadlib", `return package.loadlib("libc.so.6", "system")`},
		{"require a Lua file", `package.path = DIR .. "/?.lua"; return require("mod")`},
		{"require a C library", `package.cpath = "/usr/lib/x86_64-linux-gnu/liblua5.4.so"; return require("lua")`},
		{"searchers shuffled", `table.insert(package.searchers, 1, nil); return require("mod")`},
		{"os.setlocale", `return os.setlocale("C")`},
		{"binary load through a reader", `local b = string.dump(function() return 1 end); local done
			return load(function() if done then return nil end done = true return b end)()`},
		{"binary load through a reader, mode b", `local b = string.dump(function() return 1 end); local done
			return load(function() if done then return nil end done = true return b end, "x", "b")()`},
	} {
		src := "local VICTIM, DIR = ...\n" + escape.src
		src = strings.Replace(src, "local VICTIM, DIR = ...", "local VICTIM, DIR = "+luaQuote(victim)+", "+luaQuote(dir), 1)
		rt, _ := sandboxed() // each on a fresh Runtime: escapes must not help each other
		err := run(t, rt, src)
		switch {
		case err == nil:
			t.Errorf("%s: allowed", escape.name)
		case !strings.Contains(err.Error(), "nil value") && !strings.Contains(err.Error(), "not found") &&
			!strings.Contains(err.Error(), "binary chunks are not allowed in the sandbox") &&
			!strings.Contains(err.Error(), "attempt to modify a read-only table"):
			t.Errorf("%s: refused for another reason: %v", escape.name, err) // the test is wrong
		}
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "keep me" {
		t.Errorf("the victim file was touched: %q, %v", b, err)
	}
	if _, err := os.Stat(victim + ".2"); err == nil {
		t.Error("os.execute ran")
	}

	rt, out := sandboxed()
	mustRun(t, rt, `
		local task = require("task")
		local f = load("return 1 + ...")          -- text chunks load
		local g = load("return x", "g", "t", {x = 5}) -- with an environment
		local t = task.spawn(function() task.sleep(0.001); return f(1) end)
		print(t:wait(), g(), type(os.time()), type(os.clock()), os.date("!%Y", 0),
			string.format("%d", math.max(1, 2)), utf8.char(72), #table.pack(1, 2),
			select("#", coroutine.running()), io, debug, package.loadlib, #package.searchers)`)
	if got, want := out.String(), "2\t5\tnumber\tnumber\t1970\t2\tH\t2\t2\tnil\tnil\tnil\t1\n"; got != want {
		t.Errorf("what remains: got %q, want %q", got, want)
	}
}

func TestSandboxOffKeepsStockLibraries(t *testing.T) {
	rt, out := newRuntime(t)
	mustRun(t, rt, `print(type(io.open), type(os.getenv), type(debug.getinfo), type(dofile), #package.searchers)`)
	if out.String() != "function\tfunction\tfunction\tfunction\t4\n" {
		t.Errorf("got %q", out.String())
	}
}

func luaQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// TestSandboxDirsAllowOnlyTheirFiles: with SandboxDirs, dofile, loadfile
// and require read Lua files inside them and nowhere else — not through
// "..", a symbolic link, package.path, or a binary chunk.
func TestSandboxDirsAllowOnlyTheirFiles(t *testing.T) {
	root := t.TempDir()
	allowed := filepath.Join(root, "scripts")
	outside := filepath.Join(root, "outside")
	sibling := filepath.Join(root, "scripts-evil") // its path starts with the allowed one's
	for _, d := range []string{allowed, filepath.Join(allowed, "pkg"), outside, sibling} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(path, src string) {
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(allowed, "mod.lua"), `return {answer = 42, task = require("task")}`)
	write(filepath.Join(allowed, "pkg", "init.lua"), `return "pkg " .. ...`)
	write(filepath.Join(allowed, "calc.lua"), `local task = require("task"); task.sleep(0.001); return x or 7`)
	write(filepath.Join(outside, "secret.lua"), `return "secret"`)
	write(filepath.Join(sibling, "evil.lua"), `return "evil"`)
	if err := os.Symlink(filepath.Join(outside, "secret.lua"), filepath.Join(allowed, "link.lua")); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	rt, err := bridge.New(bridge.Options{Stdout: out, Stderr: out, Sandbox: true, SandboxDirs: []string{allowed}})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	dir := luaQuote(allowed)
	mustRun(t, rt, `
		local DIR = `+dir+`
		local mod = require("mod")
		print(mod.answer, type(mod.task.spawn), (require("pkg")))
		print(dofile(DIR .. "/calc.lua"))                  -- it suspends inside: fine
		print(loadfile(DIR .. "/calc.lua", "t", {x = 5, require = require})())
		package.path = "/tmp/?.lua"                        -- changes nothing
		print(require("mod") == mod)`)
	if got, want := out.String(), "42\tfunction\tpkg pkg\n7\n5\ntrue\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	binary := filepath.Join(allowed, "bin.lua")
	for _, c := range []struct{ name, src, want string }{
		{"outside", `return dofile(` + luaQuote(filepath.Join(outside, "secret.lua")) + `)`, "no such file in the directories the sandbox allows"},
		{"dot-dot", `return dofile(DIR .. "/../outside/secret.lua")`, "no such file in the directories the sandbox allows"},
		{"symlink", `return dofile(DIR .. "/link.lua")`, "no such file in the directories the sandbox allows"},
		{"a sibling whose name starts alike", `return dofile(DIR .. "-evil/evil.lua")`, "no such file in the directories the sandbox allows"},
		{"a sibling, by loadfile", `return assert(loadfile(DIR .. "-evil/evil.lua"))`, "no such file in the directories the sandbox allows"},
		{"require via symlink", `return require("link")`, "module 'link' not found"},
		{"require elsewhere", `package.path = ` + luaQuote(outside+"/?.lua") + `; return require("secret")`, "no file '" + allowed + "/secret/init.lua'"},
		{"loadfile outside", `return assert(loadfile(` + luaQuote(filepath.Join(outside, "secret.lua")) + `))`, "no such file in the directories the sandbox allows"},
		{"binary chunk", `local f = assert(loadfile(` + luaQuote(binary) + `)); return f()`, "attempt to load a binary chunk"},
		{"binary mode", `return loadfile(DIR .. "/calc.lua", "b")`, "binary chunks are not allowed in the sandbox"},
	} {
		if c.name == "binary chunk" {
			plain, _ := newRuntime(t) // write a binary chunk with a normal Runtime
			mustRun(t, plain, `local f = io.open(`+luaQuote(binary)+`, "wb"); f:write(string.dump(function() return 1 end)); f:close()`)
		}
		err := run(t, rt, "local DIR = "+dir+"\n"+c.src)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.want)
		}
	}
	if _, err := bridge.New(bridge.Options{Sandbox: true, SandboxDirs: []string{filepath.Join(root, "missing")}}); err == nil {
		t.Error("a missing sandbox directory was accepted")
	}
}

// TestSandboxedScriptCannotForgeAnExit: under the sandbox os.exit does
// not exist, so an error table a script rewrote to kind "exit" (as raised,
// or as an unawaited task's failure) fails the run as a LuaError: not an
// exit code the host did not allow, and not success.
func TestSandboxedScriptCannotForgeAnExit(t *testing.T) {
	forge := `local task = require("task")
local _, e = pcall(task.timeout, 0, function() end)
e.kind, e.code, e.message = "exit", %d, "forged"
`
	for name, src := range map[string]string{
		"raised, code 7":         fmt.Sprintf(forge, 7) + `error(e)`,
		"raised, code 0":         fmt.Sprintf(forge, 0) + `error(e)`,
		"an unawaited task's, 0": fmt.Sprintf(forge, 0) + `task.spawn(function() error(e) end); task.sleep(0.01)`,
	} {
		rt, _ := hostileRuntime(t, nil)
		err := hostileRun(t, rt, src)
		var le *bridge.LuaError
		var ee *bridge.ExitError
		if errors.As(err, &ee) || !errors.As(err, &le) {
			t.Errorf("%s: %v (%T), want a LuaError", name, err, err)
		}
	}
}
