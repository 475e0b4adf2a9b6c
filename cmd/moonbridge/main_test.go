package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCmd(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func writeScript(t *testing.T, src string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.lua")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRunScriptWithArgs(t *testing.T) {
	path := writeScript(t, `print(#arg, arg[0]:match("s.lua$"), arg[1], arg[2])
print(select("#", ...), ...)
local task = require("task")
local t = task.spawn(function(x) return x * 2 end, 21)
io.write("answer ", t:wait(), "\n")`)
	code, out, errs := runCmd(t, "", "run", path, "one", "two")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if out != "2\ts.lua\tone\ttwo\n2\tone\ttwo\nanswer 42\n" {
		t.Errorf("stdout %q", out)
	}
}

func TestRunUncaughtErrorExitsOne(t *testing.T) {
	path := writeScript(t, "local function f()\n  error('kaput')\nend\nf()\n")
	code, _, errs := runCmd(t, "", "run", path)
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"s.lua:2: kaput", "stack traceback:", "in local 'f'"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
}

func TestRunStdinAndUsage(t *testing.T) {
	code, out, _ := runCmd(t, "print('from stdin', ...)", "run", "-", "x")
	if code != 0 || out != "from stdin\tx\n" {
		t.Errorf("exit %d, stdout %q", code, out)
	}
	if code, _, errs := runCmd(t, "", "run"); code != 2 || !strings.Contains(errs, "Usage: moonbridge run") {
		t.Errorf("no script: exit %d, %q", code, errs)
	}
	if code, _, errs := runCmd(t, "", "run", "--help"); code != 0 || !strings.Contains(errs, "Usage: moonbridge run") {
		t.Errorf("--help: exit %d, %q", code, errs)
	}
	if code, _, errs := runCmd(t, "", "run", "/no/such/file.lua"); code != 1 || !strings.Contains(errs, "no such file") {
		t.Errorf("missing file: exit %d, %q", code, errs)
	}
	if code, _, errs := runCmd(t, "", "frobnicate"); code != 2 || !strings.Contains(errs, "unknown command") {
		t.Errorf("unknown: exit %d, %q", code, errs)
	}
	if code, out, _ := runCmd(t, "", "--help"); code != 0 || !strings.Contains(out, "moonbridge run") {
		t.Errorf("help: exit %d, %q", code, out)
	}
	if code, out, _ := runCmd(t, "", "version"); code != 0 || !strings.HasPrefix(out, "moonbridge ") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

func TestDemo(t *testing.T) {
	code, out, errs := runCmd(t, "", "demo", "--token-delay", "1ms")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"1. Fan-out", "6/6 answered", "Explain an event loop ",
		"2. One answer, streamed", " tokens)", "3. A pipeline", "bridges ", "tides ", "queues ",
		"4. A race", "gave up (after 0.2", "timeout, and its request was cancelled", "#2 won", "the loser is cancelled"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if errs != "" {
		t.Errorf("stderr: %s", errs)
	}
	if code, _, errs := runCmd(t, "", "demo", "--help"); code != 0 || !strings.Contains(errs, "Usage: moonbridge demo") {
		t.Errorf("demo --help: exit %d %q", code, errs)
	}
}

func TestRunOsExit(t *testing.T) {
	path := writeScript(t, `local task = require("task")
local closed = false
task.spawn(function()
  local x <close> = setmetatable({}, {__close = function() io.write("closed\n") end})
  task.sleep(10)
end)
task.sleep(0.01)
print("before")
os.exit(3)
print("never")`)
	code, out, errs := runCmd(t, "", "run", path)
	if code != 3 || out != "before\nclosed\n" || errs != "" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, _ = runCmd(t, "print(1); os.exit(true); print(2)", "run", "-")
	if code != 0 || out != "1\n" {
		t.Errorf("os.exit(true): exit %d, stdout %q", code, out)
	}
}
